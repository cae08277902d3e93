"""Finding the face however the photo is framed, and only a face: tight crops, turned photos, and
images with no face at all, through the Python API, the CLI and the REST API."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from facesuite import FaceAnalysis
from facesuite.cli import main
from facesuite.detect import FaceDetector
from facesuite.io import load_image, write_image


def _photo(facecom_b: Path, identity: str = "Colin_Powell", index: int = 0) -> Path:
    return sorted((facecom_b / identity).glob("*.jpg"))[index]


def _non_faces() -> dict[str, np.ndarray]:
    """Images with no face, made here: blank, white, noise, a flat colour, a drawn rectangle, a gradient."""
    rng = np.random.default_rng(7)
    rectangle = np.full((224, 224, 3), 235, np.uint8)
    cv2.rectangle(rectangle, (60, 50), (170, 180), (30, 60, 200), -1)
    ramp = np.linspace(0, 255, 224, dtype=np.float32)
    return {
        "blank": np.full((224, 224, 3), 128, np.uint8),
        # Scored like an overexposed face by the presence head alone: a white page.
        "white page": np.full((250, 250, 3), 255, np.uint8),
        "noise": rng.integers(0, 256, (224, 224, 3), dtype=np.uint8),
        "flat colour": np.full((300, 200, 3), (222, 200, 170), np.uint8),
        "rectangle": rectangle,
        "gradient": np.repeat(np.repeat(ramp[None, :, None], 224, 0), 3, 2).astype(np.uint8),
    }


@pytest.fixture(scope="module")
def app() -> FaceAnalysis:
    return FaceAnalysis()


def _eye_error(found: np.ndarray, reference: np.ndarray) -> float:
    """Largest landmark distance as a share of the reference's distance between the eyes."""
    return float(np.abs(np.asarray(found) - reference).max() / np.linalg.norm(reference[0] - reference[1]))


def test_a_face_at_the_edge_is_reported_inside_the_photo(facecom_b: Path, app: FaceAnalysis, tmp_path: Path, capsys) -> None:
    """The detector's box of a face cut by the photo's edge reaches past the edge; every output
    reports it clipped to the photo, as ``image[y1:y2, x1:x2]`` needs, and still on the face."""
    image = load_image(_photo(facecom_b))
    (face, *_) = FaceDetector().detect([image])[0]
    x1, y1, x2, y2 = face.box
    # Cut through the face: the left fifth and the top tenth of the box fall outside.
    cut = np.ascontiguousarray(image[int(y1 + 0.1 * (y2 - y1)):, int(x1 + 0.2 * (x2 - x1)):])
    (raw, *_) = FaceDetector().detect([cut])[0]
    assert raw.box[0] < 0  # the detector's own box leaves the photo
    path = tmp_path / "edge.png"
    write_image(path, cut)
    (found, *_) = app.get(path)
    height, width = cut.shape[:2]
    bx1, by1, bx2, by2 = found.box
    assert not found.no_face and 0 <= bx1 < bx2 <= width and 0 <= by1 < by2 <= height
    # Clipped, not moved: the edges inside the photo are the detector's.
    assert (bx1, bx2, by2) == pytest.approx((max(raw.box[0], 0), min(raw.box[2], width), min(raw.box[3], height)), abs=0.01)
    assert cut[int(by1):int(by2), int(bx1):int(bx2)].size > 0
    assert main(["analyze", str(path)]) == 0
    assert json.loads(capsys.readouterr().out)[0]["box"][0] >= 0


def test_a_tight_crop_is_found_where_the_face_is(facecom_b: Path) -> None:
    detector = FaceDetector()
    for identity in ("Colin_Powell", "Aaron_Patterson", "Naomi_Watts", "Hugo_Chavez"):
        image = load_image(_photo(facecom_b, identity))
        (face, *_) = detector.detect([image])[0]
        x1, y1, x2, y2 = (int(round(v)) for v in face.box)
        crop = np.ascontiguousarray(image[max(0, y1):y2, max(0, x1):x2])
        (in_crop, *_) = detector.detect([crop])[0]
        # The crop's landmarks, moved back into the photo, fall on the photo's own eyes and mouth.
        assert _eye_error(in_crop.landmarks + [max(0, x1), max(0, y1)], face.landmarks) < 0.15, identity
        assert in_crop.box[1] > -0.1 * crop.shape[0], "the box must not reach far above the frame"


@pytest.mark.parametrize("quarter_turns", [1, 2, 3])
def test_a_turned_photo_is_found_upright_in_its_own_pixels(facecom_b: Path, app: FaceAnalysis, quarter_turns: int) -> None:
    image = load_image(_photo(facecom_b))
    (upright,) = app.get(image)
    (turned,) = app.get(np.ascontiguousarray(np.rot90(image, quarter_turns)))
    assert turned.turn == (360 - 90 * quarter_turns) % 360 and not turned.no_face
    # The upright landmarks carried into the turned photo's pixels, computed here independently.
    height, width = image.shape[:2]
    x, y = upright.landmarks[:, 0], upright.landmarks[:, 1]
    expected = {1: np.column_stack([y, width - x]), 2: np.column_stack([width - x, height - y]),
                3: np.column_stack([height - y, x])}[quarter_turns]
    assert _eye_error(turned.landmarks, expected) < 0.15
    assert turned.gender == upright.gender
    # The chip is upright: it looks like the upright photo's chip.
    assert float(np.dot(turned.embedding, upright.embedding)) > 0.9


