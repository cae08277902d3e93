"""Face detection (MTCNN) and 5-point alignment, with a centre-box fallback and a disk cache.

    detector = FaceDetector()
    face = detector.detect_one(image)          # largest face, or a flagged centre-box fallback
    chip = face.chip(image, size=150, padding=0.25)

MTCNN's P/R/O-net weights ship inside ``facenet-pytorch``, so nothing is downloaded.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from facesuite.detect.align import align, landmarks_in_box


@dataclass(frozen=True)
class Face:
    """One face in an image: box ``(x1, y1, x2, y2)``, five landmarks, detector score.

    ``fallback`` is true when no face was detected and the box is the configured centre box.
    """

    box: tuple[float, float, float, float]
    landmarks: np.ndarray = field(repr=False)
    score: float
    fallback: bool = False

    def chip(self, image: np.ndarray, size: int = 150, padding: float = 0.25) -> np.ndarray:
        """The aligned face crop of this face in ``image``."""
        return align(image, self.landmarks, size, padding)

    def to_dict(self) -> dict:
        record = asdict(self)
        record["box"] = [round(float(v), 2) for v in self.box]
        record["landmarks"] = np.round(np.asarray(self.landmarks, dtype=float), 2).tolist()
        record["score"] = round(float(self.score), 4)
        return record

    @classmethod
    def from_dict(cls, record: dict) -> Face:
        return cls(
            box=tuple(float(v) for v in record["box"]),  # type: ignore[arg-type]
            landmarks=np.asarray(record["landmarks"], dtype=np.float64),
            score=float(record["score"]),
            fallback=bool(record["fallback"]),
        )


@dataclass(frozen=True)
class DetectorSettings:
    """Everything that changes what the detector returns (and so is part of the cache key).

    ``fallback_box`` is ``(centre_x, centre_y, side)`` as fractions of the image width/height and
    of the shorter side. The default fits LFW-style framing, where the face is about 90 px wide
    in the middle of a 224 px frame; whole-frame fallback would ruin recognition downstream.
    ``assume_cropped`` skips detection and treats the whole image as the face box.
    """

    min_face_size: int = 20
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    min_score: float = 0.9
    fallback_box: tuple[float, float, float] = (0.5, 0.53, 0.42)
    assume_cropped: bool = False

    def key(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def fallback_face(shape: tuple[int, ...], settings: DetectorSettings, cropped: bool = False) -> Face:
    """The centre box (or the whole image, for pre-cropped faces) with template landmarks."""
    height, width = shape[:2]
    if cropped:
        # A tight face crop: the MTCNN box of such a crop is about the inner 80% of the frame.
        box = (0.1 * width, 0.1 * height, 0.9 * width, 0.9 * height)
    else:
        cx, cy, side = settings.fallback_box
        half = side * min(width, height) / 2.0
        box = (cx * width - half, cy * height - half, cx * width + half, cy * height + half)
    return Face(box=box, landmarks=landmarks_in_box(box), score=0.0, fallback=not cropped)


class FaceDetector:
    """MTCNN face detector returning :class:`Face` objects; batched over same-size images."""

    def __init__(self, settings: DetectorSettings | None = None, device: str | None = None) -> None:
        self.settings = settings or DetectorSettings()
        self._device = device
        self._mtcnn = None

    def _model(self):
        if self._mtcnn is None:
            import torch
            from facenet_pytorch import MTCNN

            device = self._device or ("cuda" if torch.cuda.is_available() else "cpu")
            self._mtcnn = MTCNN(
                min_face_size=self.settings.min_face_size,
                thresholds=list(self.settings.thresholds),
                keep_all=True,
                post_process=False,
                device=device,
            )
        return self._mtcnn

    def detect(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        """All faces per image (largest first); an empty list where none passed ``min_score``."""
        if self.settings.assume_cropped:
            return [[fallback_face(image.shape, self.settings, cropped=True)] for image in images]
        results: list[list[Face]] = [[] for _ in images]
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for index, image in enumerate(images):
            by_shape.setdefault(image.shape, []).append(index)
        for indices in by_shape.values():
            batch = np.stack([images[i] for i in indices])
            boxes, scores, points = self._model().detect(batch, landmarks=True)
            for slot, i in enumerate(indices):
                results[i] = self._faces(boxes[slot], scores[slot], points[slot])
        return results

    def _faces(self, boxes, scores, points) -> list[Face]:
        if boxes is None:
            return []
        # facenet-pytorch returns object arrays under numpy 2: make them numeric.
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        points = np.asarray(points, dtype=np.float64).reshape(-1, 5, 2)
        faces = [
            Face(box=tuple(box), landmarks=pts, score=float(score))  # type: ignore[arg-type]
            for box, score, pts in zip(boxes, scores, points)
            if score >= self.settings.min_score
        ]
        return sorted(faces, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]), reverse=True)

    def detect_one(self, image: np.ndarray) -> Face:
        """The largest face, or the flagged fallback box when none is found."""
        return self.detect_batch([image])[0]

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[Face]:
        """The largest face per image, each falling back to the centre box when none is found."""
        return [faces[0] if faces else fallback_face(image.shape, self.settings) for faces, image in zip(self.detect(images), images)]
