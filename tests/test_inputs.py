"""The input matrix: whatever people keep on their disks, through the CLI and the API.

One folder holds every kind of input, built from a real face (the sample photos). Each is run through
`facesuite analyze` and `facesuite detect` (as a folder, so bad files are skipped and counted,
and named explicitly, so the run exits 2 while the rest of the batch is still processed) and
through ``POST /analyze``. A bad file always gets one line naming it: never a traceback.
"""

from __future__ import annotations

import io
import json
import math
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image, PngImagePlugin

from facesuite.cli import main
from facesuite.config import MODELS_DIR
from facesuite.io import MAX_SIDE, ImageTooLarge, load_image
from facesuite.serve import create_app

pytestmark = pytest.mark.skipif(
    not (MODELS_DIR / "distortion" / "weights.pt").is_file(), reason=f"shipped distortion model not in {MODELS_DIR}"
)

# name -> (what the CLI does, HTTP status of POST /analyze). "face": a face is found; "fallback":
# no face, analysed in the flagged centre box; otherwise the start of the one-line reason.
MATRIX = {
    "clean.jpg": ("face", 200),
    "corrupt.jpg": ("not an image file", 415),
    "truncated.jpg": ("corrupt or truncated image (image file is truncated", 415),
    "corrupt.png": ("corrupt or truncated image (broken data stream", 415),
    "truncated.png": ("corrupt or truncated image (image file is truncated", 415),
    "empty.jpg": ("empty file (0 bytes)", 400),
    "text.jpg": ("not an image file", 415),
    "bomb.png": ("image too large (over 100000000 pixels", 413),
    "cmyk.jpg": ("face", 200),
    "gray16.png": ("face", 200),
    "rgba.png": ("face", 200),
    "palette.gif": ("face", 200),
    "gray.jpg": ("face", 200),
    "exif_rotated.jpg": ("face", 200),
    "iphone.heic": ("face", 200),
    "phone.avif": ("face", 200),
    "one_pixel.png": ("image too small to hold a face (1x1 pixels", 422),
    "huge_12000x8000.jpg": ("face", 200),
    "no_face.jpg": ("fallback", 200),
    "five_faces.jpg": ("face", 200),
    "Zoë Ünïcode/фото 1.jpg": ("face", 200),
    "ring_a.jpg": ("broken or looping symbolic link", None),  # a symlink loop: nothing to upload
    "ring_b.jpg": ("broken or looping symbolic link", None),
}
BAD = sorted(name for name, (outcome, _) in MATRIX.items() if outcome not in ("face", "fallback"))
FIVE = ("people/Colin_Powell/Colin_Powell_0001.jpg", "people/Hugo_Chavez/Hugo_Chavez_0001.jpg",
        "people/Kofi_Annan/Kofi_Annan_0001.jpg", "photos/Naomi_Watts_0001.jpg", "people/Tiger_Woods/Tiger_Woods_0001.jpg")
FIVE_SCALES = (1.0, 0.9, 1.4, 0.8, 1.1)  # the third face is the largest


