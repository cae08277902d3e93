"""Face detection (MTCNN) and 5-point alignment, with a centre-box fallback and a disk cache.

    detector = FaceDetector()
    face = detector.detect_one(image)          # the main face, or a flagged centre-box fallback
    chip = face.chip(image, size=150, padding=0.25)

MTCNN's P/R/O-net weights ship inside ``facenet-pytorch``, so nothing is downloaded; the cascade
itself is ours (:mod:`facesuite.detect.mtcnn`), batched over same-size images.
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
    """What the detector does; the fields that change MTCNN's answer form the cache key.

    ``min_face_size`` 40 px skips MTCNN's most expensive (largest) pyramid level; we keep the
    most prominent face of an image, so smaller faces rarely matter. ``retry_enhanced`` runs detection
    again on denoised / exposure-corrected copies of images where nothing was found.
    ``fallback_box`` is ``(centre_x, centre_y, width, height)`` as fractions of the image: the
    median MTCNN box on FACECOM's LFW-style frames, where the face sits in the middle of the
    224 px frame. Whole-frame fallback would ruin recognition downstream.
    ``assume_cropped`` skips detection and treats the image as a face crop.
    ``all_faces`` keeps every face found instead of the most prominent one only.
    """

    min_face_size: int = 40
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    min_score: float = 0.9
    retry_enhanced: bool = True
    fallback_box: tuple[float, float, float, float] = (0.50, 0.51, 0.37, 0.49)
    assume_cropped: bool = False
    all_faces: bool = False

    def key(self) -> str:
        """Cache key: only what changes the detection itself (fallback is applied afterwards)."""
        detection = {k: v for k, v in asdict(self).items() if k not in ("fallback_box", "assume_cropped", "all_faces")}
        # The cache keeps an image's first face only, so how faces are ranked is part of the key.
        return json.dumps({**detection, "ranking": "prominence"}, sort_keys=True)


def visible_area(box: tuple[float, float, float, float], width: int, height: int) -> float:
    """The area of ``box`` inside a ``width`` x ``height`` frame (MTCNN's boxes may reach outside)."""
    left, top, right, bottom = box
    return max(0.0, min(right, width) - max(left, 0.0)) * max(0.0, min(bottom, height) - max(top, 0.0))


def prominence(box: tuple[float, float, float, float], width: int, height: int) -> float:
    """How much a face is the photo's subject: its box's area inside the frame, less twice the
    squared distance (pixels) of its centre from the frame's centre. MTCNN's boxes of faces cut by
    the frame's edge reach outside it, and ranking by their full area put a face away from the
    centre first (mostly a bystander half out of the picture) in 46 of the 182 training photos
    with two or more faces; ranked by this, in none (by visible area alone, in 1). Training photos:
    the FACECOM training identities' clean photos and every 10th UTKFace training file, 2,765
    (``python benchmarks/main_face.py``)."""
    left, top, right, bottom = box
    offset = ((left + right - width) / 2) ** 2 + ((top + bottom - height) / 2) ** 2
    return visible_area(box, width, height) - 2.0 * offset


def fallback_face(shape: tuple[int, ...], settings: DetectorSettings, cropped: bool = False) -> Face:
    """The centre box (or, for pre-cropped faces, the inner face region) with template landmarks."""
    height, width = shape[:2]
    if cropped:
        # A tight face crop: MTCNN's box of such a crop is about the inner 80% of the frame.
        box = (0.1 * width, 0.1 * height, 0.9 * width, 0.9 * height)
    else:
        cx, cy, box_w, box_h = settings.fallback_box
        box = ((cx - box_w / 2) * width, (cy - box_h / 2) * height, (cx + box_w / 2) * width, (cy + box_h / 2) * height)
    return Face(box=box, landmarks=landmarks_in_box(box), score=0.0, fallback=not cropped)


def _median_filtered(image: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.medianBlur(image, 5)


def _exposure_corrected(image: np.ndarray) -> np.ndarray:
    import cv2

    scaled = image.astype(np.float32) / 255.0
    gamma = np.log(0.45) / np.log(float(np.clip(scaled.mean(), 0.02, 0.98)))
    corrected = (np.clip(scaled**gamma, 0, 1) * 255).astype(np.uint8)
    lab = cv2.cvtColor(corrected, cv2.COLOR_RGB2LAB)
    lab[..., 0] = cv2.createCLAHE(clipLimit=3.0, tileGridSize=(8, 8)).apply(lab[..., 0])
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)


class FaceDetector:
    """MTCNN face detector returning :class:`Face` objects; batched over same-size images."""

    def __init__(self, settings: DetectorSettings | None = None) -> None:
        self.settings = settings or DetectorSettings()
        self._mtcnn = None

    def _model(self):
        from facesuite.parallel import model_loading

        with model_loading:
            if self._mtcnn is None:
                from facesuite.detect.mtcnn import MTCNNRunner

                self._mtcnn = MTCNNRunner(self.settings.min_face_size, self.settings.thresholds)
        return self._mtcnn

    def detect(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        """All faces per image, most prominent first (:func:`prominence`: the largest visible
        face, favouring the centre); an empty list where none passed ``min_score``."""
        if self.settings.assume_cropped:
            return [[fallback_face(image.shape, self.settings, cropped=True)] for image in images]
        results: list[list[Face]] = [[] for _ in images]
        # MTCNN's pyramid starts at faces of min_face_size pixels: an image smaller than that has
        # no pyramid level and cannot hold a face.
        detectable = [i for i, image in enumerate(images) if min(image.shape[:2]) >= self.settings.min_face_size]
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for index in detectable:
            by_shape.setdefault(images[index].shape, []).append(index)
        for indices in by_shape.values():
            self._detect_into(results, indices, [images[i] for i in indices])
        # Second chances for images where nothing was found, on cleaned-up copies: a 5x5 median
        # removes salt-and-pepper noise and rain streaks; CLAHE after a gamma that pulls the mean
        # to mid-grey recovers some washed-out faces. Landmarks carry over to the original.
        for enhance in (_median_filtered, _exposure_corrected) if self.settings.retry_enhanced else ():
            missing = [i for i in detectable if not results[i]]
            for shape in {images[i].shape for i in missing}:
                indices = [i for i in missing if images[i].shape == shape]
                self._detect_into(results, indices, [enhance(images[i]) for i in indices])
        return results

    def _detect_into(self, results: list[list[Face]], indices: list[int], images: list[np.ndarray]) -> None:
        height, width = images[0].shape[:2]  # one batch holds images of one size
        for slot, (boxes, landmarks) in zip(indices, self._model().detect(np.stack(images))):
            faces = [Face(box=tuple(float(v) for v in box[:4]), landmarks=points, score=float(box[4]))  # type: ignore[arg-type]
                     for box, points in zip(boxes, landmarks) if box[4] >= self.settings.min_score]
            results[slot] = sorted(faces, key=lambda f: prominence(f.box, width, height), reverse=True)

    def detect_main(self, images: Sequence[np.ndarray]) -> list[Face]:
        """Per image, the most prominent face, or the flagged fallback box when none is found."""
        return [faces[0] if faces else fallback_face(image.shape, self.settings)
                for image, faces in zip(images, self.detect(images))]

    def detect_one(self, image: np.ndarray) -> Face:
        """The most prominent face, or the flagged fallback box when none is found."""
        return self.detect_main([image])[0]
