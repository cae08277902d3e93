"""MTCNN's three-stage cascade (P-Net proposals, R-Net refinement, O-Net boxes and landmarks),
batched over same-size images.

The three networks ship inside facesuite as ONNX files (``facesuite/models/mtcnn``, hash-checked,
model card beside them), exported by ``python -m facesuite.train.export`` from the P/R/O-Net
weights of ``facenet-pytorch`` (MIT licence) through :mod:`facesuite.detect.mtcnn_nets`: detecting
never imports PyTorch or facenet-pytorch. The cascade follows the same published algorithm and constants
as facenet-pytorch's (pyramid factor 0.709, NMS at 0.5 within a scale and 0.7 after each stage,
"area" resampling, O-Net boxes merged by intersection over the smaller box), so boxes and landmarks
agree with it (``tests/test_detect.py`` compares them on real images).

What differs is how the work is laid out: the three networks run under ONNX Runtime, and every
resampling (the pyramid levels, and each candidate box to 24 or 48 px) is read from one
summed-area table per batch, all boxes of a stage at once, instead of one pooling call per
candidate box.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from facesuite.config import MODELS_DIR, onnx_session
from facesuite.integrity import verify_model_file

PYRAMID_FACTOR = 0.709  # each pyramid level is this fraction of the previous one
WINDOW = 12  # P-Net's receptive field: a face of min_face_size px is scaled to 12 px
STRIDE = 2  # P-Net's output grid step, in pixels of the scaled image
NETWORK_NAMES = ("pnet", "rnet", "onet")
_RUN_SIZE = 16  # crops per network run


def network_file(name: str) -> Path:
    """The shipped ONNX file of ``pnet``, ``rnet`` or ``onet``."""
    return MODELS_DIR / "mtcnn" / f"{name}.onnx"


def _onnx_runner(name: str) -> Callable[[np.ndarray], list[np.ndarray]]:
    """The shipped network under ONNX Runtime, hash-checked first."""
    path = network_file(name)
    verify_model_file(path)
    session = onnx_session(path)

    def run(batch: np.ndarray) -> list[np.ndarray]:
        # R- and O-Net see a hundred or more crops per detection batch; in runs of 16 their
        # activations stay in cache: 10-15% less time per crop than one run of them all.
        if len(batch) <= _RUN_SIZE:
            return session.run(None, {"pixels": batch})
        parts = [session.run(None, {"pixels": batch[start : start + _RUN_SIZE]}) for start in range(0, len(batch), _RUN_SIZE)]
        return [np.concatenate(outputs) for outputs in zip(*parts)]
    return run


def _bins(sizes: np.ndarray, out: int) -> tuple[np.ndarray, np.ndarray]:
    """"Area" resampling of lengths ``sizes`` to ``out`` cells: per length, the first and one-past-
    last input pixel each cell averages, ``floor(i * size / out)`` to ``ceil((i + 1) * size / out)``
    (PyTorch's adaptive average pooling, which the reference MTCNN resamples with)."""
    cells = np.arange(out)
    sizes = np.asarray(sizes)[..., None]
    return (cells * sizes) // out, -((-(cells + 1) * sizes) // out)


def _integral(pixels: np.ndarray) -> np.ndarray:
    """Summed-area table of ``(N, H, W, 3)`` uint8 images: ``(N, H + 1, W + 1, 3)`` integers, exact,
    so every box average below is one lookup of four corners, for any number of boxes at once.
    32-bit while a whole image's sum fits (up to 8 megapixels), half the memory traffic of 64;
    channels last, so one lookup fetches a pixel's three channels together."""
    height, width = pixels.shape[1:3]
    if height * width * 255 < 2**31:
        return np.stack([cv2.integral(image, sdepth=cv2.CV_32S) for image in pixels])
    return np.stack([cv2.integral(image, sdepth=cv2.CV_64F) for image in pixels]).astype(np.int64)


def _box_means(table: np.ndarray, image, top: np.ndarray, bottom: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Mean of each ``[top, bottom) x [left, right)`` cell, per channel, from an integral table, as
    a contiguous ``(..., 3, rows, cols)`` float32 array; ``top``/``bottom`` are ``(..., rows)`` and
    ``left``/``right`` ``(..., cols)`` with matching leading axes (``image`` indexes the table's
    first axis the same way)."""
    # One flat index per corner and a take() along the first axis: several times faster than
    # indexing the 4-D table with three broadcast index arrays.
    flat, stride = table.reshape(-1, 3), table.shape[2]
    base = image * (table.shape[1] * stride)

    def corner(rows, cols):
        return flat.take(base + rows[..., :, None] * stride + cols[..., None, :], axis=0)
    sums = corner(bottom, right) - corner(top, right) - corner(bottom, left) + corner(top, left)
    areas = (bottom - top)[..., :, None, None] * (right - left)[..., None, :, None]
    return np.ascontiguousarray((sums / areas).astype(np.float32).transpose(0, 3, 1, 2))


def _normalised(pixels: np.ndarray) -> np.ndarray:
    return (pixels - 127.5) * 0.0078125


def _nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, smaller: bool = False) -> np.ndarray:
    """Greedy non-maximum suppression, best score first: indices kept. Overlap is intersection
    over union of the areas, or with ``smaller`` over the smaller box's area counting pixels
    inclusively (O-Net's merge)."""
    if not smaller:
        # OpenCV's greedy NMS keeps what a greedy loop over IoU keeps (it sorts stably, as below), and
        # runs no Python loop over the hundreds of boxes P- and R-Net send: 1.2 -> 0.3 ms an image.
        sides = np.concatenate([boxes[:, :2], boxes[:, 2:4] - boxes[:, :2]], axis=1).astype(np.float64)
        return np.asarray(cv2.dnn.NMSBoxes(sides, scores.astype(np.float64), 0.0, threshold), dtype=np.int64).reshape(-1)
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    # Equal scores are common (O-Net saturates at 0.999998 on large clear faces): the first of
    # equals (best by the previous stage) wins. facenet-pytorch's merge leaves it to NumPy's
    # unstable sort, so on such faces its box depends on the batch, and may differ from ours.
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(best)
        width = np.maximum(0.0, np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]) + 1)
        height = np.maximum(0.0, np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]) + 1)
        order = rest[width * height / np.minimum(areas[best], areas[rest]) <= threshold]
    return np.asarray(keep, dtype=np.int64)


