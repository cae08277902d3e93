"""Similarity alignment of a face on its five landmarks.

The canonical template below places left eye, right eye, nose tip and the two mouth corners (the
points MTCNN returns) in a unit face square. It was fitted once (``benchmarks/fit_template.py``)
as the median position of MTCNN's landmarks inside dlib's own 5-point aligned chips on FACECOM, so
chips made here line up with what dlib's face ResNet was trained on, without running a second
landmark model.
"""

from __future__ import annotations

import cv2
import numpy as np

# Landmarks in the unit face square (dlib's padding=0 frame): x right, y down.
TEMPLATE = np.array(
    [
        [0.2317, 0.2184],  # left eye (image left)
        [0.7879, 0.2194],  # right eye
        [0.5089, 0.5401],  # nose tip
        [0.2662, 0.8286],  # left mouth corner
        [0.7500, 0.8311],  # right mouth corner
    ],
    dtype=np.float64,
)

# The same five points relative to an MTCNN face box (x1, y1)-(x2, y2), from the same fit:
# they give a fallback box the landmarks a detected face of that box would typically have.
BOX_TEMPLATE = np.array(
    [[0.2864, 0.3917], [0.7437, 0.3872], [0.5184, 0.5856], [0.3241, 0.7630], [0.7208, 0.7570]],
    dtype=np.float64,
)


def template_points(size: int, padding: float) -> np.ndarray:
    """Template landmarks in pixel coordinates of a ``size`` square chip with ``padding``."""
    return (TEMPLATE + padding) / (1.0 + 2.0 * padding) * size


def alignment_matrix(landmarks: np.ndarray, size: int, padding: float) -> np.ndarray:
    """2x3 similarity transform (rotation, uniform scale, shift) taking landmarks to the template."""
    source = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    target = template_points(size, padding)
    matrix, _ = cv2.estimateAffinePartial2D(source, target, method=cv2.LMEDS)
    if matrix is None:  # degenerate landmarks (all equal): fall back to a pure least-squares fit
        matrix = _least_squares_similarity(source, target)
    return matrix


def _least_squares_similarity(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    source_mean, target_mean = source.mean(0), target.mean(0)
    src, dst = source - source_mean, target - target_mean
    denom = max(float((src**2).sum()), 1e-12)
    a = float((src * dst).sum()) / denom
    b = float((src[:, 0] * dst[:, 1] - src[:, 1] * dst[:, 0]).sum()) / denom
    rotation = np.array([[a, -b], [b, a]])
    shift = target_mean - rotation @ source_mean
    return np.hstack([rotation, shift[:, None]])


def align(image: np.ndarray, landmarks: np.ndarray, size: int = 150, padding: float = 0.25) -> np.ndarray:
    """Warp ``image`` so the five ``landmarks`` land on the template; returns a ``size`` square chip."""
    matrix = alignment_matrix(landmarks, size, padding)
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def landmarks_in_box(box: tuple[float, float, float, float]) -> np.ndarray:
    """Template landmarks placed inside a face box: used when no face was detected."""
    x1, y1, x2, y2 = box
    return np.column_stack([x1 + BOX_TEMPLATE[:, 0] * (x2 - x1), y1 + BOX_TEMPLATE[:, 1] * (y2 - y1)])
