"""How a face photo becomes the distortion network's input: the ``crop`` and ``frame`` views of
:mod:`facesuite.classify.distortion`, shared by the detector that runs the network, the PyTorch
network (:mod:`facesuite.classify.distortion_net`) and its trainer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    from facesuite.detect import Detection


@dataclass(frozen=True)
class InputSpec:
    """How an image becomes the network's input; saved with the weights. 0 disables a view."""

    base: int = 224
    crop: int = 96
    frame: int = 64
    framing: str = "photo"  # one of distortion.FRAMINGS; models saved before it existed read the photo


def to_base(image: np.ndarray, base: int) -> np.ndarray:
    """An RGB uint8 image resized to ``base`` x ``base`` (area filter when shrinking)."""
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    height, width = image.shape[:2]
    if (height, width) == (base, base):
        return image
    interpolation = cv2.INTER_AREA if min(height, width) > base else cv2.INTER_LINEAR
    return cv2.resize(image, (base, base), interpolation=interpolation)


#: Side of a face's own frame in a group photo, in face-box sides: the median ratio of frame side
#: to detected box side of FACECOM's clean training frames (one face in the middle of each), which
#: is what the network was trained to read (2.48-3.14 from the 10th to the 90th percentile).
FRAME_PER_BOX = 2.74
#: A face's frame narrower than this share of the photo's longer side marks a group photo.
GROUP_SHARE = 0.9


def distortion_input(image: np.ndarray, box: tuple[float, float, float, float] | None, faces_in_image: int,
                     framing: str = "photo") -> np.ndarray:
    """What the distortion detector reads for the face in ``box`` (None: no face was detected,
    the whole photo is read). With ``face`` framing, :func:`face_frame`. With ``photo`` framing,
    the whole photo, as it was trained, unless the photo holds several faces and is much larger
    than this face's own frame (a group photo, not a portrait with a bystander at its edge): then
    :func:`face_frame` too."""
    if box is None:
        return image
    if framing == "face":
        return face_frame(image, box)
    x1, y1, x2, y2 = box
    own = FRAME_PER_BOX * max(x2 - x1, y2 - y1)
    if faces_in_image <= 1 or own >= GROUP_SHARE * max(image.shape[:2]):
        return image
    return face_frame(image, box)


def face_frame(image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """The square around one face of ``image`` framed as a one-face photo of the training data,
    ``FRAME_PER_BOX`` box sides wide, centred on the box; where it leaves the image the border is
    mirrored (a black or smeared border reads as a distortion)."""
    x1, y1, x2, y2 = box
    side = max(1, round(FRAME_PER_BOX * max(x2 - x1, y2 - y1)))
    left, top = round((x1 + x2 - side) / 2), round((y1 + y2 - side) / 2)
    height, width = image.shape[:2]
    pad = max(0, -left, -top, left + side - width, top + side - height)
    if pad:
        # Mirroring reaches at most one image side; beyond that the border repeats.
        image = cv2.copyMakeBorder(image, pad, pad, pad, pad,
                                   cv2.BORDER_REFLECT_101 if pad < min(height, width) else cv2.BORDER_REPLICATE)
    return np.ascontiguousarray(image[top + pad : top + pad + side, left + pad : left + pad + side])


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


def face_input(image: np.ndarray, face: Detection, framing: str) -> np.ndarray:
    """:func:`distortion_input` for a detection: its box is read only where the detector found the
    face (a centre box or an assumed crop is read as the whole photo)."""
    return distortion_input(image, face.box if face.detected else None, face.faces_in_image, framing)


def photo_reader(framing: str) -> Callable[[np.ndarray], np.ndarray]:
    """How a whole photo becomes the image the network reads, as the analyzer reads its main face:
    the photo itself, or with ``face`` framing the frame around the face the default detector finds
    first (the whole photo when it finds none). Used by the trainer and by whole-photo prediction."""
    if framing == "photo":
        return lambda image: image
    from facesuite.detect import FaceDetector

    detector = FaceDetector()

    return lambda image: face_input(image, detector.detect_one(image), framing)
