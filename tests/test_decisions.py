"""Recognition decisions on real FACECOM photos: a name, ``unknown``, ``unrecognisable``, a source
match on a processed copy of an enrolled photo (and none on another photo of the same person),
the shipped per-route thresholds deciding, and bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facesuite import FaceAnalysis
from facesuite.cli import main
from facesuite.gallery.source_match import FRAME_BYTES, SourceIndex, agreement, frame_from_bytes, frame_of
from facesuite.io import load_image

PEOPLE = ["Colin_Powell", "Hugo_Chavez", "Tom_Ridge"]
STRANGER = "Naomi_Watts"


def _photo(facecom_b: Path, identity: str, index: int) -> Path:
    return sorted((facecom_b / identity).glob("*.jpg"))[index]


def _copy(photo: Path, kind: str) -> Path:
    return photo.parent / "distortion" / f"{photo.stem}_{kind}.jpg"


@pytest.fixture(scope="module")
def enrolled(facecom_b: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A gallery of the first two photos of each of PEOPLE."""
    gallery = tmp_path_factory.mktemp("decisions") / "people"
    with FaceAnalysis(gender=None) as app, app.open_gallery(gallery, create=True) as people:
        people.enroll_many({name: [_photo(facecom_b, name, 0), _photo(facecom_b, name, 1)] for name in PEOPLE})
    return gallery


def test_each_decision_kind_and_source_matches(facecom_b: Path, enrolled: Path) -> None:
    powell = _photo(facecom_b, "Colin_Powell", 0)
    other_photo = _photo(facecom_b, "Colin_Powell", 4)  # same person, not enrolled
    probes = [other_photo, _photo(facecom_b, STRANGER, 0), _copy(powell, "sunny"), _copy(powell, "noisy"),
              _copy(other_photo, "sunny"), _copy(other_photo, "noisy")]
    with FaceAnalysis(gender=None, gallery=enrolled) as app:
        assert app.source_match and app.gallery.store.keeps_frames
        named, stranger, sunny_copy, noisy_copy, sunny_other, noisy_other = [app.get(p)[0] for p in probes]
        floor = app.quality.floor

    # A new photo of an enrolled person: named by its face; a stranger: unknown.
    assert (named.identity, named.match_kind, named.source_photo) == ("Colin_Powell", "face", None)
    assert (stranger.identity, stranger.match_kind) == ("unknown", "face")
    # Processed copies of an enrolled photo: that photo, as a source match with its evidence,
    # the blown-out sunny face included.
    for copy in (sunny_copy, noisy_copy):
        assert (copy.identity, copy.match_kind) == ("Colin_Powell", "source")
        assert Path(copy.source_photo).name == powell.name and copy.source_agreement >= 0.5
    # Copies of a photo that is not enrolled: never a source match, even of the same person; the
    # sunny face is below the quality floor, so unrecognisable rather than a stranger.
    assert sunny_other.match_kind == noisy_other.match_kind == "face"
    assert sunny_other.quality < floor and sunny_other.identity == "unrecognisable"
    assert noisy_other.identity in ("Colin_Powell", "unknown")
    record = sunny_copy.to_dict()
    assert record["match_kind"] == "source" and record["source_photo"].endswith(powell.name)

    # Switched off: the same copy is decided by its face alone.
    with FaceAnalysis(gender=None, gallery=enrolled, source_match=False) as app:
        (face,) = app.get(_copy(powell, "sunny"))
        assert face.match_kind == "face" and face.source_photo is None and face.identity == "unrecognisable"
        matches = app.gallery.identify(_copy(powell, "noisy"), top_k=2)
        assert [m.match_kind for m in matches] == ["face", "face"]
    with FaceAnalysis(gender=None, gallery=enrolled) as app:
        matches = app.gallery.identify(_copy(powell, "sunny"), top_k=2)
        assert matches[0].match_kind == "source" and matches[0].identity == "Colin_Powell"
        # With one candidate asked for, the source match still carries the face's own distance to
        # that identity (found over every identity when the face's nearest is someone else).
        (face,) = app.get(_copy(powell, "sunny"))
        everyone = app.gallery.candidates([face], len(app.gallery))[0]
        (only,) = app.gallery.identify(_copy(powell, "sunny"), top_k=1)
        assert only.identity == "Colin_Powell" and only.match_kind == "source"
        assert only.distance == pytest.approx(next(m.distance for m in everyone if m.identity == "Colin_Powell"))


