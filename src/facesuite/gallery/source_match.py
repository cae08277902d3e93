"""Source-photo matching: is this probe a processed copy of an enrolled photo?

A re-encoded, blurred, noised, fogged, darkened, rained-on or overexposed copy of a photo keeps
the photo's whole frame (background, clothes, hair), even where the face itself is unreadable
(a sunny face is blown out to white). That is near-duplicate detection, not face recognition,
so it is reported apart from face matches (``match_kind: source``) and only fires when the very
photo is enrolled: another photo of the same person, or of the same scene a moment later,
must not match.

- **What is stored per gallery image** (:func:`frame_of`): the whole image as a 112 x 112
  8-bit grey frame after a 5 x 5 median filter (salt-and-pepper noise and rain streaks out),
  12,544 bytes.
- **Candidates**: the nearest frames by normalised cross-correlation of 28 x 28 band-pass
  thumbnails (one matrix product over the gallery; band-pass, because an overexposed copy's
  brightness no longer resembles its source's, while its edges that survive do).
- **Evidence** (geometric verification on the frame both share): the frame's band-pass detail
  (difference of Gaussians) in 8 x 8-pixel blocks; a block *agrees* when its normalised
  cross-correlation with the candidate's block exceeds 0.8. The evidence is the share of
  blocks textured in both frames that agree: a processed copy agrees almost everywhere its
  texture survives (saturated or flat regions do not count against it), while a different photo,
  even of the same scene (consecutive press frames, the same studio backdrop), disagrees where
  the person moved. A share over few blocks says less than one over many (an overexposed copy
  keeps texture only near the frame's edges), so what is compared with the threshold is the
  share's one-sided 95% lower confidence bound (Wilson).
- **Threshold**: fitted on the 679 FACECOM training identities (``benchmarks/source_match.py``):
  the largest share any training probe reached against a candidate that was not its source
  was 0.48 (a sunny probe), clean photos against each other 0.44; the threshold keeps a margin
  above both. Sources are found for 0.95+ of training probes of every type but rainy (0.78),
  whose streaks break blocks up.

- **The face must not disagree** (:func:`face_replaced`): a photo with another face pasted over
  the enrolled one keeps the whole frame, so the frame alone would name the enrolled person. So
  the blocks of the central ``FACE_INNER`` of the probe's face box are compared on their own:
  where fewer than ``FACE_AGREEMENT`` of them agree and at least ``FACE_DISAGREEING_BLOCKS``
  disagree, the face is not the source's and there is no source match. The check applies to a
  recognisable face (at or above the quality floor): a blown-out sunny face keeps too little of
  its detail to agree, and is what source matching is for. Fitted on 120 training identities
  (``benchmarks/source_match.py --swaps 120``): a photo with another person's face pasted over
  the enrolled one, as a rectangle or blended in as a feathered oval, loses its match 99.5-100%
  of the time; of processed copies only rainy ones do, 3% (streaks break blocks up; their face
  then decides).

Processed copies are assumed to keep the frame's geometry up to scale (both sides are
resized to one frame); crops, rotations or mirrored copies are not matched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

FRAME_SIZE = 112
BLOCK = 8
THUMB_SIZE = 28
# Per-block agreement: normalised cross-correlation of band-pass detail above this.
BLOCK_AGREEMENT = 0.8
# A block counts only where both frames have detail (band-pass standard deviation, grey levels).
MIN_BLOCK_DETAIL = 1.0
# So few textured blocks say nothing either way (an all-white frame).
MIN_TEXTURED_BLOCKS = 12
#: Lower confidence bound of the share of textured blocks that must agree for a source match
#: (fitted on training identities).
SOURCE_THRESHOLD = 0.5
# z of the one-sided 95% Wilson lower bound on the share of agreeing blocks.
_CONFIDENCE_Z = 1.645
# Candidates verified per probe: the source was among the 10 nearest thumbnails for every
# training probe of every type.
CANDIDATES = 10
FRAME_BYTES = FRAME_SIZE * FRAME_SIZE
#: The face region compared: the central share of the face box (a face blended in keeps the
#: enrolled photo's hairline and the box's corners).
FACE_INNER = 0.8
#: A face region agreeing on fewer than this share of its textured blocks...
FACE_AGREEMENT = 0.4
#: ...with at least this many of them disagreeing is another face than the source's.
FACE_DISAGREEING_BLOCKS = 6


@dataclass(frozen=True)
class SourceMatch:
    """A probe found to be a processed copy of an enrolled photo."""

    identity: str
    source: str  # the enrolled image it comes from
    agreement: float  # share of textured blocks agreeing (the evidence)
    blocks: int  # textured blocks compared
    lower_bound: float  # the share's 95% lower confidence bound, compared with the threshold


def frame_of(pixels: np.ndarray) -> np.ndarray:
    """The stored form of an image (RGB ``uint8``): ``FRAME_SIZE`` x ``FRAME_SIZE`` grey, median-filtered."""
    grey = cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_RGB2GRAY)
    grey = cv2.medianBlur(grey, 5)
    return cv2.resize(grey, (FRAME_SIZE, FRAME_SIZE), interpolation=cv2.INTER_AREA)


def frame_to_bytes(frame: np.ndarray) -> bytes:
    return np.ascontiguousarray(frame, dtype=np.uint8).tobytes()


def frame_from_bytes(blob: bytes) -> np.ndarray:
    if len(blob) != FRAME_BYTES:
        raise ValueError(f"a stored frame has {len(blob)} bytes, not {FRAME_BYTES}")
    return np.frombuffer(blob, dtype=np.uint8).reshape(FRAME_SIZE, FRAME_SIZE)


def _thumbnail(frame: np.ndarray) -> np.ndarray:
    grey = frame.astype(np.float32)
    detail = cv2.GaussianBlur(grey, (0, 0), 1.5) - cv2.GaussianBlur(grey, (0, 0), 4.0)
    small = cv2.resize(detail, (THUMB_SIZE, THUMB_SIZE), interpolation=cv2.INTER_AREA).ravel()
    small -= small.mean()
    return small / (np.linalg.norm(small) + 1e-6)


def _blocks(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(unit-norm zero-mean band-pass blocks, their detail) of a frame."""
    grey = frame.astype(np.float32)
    detail = cv2.GaussianBlur(grey, (0, 0), 1.0) - cv2.GaussianBlur(grey, (0, 0), 3.0)
    per_side = FRAME_SIZE // BLOCK
    blocks = detail.reshape(per_side, BLOCK, per_side, BLOCK).transpose(0, 2, 1, 3).reshape(per_side * per_side, -1)
    blocks = blocks - blocks.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(blocks, axis=1)
    return blocks / (norms[:, None] + 1e-6), norms / np.sqrt(blocks.shape[1])


