"""Face detection (MTCNN) and 5-point alignment, with a centre-box fallback and a disk cache.

    detector = FaceDetector()
    face = detector.detect_one(image)          # the main face, or a flagged centre-box fallback
    chip = face.chip(image, size=150, padding=0.25)

MTCNN's P/R/O-nets ship inside facesuite as ONNX files (``models/mtcnn``), so nothing is
downloaded; the cascade itself is ours (:mod:`facesuite.detect.mtcnn`), batched over same-size
images.

However the photo was framed: a face that fills the frame (an ID photo, a data-set crop) is looked
for again on the photo with a black border, and a photo where no face is found, or only a weak
one, is looked at turned by 90, 180 and 270 degrees. Boxes and landmarks are always in the
photo's own pixels; :attr:`Detection.turn` says which turn found the face.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from facesuite.detect.align import align, landmarks_in_box


@dataclass(frozen=True)
class Detection:
    """One face in an image: box ``(x1, y1, x2, y2)``, five landmarks, detector score.

    ``fallback`` is true when no face was detected and the box is the configured centre box.
    """

    box: tuple[float, float, float, float]
    landmarks: np.ndarray = field(repr=False)
    score: float
    fallback: bool = False
    # Degrees (counter-clockwise) the photo was turned for the face to stand upright; the
    # landmarks are the upright face's, so the chip aligned on them is upright too.
    turn: int = 0
    # How many faces the detector found in the image (0 for a fallback box): the distortion of a
    # face in a group photo is read around that face, not from the whole photo.
    faces_in_image: int = 1

    @property
    def detected(self) -> bool:
        """Whether the detector found this face (not a centre box or an assumed crop)."""
        return not self.fallback and self.score > 0.0

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
    def from_dict(cls, record: dict) -> Detection:
        return cls(
            box=tuple(float(v) for v in record["box"]),  # type: ignore[arg-type]
            landmarks=np.asarray(record["landmarks"], dtype=np.float64),
            score=float(record["score"]),
            fallback=bool(record["fallback"]),
            turn=int(record.get("turn", 0)),
            faces_in_image=int(record.get("faces_in_image", 1)),
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
        # The cache keeps an image's first face only, so how faces are ranked, and the second
        # looks (a border, turns), are part of the key.
        return json.dumps({**detection, "ranking": "prominence", "framing": "border-when-filling, turns below 0.9995 by 1.3 logits from 0.99"}, sort_keys=True)


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


def fallback_face(shape: tuple[int, ...], settings: DetectorSettings, cropped: bool = False) -> Detection:
    """The centre box (or, for pre-cropped faces, the inner face region) with template landmarks."""
    height, width = shape[:2]
    if cropped:
        # A tight face crop: MTCNN's box of such a crop is about the inner 80% of the frame.
        box = (0.1 * width, 0.1 * height, 0.9 * width, 0.9 * height)
    else:
        cx, cy, box_w, box_h = settings.fallback_box
        box = ((cx - box_w / 2) * width, (cy - box_h / 2) * height, (cx + box_w / 2) * width, (cy + box_h / 2) * height)
    return Detection(box=box, landmarks=landmarks_in_box(box), score=0.0, fallback=not cropped, faces_in_image=int(cropped))


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


# A face whose box is this much of the frame's shorter side, or reaches outside the frame, is
# looked for again on the photo with a border. On tight crops (the face box plus 0-10%) MTCNN's
# box is 1.3-1.9 times the frame when it goes wrong; FACECOM's LFW-style frames hold faces of
# about 0.4, and close-ups up to 0.8 that it finds right.
FILLING_SHARE = 0.9
BORDER_SHARE = 0.25  # border on each side, as a share of the photo's longer side
# Turns, chosen on 300 training photos each upright, upside down and on its side:
# - a best face scoring below TURN_CHECK_SCORE is also looked for in the turned photo. An
#   upside-down face can pass for an upright one at 0.991-0.9994 (11 of 300); 90% of upright
#   photos score 0.9995 or more;
# - a turn wins where its best face's score is above the best so far by TURN_MARGIN in logits:
#   upright photos' turns came at most 0.85 above them, the upside-down faces' own turn 1.83 and
#   more above their false upright face but for one (0.44);
# - a face found in a turned photo counts only from TURNED_MIN_SCORE: turned upright, 600
#   training photos on their side or upside down gave faces of 0.996 and more, where the turned
#   boxes found in blown-out photos (a dress's lace, a whole frame) score 0.92-0.95.
TURN_CHECK_SCORE = 0.9995
TURN_MARGIN = 1.3
TURNED_MIN_SCORE = 0.99
ALWAYS = -np.inf  # a replace margin no score difference fails


def _logit(score: float) -> float:
    clipped = min(max(score, 1e-7), 1.0 - 1e-7)
    return float(np.log(clipped / (1.0 - clipped)))

# A view of a photo for the detector: its pixels, and how a face found there maps back.
View = Callable[[np.ndarray], tuple[np.ndarray, Callable[[Detection], Detection]]]


def fills_frame(box: tuple[float, float, float, float], width: int, height: int) -> bool:
    """Whether a face box reaches outside a ``width`` x ``height`` frame or nearly fills it."""
    left, top, right, bottom = box
    outside = left < 0 or top < 0 or right > width or bottom > height
    return outside or max(right - left, bottom - top) > FILLING_SHARE * min(width, height)


def _moved(face: Detection, points: Callable[[np.ndarray], np.ndarray], turn: int = 0) -> Detection:
    """``face`` with its box corners and landmarks passed through ``points`` ((n, 2) -> (n, 2))."""
    x1, y1, x2, y2 = face.box
    corners = points(np.array([[x1, y1], [x2, y2]], dtype=np.float64))
    low, high = corners.min(axis=0), corners.max(axis=0)
    return replace(face, box=(float(low[0]), float(low[1]), float(high[0]), float(high[1])),
                   landmarks=points(np.asarray(face.landmarks, dtype=np.float64)), turn=turn)


def _as_is(image: np.ndarray) -> tuple[np.ndarray, Callable[[Detection], Detection]]:
    return image, lambda face: face


def _bordered(image: np.ndarray) -> tuple[np.ndarray, Callable[[Detection], Detection]]:
    import cv2

    border = int(round(BORDER_SHARE * max(image.shape[:2])))
    framed = cv2.copyMakeBorder(image, border, border, border, border, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    return framed, lambda face: _moved(face, lambda p: p - border, face.turn)


def _enhanced(enhance: Callable[[np.ndarray], np.ndarray]) -> View:
    return lambda image: (enhance(image), lambda face: face)


def _turned(turn: int) -> View:
    """The photo turned ``turn`` degrees counter-clockwise (with a border, so a face filling the
    frame is found too); faces map back to the photo's own pixels."""
    def view(image: np.ndarray) -> tuple[np.ndarray, Callable[[Detection], Detection]]:
        height, width = image.shape[:2]
        framed, unframe = _bordered(np.ascontiguousarray(np.rot90(image, turn // 90)))

        def back(points: np.ndarray) -> np.ndarray:
            x, y = points[:, 0], points[:, 1]
            if turn == 90:
                return np.column_stack([width - y, x])
            if turn == 180:
                return np.column_stack([width - x, height - y])
            return np.column_stack([y, height - x])
        return framed, lambda face: _moved(unframe(face), back, turn)
    return view


class FaceDetector:
    """MTCNN face detector returning :class:`Detection` objects; batched over same-size images."""

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

    def detect(self, images: Sequence[np.ndarray]) -> list[list[Detection]]:
        """All faces per image, most prominent first (:func:`prominence`: the largest visible
        face, favouring the centre); an empty list where none passed ``min_score``."""
        if self.settings.assume_cropped:
            return [[fallback_face(image.shape, self.settings, cropped=True)] for image in images]
        results: list[list[Detection]] = [[] for _ in images]
        # MTCNN's pyramid starts at faces of min_face_size pixels: an image smaller than that has
        # no pyramid level and cannot hold a face.
        detectable = [i for i, image in enumerate(images) if min(image.shape[:2]) >= self.settings.min_face_size]
        self._look(results, images, detectable, _as_is)
        # A face that fills the frame: MTCNN's later stages see only the part of a box inside the
        # image, stretched, so its box reaches above the frame and the eyes land on the forehead.
        # On the photo with a black border the same face is found where it is.
        filling = [i for i in detectable if results[i] and fills_frame(results[i][0].box, *images[i].shape[1::-1])]
        self._look(results, images, filling, _bordered, replace_margin=ALWAYS)
        # Second chances for images where nothing was found, on cleaned-up copies: a 5x5 median
        # removes salt-and-pepper noise and rain streaks; CLAHE after a gamma that pulls the mean
        # to mid-grey recovers some washed-out faces. Landmarks carry over to the original. Then
        # with a border: a crop so tight that MTCNN found nothing in it.
        for view in (*(_enhanced(e) for e in (_median_filtered, _exposure_corrected) if self.settings.retry_enhanced), _bordered):
            self._look(results, images, [i for i in detectable if not results[i]], view)
        # A photo on its side or upside down: MTCNN finds no face, or a weak one with the eyes
        # still placed above the mouth. The turn whose best face scores highest wins.
        doubtful = [i for i in detectable if not results[i] or results[i][0].score < TURN_CHECK_SCORE]
        for turn in (90, 180, 270):
            self._look(results, images, doubtful, _turned(turn), replace_margin=TURN_MARGIN, min_score=TURNED_MIN_SCORE)
        return [[replace(face, faces_in_image=len(faces)) for face in faces] for faces in results]

    def _look(self, results: list[list[Detection]], images: Sequence[np.ndarray], indices: list[int], view: View,
              replace_margin: float | None = None, min_score: float = 0.0) -> None:
        """Detect on ``view`` of the images at ``indices`` (batched by size) and keep its faces
        scoring at least ``min_score``, in the original pixels, where the image had none, or where
        the view's best face scores more than ``replace_margin`` (logits) above the best face found
        so far (``ALWAYS``: whenever it finds one)."""
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for index in indices:
            by_shape.setdefault(images[index].shape, []).append(index)
        for same_size in by_shape.values():
            views = [view(images[i]) for i in same_size]
            found = self._detect_batch(np.stack([pixels for pixels, _ in views]))
            height, width = images[same_size[0]].shape[:2]
            for slot, (_, to_original), faces in zip(same_size, views, found):
                faces = [face for face in faces if face.score >= min_score]
                if not faces:
                    continue
                current = results[slot]
                if current and (replace_margin is None or _logit(faces[0].score) <= _logit(current[0].score) + replace_margin):
                    continue
                faces = [to_original(face) for face in faces]
                results[slot] = sorted(faces, key=lambda f: prominence(f.box, width, height), reverse=True)

    def _detect_batch(self, images: np.ndarray) -> list[list[Detection]]:
        """MTCNN's faces above ``min_score`` per image of one size, best score first."""
        found = []
        for boxes, landmarks in self._model().detect(images):
            faces = [Detection(box=tuple(float(v) for v in box[:4]), landmarks=points, score=float(box[4]))  # type: ignore[arg-type]
                     for box, points in zip(boxes, landmarks) if box[4] >= self.settings.min_score]
            found.append(sorted(faces, key=lambda f: f.score, reverse=True))
        return found

    def detect_main(self, images: Sequence[np.ndarray]) -> list[Detection]:
        """Per image, the most prominent face, or the flagged fallback box when none is found."""
        return [faces[0] if faces else fallback_face(image.shape, self.settings)
                for image, faces in zip(images, self.detect(images))]

    def detect_one(self, image: np.ndarray) -> Detection:
        """The most prominent face, or the flagged fallback box when none is found."""
        return self.detect_main([image])[0]
