"""Distortion detector, synthesis and CLI, on real FACECOM images (skipped when data is absent)."""

from __future__ import annotations

import csv
import html
import json
import random
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from facesuite.cli import main
from facesuite.config import data_root
from facesuite.data import DISTORTIONS, read_identity_folders, read_split
from facesuite.distortion import LABELS

DEV_SPLIT = data_root() / "splits" / "facecom_dev_identities.txt"
PER_CLASS = 10  # images per class sampled from dev identities


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """One torch thread: the model is tiny, and on a shared CPU two spinning threads per process
    make these tests several times slower than one."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def dev(facecom_b: Path):
    if not DEV_SPLIT.is_file():
        pytest.skip(f"the dev split is not at {DEV_SPLIT} (set FACESUITE_DATA)")
    return read_identity_folders(facecom_b).subset(read_split(DEV_SPLIT))


@pytest.fixture(scope="module")
def detector():
    from facesuite.classify.distortion import DistortionDetector

    return DistortionDetector.load()


def _sample(dev, label: str, n: int, seed: int = 0) -> list[Path]:
    if label == "clean":
        paths = [path for path, _ in dev.clean]
    else:
        paths = [d.path for d in dev.distorted if d.distortion == label]
    return random.Random(seed).sample(paths, n)


def test_shipped_detector_names_real_dev_distortions(dev, detector):
    correct, total = 0, 0
    for label in LABELS:
        predictions = detector.predict_photos(_sample(dev, label, PER_CLASS))
        hits = sum(p.label == label for p in predictions)
        # resized vs clean hinges on faint softness: see the model card for their dev recall
        floor = 0.6 if label in ("clean", "resized") else 0.8
        assert hits / PER_CLASS >= floor, f"{label}: {hits}/{PER_CLASS} correct"
        correct, total = correct + hits, total + PER_CLASS
    assert correct / total >= 0.85


def test_predict_output_shape(dev, detector):
    paths = _sample(dev, "sunny", 2)
    from facesuite.io import load_image

    results = detector.predict([load_image(paths[0]), paths[1]])
    assert len(results) == 2
    label, probability, probs = results[0]
    assert label in LABELS and set(probs) == set(LABELS)
    assert probability == pytest.approx(max(probs.values()))
    assert sum(probs.values()) == pytest.approx(1.0, abs=1e-4)


def test_onnx_runtime_gives_the_pytorch_networks_probabilities(dev, detector):
    """The shipped detector runs its ONNX export; the PyTorch network it came from agrees."""
    from facesuite.classify.distortion import DEFAULT_MODEL_DIR, WEIGHTS_FILE, DistortionDetector, OnnxDistortionNet
    from facesuite.classify.distortion_net import DistortionNet, load_net

    assert isinstance(detector.net, OnnxDistortionNet)
    paths = [p for label in LABELS for p in _sample(dev, label, 2, seed=1)]
    reference = DistortionDetector(load_net(DEFAULT_MODEL_DIR / WEIGHTS_FILE, detector.spec, len(LABELS)), detector.spec)
    assert isinstance(reference.net, DistortionNet)
    ours, theirs = detector.predict(paths), reference.predict(paths)
    assert [p.label for p in ours] == [p.label for p in theirs]
    assert max(abs(a.probs[k] - b.probs[k]) for a, b in zip(ours, theirs) for k in LABELS) < 1e-4


@pytest.fixture(scope="module")
def tiny_tree(tmp_path_factory, dev):
    """Three dev identities' clean images copied into a fresh identity-folder tree."""
    root = tmp_path_factory.mktemp("clean")
    identities = sorted({identity for _, identity in dev.clean})[:40:5]
    for path, identity in dev.clean:
        if identity in identities and not (root / identity).exists():
            (root / identity).mkdir()
            shutil.copy(path, root / identity / path.name)
    return root


