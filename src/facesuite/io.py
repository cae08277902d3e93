"""Image loading and discovery with user-readable failures.

Every image enters facesuite through :func:`load_image`, so EXIF orientation, colour-mode
conversion and the pixel limit are applied in exactly one place.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import os
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager as ContextManager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from facesuite.errors import InputError, Skipped

# Pillow logs some decoder failures (as well as raising them); without this, Python's last-resort
# handler prints them beside our one-line message when the application configured no logging.
logging.getLogger("PIL").addHandler(logging.NullHandler())

# Pillow's own bomb guard warns at ~89 Mpx and raises at twice that; we refuse at 100 Mpx so a
# tiny compressed file cannot make us allocate gigabytes.
MAX_PIXELS = 100_000_000
# Faces are found fine at this size; larger photos are shrunk before detection to bound memory.
MAX_SIDE = 4096
# Below this on either side an image cannot hold a usable face (the aligned chip is 150 px):
# refuse it by name rather than return a meaningless analysis.
MIN_SIDE = 16


class ImageTooLarge(InputError):
    """Over the pixel limit (a possible decompression bomb)."""


class ImageTooSmall(InputError):
    """Decodes fine but is too small to hold a face."""


class EmptyFile(InputError):
    """A zero-byte file."""


class UnreadableImage(InputError):
    """Not an image, or a corrupt or truncated one."""


def load_image(path: str | Path, max_side: int | None = MAX_SIDE, min_side: int = MIN_SIDE) -> np.ndarray:
    """Read an image file as an RGB ``uint8`` array of shape (H, W, 3).

    EXIF orientation is applied; grayscale, palette, RGBA, CMYK and 16-bit images are converted;
    images over ``max_side`` are shrunk (JPEGs while decoding). Raises :class:`InputError` (one of
    the subclasses above) for a missing, empty, corrupt, non-image, oversized or tiny file.
    """
    return load_image_and_scale(path, max_side, min_side)[0]


def load_image_and_scale(
    path: str | Path, max_side: int | None = MAX_SIDE, min_side: int = MIN_SIDE
) -> tuple[np.ndarray, tuple[float, float]]:
    """:func:`load_image`, and the factors ``(x, y)`` from the returned array's pixels to the
    file's own (upright) pixels: ``(1.0, 1.0)`` unless the image was shrunk on loading. Results
    are reported in the file's pixels, whatever size the image was analysed at."""
    path = Path(path)
    if not path.exists():
        if path.is_symlink():
            raise InputError("broken or looping symbolic link", path)
        raise InputError("no such file", path)
    if not path.is_file():
        raise InputError("not a file", path)
    if path.stat().st_size == 0:
        raise EmptyFile("empty file (0 bytes)", path)
    return _decode(lambda: Image.open(path), path, max_side, min_side)


def _decode(
    open_image: Callable[[], ContextManager[Image.Image]], name: str | Path, max_side: int | None, min_side: int
) -> tuple[np.ndarray, tuple[float, float]]:
    """Decode what ``open_image`` opens (a file, bytes or a Pillow image), naming ``name`` in errors."""
    try:
        with warnings.catch_warnings():
            # Pillow warns about large images (checked below) and about corrupt metadata it skips;
            # the image is still usable, and users get one line per real problem, not warnings.
            warnings.simplefilter("ignore")
            # Image.open reads the header only: the size checks below run before any decoding.
            with open_image() as image:
                width, height = image.size
                if width * height > MAX_PIXELS:
                    raise ImageTooLarge(f"image too large ({width}x{height} pixels, limit {MAX_PIXELS})", name)
                if min(width, height) < min_side:
                    raise ImageTooSmall(f"image too small to hold a face ({width}x{height} pixels, minimum {min_side} per side)", name)
                if max_side and max(width, height) > max_side:
                    # draft() lets the JPEG decoder scale by 1/2, 1/4 or 1/8 while decoding (to no
                    # less than the size asked), so a huge photo never exists at full size.
                    scale = max_side / max(width, height)
                    image.draft("RGB", (math.ceil(width * scale), math.ceil(height * scale)))
                image.load()
                orientation = image.getexif().get(0x0112, 1)
                # In place, and no conversion of an RGB image: each copy of a large image would
                # add to the peak memory.
                ImageOps.exif_transpose(image, in_place=True)
                rgb = _to_rgb(image)
                if max_side and max(rgb.size) > max_side:
                    rgb.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
                # The file's size as displayed: EXIF orientations 5-8 turn it by 90 degrees.
                upright = (height, width) if orientation in (5, 6, 7, 8) else (width, height)
                scale = (upright[0] / rgb.size[0], upright[1] / rgb.size[1])
                return np.asarray(rgb, dtype=np.uint8), scale
    except InputError:
        raise
    except Image.DecompressionBombError:
        # Pillow's own guard fires inside open(), before our check, past twice its limit (179 Mpx).
        raise ImageTooLarge(f"image too large (over {MAX_PIXELS} pixels: a possible decompression bomb)", name) from None
    except UnidentifiedImageError:
        if _open_heif_too():
            return _decode(open_image, name, max_side, min_side)
        raise UnreadableImage("not an image file (format not recognised)", name) from None
    except (OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, OSError) and exc.errno is not None:  # the file system, not the image
            raise InputError(f"cannot read file ({exc.strerror})", name) from None
        # What Pillow's decoders raise on corrupt or truncated data.
        raise UnreadableImage(f"corrupt or truncated image ({_describe(exc)})", name) from None


