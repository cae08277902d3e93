"""Clean photos of other kinds, made from a clean frame: grayscale, phone-style colour and JPEG,
mild low resolution, and tight crops around the face.

FACECOM's clean frames are all colour, 224 px, LFW-style (face ~90 px in the middle). A detector
trained on them alone calls other clean photos distorted (grayscale portraits ``foggy``, aligned
200 px crops ``blurred``). Training on these variants as ``clean`` -- and on the same variant of
each distorted copy as that copy's type -- teaches it the distortion rather than the collection.

One sampled transform is applied to a clean frame and to all its distorted copies alike
(:func:`sample_variant`), so the only difference left inside a group is the distortion.

``low_resolution`` shrinks by 0.80-0.95 only: FACECOM's own ``resized`` copies are a 0.5-0.7
down-and-up scale of the same frames (measured against their clean sources: 0.6 for most), and a
whole frame shrunk that much *is* a resized copy. ``tight_crop`` cuts the detected face box plus a
margin; the detector then enlarges that crop to its 224 px input, as it does for any small photo.

    transform = sample_variant("phone", np.random.default_rng(0))
    clean_phone, blurred_phone = transform(clean), transform(blurred)
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

VARIANTS: tuple[str, ...] = ("grayscale", "phone", "low_resolution", "tight_crop")
# A photo whose face fills the frame has no known native resolution: a down-and-up scaled copy of
# it looks like another clean photo taken at lower resolution, so such photos are not trained on as
# ``resized`` (FACECOM's frames, 224 px with the face ~90 px, are).
RESOLUTION_UNKNOWN: frozenset[str] = frozenset({"tight_crop"})
LOW_RESOLUTION_SCALES = (0.80, 0.95)
TRAIN_CROP_MARGINS = (0.0, 0.25)  # of the box side, added on each side


def grayscale(image: np.ndarray) -> np.ndarray:
    """The luminance of an RGB image, as three equal channels."""
    return np.repeat(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[:, :, None], 3, axis=2)


def shrink(image: np.ndarray, scale: float) -> np.ndarray:
    """``image`` at ``scale`` of its size (area filter): a photo taken or stored at lower resolution."""
    height, width = image.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def tight_crop(image: np.ndarray, box: tuple[float, float, float, float], margin: float) -> np.ndarray:
    """The square around the face box, ``margin`` of its side added on each side, clipped to the image."""
    x1, y1, x2, y2 = box
    side = max(x2 - x1, y2 - y1) * (1 + 2 * margin)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    height, width = image.shape[:2]
    left, top = max(0, round(cx - side / 2)), max(0, round(cy - side / 2))
    right, bottom = min(width, round(cx + side / 2)), min(height, round(cy + side / 2))
    return np.ascontiguousarray(image[top:bottom, left:right])


def phone_style(image: np.ndarray, saturation: float, gains: np.ndarray, gamma: float, sharpen: float, quality: int) -> np.ndarray:
    """What a phone camera and a messaging app do to a photo: a saturation boost or cut, a white
    balance cast, a tone curve, edge sharpening, then JPEG compression."""
    pixels = image.astype(np.float32) / 255.0
    grey = pixels.mean(axis=2, keepdims=True)
    pixels = np.clip(grey + saturation * (pixels - grey), 0, 1) * gains
    pixels = np.clip(pixels, 0, 1) ** gamma
    if sharpen > 0:
        pixels = pixels + sharpen * (pixels - cv2.GaussianBlur(pixels, (0, 0), 1.0))
    out = np.clip(pixels * 255.0 + 0.5, 0, 255).astype(np.uint8)
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(out, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.cvtColor(cv2.imdecode(encoded, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB) if ok else out


def sample_variant(
    kind: str, rng: np.random.Generator, box: tuple[float, float, float, float] | None = None,
    margins: tuple[float, float] = TRAIN_CROP_MARGINS,
) -> Callable[[np.ndarray], np.ndarray]:
    """One random instance of variant ``kind`` (``box``: the face box, for ``tight_crop``), as a
    function that applies the same transform to every image it is given."""
    if kind == "grayscale":
        return grayscale
    if kind == "low_resolution":
        scale = float(rng.uniform(*LOW_RESOLUTION_SCALES))
        return lambda image: shrink(image, scale)
    if kind == "tight_crop":
        if box is None:
            raise ValueError("tight_crop needs the face box")
        margin = float(rng.uniform(*margins))
        return lambda image: tight_crop(image, box, margin)
    if kind == "phone":
        saturation, gamma = float(rng.uniform(0.75, 1.35)), float(rng.uniform(0.85, 1.15))
        gains = rng.uniform(0.92, 1.08, size=3).astype(np.float32)
        sharpen, quality = float(rng.uniform(0.0, 0.8)), int(rng.integers(40, 91))
        return lambda image: phone_style(image, saturation, gains, gamma, sharpen, quality)
    raise ValueError(f"unknown variant {kind!r}; known: {', '.join(VARIANTS)}")