def test_synthesis_writes_all_types_and_detector_recognises_sunny_noisy(tiny_tree, tmp_path, detector):
    out = tmp_path / "synth"
    assert main(["distort", str(tiny_tree), "--out", str(out), "--seed", "1"]) == 0
    made = read_identity_folders(out)
    assert len(made.clean) == len(read_identity_folders(tiny_tree).clean)
    assert sorted({d.distortion for d in made.distorted}) == sorted(DISTORTIONS)
    for path, _ in made.clean:
        for kind in DISTORTIONS:
            assert (path.parent / "distortion" / f"{path.stem}_{kind}.jpg").is_file()
    for kind in ("sunny", "noisy"):
        paths = [d.path for d in made.distorted if d.distortion == kind]
        hits = sum(p.label == kind for p in detector.predict_photos(paths))
        assert hits / len(paths) >= 0.6, f"synthetic {kind}: {hits}/{len(paths)} recognised"


def test_synthesis_is_deterministic(tiny_tree):
    from facesuite.distortion.synth import Synthesizer
    from facesuite.io import load_image

    image = load_image(next(tiny_tree.rglob("*.jpg")))
    first = Synthesizer(seed=3).all_types(image, key="a")
    second = Synthesizer(seed=3).all_types(image, key="a")
    assert all(np.array_equal(first[k], second[k]) for k in DISTORTIONS)


def test_distort_rejects_unknown_type(tmp_path):
    from facesuite.distortion.synth import Synthesizer
    from facesuite.errors import InputError

    with pytest.raises(InputError, match="unknown distortion"):
        Synthesizer(types=["blurred", "snowy"])


def test_predict_missing_path_is_input_error(tmp_path, capsys):
    code = main(["predict", "distortion", str(tmp_path / "nope.jpg"), "--csv", str(tmp_path / "out.csv")])
    assert code == 2
    assert "nope.jpg" in capsys.readouterr().err


def test_predict_folder_skips_corrupt_file(dev, tmp_path, capsys):
    folder = tmp_path / "images" / "nested"
    folder.mkdir(parents=True)
    shutil.copy(_sample(dev, "noisy", 1)[0], folder / "good.jpg")
    (folder / "broken.jpg").write_bytes(b"not a jpeg at all")
    out = tmp_path / "pred.csv"
    assert main(["predict", "distortion", str(tmp_path / "images"), "--csv", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert [Path(r["path"]).name for r in rows] == ["good.jpg"]
    assert rows[0]["distortion"] in LABELS and 0 < float(rows[0]["probability"]) <= 1
    err = capsys.readouterr().err
    assert "broken.jpg" in err and "1 skipped" in err


def test_train_and_eval_end_to_end_on_tiny_subset(dev, tmp_path):
    # 2 identities for training, 1 for validation; one image each plus its 7 copies
    root = tmp_path / "data"
    chosen = sorted({d.identity for d in dev.distorted})[:3]
    for identity in chosen:
        clean = next(path for path, who in dev.clean if who == identity)
        (root / identity / "distortion").mkdir(parents=True)
        shutil.copy(clean, root / identity / clean.name)
        for kind in DISTORTIONS:
            name = f"{clean.stem}_{kind}.jpg"
            shutil.copy(clean.parent / "distortion" / name, root / identity / "distortion" / name)
    val = tmp_path / "val.txt"
    val.write_text(chosen[0] + "\n")
    weights = []
    for run in ("a", "b"):
        model = tmp_path / run
        args = ["train", "distortion", str(root), "--out", str(model), "--epochs", "1", "--seed", "5",
                "--batch-size", "8", "--val-identities", str(val)]
        assert main(args) == 0
        for name in ("weights.pt", "config.json", "history.json", "curves.png"):
            assert (model / name).is_file()
        history = json.loads((model / "history.json").read_text())
        assert len(history) == 1 and "val_accuracy" in history[0]
        weights.append(torch.load(model / "weights.pt", weights_only=True))
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0]), "same seed, different weights"
    report = tmp_path / "report"
    assert main(["eval", "distortion", str(root), "--out", str(report), "--model", str(tmp_path / "a")]) == 0
    metrics = json.loads((report / "metrics.json").read_text())
    assert sum(metrics["per_class"][label]["support"] for label in LABELS) == 24
    assert (report / "confusion_matrix.png").is_file() and (report / "report.html").is_file()
    # The report shows frames: per predicted class, each card naming its file and its predictions.csv row.
    rows = list(csv.DictReader(open(report / "predictions.csv")))
    page = (report / "report.html").read_text()
    cards = re.findall(r'data-probe="([^"]+)" data-row="(\d+)"', page)
    predicted = {r["predicted"] for r in rows}
    assert len(rows) == 24 and page.count("<h3>predicted ") == len(predicted) and len(cards) >= len(predicted)
    assert all(rows[int(row)]["path"] == html.unescape(path) for path, row in cards)


