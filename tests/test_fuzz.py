"""Property-based fuzzing (hypothesis) of the image loader, `analyze`, and the upload parser.

Whatever the bytes, the loader returns an RGB uint8 array or raises InputError; `analyze` returns
one result or one skip per file; the API answers a JSON 4xx, never a 500. Example counts are
bounded so the whole module runs in well under a minute; a crash hypothesis finds is kept below
as an ``@example`` regression.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from facesuite.config import MODELS_DIR
from facesuite.errors import InputError
from facesuite.io import MIN_SIDE, load_image
from facesuite.serve import create_app

FUZZ = settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
# Signatures that send random bytes past format detection into each decoder.
MAGIC = [b"", b"\xff\xd8\xff\xe0", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*", b"RIFF\x00\x00\x00\x00WEBP", b"P6\n"]
# (format, mode) pairs Pillow can write: every conversion path of load_image.
WRITABLE = [("PNG", m) for m in ("1", "L", "LA", "P", "RGB", "RGBA", "I;16")] + [
    ("JPEG", "L"), ("JPEG", "RGB"), ("JPEG", "CMYK"), ("GIF", "P"), ("GIF", "L"), ("BMP", "RGB"), ("BMP", "P"),
    ("TIFF", "RGB"), ("TIFF", "CMYK"), ("TIFF", "I;16"), ("TIFF", "F"), ("TIFF", "I"), ("WEBP", "RGB"), ("WEBP", "RGBA"),
]


def _check_loaded(path: Path) -> np.ndarray | None:
    try:
        image = load_image(path)
    except InputError as error:
        assert str(path) in str(error) and "\n" not in str(error)
        return None
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    return image


def _seed_images() -> list[bytes]:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    seeds = []
    for fmt, mode in [("JPEG", "RGB"), ("PNG", "RGBA"), ("GIF", "P"), ("TIFF", "CMYK"), ("WEBP", "RGB"), ("BMP", "RGB")]:
        image = Image.fromarray(pixels).convert(mode)
        extra = {}
        if fmt == "JPEG":
            exif = image.getexif()
            exif[0x0112] = 6  # so mutations reach the EXIF transpose too
            extra["exif"] = exif
        buffer = io.BytesIO()
        image.save(buffer, fmt, **extra)
        seeds.append(buffer.getvalue())
    return seeds


SEEDS = _seed_images()


@FUZZ
@given(magic=st.sampled_from(MAGIC), body=st.binary(max_size=2048))
def test_loader_on_random_bytes(tmp_path: Path, magic: bytes, body: bytes) -> None:
    path = tmp_path / "random.img"
    path.write_bytes(magic + body)
    _check_loaded(path)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["set", "delete", "insert", "truncate"]))
        if action == "set":
            data[at] = draw(st.integers(0, 255))
        elif action == "delete":
            del data[at : at + draw(st.integers(1, 64))]
        elif action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        else:
            del data[max(at, 1) :]
    return bytes(data)


@FUZZ
@given(data=mutated())
def test_loader_on_mutated_images(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "mutated.img"
    path.write_bytes(data)
    _check_loaded(path)


@st.composite
def valid_images(draw: st.DrawFn, max_side: int = 64) -> tuple[bytes, int, int]:
    fmt, mode = draw(st.sampled_from(WRITABLE))
    width, height = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    seed = draw(st.integers(0, 2**32 - 1))
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    gray = np.asarray(image.convert("L"))
    if mode == "I;16":
        image = Image.fromarray(gray.astype(np.uint16) * 257)
    elif mode == "I":
        image = Image.fromarray(gray.astype(np.int32) * 65793)
    elif mode == "F":
        image = Image.fromarray(gray.astype(np.float32) / 255)
    else:
        image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue(), width, height


@FUZZ
@given(image=valid_images())
def test_loader_on_valid_images(tmp_path: Path, image: tuple[bytes, int, int]) -> None:
    data, width, height = image
    path = tmp_path / "valid.img"
    path.write_bytes(data)
    if min(width, height) < MIN_SIDE:
        with pytest.raises(InputError, match="too small"):
            load_image(path)
    else:
        assert load_image(path).shape == (height, width, 3)


@pytest.fixture(scope="module")
def analyzer():
    if not (MODELS_DIR / "distortion" / "weights.pt").is_file():
        pytest.skip(f"shipped distortion model not in {MODELS_DIR}")
    from facesuite.analysis import FaceAnalysis

    return FaceAnalysis(use_cache=False)


def _grey_png(width: int, height: int) -> tuple[bytes, int, int]:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), "grey").save(buffer, "PNG")
    return buffer.getvalue(), width, height


@settings(deadline=None, max_examples=12, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(image=valid_images(max_side=200))
# Regression: an image smaller than MTCNN's 40 px minimum face has no pyramid level, and
# facenet-pytorch failed on the empty list, taking the whole batch down with it.
@example(image=_grey_png(300, 20))
@example(image=_grey_png(1, 1))
def test_analyze_on_valid_images(analyzer, tmp_path: Path, image: tuple[bytes, int, int]) -> None:
    data, width, height = image
    path = tmp_path / "face.img"
    path.write_bytes(data)
    results, skipped = analyzer.faces([path])
    assert len(results) + len(skipped) == 1
    if skipped:
        assert min(width, height) < MIN_SIDE and str(path) in skipped[0].reason
    else:
        x1, y1, x2, y2 = results[0].box
        assert np.all(np.isfinite(results[0].embedding)) and x1 < x2 and y1 < y2


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    work = tmp_path_factory.mktemp("fuzz-serve")
    # A private temporary folder, so leftover uploads are ours to count (other processes use /tmp).
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tempfile, "tempdir", str(work))
        # Not entered as a context manager: the models never load. Every example below is refused
        # before the model thread is reached, so this fuzzes the parsing and validation alone.
        yield TestClient(create_app(gallery=work / "gallery", max_upload_bytes=64 * 1024, work_dir=work))


def _uploads_left() -> list[Path]:
    return list(Path(tempfile.gettempdir()).glob("facesuite-upload-*"))


# Text a request can carry: a multipart body is UTF-8, and a lone surrogate has no UTF-8 form (the
# test client would raise UnicodeEncodeError before sending anything). Everything else goes.
SENDABLE = st.characters(codec="utf-8")
names = st.text(SENDABLE, max_size=40) | st.sampled_from(
    ["../../etc/passwd", "/etc/passwd", "..", "a\\..\\b.jpg", "x.jpg\x00.png", "", ".jpg"]
)


@settings(deadline=None, max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    route=st.sampled_from(["/analyze", "/verify", "/explain", "/gallery/identify", "/gallery/enroll"]),
    field=st.sampled_from(["image", "image1", "image2", "other"]),
    filename=names,
    content_type=st.text(SENDABLE, max_size=30),
    body=st.sampled_from(MAGIC).flatmap(lambda m: st.binary(max_size=512).map(lambda b: m + b)),
    identity=st.none() | st.text(SENDABLE, max_size=30),
)
@example(route="/analyze", field="image", filename="x.jpg\x00.png", content_type="", body=b"", identity=None)
def test_upload_parser_answers_json_4xx(client: TestClient, route: str, field: str, filename: str,
                                        content_type: str, body: bytes, identity: str | None) -> None:
    data = {"identity": identity} if identity is not None else None
    response = client.post(route, files=[(field, (filename, body, content_type))], data=data)
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    assert isinstance(response.json()["error"], str)
    assert not _uploads_left()  # every saved upload was removed


@settings(deadline=None, max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content_type=st.sampled_from(["multipart/form-data; boundary=x", "multipart/form-data", "application/json",
                                     "text/plain", "image/jpeg", ""]) | st.text(SENDABLE, max_size=60),
       body=st.binary(max_size=1024))
# Non-ASCII content types, once dropped before sending: the boundary must match as UTF-8 bytes.
@example(content_type="multipart/form-data; boundary=\u00e9", body="--\u00e9\r\n".encode())
@example(content_type="image/jpe\u011f", body=b"\xff\xd8\xff")
def test_raw_bodies_answer_json_4xx(client: TestClient, content_type: str, body: bytes) -> None:
    # As bytes: the test client encodes a str header as ASCII and raises on anything else (about
    # 40% of these examples), but a real client can send any bytes there, so they are sent as is.
    response = client.post("/analyze", content=body, headers={"content-type": content_type.encode("utf-8")})
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    assert isinstance(response.json()["error"], str)