def _agreeing(probe: np.ndarray | tuple[np.ndarray, np.ndarray], candidate: np.ndarray,
              within: np.ndarray | None = None) -> tuple[int, int]:
    """(blocks that agree, blocks textured in both frames), over the blocks ``within`` (a mask
    over the block grid, :func:`face_blocks`) or all of them."""
    probe_blocks, probe_detail = _blocks(probe) if isinstance(probe, np.ndarray) else probe
    candidate_blocks, candidate_detail = _blocks(candidate)
    textured = (probe_detail > MIN_BLOCK_DETAIL) & (candidate_detail > MIN_BLOCK_DETAIL)
    if within is not None:
        textured &= within
    agree = np.einsum("ij,ij->i", probe_blocks[textured], candidate_blocks[textured]) > BLOCK_AGREEMENT
    return int(agree.sum()), int(textured.sum())


def agreement(probe: np.ndarray | tuple[np.ndarray, np.ndarray], candidate: np.ndarray) -> tuple[float, int]:
    """(share of blocks textured in both frames that agree, how many are textured in both);
    ``probe`` a frame or its blocks already cut."""
    agree, count = _agreeing(probe, candidate)
    if count < MIN_TEXTURED_BLOCKS:
        return 0.0, count
    return agree / count, count


def face_blocks(box: Sequence[float], image_shape: Sequence[int]) -> np.ndarray:
    """The blocks of the frame whose centre lies inside the central ``FACE_INNER`` of ``box`` (x1,
    y1, x2, y2 in the pixels of an image of ``image_shape``), as a mask over the block grid."""
    height, width = image_shape[:2]
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    half_width, half_height = (box[2] - box[0]) * FACE_INNER / 2, (box[3] - box[1]) * FACE_INNER / 2
    x1, y1, x2, y2 = cx - half_width, cy - half_height, cx + half_width, cy + half_height
    centres = (np.arange(FRAME_SIZE // BLOCK) + 0.5) * BLOCK
    across = (centres >= x1 * FRAME_SIZE / width) & (centres <= x2 * FRAME_SIZE / width)
    down = (centres >= y1 * FRAME_SIZE / height) & (centres <= y2 * FRAME_SIZE / height)
    return (down[:, None] & across[None, :]).ravel()


def face_replaced(probe: np.ndarray, candidate: np.ndarray, face: np.ndarray) -> bool:
    """Whether the face region ``face`` (:func:`face_blocks`) of frame ``probe`` shows another face
    than the same region of ``candidate``: few of its textured blocks agree, and enough disagree."""
    agree, count = _agreeing(probe, candidate, face)
    return count - agree >= FACE_DISAGREEING_BLOCKS and agree < FACE_AGREEMENT * count


def lower_bound(share: float, blocks: int) -> float:
    """One-sided 95% Wilson lower confidence bound of a share observed over ``blocks`` blocks."""
    if blocks == 0:
        return 0.0
    z2 = _CONFIDENCE_Z**2
    centre = share + z2 / (2 * blocks)
    spread = _CONFIDENCE_Z * np.sqrt(share * (1 - share) / blocks + z2 / (4 * blocks**2))
    return float((centre - spread) / (1 + z2 / blocks))


class SourceIndex:
    """Enrolled frames, searched for the photo a probe was made from."""

    def __init__(self, frames: Sequence[np.ndarray], identities: Sequence[str], sources: Sequence[str],
                 threshold: float = SOURCE_THRESHOLD) -> None:
        if not len(frames) == len(identities) == len(sources):
            raise ValueError("one identity and one source per frame")
        self.frames = list(frames)
        self.identities = list(identities)
        self.sources = list(sources)
        self.threshold = threshold
        self._thumbnails = (np.stack([_thumbnail(f) for f in self.frames]) if self.frames
                            else np.zeros((0, THUMB_SIZE * THUMB_SIZE), np.float32))

    def __len__(self) -> int:
        return len(self.frames)

    def best(self, frame: np.ndarray, exclude: set[int] | frozenset[int] = frozenset()) -> tuple[int, float, float, int]:
        """(gallery row, lower bound of its agreement, agreement, textured blocks) of the candidate
        whose agreement's lower bound is highest; row -1 if none."""
        if not self.frames:
            return -1, 0.0, 0.0, 0
        similarity = self._thumbnails @ _thumbnail(frame)
        wanted = min(len(similarity), CANDIDATES + len(exclude))
        nearest = np.argpartition(-similarity, wanted - 1)[:wanted]
        candidates = [int(r) for r in nearest[np.argsort(-similarity[nearest])] if int(r) not in exclude][:CANDIDATES]
        probe = _blocks(frame)
        best = (-1, 0.0, 0.0, 0)
        for row in candidates:
            share, blocks = agreement(probe, self.frames[row])
            bound = lower_bound(share, blocks)
            if bound > best[1]:
                best = (row, bound, share, blocks)
        return best

    def match(self, frame: np.ndarray, exclude: set[int] | frozenset[int] = frozenset(),
              face: np.ndarray | None = None) -> SourceMatch | None:
        """The enrolled photo ``frame`` is a processed copy of, or None; ``face``: the probe's face
        region (:func:`face_blocks`), which must not show another face (:func:`face_replaced`)."""
        row, bound, share, blocks = self.best(frame, exclude)
        if not self.accepts(frame, row, bound, face):
            return None
        return SourceMatch(self.identities[row], self.sources[row], share, blocks, bound)

    def accepts(self, frame: np.ndarray, row: int, bound: float, face: np.ndarray | None = None) -> bool:
        """Whether the best candidate ``row`` of :meth:`best` (its agreement's lower bound
        ``bound``) is the photo ``frame`` is a processed copy of: the one rule :meth:`match` and
        the evaluation apply."""
        return row >= 0 and bound >= self.threshold and (face is None or not face_replaced(frame, self.frames[row], face))