def _luma(image: np.ndarray) -> np.ndarray:
    """Grayscale by the ITU-R BT.601 weights, computed here, as three equal channels."""
    luma = np.clip(np.rint(image.astype(np.float64) @ np.array([0.299, 0.587, 0.114])), 0, 255).astype(np.uint8)
    return np.repeat(luma[:, :, None], 3, axis=2)


def test_grayscale_clean_portraits_are_clean(dev, detector):
    """Clean dev photos in grayscale are ``clean``, not ``foggy`` or ``resized``; the same photos'
    real foggy copies in grayscale are still ``foggy``. (LFW-style frames: the studio ``*_frontal``
    portraits are a known failure even in colour, see the model card.)"""
    from facesuite.io import load_image

    framed = sorted(path for path, identity in dev.clean if not identity.endswith("_frontal"))
    paths = random.Random(2).sample(framed, 8)
    labels = [p.label for p in detector.predict_photos([_luma(load_image(path)) for path in paths])]
    assert labels.count("clean") >= 6, labels  # 0.83 of the dev frames in grayscale (model card); FACECOM-only model: 0.46
    foggy = [_luma(load_image(path.parent / "distortion" / f"{path.stem}_foggy.jpg")) for path in paths]
    assert [p.label for p in detector.predict_photos(foggy)].count("foggy") >= 6


def test_utkface_crops_are_clean_and_their_distortions_are_not(utkface: Path, detector):
    """200 px aligned UTKFace dev crops (a collection the detector was not trained on as dev) are
    mostly ``clean`` (0.80 of the dev crops); the same crops with synthetic noise are not, and
    with synthetic blur mostly not (a mild blur on a crop that was already soft can pass as clean,
    the model card's known failure)."""
    from facesuite.distortion.synth import Synthesizer
    from facesuite.io import load_image

    dev_list = data_root() / "splits" / "utkface_dev.txt"
    names = sorted(line.strip() for line in dev_list.read_text().splitlines() if line.strip())
    images = [load_image(utkface / name) for name in random.Random(3).sample(names, 24)]
    labels = [p.label for p in detector.predict_photos(images)]
    assert labels.count("clean") >= 18, labels
    synth = Synthesizer(seed=3)
    for kind, at_least in (("noisy", 22), ("blurred", 14)):
        copies = [synth.apply(image, kind, key=str(i)) for i, image in enumerate(images)]
        assert sum(p.label != "clean" for p in detector.predict_photos(copies)) >= at_least, kind


def test_training_leaves_out_a_copy_that_does_not_differ_from_its_source(dev, tmp_path):
    """A `blurred` copy that is its clean photo saved again is not learnt as blurred; real blurred
    copies and every other type's are."""
    import cv2

    from facesuite.io import load_image, write_image
    from facesuite.train.distortion import learnable_copies

    frames = [path for path, _ in dev.clean][:24:3]
    for index, path in enumerate(frames):
        folder = tmp_path / f"person{index}"
        (folder / "distortion").mkdir(parents=True)
        image = load_image(path)
        write_image(folder / "photo.jpg", image)
        blurred = image if index == 0 else cv2.GaussianBlur(image, (0, 0), 1.5 + 0.25 * index)
        write_image(folder / "distortion" / "photo_blurred.jpg", blurred)
        noise = np.random.default_rng(index).normal(0, 12, image.shape)
        write_image(folder / "distortion" / "photo_noisy.jpg", np.clip(image + noise, 0, 255).astype(np.uint8))
    kept, faint = learnable_copies(read_identity_folders(tmp_path))
    assert [(item.identity, item.distortion) for item in faint] == [("person0", "blurred")]
    assert len(kept.distorted) == 2 * len(frames) - 1 and len(kept.clean) == len(frames)