def bomb_png(side: int = 30000) -> bytes:
    """A real 30000x30000 1-bit PNG (900 Mpx) that compresses to about 110 KB."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = bytes(1 + (side + 7) // 8)  # filter byte + one bit per pixel
    compressor = zlib.compressobj(9)
    pixels = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def build_matrix(folder: Path, samples: Path) -> None:
    source = samples / FIVE[0]
    face = Image.open(source).convert("RGB")
    face.save(folder / "clean.jpg", quality=95)
    jpeg = bytearray(source.read_bytes())
    start = jpeg.index(b"\xff\xc0")
    jpeg[start + 5 : start + 9] = bytes(4)  # frame header says 0x0 pixels
    (folder / "corrupt.jpg").write_bytes(bytes(jpeg))
    (folder / "truncated.jpg").write_bytes(source.read_bytes()[:3000])
    buffer = io.BytesIO()
    face.save(buffer, "PNG")
    png = bytearray(buffer.getvalue())
    png[png.index(b"IDAT") + 20] ^= 0xFF  # a flipped bit inside the compressed pixels
    (folder / "corrupt.png").write_bytes(bytes(png))
    (folder / "truncated.png").write_bytes(buffer.getvalue()[: len(png) // 2])
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "text.jpg").write_text("shopping list: eggs, milk\n")
    (folder / "bomb.png").write_bytes(bomb_png())
    face.convert("CMYK").save(folder / "cmyk.jpg")
    Image.fromarray(np.asarray(face.convert("L"), dtype=np.uint16) * 257).save(folder / "gray16.png")
    rgba = face.convert("RGBA")
    rgba.putalpha(220)
    rgba.save(folder / "rgba.png")
    face.convert("P", palette=Image.Palette.ADAPTIVE).save(folder / "palette.gif")
    face.convert("L").save(folder / "gray.jpg")
    # HEIC as an iPhone saves it, written by pillow-heif's own API (not through Pillow, so the
    # code under test must teach Pillow the format itself); AVIF, which Pillow reads natively.
    import pillow_heif

    pillow_heif.from_pillow(face).save(folder / "iphone.heic", quality=90)
    face.save(folder / "phone.avif", quality=80)
    # Stored lying on its side, with the EXIF tag saying "rotate 90 degrees clockwise to display".
    stored = face.rotate(90, expand=True)
    exif = stored.getexif()
    exif[0x0112] = 6
    stored.save(folder / "exif_rotated.jpg", exif=exif, quality=95)
    Image.new("RGB", (1, 1), "red").save(folder / "one_pixel.png")
    huge = Image.new("RGB", (12000, 8000), (120, 140, 160))
    huge.paste(face.resize((2240, 2240)), (5000, 2500))
    huge.save(folder / "huge_12000x8000.jpg", quality=85)
    Image.new("RGB", (224, 224), (128, 128, 128)).save(folder / "no_face.jpg")
    tiles = [Image.open(samples / p).convert("RGB") for p in FIVE]
    tiles = [t.resize((round(224 * s), round(224 * s))) for t, s in zip(tiles, FIVE_SCALES)]
    group = Image.new("RGB", (sum(t.width for t in tiles), max(t.height for t in tiles)), (90, 90, 90))
    x = 0
    for tile in tiles:
        group.paste(tile, (x, (group.height - tile.height) // 2))
        x += tile.width
    group.save(folder / "five_faces.jpg", quality=92)
    (folder / "Zoë Ünïcode").mkdir()
    face.save(folder / "Zoë Ünïcode" / "фото 1.jpg")
    (folder / "loop").symlink_to(".", target_is_directory=True)
    (folder / "ring_a.jpg").symlink_to("ring_b.jpg")
    (folder / "ring_b.jpg").symlink_to("ring_a.jpg")


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory, samples: Path) -> Path:
    folder = tmp_path_factory.mktemp("matrix")
    build_matrix(folder, samples)
    return folder


def _analyze(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, list[dict]], str]:
    code = main(["analyze", *args, "--json"])
    captured = capsys.readouterr()
    rows: dict[str, list[dict]] = {}
    for row in json.loads(captured.out):
        rows.setdefault(row["path"], []).append(row)
    return code, rows, captured.err


def _box_area(box: list[float]) -> float:
    return (box[2] - box[0]) * (box[3] - box[1])


def _centre_offset(box: list[float], width: float, height: float) -> float:
    return math.hypot((box[0] + box[2] - width) / 2, (box[1] + box[3] - height) / 2)


def test_cli_analyze_folder_processes_everything_and_names_each_bad_file(matrix: Path, capsys) -> None:
    code, rows, err = _analyze(capsys, str(matrix))
    assert code == 0 and "Traceback" not in err
    assert len(rows) + len(BAD) == len(MATRIX)  # every input analysed or skipped, once
    assert sum(line.startswith("skipped: ") for line in err.splitlines()) == len(BAD)
    for name, (outcome, _) in MATRIX.items():
        path = str(matrix / name)
        if outcome in ("face", "fallback"):
            [row] = rows[path]
            assert row["fallback"] is (outcome == "fallback"), name
        else:
            assert f"skipped: {path}: {outcome}" in err, name
    # EXIF applied: the face is where it is in the upright original.
    [upright], [rotated] = rows[str(matrix / "clean.jpg")], rows[str(matrix / "exif_rotated.jpg")]
    assert np.allclose(upright["box"], rotated["box"], atol=3)


def test_cli_named_bad_files_exit_2_and_the_batch_goes_on(matrix: Path, capsys) -> None:
    good = [matrix / "clean.jpg", matrix / "Zoë Ünïcode" / "фото 1.jpg"]
    code, rows, err = _analyze(capsys, *map(str, [matrix / name for name in BAD] + good))
    assert code == 2 and "Traceback" not in err
    assert set(rows) == {str(p) for p in good}
    # One line each; the progress bar rewrites its own line with carriage returns.
    lines = [line.rsplit("\r", 1)[-1] for line in err.split("\n") if line.strip()]
    assert len(lines) == len(BAD) and all(line.startswith("skipped: ") for line in lines)
    for name in BAD:
        assert f"{matrix / name}: {MATRIX[name][0]}" in err


def test_cli_detect_counts_skips_and_writes_the_rest(matrix: Path, tmp_path: Path, capsys) -> None:
    assert main(["detect", str(matrix), "--out", str(tmp_path), "--json"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["images"] == len(MATRIX) and summary["skipped"] == len(BAD)
    assert summary["fallback"] == 1 and summary["detected"] == len(MATRIX) - len(BAD) - 1
    assert len(list((tmp_path / "crops").rglob("*.png"))) == len(MATRIX) - len(BAD)
    assert "Traceback" not in captured.err


def test_five_faces_main_one_by_default_all_with_flag(matrix: Path, tmp_path: Path, capsys) -> None:
    group = str(matrix / "five_faces.jpg")
    _, rows, _ = _analyze(capsys, group)
    [main_face] = rows[group]
    _, rows, _ = _analyze(capsys, group, "--all-faces")
    faces = rows[group]
    assert [f["face"] for f in faces] == [0, 1, 2, 3, 4]
    assert main_face["box"] == faces[0]["box"] and not any(f["fallback"] for f in faces)
    # The third tile is both the largest face and the central one: it comes first.
    assert 224 * sum(FIVE_SCALES[:2]) < main_face["box"][0] < 224 * sum(FIVE_SCALES[:3])
    areas = [_box_area(f["box"]) for f in faces]
    assert areas[0] == max(areas) and len({round(a) for a in areas}) == 5
    # All inside the frame, they rank by area less twice the squared distance from the centre.
    offsets = [_centre_offset(f["box"], 224 * sum(FIVE_SCALES), 224 * max(FIVE_SCALES)) for f in faces]
    assert offsets[0] == min(offsets)
    scores = [area - 2 * offset**2 for area, offset in zip(areas, offsets)]
    assert scores == sorted(scores, reverse=True)
    assert main(["detect", group, "--out", str(tmp_path), "--all-faces"]) == 0
    assert len(list((tmp_path / "crops").glob("five_faces*.png"))) == 5


def test_bomb_is_refused_before_decoding(matrix: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert (matrix / "bomb.png").stat().st_size < 200_000

    def decode(*_: object) -> None:
        raise AssertionError("the bomb was decoded")

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", decode)
    with pytest.raises(ImageTooLarge, match="decompression bomb"):
        load_image(matrix / "bomb.png")


def test_huge_photo_is_shrunk_while_decoding(matrix: Path) -> None:
    # In a fresh process, so the peak memory is this load's alone: one full-size RGB copy of a
    # 12000x8000 photo is 288 MB; decoding at 1/2 scale stays well under that.
    code = ("import resource, sys; from facesuite.io import load_image; "
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; image = load_image(sys.argv[1]); "
            "print(*image.shape, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)")
    out = subprocess.run([sys.executable, "-c", code, str(matrix / "huge_12000x8000.jpg")],
                         capture_output=True, text=True, check=True).stdout
    height, width, channels, grown_kb = map(int, out.split())
    assert (width, channels) == (MAX_SIDE, 3) and abs(height - MAX_SIDE * 8000 / 12000) <= 1
    assert grown_kb * 1024 < 12000 * 8000 * 3  # ru_maxrss is in KiB on Linux


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("serve")
    with TestClient(create_app(gallery=work / "gallery", max_upload_bytes=20 * 2**20, work_dir=work)) as test_client:
        yield test_client


@pytest.mark.parametrize("name", [n for n, (_, status) in MATRIX.items() if status is not None])
def test_api_analyze_matrix(client: TestClient, matrix: Path, name: str) -> None:
    outcome, status = MATRIX[name]
    upload_name = Path(name).name
    response = client.post("/analyze", files={"image": (upload_name, (matrix / name).read_bytes(), "application/octet-stream")})
    assert response.status_code == status, response.text
    body = response.json()
    if status == 200:
        assert body["path"] == upload_name and body["fallback"] is (outcome == "fallback")
    else:
        assert body["error"].startswith(f"{upload_name}: ") and outcome in body["error"]
        assert "Traceback" not in response.text and "facesuite-upload" not in body["error"]


def test_file_and_folder_names_that_are_not_utf8(matrix: Path, samples: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Names in Latin-1 (an old camera card, a zip from Windows) are valid on Linux but not UTF-8:
    each command reads them, writes their files under the same bytes, and writes the name into
    UTF-8 outputs (CSV, Parquet, the gallery's database) with the odd bytes as \\xNN. OpenCV's
    imwrite crashed the process on such a path; CSV, Parquet and SQLite refused it."""
    import os
    import shutil

    from facesuite.batch import read_output

    photos = tmp_path / "photos"
    latin1 = os.fsdecode(b"Jos\xe9")  # the bytes of "José" in Latin-1, a surrogate for \xe9 in Python
    (photos / latin1).mkdir(parents=True)
    (photos / latin1 / f"{latin1}.jpg").write_bytes((matrix / "clean.jpg").read_bytes())
    (photos / "ann").mkdir()
    (photos / "ann" / "ann.jpg").write_bytes((matrix / "clean.jpg").read_bytes())
    shown = "Jos\\xe9"

    # In a child process: the OpenCV crash this guards against would take the test run with it.
    code = "import sys; from facesuite.cli import main; sys.exit(main(sys.argv[1:]))"
    subprocess.run([sys.executable, "-c", code, "detect", str(photos), "--out", str(tmp_path / "crops")], check=True,
                   capture_output=True)
    assert (tmp_path / "crops" / "crops" / latin1 / f"{latin1}.png").is_file()
    detections = (tmp_path / "crops" / "detections.csv").read_text(encoding="utf-8")
    assert f"{photos}/{shown}/{shown}.jpg" in detections and f"crops/{shown}/{shown}.png" in detections

    for _ in range(2):  # the second run finds both images done
        assert main(["batch", "embed", str(photos), "--out", str(tmp_path / "rows"), "--workers", "1"]) == 0
    assert "0 images in" in capsys.readouterr().out.splitlines()[-1]
    assert sorted(read_output(tmp_path / "rows").column("path").to_pylist()) == [
        f"{photos}/{shown}/{shown}.jpg", f"{photos}/ann/ann.jpg"]

    gallery = tmp_path / "gallery"
    assert main(["gallery", "enroll", str(photos), "--gallery", str(gallery)]) == 0
    assert main(["gallery", "list", "--gallery", str(gallery)]) == 0
    assert f"{shown}\t1" in capsys.readouterr().out

    # An evaluation whose identity folder has such a name: its report and predictions name it.
    people = tmp_path / "people"
    for name, source in zip((latin1, "b", "c"), sorted((samples / "people").iterdir())):
        shutil.copytree(source, people / name)
    assert main(["eval", "recognition", str(people), "--out", str(tmp_path / "eval")]) == 0
    assert shown in (tmp_path / "eval" / "report.html").read_text(encoding="utf-8")
    assert shown in (tmp_path / "eval" / "predictions.csv").read_text(encoding="utf-8")


@pytest.mark.parametrize("command", [["eval", "gender"], ["eval", "age"], ["eval", "distortion"], ["batch", "analyze"]])
def test_a_command_refused_for_its_input_leaves_no_empty_output_folder(tmp_path: Path, capsys, command: list[str]) -> None:
    """An empty input folder is the user's error (one line, exit 2); the output folder the command
    would have filled, and the parents it made for it, are not left behind empty. A folder that was
    already there is kept."""
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "made" / "for" / "it"
    assert main([*command, str(empty), "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0
    assert not (tmp_path / "made").exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    assert main([*command, str(empty), "--out", str(kept)]) == 2
    assert kept.is_dir()