@pytest.mark.parametrize("identity", ["Gary_Gitnick", "Diane_Lane", "Andrea_Kiser"])
def test_an_upside_down_face_that_passes_for_upright_is_turned(facecom_b: Path, app: FaceAnalysis, identity: str) -> None:
    """Upside down, these faces are found as they are at 0.99 and more (eyes placed above the
    mouth); turned upright they score far higher, and the turn wins."""
    from facesuite.detect import FaceDetector

    image = load_image(_photo(facecom_b, identity))
    upside_down = np.ascontiguousarray(np.rot90(image, 2))
    (as_is, *_) = FaceDetector()._detect_batch(upside_down[None])[0]
    assert as_is.score >= 0.99  # the case itself: a face "found" the wrong way up
    (upright,) = app.get(image)
    (turned,) = app.get(upside_down)
    assert turned.turn == 180 and turned.gender == upright.gender
    assert float(np.dot(turned.embedding, upright.embedding)) > 0.9


def test_a_blown_out_photo_is_not_read_sideways(facecom_b: Path, app: FaceAnalysis) -> None:
    """In these upright overexposed frames MTCNN finds nothing upright and, turned, a weak box on a
    dress's lace or the whole frame; no face is taken from a turned view that weak, so the photo
    is read upright."""
    from facesuite.detect import TURNED_MIN_SCORE, FaceDetector

    for name in ("Salma_Hayek/distortion/Salma_Hayek_0002_sunny.jpg", "Kofi_Annan/distortion/Kofi_Annan_0004_sunny.jpg"):
        image = load_image(facecom_b / name)
        turned = [FaceDetector().detect([np.ascontiguousarray(np.rot90(image, k))])[0] for k in (1, 2, 3)]
        assert any(faces and faces[0].score < TURNED_MIN_SCORE for faces in turned), name  # the case itself
        (face,) = app.get(image)
        assert face.turn == 0, name


def test_non_faces_get_no_decision_in_the_python_api(app: FaceAnalysis) -> None:
    for name, image in _non_faces().items():
        (face,) = app.get(image)
        assert face.no_face, name
        assert face.gender is None and face.distortion is None and face.route is None, name
        assert face.to_dict()["no_face"] is True
        if np.ptp(image) == 0:  # one grey level: the probability of a face says none, as the verdict does
            assert face.face_probability == 0.0, name
    blank, other = _non_faces()["blank"], _non_faces()["flat colour"]
    result = app.verify(blank, other)
    assert result.decision == "no face" and not result.same and result.no_face == (True, True)
    assert result.distance is None and result.to_dict()["distance"] is None


def test_a_face_the_detector_misses_is_still_a_face(facecom_b: Path, app: FaceAnalysis) -> None:
    # Overexposed copies: MTCNN finds no face in most; the centre box holds one.
    sunny = sorted(facecom_b.glob("*/distortion/*_sunny.jpg"))[::40]  # about 50, across the identities
    faces = [app.get(path)[0] for path in sunny]
    missed = [face for face in faces if face.fallback]
    assert len(missed) >= 10
    assert np.mean([not face.no_face for face in missed]) >= 0.9


def test_a_real_face_and_a_non_face_are_no_pair(facecom_b: Path, app: FaceAnalysis) -> None:
    result = app.verify(_photo(facecom_b), _non_faces()["rectangle"])
    assert result.decision == "no face" and result.no_face == (False, True) and not result.same
    assert result.distance is None


def test_cli_verify_says_no_face(tmp_path: Path, facecom_b: Path, capsys: pytest.CaptureFixture) -> None:
    blank, beige = tmp_path / "gray.png", tmp_path / "beige.png"
    write_image(blank, _non_faces()["blank"])
    write_image(beige, _non_faces()["flat colour"])
    assert main(["verify", str(blank), str(beige)]) == 0
    assert capsys.readouterr().out.strip() == f"no face: none found in {blank} and {beige} (no decision)"
    assert main(["verify", str(_photo(facecom_b)), str(beige)]) == 0
    assert capsys.readouterr().out.strip() == f"no face: none found in {beige} (no decision)"


