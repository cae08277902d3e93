"""The Python API: `facesuite.FaceAnalysis` on real faces (the sample photos, and FACECOM), from
every kind of input."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import facesuite
from facesuite import Face, FaceAnalysis, InputError, Skipped

PEOPLE = ["Colin_Powell", "Hugo_Chavez", "Tom_Ridge"]


@pytest.fixture(scope="module")
def app() -> FaceAnalysis:
    return FaceAnalysis()


def _image(facecom_b: Path, identity: str, index: int = 0) -> Path:
    return sorted((facecom_b / identity).glob("*.jpg"))[index]


def _sample(samples: Path, identity: str, index: int = 0) -> Path:
    return sorted((samples / "people" / identity).glob("*.jpg"))[index]


def test_the_same_face_from_a_path_bytes_an_array_and_a_pil_image(app: FaceAnalysis, samples: Path) -> None:
    path = _sample(samples, "Colin_Powell")
    (reference,) = app.get(path)
    assert isinstance(reference, Face) and reference.source == str(path)
    assert np.linalg.norm(reference.embedding) == pytest.approx(1.0, abs=1e-5)
    for image in (path.read_bytes(), np.asarray(Image.open(path)), Image.open(path), str(path)):
        (face,) = app.get(image)
        np.testing.assert_allclose(face.embedding, reference.embedding, atol=1e-5)
        np.testing.assert_allclose(face.box, reference.box, atol=1e-4)
        np.testing.assert_allclose(face.landmarks, reference.landmarks, atol=1e-4)
        assert (face.distortion, face.route, face.gender, face.fallback) == (
            reference.distortion, reference.route, reference.gender, reference.fallback)
        assert face.p_female == pytest.approx(reference.p_female, abs=1e-5)


def test_faces_come_most_prominent_first_and_chips_on_demand(app: FaceAnalysis, samples: Path) -> None:
    small = Image.open(_sample(samples, "Hugo_Chavez")).convert("RGB").resize((150, 150))
    large = Image.open(_sample(samples, "Colin_Powell")).convert("RGB").resize((300, 300))
    group = Image.new("RGB", (460, 300), (90, 90, 90))
    group.paste(large, (0, 0))
    group.paste(small, (310, 75))
    faces = app.get(np.asarray(group), max_faces=None)
    assert len(faces) == 2 and [f.index for f in faces] == [0, 1]
    width = [f.box[2] - f.box[0] for f in faces]
    assert width[0] > width[1] and faces[0].box[0] < 300 < faces[1].box[0]  # the large face is on the left
    assert len(app.get(np.asarray(group))) == 1  # max_faces=1 by default
    assert faces[1].chip().shape == (150, 150, 3) and faces[1].chip(size=112).shape == (112, 112, 3)
    record = faces[0].to_dict()
    assert set(record) == {"path", "box", "fallback", "score", "no_face", "face_probability", "turn", "distortion", "distortion_probability", "route",
                           "gender", "p_female", "quality", "identity", "distance", "threshold", "held_to", "match_kind", "source_photo",
                           "source_agreement", "face", "age", "age_range"}
    json.dumps(record)  # JSON-ready


def test_bad_input_is_an_input_error_and_a_skip_in_a_batch(app: FaceAnalysis, samples: Path) -> None:
    with pytest.raises(InputError, match=r"^<bytes>: not an image file"):
        app.get(b"not an image")
    with pytest.raises(InputError, match="expected an RGB uint8 array"):
        app.get(np.zeros((64, 64), dtype=np.float32))
    with pytest.raises(InputError, match="no such file"):
        app.get("missing.jpg")
    good = _sample(samples, "Tom_Ridge")
    results = app.get_batch([good, b"", str(good)])
    assert isinstance(results[1], Skipped) and results[1].error.message == "empty file (0 bytes)"
    assert [len(r) for r in (results[0], results[2])] == [1, 1]


def test_gallery_enroll_identify_remove_list(samples: Path, tmp_path: Path) -> None:
    uri = tmp_path / "people"
    with FaceAnalysis() as app:
        with app.open_gallery(uri, create=True) as gallery:
            for person in PEOPLE:
                photo = io.BytesIO()
                Image.open(_sample(samples, person, 1)).save(photo, "PNG")  # in memory, named by the caller
                result = gallery.enroll(person, [_sample(samples, person), photo.getvalue()], ["first.jpg", f"{person}.png"])
                assert (result.faces, result.skipped) == (2, [])
            assert gallery.list() == [(p, 2) for p in sorted(PEOPLE)]
    with FaceAnalysis(gallery=uri) as app:
        (face,) = app.get(samples / "photos" / "Hugo_Chavez_0005.jpg")  # not enrolled: 0001 and 0002 were
        assert face.identity == "Hugo_Chavez" and face.distance < app.gallery.threshold
        assert app.get(samples / "photos" / "Naomi_Watts_0001.jpg")[0].identity == "unknown"
        matches = app.gallery.identify(samples / "photos" / "Tom_Ridge_0004.jpg", top_k=3)
        assert [m.identity for m in matches][0] == "Tom_Ridge" and len(matches) == 3
        assert app.gallery.remove("Tom_Ridge") == 2 and [i for i, _ in app.gallery.list()] == ["Colin_Powell", "Hugo_Chavez"]


def test_importing_facesuite_loads_no_model() -> None:
    import subprocess
    import sys

    code = "import sys, facesuite; print(sorted(m for m in ('torch', 'facenet_pytorch', 'faiss') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]" and facesuite.FaceAnalysis is FaceAnalysis


def test_get_batch_decodes_each_file_once_and_keeps_no_pixels(app: FaceAnalysis, facecom_b: Path, monkeypatch) -> None:
    import facesuite.detect.extract as extract

    paths = [_image(facecom_b, "Colin_Powell", i) for i in range(3)]
    decoded: list = []
    real_decode = extract.decode
    monkeypatch.setattr(extract, "decode", lambda item, *a: decoded.append(item) or real_decode(item, *a))
    monkeypatch.setattr(extract, "load_image", lambda path: pytest.fail(f"{path} read a second time"))
    results = app.get_batch(paths)
    assert decoded == paths and all(len(faces) == 1 for faces in results)
    monkeypatch.undo()
    # The results hold no image; a chip asked for later reads its file again.
    face = results[0][0]
    assert face._crop.image is None and face.chip().shape == (150, 150, 3)


def test_routed_embed_decodes_each_file_once_and_matches_its_stages(app: FaceAnalysis, facecom_b: Path, monkeypatch) -> None:
    import facesuite.detect.extract as extract

    paths = [_image(facecom_b, person, i) for person in PEOPLE for i in range(2)]
    in_memory = np.asarray(Image.open(paths[0]))
    monkeypatch.setattr(extract, "load_image", lambda path: pytest.fail(f"{path} read a second time"))
    vectors, crops, skipped = app.embed([*paths, in_memory])
    monkeypatch.undo()
    assert not skipped and len(crops) == len(vectors) == len(paths) + 1
    # Files are read again when needed; the array given in memory keeps its pixels.
    assert [crop.image is None for crop in crops] == [True] * len(paths) + [False]
    np.testing.assert_allclose(vectors, app.embed_crops(crops), atol=1e-6)
    np.testing.assert_allclose(vectors[-1], vectors[0], atol=1e-5)


def test_default_analyze_runs_without_torch_and_matches_the_torch_port(app: FaceAnalysis, facecom_b: Path) -> None:
    """Once the cache holds the converted networks, `facesuite analyze` runs ONNX Runtime and NumPy
    only (importing PyTorch alone costs ~1.8 s per call), with the in-process analyzer's results,
    and the PyTorch port's vectors; nor does it import what only galleries, the server, Ray or the
    report need. The int8 option's vectors are close, and its gender the same (read from a second
    pass of the float network the head was trained on)."""
    import subprocess
    import sys

    path = _image(facecom_b, "Colin_Powell", 1)
    code = ("import sys; from facesuite.cli import main; code = main(['analyze', sys.argv[1], '--no-cache', '--json']); "
            "print(sorted(m for m in ('torch', 'torchvision', 'faiss', 'ray', 'fastapi', 'matplotlib', 'pymilvus') "
            "if m in sys.modules), file=sys.stderr); sys.exit(code)")
    app.get(path)  # the module's analyzer has converted (and cached) every network it runs
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    assert done.stderr.strip().splitlines()[-1] == "[]"
    (row,) = json.loads(done.stdout)
    (face,) = app.get(path)
    assert app.embedder.name == "dlib-onnx" and app.gender_stage.embedder is app.embedder  # one pass for both
    with FaceAnalysis("dlib-torch") as torch_port, FaceAnalysis("dlib-int8") as int8:
        (reference,) = torch_port.get(path)
        (fast,) = int8.get(path)
        assert torch_port.gender_stage.embedder is torch_port.embedder and int8.gender_stage.embedder is not int8.embedder
    np.testing.assert_allclose(face.embedding, reference.embedding, atol=1e-5)
    assert float(face.embedding @ fast.embedding) > 0.99  # model card: cosine >= 0.998 on held-out chips
    assert (row["distortion"], row["route"], row["gender"]) == (face.distortion, face.route, face.gender) == (
        reference.distortion, reference.route, reference.gender) == (fast.distortion, fast.route, fast.gender)
    assert face.route == "plain"
    assert reference.p_female == pytest.approx(face.p_female, abs=1e-5) and fast.p_female == pytest.approx(face.p_female, abs=1e-6)
    for key, value in (("p_female", face.p_female), ("distortion_probability", face.distortion_probability),
                       ("quality", face.quality), ("score", face.det_score)):
        assert row[key] == pytest.approx(value, abs=2e-4), key
    assert row["box"] == pytest.approx(list(face.box), abs=0.1)


def test_galleries_are_kept_to_one_vector_space(app: FaceAnalysis, facecom_b: Path, tmp_path: Path) -> None:
    """dlib-onnx and dlib-torch (the port's two float runtimes) give the same vectors: a gallery
    enrolled with one answers the other. The int8 network's are close, not the same: its own
    galleries only."""
    with FaceAnalysis("dlib-onnx", routes=None, gender=None) as onnx_app, \
            onnx_app.open_gallery(tmp_path / "people", create=True) as gallery:
        for person in PEOPLE:
            gallery.enroll(person, [_image(facecom_b, person, 0)])
    with FaceAnalysis("dlib-torch", routes=None, gender=None, gallery=tmp_path / "people") as torch_app:
        (face,) = torch_app.get(_image(facecom_b, "Tom_Ridge", 2))
        assert face.identity == "Tom_Ridge"
    for other in ("dlib", "dlib-int8"):
        with pytest.raises(InputError, match=f"built with embedder 'dlib-torch', not '{other}' "
                                             r"\(pass --embedder dlib-torch or dlib-onnx\)"):
            FaceAnalysis(other, routes=None, gender=None, gallery=tmp_path / "people")
    with FaceAnalysis("dlib-int8", routes=None, gender=None) as int8, \
            int8.open_gallery(tmp_path / "int8", create=True) as gallery:
        for person in PEOPLE:
            gallery.enroll(person, [_image(facecom_b, person, 0)])
        assert gallery.embedder == "dlib-int8"
        assert gallery.identify(_image(facecom_b, "Tom_Ridge", 2))[0].identity == "Tom_Ridge"


def test_gender_reads_one_chips_pass_on_mirrored_routes_too(app: FaceAnalysis, facecom_b: Path) -> None:
    # A mirrored route averages the face's embedding with its mirror image's for recognition, but
    # the gender head was trained on one chip's pass: on routes without a restoration step its
    # answer must equal the unrouted analyzer's on the same image.
    person = facecom_b / PEOPLE[0] / "distortion"
    images = sorted(person.glob("*_lowlight.jpg")) + sorted(person.glob("*_resized.jpg"))
    routed = [face for faces in app.faces(images) for face in faces]
    mirrored = [i for i, face in enumerate(routed) if face.route == "mirror"]
    assert mirrored, [face.route for face in routed]  # the check must cover a mirrored route
    plain = [face for faces in FaceAnalysis(routes=None).faces(images) for face in faces]
    for i in mirrored:
        assert routed[i].p_female == pytest.approx(plain[i].p_female, abs=1e-5)
        assert float(routed[i].embedding @ plain[i].embedding) < 1 - 1e-4  # recognition did average


def test_each_face_of_a_group_photo_has_its_own_distortion(app: FaceAnalysis, facecom_b: Path) -> None:
    """A clean photo beside a noisy one: the two faces of the group photo are named by their own
    half (``clean`` and ``noisy``, as each half alone is), with their own route and quality; the
    detector counts two faces for each."""
    clean = np.asarray(Image.open(_image(facecom_b, "Colin_Powell")).convert("RGB"))
    noisy_path = facecom_b / "Hugo_Chavez" / "distortion" / "Hugo_Chavez_0001_noisy.jpg"
    noisy = np.asarray(Image.open(noisy_path).convert("RGB"))
    alone = [faces[0] for faces in app.get_batch([clean, noisy])]
    assert [f.distortion for f in alone] == ["clean", "noisy"]
    group = np.concatenate([clean, noisy], axis=1)
    faces = sorted((f for f in app.get(group, max_faces=None) if not f.no_face), key=lambda f: f.box[0])
    left = next(f for f in faces if f.box[2] <= clean.shape[1])
    right = next(f for f in faces if f.box[0] >= clean.shape[1])
    assert (left.distortion, right.distortion) == ("clean", "noisy")
    assert left.route != right.route and left.quality != right.quality
    assert left._crop.face.faces_in_image == right._crop.face.faces_in_image == len(app.get(group, max_faces=None))


def test_a_face_below_the_quality_floor_gets_no_age_and_no_gender_answer(app: FaceAnalysis, facecom_b: Path, capsys) -> None:
    """A blown-out face: `unrecognisable`, no age, gender `uncertain` (answered with --no-abstain);
    the clean photo it was made from keeps all three."""
    from facesuite.cli import main

    clean = sorted((facecom_b / "John_Kerry").glob("*.jpg"))[1]
    blown_out = clean.parent / "distortion" / f"{clean.stem}_sunny.jpg"
    (face,) = app.get(blown_out)
    (unspoilt,) = app.get(clean)
    assert not face.no_face and face.quality < app.quality.floor <= unspoilt.quality
    assert (face.age, face.age_range, face.gender) == (None, None, "uncertain") and face.p_female is not None
    assert unspoilt.age is not None and unspoilt.gender in ("male", "female")
    assert main(["analyze", str(blown_out), "--no-abstain", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["gender"] in ("male", "female") and row["age"] is None and row["age_range"] is None
