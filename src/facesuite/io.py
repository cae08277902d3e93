"""Image loading and discovery with user-readable failures.

Every image enters facesuite through :func:`load_image`, so EXIF orientation, colour-mode
conversion and the pixel limit are applied in exactly one place.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from facesuite.errors import InputError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"})
# Pillow's own bomb guard warns at ~89 Mpx and raises at twice that; we refuse at 100 Mpx so a
# tiny compressed file cannot make us allocate gigabytes.
MAX_PIXELS = 100_000_000
# Faces are found fine at this size; larger photos are shrunk before detection to bound memory.
MAX_SIDE = 4096


def load_image(path: str | Path, max_side: int | None = MAX_SIDE) -> np.ndarray:
    """Read an image file as an RGB ``uint8`` array of shape (H, W, 3).

    EXIF orientation is applied; grayscale, palette, RGBA, CMYK and 16-bit images are converted.
    Raises :class:`InputError` for a missing, empty, corrupt, non-image or oversized file.
    """
    path = Path(path)
    if not path.exists():
        raise InputError("no such file", path)
    if not path.is_file():
        raise InputError("not a file", path)
    if path.stat().st_size == 0:
        raise InputError("empty file (0 bytes)", path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if width * height > MAX_PIXELS:
                    raise InputError(f"image too large ({width}x{height} pixels, limit {MAX_PIXELS})", path)
                if max_side and max(width, height) > max_side:
                    # draft() lets the JPEG decoder downscale while decoding, so huge photos
                    # never exist at full size in memory.
                    image.draft("RGB", (max_side, max_side))
                image = ImageOps.exif_transpose(image)
                rgb = _to_rgb(image)
    except InputError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise InputError(f"cannot read image ({_describe(exc)})", path) from None
    if max_side and max(rgb.size) > max_side:
        rgb.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8)


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit integer images: scale to 8 bits instead of letting Pillow clip at 255.
        array = np.asarray(image, dtype=np.float64)
        peak = array.max() or 1.0
        image = Image.fromarray(np.round(array * (255.0 / peak)).astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image)
    image = image.convert("RGB")
    image.load()
    return image


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


def is_image_path(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def iter_images(root: str | Path) -> Iterator[Path]:
    """Image files under ``root`` (recursively, sorted); symlinked folders are not followed."""
    root = Path(root)
    for folder, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            candidate = Path(folder) / name
            if is_image_path(candidate):
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
                raise InputError("folder contains no images", path)
            images.extend(found)
        elif path.exists():
            images.append(path)
        else:
            raise InputError("no such file or folder", path)
    return images
