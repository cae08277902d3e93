"""Image loading and dataset readers: conversions and one-line errors for bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facesuite.data import read_gender_folders, read_identity_folders, read_pairs
from facesuite.errors import InputError
from facesuite.io import load_image


@pytest.mark.parametrize("kind", ["empty", "text", "truncated"])
def test_bad_files_raise_input_error_naming_the_path(bad_files: dict[str, Path], kind: str) -> None:
    with pytest.raises(InputError) as error:
        load_image(bad_files[kind])
    assert str(bad_files[kind]) in str(error.value) and "\n" not in str(error.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        load_image(tmp_path / "missing.jpg")


@pytest.mark.parametrize("mode", ["L", "RGBA", "CMYK", "P", "I;16"])
def test_colour_modes_become_rgb(tmp_path: Path, mode: str) -> None:
    source = Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8))
    sixteen_bit = np.repeat(np.array([[20000, 40000]], dtype=np.uint16), 15, axis=1).repeat(20, axis=0)
    image = source.convert(mode) if mode != "I;16" else Image.fromarray(sixteen_bit)
    path = tmp_path / ("x.tif" if mode in ("CMYK", "I;16") else "x.png")
    image.save(path)
    array = load_image(path)
    assert array.shape == (20, 30, 3) and array.dtype == np.uint8
    if mode == "I;16":
        assert abs(int(array[0, 0, 0]) - 128) <= 1 and array[0, -1, 0] == 255  # scaled, not clipped


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    image = Image.new("RGB", (40, 20), "white")
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif)
    assert load_image(path).shape == (40, 20, 3)


def test_gender_folders(facecom_a: Path, tmp_path: Path) -> None:
    samples = read_gender_folders(facecom_a)
    assert {label for _, label in samples} == {"male", "female"} and len(samples) == 606
    (tmp_path / "male").mkdir()
    (tmp_path / "female").mkdir()
    (tmp_path / "male" / "a.jpg").write_bytes(b"x")
    with pytest.raises(InputError, match="no images"):
        read_gender_folders(tmp_path)
    with pytest.raises(InputError, match="expected sub-folders male/ and female/"):
        read_gender_folders(tmp_path / "male")
    with pytest.raises(InputError, match="no such folder"):
        read_gender_folders(tmp_path / "absent")


def test_identity_folders(facecom_b: Path) -> None:
    dataset = read_identity_folders(facecom_b)
    assert len(dataset.identities) == 877 and len(dataset.clean) == 1926 and len(dataset.distorted) == 13482
    kinds = {d.distortion for d in dataset.distorted}
    assert kinds == {"blurred", "foggy", "lowlight", "noisy", "rainy", "resized", "sunny"}
    assert all(d.source.exists() for d in dataset.distorted[:50])


def test_identity_folders_wrong_layout(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"x")
    with pytest.raises(InputError, match="one sub-folder per identity"):
        read_identity_folders(tmp_path)


def test_pair_list(tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("img1,img2,same\na.jpg,b.jpg,1\na.jpg,c.jpg,false\n")
    assert read_pairs(pairs) == [(tmp_path / "a.jpg", tmp_path / "b.jpg", True), (tmp_path / "a.jpg", tmp_path / "c.jpg", False)]
    pairs.write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="img1,img2,same"):
        read_pairs(pairs)