def test_a_copy_with_its_face_painted_out_is_no_face(facecom_b: Path, enrolled: Path) -> None:
    """An enrolled photo with its face painted over still matches its frame, but its box holds no
    face: nothing is decided on it, not even the source's name."""
    from facesuite.detect import FaceDetector

    photo = load_image(_photo(facecom_b, "Colin_Powell", 0))
    x1, y1, x2, y2 = (int(round(v)) for v in FaceDetector().detect_one(photo).box)
    painted = photo.copy()
    painted[max(0, y1):y2, max(0, x1):x2] = 128
    with FaceAnalysis(gender=None, gallery=enrolled) as app:
        assert app.gallery.source_of(painted).identity == "Colin_Powell"  # the frame is the enrolled one
        (face,) = app.get(painted)
    assert face.no_face
    assert (face.identity, face.match_kind, face.source_photo, face.distance) == ("no face", None, None, None)


#: Overexposed training copies where MTCNN's only box is off the face (on a collar, a corner).
BLOWN_OUT = ["Bob_Riley", "Diana_Ross", "Roger_Clemens"]


def test_a_vetoed_box_in_a_blown_out_photo_gives_way_to_the_centre_box(facecom_b: Path, tmp_path: Path) -> None:
    """Where the presence head vetoes the detector's only box, the photo is read as one where
    nothing was found: its centre box, judged a face, is the face, through every caller."""
    clean = [_photo(facecom_b, name, 0) for name in BLOWN_OUT]
    sunny = [_copy(photo, "sunny") for photo in clean]
    gallery = tmp_path / "blown-out"
    with FaceAnalysis(gender=None, age=None) as app:
        # The case itself, from the stages directly: a detected box the presence head scores
        # below its veto.
        crops, _ = app.crops(sunny)
        _, _, _, pooled = app.route_crops(crops, hidden=True)
        assert all(crop.face.detected for crop in crops)
        assert (app.presence.p_face(pooled) < app.presence.veto).all()

        for face, crop in zip(app.faces(sunny)[0], crops):
            assert face.fallback and not face.no_face and face.distortion is not None
            assert face.box != pytest.approx(crop.face.box, abs=1.0)  # the centre box, not the vetoed one
        verdict = app.verify(clean[0], sunny[0])
        assert verdict.no_face == (False, False) and verdict.decision != "no face"
        assert verdict.crops[1].face.fallback  # the chip the dashboard's pair view shows
        assert all(crop.face.fallback for crop in app.judged_crops(sunny)[0])  # ...and a report's cards
        with app.open_gallery(gallery, create=True) as people:
            people.enroll_many({name: [photo] for name, photo in zip(BLOWN_OUT, clean)})
    with FaceAnalysis(gender=None, age=None, gallery=gallery) as app:
        named = app.faces(sunny)[0]
    # Blown out below the quality floor, each copy is named by the enrolled photo it was made from.
    assert [(f.identity, f.match_kind) for f in named] == [(name, "source") for name in BLOWN_OUT]


