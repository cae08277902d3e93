"""Learned restoration steps: the shipped noisy network on people it never saw, and `facesuite
train restorer` end to end, on real FACECOM images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from facesuite.cli import main
from facesuite.config import data_root
from facesuite.data import read_split
from facesuite.detect.extract import FaceExtractor
from facesuite.io import load_image
from facesuite.route.learned import LearnedRestorer
from facesuite.route.restore import RESTORERS

DEV_IDS = data_root() / "splits" / "facecom_dev_identities.txt"


def _dev_identities(facecom_b: Path, count: int) -> list[Path]:
    """Dev-split identity folders (never trained on) that have distorted copies."""
    dev = read_split(DEV_IDS)
    return [folder for folder in sorted(facecom_b.iterdir()) if folder.name in dev and (folder / "distortion").is_dir()][:count]


def _aligned(photo: Path, copy: Path) -> tuple[np.ndarray, np.ndarray]:
    """The clean chip and its copy's chip, both cut with the clean photo's landmarks."""
    (crop,), _ = FaceExtractor().crops([photo])
    return crop.chip, crop.face.chip(load_image(copy), 150, 0.25)


def _l1(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())


def test_shipped_noisy_restorer_brings_unseen_noisy_faces_closest_to_their_photos(facecom_b: Path) -> None:
    """On dev people's noisy copies, the shipped network's chip is nearer the clean photo's than the
    noisy chip and than the median filters it replaced (which blur the face along with the noise)."""
    assert RESTORERS["cnn-noisy"].path.name == "noisy.onnx"
    results = []
    for folder in _dev_identities(facecom_b, 4):
        photo = sorted(folder.glob("*.jpg"))[0]
        clean, noisy = _aligned(photo, folder / "distortion" / f"{photo.stem}_noisy.jpg")
        restored = RESTORERS["cnn-noisy"](noisy)
        assert restored.shape == noisy.shape and restored.dtype == np.uint8
        results.append((_l1(restored, clean), _l1(RESTORERS["median5+median5"](noisy), clean), _l1(noisy, clean)))
    for learned, median, untouched in results:
        assert learned < 0.85 * min(median, untouched)


def test_train_restorer_writes_a_network_that_restores(facecom_b: Path, tmp_path: Path, capsys) -> None:
    """The default recipe, briefly: pairs cut from the data, the loss falls, and the ONNX file it
    writes runs as a route's restoration step."""
    tree = tmp_path / "data"
    tree.mkdir()
    for folder in _dev_identities(facecom_b, 3):
        (tree / folder.name).symlink_to(folder.resolve())  # CI names the data folder by a relative path
    out = tmp_path / "rainy.onnx"
    assert main(["train", "restorer", str(tree), "--type", "rainy", "--out", str(out), "--steps", "60"]) == 0
    assert "rainy pairs" in capsys.readouterr().out
    history = json.loads(out.with_suffix(".json").read_text())
    assert history["pairs"] >= 3 and history["options"]["width"] == 16
    assert history["loss_by_tenth"][-1] < history["loss_by_tenth"][0]
    photo = sorted(next(tree.iterdir()).glob("*.jpg"))[0]
    _, rainy = _aligned(photo, photo.parent / "distortion" / f"{photo.stem}_rainy.jpg")
    restored = LearnedRestorer(out)(rainy)
    assert restored.shape == rainy.shape and restored.dtype == np.uint8 and _l1(restored, rainy) > 0.5


def test_train_restorer_bad_input_exits_2(facecom_b: Path, tmp_path: Path, capsys) -> None:
    plain = tmp_path / "plain" / "someone"
    plain.mkdir(parents=True)
    photo = sorted((_dev_identities(facecom_b, 1)[0]).glob("*.jpg"))[0]
    (plain / photo.name).symlink_to(photo.resolve())
    assert main(["train", "restorer", str(plain.parent), "--type", "noisy", "--out", str(tmp_path / "x.onnx")]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "no clean photos with a 'noisy' copy" in error[0] and "plain" in error[0]
    assert main(["train", "restorer", str(tmp_path / "missing"), "--type", "noisy", "--out", str(tmp_path / "x.onnx")]) == 2
    assert main(["train", "restorer", str(plain.parent), "--type", "noisy", "--out", str(tmp_path / "x.onnx"), "--steps", "0"]) == 2
    assert "--steps must be at least 1" in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()
    # Inside a folder, an unreadable photo or copy is a counted skip; the readable pairs train.
    tree = tmp_path / "mixed"
    for name, (photo_bytes, copy_bytes) in {"good": (None, None), "bad_photo": (300, None), "bad_copy": (None, 200)}.items():
        (tree / name / "distortion").mkdir(parents=True)
        source = sorted(_dev_identities(facecom_b, 3)[["good", "bad_photo", "bad_copy"].index(name)].glob("*.jpg"))[0]
        copy = source.parent / "distortion" / f"{source.stem}_noisy.jpg"
        (tree / name / source.name).write_bytes(source.read_bytes()[:photo_bytes])
        (tree / name / "distortion" / copy.name).write_bytes(copy.read_bytes()[:copy_bytes])
    assert main(["train", "restorer", str(tree), "--type", "noisy", "--out", str(tmp_path / "mixed.onnx"), "--steps", "3"]) == 0
    captured = capsys.readouterr()
    assert "2 file(s) skipped" in captured.err and "trained on 1 noisy pairs" in captured.out
    assert len(json.loads((tmp_path / "mixed.json").read_text())["skipped"]) == 2