def test_route_floor_is_the_lowest_confidence_meeting_the_precision():
    """The floor against a brute-force search over every threshold, on made-up probabilities."""
    from facesuite.train.distortion import route_floor

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(400, len(LABELS))) * 2
    truth = rng.integers(0, len(LABELS), size=400)
    logits[np.arange(400), truth] += rng.uniform(0, 6, size=400)  # right more often when sure
    probabilities = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    result = route_floor(probabilities, truth, precision=0.95)
    top, best = probabilities.argmax(1), probabilities.max(1)

    def precision_at(t: float) -> float:
        kept = (top != 0) & (best >= t)
        return (top[kept] == truth[kept]).mean() if kept.any() else 1.0

    meeting = [t for t in sorted(best[top != 0]) if precision_at(t) >= 0.95]
    assert result["route_floor"] == pytest.approx(meeting[0], abs=1e-4)
    assert result["routed_precision"] >= 0.95 > result["routed_precision_without_floor"]


def test_unsure_faces_take_the_plain_route(dev):
    """Below the route floor a face is embedded plain, as the plain embedder alone embeds its chip;
    the shipped model has a floor chosen on its calibration fold."""
    from facesuite.analysis import FaceAnalysis
    from facesuite.classify.distortion import DEFAULT_MODEL_DIR, DistortionDetector

    assert 0 < json.loads((DEFAULT_MODEL_DIR / "config.json").read_text())["route_floor"] < 1
    path = _sample(dev, "noisy", 1, seed=4)[0]
    with FaceAnalysis(gender=None) as app:
        sure = app.get(path)[0]
        assert sure.distortion == "noisy" and sure.route == app.router.route("noisy").describe() != "plain"
        unsure = DistortionDetector.load()
        unsure.route_floor = sure.distortion_probability + 1e-6  # this face is now below the floor
        app._distortion = unsure
        face = app.get(path)[0]
        assert face.distortion == "noisy" and face.route == "plain"
        plain = app.embedder.embed([face._crop.chip])[0]
        assert np.allclose(face.embedding, plain, atol=1e-5)