_heif_opener = False


def _open_heif_too() -> bool:
    """Teach Pillow HEIF/HEIC (the photos iPhones take) through pillow-heif when it first meets a
    file it does not recognise: True then, so the caller tries that file again. Done lazily
    because the import takes 70 ms, which runs that never meet such a file need not pay."""
    global _heif_opener
    if _heif_opener:
        return False
    from pillow_heif import register_heif_opener

    register_heif_opener()
    _heif_opener = True
    return True


#: What :func:`decode` takes: a file path, the bytes of an image file, an RGB ``uint8`` array
#: (H x W x 3; H x W for grey) or a Pillow image.
ImageInput = str | os.PathLike | bytes | np.ndarray | Image.Image


@dataclass(frozen=True, eq=False)
class Decoded:
    """One input image, decoded: RGB ``uint8`` pixels at the size it is analysed at."""

    name: str  # how messages and outputs name it: its path, or the name the caller gave
    pixels: np.ndarray
    scale: tuple[float, float]  # analysed pixels -> the input's own pixels, per axis
    digest: str  # content hash: the detection cache key
    path: Path | None = None  # the file it was read from, if any


def decode(image: ImageInput | Decoded, name: str | None = None) -> Decoded:
    """Any :data:`ImageInput` as :class:`Decoded`, by the same rules as :func:`load_image`;
    :class:`InputError` naming ``name`` (default: the path, or the kind of input) when bad."""
    if isinstance(image, Decoded):
        return image
    if isinstance(image, (str, os.PathLike)):
        pixels, scale = load_image_and_scale(image)
        return Decoded(name or os.fspath(image), pixels, scale, file_digest(image), Path(image))
    if isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
        name = name or "<bytes>"
        if not data:
            raise EmptyFile("empty file (0 bytes)", name)
        pixels, scale = _decode(lambda: Image.open(io.BytesIO(data)), name, MAX_SIDE, MIN_SIDE)
        return Decoded(name, pixels, scale, hashlib.sha1(data).hexdigest())
    if isinstance(image, Image.Image):
        name = name or "<PIL image>"
        # A copy: decoding applies EXIF orientation and may shrink in place; the caller's image stays.
        pixels, scale = _decode(lambda: image.copy(), name, MAX_SIDE, MIN_SIDE)
        return Decoded(name, pixels, scale, _pixel_digest(pixels))
    if isinstance(image, np.ndarray):
        return _decode_array(image, name or "<array>")
    raise InputError(f"not an image: expected a path, bytes, a numpy array or a PIL image, got {type(image).__name__}", name)