def _paste_face(host: np.ndarray, donor: np.ndarray, feathered: bool) -> np.ndarray:
    """``host`` with ``donor``'s face resized over its face box: a rectangle, or (``feathered``) an
    oval with soft edges over the box grown by 10% a side, as a face-swap edit blends one in."""
    import cv2

    from facesuite.detect import FaceDetector

    detector = FaceDetector()

    def grown(box, image, pad):
        w, h = box[2] - box[0], box[3] - box[1]
        return (int(max(box[0] - pad * w, 0)), int(max(box[1] - pad * h, 0)),
                int(min(box[2] + pad * w, image.shape[1])), int(min(box[3] + pad * h, image.shape[0])))

    pad = 0.1 if feathered else 0.0
    x1, y1, x2, y2 = grown(detector.detect_one(host).box, host, pad)
    dx1, dy1, dx2, dy2 = grown(detector.detect_one(donor).box, donor, pad)
    face = cv2.resize(donor[dy1:dy2, dx1:dx2], (x2 - x1, y2 - y1)).astype(np.float32)
    weight = np.ones((y2 - y1, x2 - x1), np.float32)
    if feathered:
        weight[:] = 0
        cv2.ellipse(weight, ((x2 - x1) // 2, int((y2 - y1) * 0.515)), (int((x2 - x1) * 0.38), int((y2 - y1) * 0.435)),
                    0, 0, 360, 1.0, -1)
        weight = cv2.GaussianBlur(weight, (0, 0), 4)
    edit = host.copy()
    edit[y1:y2, x1:x2] = (weight[..., None] * face + (1 - weight[..., None]) * host[y1:y2, x1:x2]).astype(np.uint8)
    return edit


def test_another_face_pasted_over_an_enrolled_photo_is_not_named_by_the_photo(facecom_b: Path, tmp_path: Path) -> None:
    """A stranger's face pasted over an enrolled photo keeps that photo's frame, so the frame alone
    names the enrolled person; the face region disagrees, so the face decides: not that person.
    Pasted as a rectangle over the face box, and blended in as a feathered oval over the box grown
    by 10% (the box's corners and the hairline stay the enrolled photo's). A processed copy of the
    same photo keeps its source match."""
    hosts = {"Colin_Powell": STRANGER, "Lucy_Liu": "Kate_Hudson"}  # enrolled person: whose face is pasted in
    edits = {(host, feathered): _paste_face(load_image(_photo(facecom_b, host, 0)), load_image(_photo(facecom_b, donor, 0)), feathered)
             for host, donor in hosts.items() for feathered in (False, True)}
    with FaceAnalysis(gender=None, age=None) as app, app.open_gallery(tmp_path / "g", create=True) as gallery:
        gallery.enroll_many({name: [_photo(facecom_b, name, 0), _photo(facecom_b, name, 1)] for name in hosts})
        for (host, _), edit in edits.items():
            assert gallery.source_of(edit).identity == host  # the frame alone would name the enrolled person
            (face,) = app.get(edit)
            gallery.answer(face, gallery.candidates([face])[0][0], edit)
            assert not face.no_face and face.quality >= app.quality.floor
            assert face.match_kind == "face" and face.source_photo is None and face.identity != host, host
        (copy,) = app.get(_copy(_photo(facecom_b, "Lucy_Liu", 0), "noisy"))
        gallery.answer(copy, gallery.candidates([copy])[0][0])
    assert (copy.identity, copy.match_kind) == ("Lucy_Liu", "source")


def test_eval_recognition_holds_a_pasted_face_to_its_source_as_identify_does(facecom_b: Path, tmp_path: Path) -> None:
    """`eval recognition` decides its probes by the rule `gallery identify` uses: a "copy" that is
    an enrolled photo with a stranger's face blended in gets no source match there either, while
    the real processed copies of the same photo keep theirs."""
    person = tmp_path / "ids" / "Lucy_Liu"
    (person / "distortion").mkdir(parents=True)
    photo = _photo(facecom_b, "Lucy_Liu", 0)
    (person / photo.name).symlink_to(photo.resolve())
    (person / _photo(facecom_b, "Lucy_Liu", 1).name).symlink_to(_photo(facecom_b, "Lucy_Liu", 1).resolve())
    (person / "distortion" / f"{photo.stem}_noisy.jpg").symlink_to(_copy(photo, "noisy").resolve())
    edit = _paste_face(load_image(photo), load_image(_photo(facecom_b, "Kate_Hudson", 0)), feathered=True)
    Image.fromarray(edit).save(person / "distortion" / f"{photo.stem}_blurred.jpg", quality=95)
    other = tmp_path / "ids" / "Colin_Powell"
    other.mkdir()
    for index in (0, 1):
        (other / _photo(facecom_b, "Colin_Powell", index).name).symlink_to(_photo(facecom_b, "Colin_Powell", index).resolve())
    assert main(["eval", "recognition", str(tmp_path / "ids"), "--out", str(tmp_path / "eval")]) == 0
    rows = {Path(r["path"]).name: r for r in csv.DictReader(open(tmp_path / "eval" / "predictions.csv", newline=""))}
    assert rows[f"{photo.stem}_noisy.jpg"]["match_kind"] == "source"
    pasted = rows[f"{photo.stem}_blurred.jpg"]
    assert pasted["match_kind"] == "face" and pasted["decision"] != "Lucy_Liu"


def test_stored_frames_follow_enroll_and_remove(facecom_b: Path, tmp_path: Path) -> None:
    with FaceAnalysis(gender=None) as app, app.open_gallery(tmp_path / "g", create=True) as gallery:
        gallery.enroll("Colin_Powell", [_photo(facecom_b, "Colin_Powell", 0)])
        gallery.enroll("Hugo_Chavez", [_photo(facecom_b, "Hugo_Chavez", 0)])
        stamp, rows = gallery.store.frames()
        assert [identity for identity, _, _ in rows] == ["Colin_Powell", "Hugo_Chavez"]
        assert all(len(frame) == FRAME_BYTES for _, _, frame in rows)
        assert gallery.store.frames(since=stamp) == (stamp, None)  # unchanged: nothing re-read
        assert gallery.source_of(load_image(_copy(_photo(facecom_b, "Hugo_Chavez", 0), "lowlight"))).identity == "Hugo_Chavez"
        gallery.remove("Hugo_Chavez")
        assert [identity for identity, _, _ in gallery.store.frames()[1]] == ["Colin_Powell"]
        assert gallery.source_of(load_image(_copy(_photo(facecom_b, "Hugo_Chavez", 0), "lowlight"))) is None


def test_source_evidence_separates_copies_from_other_photos(facecom_b: Path) -> None:
    photos = [_photo(facecom_b, name, i) for name in PEOPLE for i in range(3)]
    frames = [frame_of(load_image(p)) for p in photos]
    index = SourceIndex(frames, [p.parent.name for p in photos], [str(p) for p in photos])
    for row, photo in enumerate(photos):
        for kind in ("blurred", "lowlight", "resized"):
            found = index.match(frame_of(load_image(_copy(photo, kind))))
            assert found is not None and found.source == str(photo), (photo.name, kind)
        # The clean photo itself, with its own frame left out: other photos of the same person never match.
        _, bound, _, _ = index.best(frames[row], exclude={row})
        assert bound < index.threshold
    # A blank frame carries no evidence either way.
    blank = np.full_like(frames[0], 255)
    assert agreement(blank, frames[0]) == (0.0, 0) and index.match(blank) is None
    with pytest.raises(ValueError, match="bytes"):
        frame_from_bytes(b"\x00" * 10)


def test_shipped_route_thresholds_are_loaded_and_decide(facecom_b: Path, tmp_path: Path) -> None:
    from facesuite.config import MODELS_DIR

    shipped = json.loads((MODELS_DIR / "calibration" / "dlib-onnx.json").read_text())["route_thresholds"]
    with FaceAnalysis(gender=None) as app, app.open_gallery(tmp_path / "g", create=True) as gallery:
        point = gallery.operating_point
        assert dict(point.route_thresholds) == shipped and point.threshold == gallery.threshold
        for kind, t in shipped.items():  # never looser than the gallery's
            assert point.search_threshold(kind) == min(t, gallery.threshold)
        strict = point.search_threshold("noisy")
        assert strict == shipped["noisy"] < gallery.threshold
        between = (strict + gallery.threshold) / 2
        # quality 1.0: the threshold, not the quality floor, is under test here
        assert point.search("Colin_Powell", between, "noisy", 1.0).answer == "unknown"
        decided = point.search("Colin_Powell", strict, "noisy", 1.0)  # inclusive bound
        assert (decided.answer, decided.threshold, decided.held_to) == ("Colin_Powell", strict, "threshold for noisy faces")
        assert point.search("Colin_Powell", between, "no such type", 1.0).answer == "Colin_Powell"  # the gallery's
        assert point.search("Colin_Powell", 0.0, "clean", point.quality_floor / 2).answer == "unrecognisable"
        assert point.search("Colin_Powell", 0.0, "clean", 1.0, no_face=True).answer == "no face"
        # A face decided through the gallery carries what it was held to.
        app.gallery = gallery
        gallery.enroll("Colin_Powell", [_photo(facecom_b, "Colin_Powell", 1)])
        (face,) = app.get(_photo(facecom_b, "Colin_Powell", 4))
        assert face.threshold == point.search_threshold(face.distortion) and face.identity == "Colin_Powell"
        app.gallery = None


def test_verify_answers_unrecognisable_below_the_quality_floor(facecom_b: Path, capsys) -> None:
    powell, other = _photo(facecom_b, "Colin_Powell", 0), _photo(facecom_b, "Colin_Powell", 4)
    assert main(["verify", str(powell), str(other), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["decision"] == "same" and result["same"] is True
    assert main(["verify", str(powell), str(_copy(other, "sunny")), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["decision"] == "unrecognisable" and result["same"] is False and min(result["quality"]) < 0.05


def test_identify_cli_reports_match_kind_and_bad_input(facecom_b: Path, enrolled: Path, bad_files, tmp_path: Path, capsys) -> None:
    powell = _photo(facecom_b, "Colin_Powell", 0)
    out = tmp_path / "who.csv"
    probes = [_copy(powell, "sunny"), _photo(facecom_b, "Colin_Powell", 4), bad_files["truncated"]]
    # A bad file named on the command line: the rest answered, then exit 2.
    assert main(["gallery", "identify", *map(str, probes), "--gallery", str(enrolled), "--csv", str(out)]) == 2
    rows = {Path(r["path"]).name: r for r in csv.DictReader(open(out))}
    assert (rows[probes[0].name]["match_kind"], rows[probes[0].name]["identity"]) == ("source", "Colin_Powell")
    assert rows[probes[0].name]["source_photo"].endswith(powell.name)
    assert rows[probes[1].name]["match_kind"] == "face" and rows[probes[1].name]["source_photo"] == ""
    assert str(bad_files["truncated"]) in capsys.readouterr().err  # a counted skip, the rest answered
    assert main(["gallery", "identify", *map(str, probes[:1]), "--gallery", str(enrolled), "--csv", str(out), "--no-source-match"]) == 0
    (row,) = csv.DictReader(open(out))
    assert row["match_kind"] == "face"
    # A single bad image: one line naming it, exit 2.
    assert main(["analyze", str(bad_files["text"]), "--gallery", str(enrolled)]) == 2
    assert str(bad_files["text"]) in capsys.readouterr().err
