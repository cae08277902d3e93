"""Image loading and dataset readers: conversions and one-line errors for bad input."""

from __future__ import annotations

import errno
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facesuite.data import read_gender_folders, read_identity_folders, read_pairs
from facesuite.errors import InputError
from facesuite.io import expand_paths, load_image


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
    pairs.write_text("\ufeffimg1,img2,same\na.jpg,b.jpg,yes\n")  # saved by a spreadsheet, with a byte-order mark
    assert read_pairs(pairs) == [(tmp_path / "a.jpg", tmp_path / "b.jpg", True)]
    pairs.write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="img1,img2,same"):
        read_pairs(pairs)


def test_lfw_pairs_txt(tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("1\t2\nAbel_Pacheco\t1\t4\nAbdel_Madi_Shabneh\t1\tDean_Barker\t1\n")
    lfw = tmp_path / "lfw"
    expected = [(lfw / "Abel_Pacheco/Abel_Pacheco_0001.jpg", lfw / "Abel_Pacheco/Abel_Pacheco_0004.jpg", True),
                (lfw / "Abdel_Madi_Shabneh/Abdel_Madi_Shabneh_0001.jpg", lfw / "Dean_Barker/Dean_Barker_0001.jpg", False)]
    assert read_pairs(pairs, images=lfw) == expected
    (lfw / "Abel_Pacheco").mkdir(parents=True)  # found in the lfw/ folder beside pairs.txt
    assert read_pairs(pairs) == expected
    pairs.write_text("1\t2\nAbel_Pacheco\t1\n")
    with pytest.raises(InputError, match="line 2: expected 'name i j'"):
        read_pairs(pairs)


def test_tiny_image_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "dot.png"
    Image.new("RGB", (40, 3)).save(path)
    with pytest.raises(InputError, match=r"too small to hold a face \(40x3 pixels"):
        load_image(path)


def test_links_in_folders(tmp_path: Path) -> None:
    Image.new("RGB", (20, 20)).save(tmp_path / "real.png")
    (tmp_path / "loop").symlink_to(".", target_is_directory=True)  # not followed: no endless walk
    (tmp_path / "a.jpg").symlink_to("b.jpg")
    (tmp_path / "b.jpg").symlink_to("a.jpg")
    (tmp_path / "alias.png").symlink_to("real.png")  # a link to a file is read
    found = expand_paths([tmp_path])
    assert [p.name for p in found] == ["a.jpg", "alias.png", "b.jpg", "real.png"]
    assert load_image(tmp_path / "alias.png").shape == (20, 20, 3)
    with pytest.raises(InputError, match="broken or looping symbolic link"):
        load_image(tmp_path / "a.jpg")
    # Named explicitly, a looping link is kept so it is reported as a bad file, not as a typo.
    assert expand_paths([tmp_path / "a.jpg"]) == [tmp_path / "a.jpg"]
    with pytest.raises(InputError, match="no such file or folder"):
        expand_paths([tmp_path / "typo.jpg"])


@pytest.mark.parametrize("mode", ["I", "F"])
def test_wide_gray_images_are_scaled_not_clipped(tmp_path: Path, mode: str) -> None:
    values = np.array([[0, 1000, 2000]] * 20, dtype=np.int32 if mode == "I" else np.float32).repeat(7, axis=1)
    path = tmp_path / "wide.tif"
    Image.fromarray(values).save(path)
    row = load_image(path)[0, ::7, 0]
    assert row.tolist() == [0, 128, 255]


def test_unreadable_file_is_not_called_corrupt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "locked.png"
    Image.new("RGB", (20, 20)).save(path)

    def denied(*_: object, **__: object) -> None:  # chmod does not stop root, who runs CI
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(Image, "open", denied)
    with pytest.raises(InputError, match=r"locked.png: cannot read file \(Permission denied\)$"):
        load_image(path)