def test_gallery_never_enrols_or_names_a_non_face(tmp_path: Path, facecom_b: Path, capsys: pytest.CaptureFixture) -> None:
    people = tmp_path / "people"
    for identity in ("Colin_Powell", "Aaron_Patterson"):
        (people / identity).mkdir(parents=True)
        write_image(people / identity / "face.png", load_image(_photo(facecom_b, identity)))
    write_image(people / "Colin_Powell" / "blank.png", _non_faces()["blank"])
    # A fully transparent PNG is laid over white: a white page.
    Image.new("RGBA", (250, 250), (0, 0, 0, 0)).save(people / "Aaron_Patterson" / "transparent.png")
    gallery = tmp_path / "gallery"
    main(["gallery", "enroll", str(people), "--gallery", str(gallery)])
    out = capsys.readouterr()
    assert "no face found" in out.err and "blank.png" in out.err and "transparent.png" in out.err
    probe = tmp_path / "probe.png"
    write_image(probe, _non_faces()["noise"])
    csv_path = tmp_path / "who.csv"
    main(["gallery", "identify", str(probe), str(_photo(facecom_b, "Colin_Powell", 1)), "--gallery", str(gallery), "--csv", str(csv_path)])
    with open(csv_path, newline="", encoding="utf-8") as handle:
        rows = {row["path"]: row["identity"] for row in csv.DictReader(handle)}
    assert rows[str(probe)] == "no face"
    assert rows[str(_photo(facecom_b, "Colin_Powell", 1))] == "Colin_Powell"
    with FaceAnalysis(gallery=gallery) as app:
        assert dict(app.gallery.list()) == {"Colin_Powell": 1, "Aaron_Patterson": 1}  # no blank page enrolled


def test_rest_api_says_no_face(tmp_path: Path, facecom_b: Path) -> None:
    from fastapi.testclient import TestClient

    from facesuite.serve import create_app
    from facesuite.serve.service import png_bytes

    blank = ("blank.png", png_bytes(_non_faces()["blank"]), "image/png")
    face = _photo(facecom_b).read_bytes()
    with TestClient(create_app(gallery=tmp_path / "gallery", work_dir=tmp_path, eval_roots=[tmp_path])) as client:
        pair = client.post("/verify", files=[("image1", blank), ("image2", ("face.jpg", face, "image/jpeg"))]).json()
        assert pair["decision"] == "no face" and pair["same"] is False and pair["no_face"] == [True, False]
        assert pair["distance"] is None
        refused = client.post("/gallery/enroll", data={"identity": "Nobody"}, files=[("image", blank)])
        assert refused.status_code == 422
        client.post("/gallery/enroll", data={"identity": "Colin"}, files=[("image", ("face.jpg", face, "image/jpeg"))])
        answer = client.post("/gallery/identify", files=[("image", blank)]).json()
        assert answer["identity"] == "no face" and answer["no_face"] is True
        analysed = client.post("/analyze", files=[("image", blank)]).json()
        assert analysed["no_face"] is True and analysed["gender"] is None


def test_predict_age_and_gender_leave_a_non_face_empty(tmp_path: Path, facecom_b: Path) -> None:
    blank = tmp_path / "blank.png"
    write_image(blank, _non_faces()["blank"])
    photo = _photo(facecom_b)
    for task, empty in (("age", ["", "", ""]), ("gender", ["", ""])):
        out = tmp_path / f"{task}.csv"
        assert main(["predict", task, str(photo), str(blank), "--csv", str(out)]) == 0
        rows = {line.split(",")[0]: line.split(",") for line in out.read_text().splitlines()[1:]}
        assert rows[str(photo)][1] not in ("", "no face")
        cells = rows[str(blank)][1:1 + len(empty)]
        assert cells == empty or cells[0] == "no face", cells


def test_predict_exits_2_for_a_bad_file_it_was_named_after_writing_the_rest(tmp_path: Path, facecom_b: Path,
                                                                          capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    for task in ("age", "gender"):
        out = tmp_path / f"{task}.csv"
        assert main(["predict", task, str(bad), str(_photo(facecom_b)), "--csv", str(out)]) == 2
        assert len(out.read_text().splitlines()) == 2  # the header and the good photo
        assert f"skipped: {bad}: not an image file" in capsys.readouterr().err


def test_verify_says_which_face_of_a_group_photo_it_compared(tmp_path: Path, facecom_b: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    """A pair is two faces: when a photo holds several, verify says so and that the most prominent
    was compared, in its text and JSON."""
    first, second = load_image(_photo(facecom_b)), load_image(_photo(facecom_b, "Hugo_Chavez"))
    height = min(first.shape[0], second.shape[0])
    group = np.concatenate([cv2.resize(image, (round(image.shape[1] * height / image.shape[0]), height))
                            for image in (first, second)], axis=1)
    group_path, single_path = tmp_path / "group.png", tmp_path / "single.png"
    write_image(group_path, group)
    write_image(single_path, first)
    assert main(["verify", str(single_path), str(group_path)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == f"{group_path}: 2 faces, the most prominent compared (every face: facesuite analyze --all-faces)"
    assert len(lines) >= 2 and not any(str(single_path) in line for line in lines)
    assert main(["verify", str(single_path), str(group_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["faces_in_image"] == [1, 2]
