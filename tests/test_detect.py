"""Detection, alignment, fallback, cache and the `detect` command on real photos: the sample photos,
and FACECOM's training images for rates and the reference implementation."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import numpy as np
import pytest

from facesuite.cli import main
from facesuite.data import read_identity_folders
from facesuite.detect import DetectorSettings, FaceDetector
from facesuite.detect.extract import Crop, FaceExtractor
from facesuite.embed import ChipSpec
from facesuite.errors import Skipped
from facesuite.io import load_image, write_image


def _clean_sample(root: Path, n: int, seed: int = 0) -> list[Path]:
    paths = [p for p, _ in read_identity_folders(root).clean]
    return random.Random(seed).sample(paths, n)


def _portraits(samples: Path) -> list[Path]:
    """The sample photos of one person each (LFW-style frames, the subject in the middle)."""
    return sorted((samples / "people").glob("*/*.jpg"))


def test_detects_faces_in_clean_facecom_images(facecom_b: Path) -> None:
    sample = _clean_sample(facecom_b, 200)
    crops, skipped = FaceExtractor(use_cache=False).crops(sample)
    assert not skipped
    rate = sum(not c.face.fallback for c in crops) / len(crops)
    print(f"detection rate on {len(crops)} clean FACECOM images: {rate:.3f}")
    assert rate >= 0.99
    # The subject sits in the middle of the LFW-style frame: boxes must be near the centre and
    # about 90 px, never the whole 224 px frame.
    sizes = np.array([c.face.box[2] - c.face.box[0] for c in crops])
    assert 60 < np.median(sizes) < 120


def test_landmarks_are_ordered_eyes_nose_mouth(samples: Path) -> None:
    for path in _portraits(samples):
        face = FaceDetector().detect_one(load_image(path))
        (lx, ly), (rx, ry), (nx, ny), (mlx, mly), (mrx, mry) = face.landmarks
        assert lx < nx < rx and mlx < mrx, path.name
        assert max(ly, ry) < ny < min(mly, mry), path.name


# LFW-style photos where a bystander cut by the frame's edge has a larger (unclipped) MTCNN box
# than the subject in the middle: ranked by full box area, these embedded the bystander.
BYSTANDER_PHOTOS = ("Amanda_Beard_0002.jpg", "Anne_ONeil_0001.jpg", "Charles_Schumer_0002.jpg")


def test_main_face_is_the_subject_not_a_bystander_at_the_edge(samples: Path, tmp_path: Path) -> None:
    paths = [samples / "photos" / name for name in BYSTANDER_PHOTOS]
    everyone_of = {path: faces for path, faces in zip(paths, FaceDetector().detect([load_image(p) for p in paths]))}
    for run in range(2):  # the default extractor, with its detection cache: a miss, then hits
        crops, skipped = FaceExtractor(cache_folder=tmp_path / "cache").crops(paths)
        assert not skipped and len(crops) == len(paths)
        for crop in crops:
            everyone = everyone_of[crop.path]
            x1, y1, x2, y2 = crop.face.box
            assert len(everyone) >= 2 and x1 < 112 < x2 and y1 < 112 < y2, (run, crop.path.name, crop.face.box)
            assert crop.face.box == pytest.approx(everyone[0].box)
            # The face it was mistaken for reaches past the frame's edge or is not central.
            assert any(f.box[0] < 0 or f.box[2] > 224 or not f.box[0] < 112 < f.box[2] for f in everyone[1:])


def test_aligned_chip_has_requested_size(samples: Path) -> None:
    path = _portraits(samples)[0]
    [crop] = FaceExtractor(use_cache=False).crops([path], ChipSpec(112, 0.1))[0]
    assert crop.chip.shape == (112, 112, 3) and crop.chip.dtype == np.uint8
    assert crop.chip.std() > 10  # a real face, not a constant border


def test_no_face_falls_back_to_the_flagged_box_the_settings_describe(tmp_path: Path) -> None:
    """``fallback_box`` (``--fallback-box CX,CY,W,H``) is the box's centre and size as fractions of
    the image's width and height; a wide image tells the two apart."""
    from PIL import Image

    rng = np.random.default_rng(0)
    blank = tmp_path / "texture.png"
    height, width = 200, 320
    Image.fromarray(rng.integers(100, 140, (height, width, 3), dtype=np.uint8)).save(blank)
    centre_x, centre_y, box_width, box_height = 0.45, 0.55, 0.30, 0.40
    settings = DetectorSettings(fallback_box=(centre_x, centre_y, box_width, box_height))
    [crop] = FaceExtractor(settings, use_cache=False).crops([blank])[0]
    assert crop.face.fallback
    expected = (144 - 48, 110 - 40, 144 + 48, 110 + 40)  # centre (0.45 * 320, 0.55 * 200), size 96 x 80
    assert crop.face.box == pytest.approx(expected)


