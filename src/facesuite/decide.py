"""The one decision rule: what facesuite answers for a face, given its nearest enrolled identity
(a gallery search, 1:N) or the other face of a pair (verification, 1:1).

Every caller decides here (:class:`FaceAnalysis` and its galleries of any backend, ``gallery
identify``, ``eval recognition`` and its predictions, the demo, the dashboard and its evaluation
jobs, clustering's names, ``verify``), so one input gets one answer everywhere. In order:

1. ``no face``: the box holds no face (:mod:`facesuite.classify.presence`); nothing is compared.
2. a search whose image is a processed copy of an enrolled photo answers that photo's identity
   (:mod:`facesuite.gallery.source_match`): the evidence is the whole frame, not the face.
3. ``unrecognisable``: the face's quality is below the floor (:mod:`facesuite.classify.quality`).
4. within its threshold, the nearest identity (a search) or ``same`` (a pair); else ``unknown``
   or ``different``.

The threshold depends on the question. A pair is held to the verification threshold (calibrated at
a false-accept rate, 1% shipped). A search is held to its face's distortion type's threshold
(``facesuite calibrate --per-route``, fitted at a false-positive identification rate of 1%), never
looser than the gallery's own: a search offers a stranger one chance per enrolled identity, so it
is held tighter than a pair, and each type whose impostors come closer (noisy, rainy, blurred) more
so. A pair two searches would leave ``unknown`` can therefore be the ``same`` person; ``verify``
says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from facesuite.classify.presence import NO_FACE
from facesuite.classify.quality import UNRECOGNISABLE

#: The answer to a search whose nearest identity lies beyond the face's threshold; reserved as a name.
UNKNOWN = "unknown"
SAME, DIFFERENT = "same", "different"


@dataclass(frozen=True)
class Decision:
    """An answer, the distance limit the face was held to (None: nothing was compared with one)
    and why that limit, or why no comparison, in words."""

    answer: str
    threshold: float | None
    held_to: str


@dataclass(frozen=True)
class OperatingPoint:
    """The thresholds and the quality floor every decision reads.

    ``threshold``: the verification threshold and the ceiling of every search threshold (a
    gallery's own threshold when searching a gallery); ``source``: what it is, in words
    (``"shipped calibration, FAR 1%"``); ``route_thresholds``: per distortion type, the search
    threshold; ``quality_floor``: below it a face is ``unrecognisable`` (None: no quality model).
    """

    threshold: float
    source: str = "given threshold"
    route_thresholds: Mapping[str, float] = field(default_factory=dict)
    quality_floor: float | None = None

    def for_gallery(self, threshold: float) -> OperatingPoint:
        """This point with a gallery's own threshold as the ceiling."""
        return self if threshold == self.threshold else replace(self, threshold=threshold, source="gallery threshold")

    def search_threshold(self, distortion: str | None) -> float:
        """The distance a face of this distortion type is accepted within when searching."""
        return min(self.threshold, self.route_thresholds.get(distortion, self.threshold)) if distortion else self.threshold

    def search_thresholds(self, distortions: Sequence[str | None]) -> np.ndarray:
        return np.array([self.search_threshold(kind) for kind in distortions], dtype=np.float64)

    def recognisable(self, quality: np.ndarray | None, size: int) -> np.ndarray:
        """Per face, whether it is at or above the quality floor (all, without a floor or scores)."""
        if quality is None or self.quality_floor is None:
            return np.ones(size, dtype=bool)
        return np.asarray(quality, dtype=np.float64) >= self.quality_floor

    def undecided(self, quality: float | None, no_face: bool) -> Decision | None:
        """The answer for a face compared with no one (``no face``, or ``unrecognisable`` below
        the quality floor), or None for a face to compare."""
        if no_face:
            return Decision(NO_FACE, None, "no face found")
        if quality is not None and self.quality_floor is not None and quality < self.quality_floor:
            return Decision(UNRECOGNISABLE, None, f"quality {quality:.3f} below the floor {self.quality_floor:g}")
        return None

    def search(self, nearest: str, distance: float, distortion: str | None, quality: float | None,
               no_face: bool = False, source_identity: str | None = None) -> Decision:
        """The answer to a gallery search of one face (``source_identity``: the identity of the
        enrolled photo the image is a processed copy of, if any)."""
        # A processed copy of an enrolled photo is named below the quality floor (a blown-out
        # face), never where the box is judged to hold no face: nothing is decided on a non-face.
        if source_identity is not None and not no_face:
            return Decision(source_identity, None, "a processed copy of an enrolled photo")
        undecided = self.undecided(quality, no_face)
        if undecided is not None:
            return undecided
        limit = self.search_threshold(distortion)
        held_to = f"threshold for {distortion} faces" if limit < self.threshold else self.source
        return Decision(nearest if distance <= limit else UNKNOWN, limit, held_to)

    def pair(self, distance: float, quality: tuple[float | None, float | None],
             no_face: tuple[bool, bool]) -> Decision:
        """The answer to a pair: ``same``, ``different``, ``unrecognisable`` or ``no face``."""
        undecided = self.undecided(min((q for q in quality if q is not None), default=None), any(no_face))
        if undecided is not None:
            return undecided
        return Decision(SAME if distance <= self.threshold else DIFFERENT, self.threshold, self.source)
