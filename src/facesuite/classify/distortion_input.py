"""How a face photo becomes the distortion network's input: the ``crop`` and ``frame`` views of
:mod:`facesuite.classify.distortion`, shared by the detector that runs the network, the PyTorch
network (:mod:`facesuite.classify.distortion_net`) and its trainer."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class InputSpec:
    """How an image becomes the network's input; saved with the weights. 0 disables a view."""

    base: int = 224
    crop: int = 96
    frame: int = 64


def to_base(image: np.ndarray, base: int) -> np.ndarray:
    """An RGB uint8 image resized to ``base`` x ``base`` (area filter when shrinking)."""
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    height, width = image.shape[:2]
    if (height, width) == (base, base):
        return image
    interpolation = cv2.INTER_AREA if min(height, width) > base else cv2.INTER_LINEAR
    return cv2.resize(image, (base, base), interpolation=interpolation)


def make_views(image: np.ndarray, spec: InputSpec) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The (crop, frame) uint8 views of one RGB image; a disabled view is None."""
    framed = to_base(image, spec.base)
    crop = frame = None
    if spec.crop:
        start = (spec.base - spec.crop) // 2
        crop = np.ascontiguousarray(framed[start : start + spec.crop, start : start + spec.crop])
    if spec.frame:
        frame = cv2.resize(framed, (spec.frame, spec.frame), interpolation=cv2.INTER_AREA)
    return crop, frame