def test_assume_cropped_uses_the_inner_part_of_the_image(samples: Path) -> None:
    """A face crop's face is taken to be the inner 80% of the frame, as MTCNN boxes such a crop."""
    path = _portraits(samples)[0]
    height, width = load_image(path).shape[:2]
    [crop] = FaceExtractor(DetectorSettings(assume_cropped=True), use_cache=False).crops([path])[0]
    assert not crop.face.fallback
    assert crop.face.box == pytest.approx((width / 10, height / 10, width * 9 / 10, height * 9 / 10))


def test_cache_returns_same_faces(samples: Path, tmp_path: Path) -> None:
    sample = sorted(samples.glob("*/*.jpg")) + _portraits(samples)
    results = []
    for _ in range(2):
        crops, _ = FaceExtractor(cache_folder=tmp_path / "cache").crops(sample)
        results.append(crops)
        assert any(path.is_file() for path in (tmp_path / "cache").rglob("*"))  # the first run wrote it
    for first, second in zip(*results):
        assert first.face.box == pytest.approx(second.face.box, abs=0.01)


def test_bad_files_are_skipped_and_counted(bad_files: dict[str, Path], samples: Path) -> None:
    good = _portraits(samples)[0]
    items = list(FaceExtractor(use_cache=False).iter_crops([good, *bad_files.values()]))
    assert isinstance(items[0], Crop)
    skipped = [i for i in items if isinstance(i, Skipped)]
    assert len(skipped) == 3
    for item, path in zip(skipped, bad_files.values()):
        assert str(path) in item.reason


def test_detect_command_writes_crops_and_csv(samples: Path, tmp_path: Path, bad_files, capsys) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for path in _portraits(samples)[:3]:
        (folder / path.name).write_bytes(path.read_bytes())
    (folder / "broken.jpg").write_bytes(bad_files["truncated"].read_bytes())
    assert main(["detect", str(folder), "--out", str(tmp_path / "out"), "--json"]) == 0
    captured = capsys.readouterr()
    assert '"skipped": 1' in captured.out and "broken.jpg" in captured.err
    rows = list(csv.DictReader(open(tmp_path / "out" / "detections.csv")))
    assert len(rows) == 3 and set(rows[0]) == {"path", "crop", "box", "landmarks", "score", "fallback"}
    assert all((tmp_path / "out" / r["crop"]).is_file() for r in rows)


def test_detect_never_writes_one_crop_over_another(samples: Path, tmp_path: Path) -> None:
    """x.jpg and x.png in one folder, and x.jpg of two folders given side by side, each keep their
    own crop: the crop of each row is the chip of that row's face."""
    portraits = _portraits(samples)[:3]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    inputs = [tmp_path / "a" / "x.jpg", tmp_path / "b" / "x.jpg"]
    inputs[0].write_bytes(portraits[0].read_bytes())
    inputs[1].write_bytes(portraits[1].read_bytes())
    write_image(tmp_path / "a" / "x.png", load_image(portraits[2]))
    inputs.append(tmp_path / "a" / "x.png")
    for args, out in (([str(tmp_path)], "whole"), ([str(p) for p in inputs], "listed")):
        assert main(["detect", *args, "--out", str(tmp_path / out)]) == 0
        rows = list(csv.DictReader(open(tmp_path / out / "detections.csv")))
        assert len({r["crop"] for r in rows}) == len(rows) == 3
        chips = {str(c.path): c.chip for c in FaceExtractor(use_cache=False).crops([Path(r["path"]) for r in rows])[0]}
        for row in rows:
            written = load_image(tmp_path / out / row["crop"])
            assert np.abs(written.astype(int) - chips[row["path"]].astype(int)).mean() < 1, row