def _nms_per_image(boxes: np.ndarray, owners: np.ndarray, threshold: float, smaller: bool = False) -> np.ndarray:
    """:func:`_nms` within each image of the batch (``owners``: the image of each box); kept
    indices in image order."""
    kept = [np.flatnonzero(owners == image)[_nms(boxes[owners == image, :4], boxes[owners == image, 4], threshold, smaller)]
            for image in np.unique(owners)]
    return np.concatenate(kept) if kept else np.zeros(0, dtype=np.int64)


def _squared(boxes: np.ndarray) -> np.ndarray:
    """Each box grown to a square on its longer side, about the same centre."""
    width, height = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = np.maximum(width, height)
    boxes[:, 0] += width * 0.5 - side * 0.5
    boxes[:, 1] += height * 0.5 - side * 0.5
    boxes[:, 2] = boxes[:, 0] + side
    boxes[:, 3] = boxes[:, 1] + side
    return boxes


def _regressed(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Boxes moved by a network's offsets, given as fractions of the (inclusive) box size."""
    size = np.stack([boxes[:, 2] - boxes[:, 0] + 1, boxes[:, 3] - boxes[:, 1] + 1] * 2, axis=1)
    boxes[:, :4] += offsets * size
    return boxes


class MTCNNRunner:
    """The cascade over a batch of same-size RGB images: per image, ``(boxes (n, 5): x1, y1, x2,
    y2, probability; landmarks (n, 5, 2))``. Faces smaller than ``min_face_size`` pixels are not
    looked for; ``thresholds`` are the P/R/O-Net probabilities a candidate must pass.

    The networks run under ONNX Runtime: on R- and O-Net's many small crops it measured about
    three times faster than PyTorch's CPU kernels (whose max-pooling dominated), and the whole
    cascade 1.4-1.8x faster than facenet-pytorch's on FACECOM batches of 32, same boxes."""

    def __init__(self, min_face_size: int = 40, thresholds: Sequence[float] = (0.6, 0.7, 0.7)) -> None:
        self.min_face_size = min_face_size
        self.thresholds = tuple(thresholds)
        self.pnet, self.rnet, self.onet = (_onnx_runner(name) for name in NETWORK_NAMES)

    def scales(self, height: int, width: int) -> list[float]:
        """The pyramid for one image size: from the scale that makes a ``min_face_size`` face
        12 px, shrinking by 0.709 while the image's short side still holds a 12 px window."""
        scale, side, scales = WINDOW / self.min_face_size, min(height, width) * WINDOW / self.min_face_size, []
        while side >= WINDOW:
            scales.append(scale)
            scale *= PYRAMID_FACTOR
            side *= PYRAMID_FACTOR
        return scales

    def detect(self, images: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """``images``: ``(N, H, W, 3)`` uint8 RGB, one size."""
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3:
            raise ValueError(f"expected (N, H, W, 3) uint8 RGB images, got {images.shape} {images.dtype}")
        count = len(images)
        table = _integral(images)
        boxes = self._propose(table)
        if len(boxes):
            boxes = self._refine(table, boxes)
        landmarks = np.zeros((0, 5, 2), dtype=np.float32)
        if len(boxes):
            boxes, landmarks = self._output(table, boxes)
        owners = boxes[:, 5].astype(np.int64) if len(boxes) else np.zeros(0, dtype=np.int64)
        return [(boxes[owners == i, :5].astype(np.float64), landmarks[owners == i].astype(np.float64)) for i in range(count)]

    # Boxes travel as float32 rows (x1, y1, x2, y2, score, image index), float32 as in the
    # reference, so the pixel a box is cut at rounds the same way.

    def _propose(self, table: np.ndarray) -> np.ndarray:
        height, width = table.shape[1] - 1, table.shape[2] - 1
        found = []
        for scale in self.scales(height, width):
            (top, bottom), (left, right) = _bins(height, int(height * scale + 1)), _bins(width, int(width * scale + 1))
            every = np.arange(len(table))[:, None, None]
            scaled = _box_means(table, every, top, bottom, left, right)
            probability, offsets = self.pnet(_normalised(scaled))
            image, row, col = np.nonzero(probability >= self.thresholds[0])
            if not len(image):
                continue
            corner = np.stack([col, row], axis=1).astype(np.float32) * STRIDE
            candidates = np.concatenate([
                np.floor((corner + 1) / np.float32(scale)), np.floor((corner + WINDOW) / np.float32(scale)),
                probability[image, row, col][:, None], image[:, None].astype(np.float32),
                offsets[image, :, row, col],
            ], axis=1).astype(np.float32)
            found.append(candidates[_nms_per_image(candidates, image, 0.5)])
        if not found:
            return np.zeros((0, 6), dtype=np.float32)
        candidates = np.concatenate(found)
        candidates = candidates[_nms_per_image(candidates, candidates[:, 5].astype(np.int64), 0.7)]
        boxes, offsets = candidates[:, :6].copy(), candidates[:, 6:]
        # P-Net's offsets are fractions of the box size without the inclusive pixel.
        size = np.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]] * 2, axis=1)
        boxes[:, :4] += offsets * size
        return _squared(boxes)

    def _refine(self, table: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        boxes, crops = self._crops(table, boxes, 24)
        probability, offsets = self.rnet(crops)
        passed = probability > self.thresholds[1]
        boxes, offsets = boxes[passed], offsets[passed]
        boxes[:, 4] = probability[passed]
        kept = _nms_per_image(boxes, boxes[:, 5].astype(np.int64), 0.7)
        return _squared(_regressed(boxes[kept], offsets[kept]))

    def _output(self, table: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        boxes, crops = self._crops(table, boxes, 48)
        probability, offsets, points = self.onet(crops)
        passed = probability > self.thresholds[2]
        boxes, offsets, points = boxes[passed], offsets[passed], points[passed]
        boxes[:, 4] = probability[passed]
        # Landmarks are fractions of the box O-Net saw, before its own offsets move the box.
        size = np.stack([boxes[:, 2] - boxes[:, 0] + 1, boxes[:, 3] - boxes[:, 1] + 1], axis=1)
        landmarks = np.stack([points[:, :5], points[:, 5:]], axis=2) * size[:, None, :] + boxes[:, None, :2] - 1
        boxes = _regressed(boxes, offsets)
        kept = _nms_per_image(boxes, boxes[:, 5].astype(np.int64), 0.7, smaller=True)
        return boxes[kept], landmarks[kept]

    @staticmethod
    def _crops(table: np.ndarray, boxes: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
        """The boxes with a non-empty part inside their image, and that part of each resampled
        to ``size`` px and normalised: ``(n, 3, size, size)`` float32."""
        height, width = table.shape[1] - 1, table.shape[2] - 1
        corners = np.trunc(boxes[:, :4]).astype(np.int64)
        x1, y1 = np.maximum(corners[:, 0], 1) - 1, np.maximum(corners[:, 1], 1) - 1
        x2, y2 = np.minimum(corners[:, 2], width), np.minimum(corners[:, 3], height)
        usable = (x2 > x1) & (y2 > y1)
        x1, y1, x2, y2 = x1[usable], y1[usable], x2[usable], y2[usable]
        (top, bottom), (left, right) = _bins(y2 - y1, size), _bins(x2 - x1, size)
        image = boxes[usable, 5].astype(np.int64)[:, None, None]
        crops = _box_means(table, image, top + y1[:, None], bottom + y1[:, None], left + x1[:, None], right + x1[:, None])
        return boxes[usable], _normalised(crops)