def _decode_array(array: np.ndarray, name: str) -> Decoded:
    if array.dtype != np.uint8 or not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)):
        raise InputError(f"expected an RGB uint8 array of shape (H, W, 3) or a grey (H, W) one, got {array.dtype} {array.shape}", name)
    height, width = array.shape[:2]
    if width * height > MAX_PIXELS:
        raise ImageTooLarge(f"image too large ({width}x{height} pixels, limit {MAX_PIXELS})", name)
    if min(width, height) < MIN_SIDE:
        raise ImageTooSmall(f"image too small to hold a face ({width}x{height} pixels, minimum {MIN_SIDE} per side)", name)
    pixels = np.repeat(array[:, :, None], 3, axis=2) if array.ndim == 2 else np.ascontiguousarray(array)
    scale = (1.0, 1.0)
    if max(width, height) > MAX_SIDE:
        shrunk = Image.fromarray(pixels)
        shrunk.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.BILINEAR)
        scale = (width / shrunk.size[0], height / shrunk.size[1])
        pixels = np.asarray(shrunk)
    return Decoded(name, pixels, scale, _pixel_digest(pixels))


def _pixel_digest(pixels: np.ndarray) -> str:
    digest = hashlib.sha1(f"pixels:{pixels.shape}:".encode())
    digest.update(np.ascontiguousarray(pixels).data)
    return digest.hexdigest()


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16/32-bit integer and float images: scale to 8 bits instead of letting Pillow clip at 255.
        array = np.clip(np.asarray(image, dtype=np.float64), 0, None)
        peak = array.max() or 1.0
        image = Image.fromarray(np.round(array * (255.0 / peak)).astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image)
    return image if image.mode == "RGB" else image.convert("RGB")


def readable_images(paths: Iterable[str | Path], skipped: list[Skipped]) -> Iterator[tuple[Path, np.ndarray]]:
    """``(path, image)`` for each file that :func:`load_image` reads, in order; a file it cannot
    read is added to ``skipped`` and passed over."""
    for path in paths:
        try:
            yield Path(path), load_image(path)
        except InputError as error:
            skipped.append(Skipped(path, error))


def write_image(path: Path, rgb: np.ndarray, jpeg_quality: int = 95) -> None:
    """Write an RGB ``uint8`` image, its format from the suffix (``.png``, ``.jpg``). Encoded in
    memory and written by Python: OpenCV's ``imwrite`` crashes the process on a path holding a
    file name that is not valid UTF-8 (Linux keeps such bytes as surrogates in ``str``)."""
    import cv2

    options = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if path.suffix.lower() in (".jpg", ".jpeg") else []
    ok, encoded = cv2.imencode(path.suffix, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), options)
    if not ok:
        raise ValueError(f"OpenCV could not encode an image as {path.suffix}")
    path.write_bytes(encoded.tobytes())


def _describe(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:160]


def file_digest(path: str | Path) -> str:
    """SHA-1 of a file's bytes: the cache key of everything derived from that image."""
    digest = hashlib.sha1()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_image_file(path: str | Path) -> bool:
    """Whether ``path`` is a file an image decoder recognises by its header (a photo, not a list
    of photos); nothing is decoded."""
    if not Path(path).is_file():
        return False
    try:
        with Image.open(path):
            return True
    except (UnidentifiedImageError, OSError):
        return False


def is_candidate_file(path: Path) -> bool:
    """A file a folder walk hands to the loader: every regular file but hidden ones.

    Whether it is an image is decided by its content when it is loaded (anything Pillow opens:
    JPEG whatever its suffix, PGM/PBM/PNM, JFIF, ...); a non-image is then a counted skip.
    Hidden files (``.DS_Store``, macOS ``._name`` companions) are system metadata, not inputs. A
    broken or looping link is kept, so it is reported as a bad file rather than vanishing.
    """
    return not path.name.startswith(".") and (path.is_file() or path.is_symlink())


def iter_images(root: str | Path) -> Iterator[Path]:
    """Files under ``root`` to load as images (recursively, sorted; see :func:`is_candidate_file});
    symlinked folders are not followed."""
    root = Path(root)
    for folder, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(name for name in dirnames if not name.startswith("."))
        for name in sorted(filenames):
            candidate = Path(folder) / name
            if is_candidate_file(candidate):
                yield candidate


def expand_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Turn a mix of image files and folders into a list of image files.

    Folders are searched recursively. A path that does not exist raises :class:`InputError`;
    explicitly named files are kept whatever their suffix so a bad one is reported, not skipped.
    """
    images: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = list(iter_images(path))
            if not found:
                raise InputError("folder contains no files", path)
            images.extend(found)
        elif path.exists() or path.is_symlink():
            # A broken or looping link is kept, so it is reported as a bad file, not as a typo.
            images.append(path)
        else:
            raise InputError("no such file or folder", path)
    return images