def test_detect_summary_counts_one_of_each_in_the_singular(samples: Path, tmp_path: Path, capsys) -> None:
    photos = [samples / "photos" / "no_face.png", samples / "photos" / "Colin_Powell_0003.jpg"]
    out = tmp_path / "out"
    assert main(["detect", *map(str, photos), "--out", str(out)]) == 0
    summary = capsys.readouterr().out.strip()
    rows = list(csv.DictReader(open(out / "detections.csv")))
    fallbacks = sum(row["fallback"] == "1" for row in rows)
    assert (len(rows), fallbacks) == (2, 1)  # the blank image falls back to the centre box
    assert summary.startswith("2 images: 1 face detected, 1 centre-box fallback, 0 skipped; ")


def test_detect_missing_path_is_one_line_error(tmp_path: Path, capsys) -> None:
    assert main(["detect", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "nope" in err and "Traceback" not in err


@pytest.mark.parametrize("command", [["analyze"], ["predict", "gender"], ["gallery", "identify", "--gallery", "g"]])
def test_an_unwritable_csv_is_refused_before_any_work(samples: Path, tmp_path: Path, capsys, monkeypatch,
                                                      command: list[str]) -> None:
    """A CSV path whose folder is missing (or that is a folder) ends the command at once, one
    line and exit 2: found after the work, it would lose every result."""
    from facesuite.detect import extract

    photo = str(_portraits(samples)[0])
    # "Before any work": not one image is read for faces.
    monkeypatch.setattr(extract.FaceExtractor, "iter_crops", lambda *a, **k: pytest.fail("an image was read"))
    for target, said in ((tmp_path / "nodir" / "x.csv", "is not a folder"), (tmp_path, "a folder, not a file")):
        assert main([*command, photo, "--csv", str(target)]) == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert line.startswith("facesuite: error: ") and str(target) in line and said in line
    assert not (tmp_path / "nodir").exists()


def test_boxes_of_a_large_photo_are_in_its_own_pixels(samples: Path, tmp_path: Path, capsys) -> None:
    # A 5000 x 3000 photo is analysed shrunk to 4096 px; every output must still be in the
    # photo's own pixels. Expected: the face found in a 4096 px copy, scaled up by 5000/4096.
    import json

    from PIL import Image

    face = Image.open(_portraits(samples)[0]).resize((448, 448), Image.Resampling.BICUBIC)
    gradient = np.linspace(90, 170, 5000, dtype=np.uint8)[None, :, None].repeat(3000, axis=0).repeat(3, axis=2)
    photo = Image.fromarray(gradient)
    photo.paste(face, (3300, 1700))
    big, small = tmp_path / "big.jpg", tmp_path / "small.jpg"
    photo.save(big, quality=95)
    photo.resize((4096, 2458), Image.Resampling.BILINEAR).save(small, quality=95)

    assert main(["analyze", str(big), str(small), "--json"]) == 0
    rows = {Path(r["path"]).name: r for r in json.loads(capsys.readouterr().out)}
    assert not rows["big.jpg"]["fallback"] and not rows["small.jpg"]["fallback"]
    expected = np.array(rows["small.jpg"]["box"]) * np.array([5000 / 4096, 3000 / 2458] * 2)
    np.testing.assert_allclose(rows["big.jpg"]["box"], expected, atol=3)
    assert 3300 < rows["big.jpg"]["box"][0] < rows["big.jpg"]["box"][2] < 3300 + 448  # on the pasted face

    assert main(["detect", str(big), str(small), "--out", str(tmp_path / "crops")]) == 0
    detections = {Path(r["path"]).name: r for r in csv.DictReader(open(tmp_path / "crops" / "detections.csv"))}
    landmarks = {name: np.array(json.loads(r["landmarks"])) for name, r in detections.items()}
    np.testing.assert_allclose(landmarks["big.jpg"], landmarks["small.jpg"] * [5000 / 4096, 3000 / 2458], atol=3)


def test_our_mtcnn_agrees_with_facenet_pytorch(facecom_b: Path) -> None:
    # facenet-pytorch stays installed as the source of the weights; here it is the reference.
    from facenet_pytorch import MTCNN

    from facesuite.detect.mtcnn import MTCNNRunner

    dataset = read_identity_folders(facecom_b)
    paths = random.Random(5).sample([p for p, _ in dataset.clean], 8) + random.Random(5).sample([d.path for d in dataset.distorted], 24)
    images = np.stack([load_image(p) for p in paths])
    # A size that is neither square nor 224 px: a wide crop of the same photos.
    wide = np.ascontiguousarray(images[:8, 30:200, :])
    reference = MTCNN(min_face_size=40, thresholds=[0.6, 0.7, 0.7], keep_all=True, post_process=False, device="cpu")
    ours = MTCNNRunner(40, (0.6, 0.7, 0.7))
    compared = 0
    for batch in (images, wide):
        boxes, scores, points = reference.detect(batch, landmarks=True)
        for (our_boxes, our_points), ref_boxes, ref_scores, ref_points in zip(ours.detect(batch), boxes, scores, points):
            if ref_boxes is None:
                assert len(our_boxes) == 0
                continue
            ref_boxes = np.asarray(ref_boxes, dtype=np.float64)
            order, our_order = np.argsort(-np.asarray(ref_scores, dtype=np.float64)), np.argsort(-our_boxes[:, 4])
            assert len(our_boxes) == len(ref_boxes)
            assert np.abs(our_boxes[our_order, :4] - ref_boxes[order]).max() < 0.01
            assert np.abs(our_points[our_order] - np.asarray(ref_points, dtype=np.float64)[order]).max() < 0.01
            assert np.abs(our_boxes[our_order, 4] - np.asarray(ref_scores, dtype=np.float64)[order]).max() < 1e-4
            compared += 1
    assert compared >= 30  # most of these photos hold a face


def test_rewritten_prelu_and_pooling_give_the_textbook_networks_bit_for_bit(facecom_b: Path) -> None:
    """Our P/R/O-Net run PReLU after max-pooling and as relu + slope * min (faster under ONNX
    Runtime); on real faces, clean and distorted, every output equals facenet-pytorch's networks,
    which pool after PReLU, exactly."""
    import cv2
    import torch
    from facenet_pytorch.models import mtcnn as reference

    from facesuite.detect.mtcnn_nets import load_network

    dataset = read_identity_folders(facecom_b)
    paths = random.Random(7).sample([p for p, _ in dataset.clean], 4) + random.Random(7).sample([d.path for d in dataset.distorted], 12)
    images = [load_image(p) for p in paths]

    def batch(side: int) -> torch.Tensor:
        pixels = np.stack([cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA) for image in images])
        return torch.from_numpy((pixels.astype(np.float32).transpose(0, 3, 1, 2) - 127.5) * 0.0078125)

    with torch.no_grad():
        for name, network, side in (("pnet", reference.PNet, 67), ("rnet", reference.RNet, 24), ("onet", reference.ONet, 48)):
            textbook = network(pretrained=True).eval()
            ours = load_network(name)
            pixels = batch(side)
            got, expected = ours(pixels), textbook(pixels)
            # facenet-pytorch returns (offsets, softmax), O-Net (offsets, landmarks, softmax); ours
            # (p(face), offsets) and (p(face), offsets, landmarks).
            assert torch.equal(got[0], expected[-1][:, 1]), name
            assert torch.equal(got[1], expected[0]), name
            if name == "onet":
                assert torch.equal(got[2], expected[1])


def test_analyze_imports_only_what_it_needs(samples: Path) -> None:
    import subprocess
    import sys

    path = _portraits(samples)[0]
    heavy = ("torchvision", "facenet_pytorch", "ray", "pymilvus", "fastapi", "matplotlib", "sklearn")
    code = ("import sys; from facesuite.cli import main; code = main(['analyze', sys.argv[1], '--no-cache', '--json']); "
            f"print(sorted(m for m in {heavy!r} if m in sys.modules), file=sys.stderr); sys.exit(code)")
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    assert done.stderr.strip().splitlines()[-1] == "[]"