def test_a_face_of_a_group_photo_is_read_in_a_frame_of_its_own():
    """The detector reads the whole photo for a face alone, and for a portrait whose bystander is
    at the edge (the face's frame spans the photo); in a photo much wider than one face's frame it
    reads a square about that face, FRAME_PER_BOX box sides wide, mirrored where it leaves the photo."""
    import numpy as np

    from facesuite.classify.distortion_input import FRAME_PER_BOX, distortion_input

    portrait = np.random.default_rng(0).integers(0, 255, (250, 250, 3), dtype=np.uint8)
    box = (75.0, 70.0, 175.0, 180.0)  # 100 x 110: a frame of 301 px covers the 250 px photo
    assert distortion_input(portrait, box, 1) is portrait and distortion_input(portrait, box, 2) is portrait
    group = np.concatenate([portrait, portrait, portrait], axis=1)  # 250 x 750
    own = distortion_input(group, box, 3)
    side = round(FRAME_PER_BOX * 110)
    assert own.shape == (side, side, 3)
    # Its middle is the face's own pixels: the box's centre (125, 125) lies at the square's centre
    # (to the pixel: the square's corner is rounded).
    face = group[115:135, 115:135]
    assert any(np.array_equal(own[side // 2 - 10 + dy : side // 2 + 10 + dy, side // 2 - 10 + dx : side // 2 + 10 + dx], face)
               for dy in (-1, 0, 1) for dx in (-1, 0, 1))
    assert distortion_input(group, box, 1) is group  # one face: the photo as trained


def test_face_framing_reads_a_tight_crop_at_the_scale_of_the_wide_photo(dev):
    """With ``face`` framing the network reads the square around the detected face: a dev photo
    and a crop of it tight around the face give nearly the same picture (the crop's border filled
    by mirroring), where the crop itself is a close-up; with no face found, the photo itself."""
    import cv2

    from facesuite.classify.distortion_input import FRAME_PER_BOX, distortion_input, photo_reader
    from facesuite.detect import FaceDetector
    from facesuite.io import load_image

    read = photo_reader("face")
    photo = load_image(_sample(dev, "clean", 1, seed=5)[0])
    x1, y1, x2, y2 = FaceDetector().detect_one(photo).box
    framed = read(photo)
    side = round(FRAME_PER_BOX * max(x2 - x1, y2 - y1))
    assert framed.shape == (side, side, 3)
    pad_x, pad_y = round(0.05 * (x2 - x1)), round(0.05 * (y2 - y1))
    tight = np.ascontiguousarray(photo[max(0, round(y1) - pad_y) : round(y2) + pad_y, max(0, round(x1) - pad_x) : round(x2) + pad_x])

    def middle(image: np.ndarray) -> np.ndarray:  # the face's middle third, at one size
        small = cv2.resize(image, (96, 96), interpolation=cv2.INTER_AREA).astype(np.float64)
        return small[40:56, 40:56]

    same_scale = np.abs(middle(read(tight)) - middle(framed)).mean()
    close_up = np.abs(middle(tight) - middle(framed)).mean()
    assert same_scale < 12 and same_scale < close_up / 2, (same_scale, close_up)
    blank = np.full((200, 200, 3), 128, np.uint8)
    assert read(blank) is blank and distortion_input(photo, None, 1, "face") is photo


def test_predict_distortion_and_analyze_read_a_photo_alike(dev, detector, tmp_path, capsys):
    """One rule: ``facesuite predict distortion`` on a photo names the distortion ``analyze`` gives
    its face, for a wide photo and one cropped tight around the face; a blank image holds no face,
    so it has no distortion in either."""
    from PIL import Image

    from facesuite.analysis import FaceAnalysis
    from facesuite.detect import FaceDetector
    from facesuite.io import load_image

    photo = load_image(_sample(dev, "clean", 1, seed=6)[0])
    x1, y1, x2, y2 = (round(v) for v in FaceDetector().detect_one(photo).box)
    paths = [tmp_path / "wide.png", tmp_path / "tight.png", tmp_path / "blank.png"]
    Image.fromarray(photo).save(paths[0])
    Image.fromarray(np.ascontiguousarray(photo[max(0, y1) : y2, max(0, x1) : x2])).save(paths[1])
    Image.fromarray(np.full((200, 200, 3), 128, np.uint8)).save(paths[2])
    assert main(["predict", "distortion", *map(str, paths), "--csv", str(tmp_path / "d.csv")]) == 0
    with open(tmp_path / "d.csv", newline="") as handle:
        predicted = {Path(row["path"]).name: row for row in csv.DictReader(handle)}
    assert (predicted["blank.png"]["distortion"], predicted["blank.png"]["probability"]) == ("no face", "")
    # The flags analyze's CSV carries, under the same names.
    assert [predicted[p.name]["no_face"] for p in paths] == ["0", "0", "1"]
    with FaceAnalysis(gender=None, age=None) as app:
        for path in paths:
            face = app.get(path)[0]
            if face.no_face:
                assert face.distortion is None and path.name == "blank.png"
                continue
            assert predicted[path.name]["distortion"] == face.distortion
            assert float(predicted[path.name]["probability"]) == pytest.approx(face.distortion_probability, abs=1e-3)
