"""One object that loads the models once and turns image files into face results.

    pipeline = FacePipeline()                     # MTCNN + default embedder (+ calibrated threshold)
    result = pipeline.verify("a.jpg", "b.jpg")    # distance, same, threshold
    vectors, crops, skipped = pipeline.embed_paths(paths)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facesuite.detect import DetectorSettings
from facesuite.detect.extract import Crop, FaceExtractor, Skipped
from facesuite.embed import Embedder, cosine_distance, get_embedder
from facesuite.embed.calibration import load_threshold
from facesuite.errors import InputError


@dataclass
class Verification:
    distance: float
    same: bool
    threshold: float
    threshold_source: str
    fallback: tuple[bool, bool]

    def to_dict(self) -> dict:
        return {
            "distance": round(self.distance, 6),
            "same": self.same,
            "threshold": round(self.threshold, 6),
            "threshold_source": self.threshold_source,
            "fallback": list(self.fallback),
        }


class FacePipeline:
    """Detector + aligner + embedder, loaded once and reused for every image."""

    def __init__(
        self,
        embedder: str | Embedder = "default",
        detector: DetectorSettings | None = None,
        use_cache: bool = True,
        threshold: float | None = None,
    ) -> None:
        self.embedder = get_embedder(embedder) if isinstance(embedder, str) else embedder
        self.extractor = FaceExtractor(detector, use_cache=use_cache)
        if threshold is None:
            self.threshold, self.threshold_source = load_threshold(self.embedder.name, self.embedder.default_threshold)
        else:
            self.threshold, self.threshold_source = threshold, "argument"

    def crops(self, paths: Sequence[str | Path], progress: str | None = None) -> tuple[list[Crop], list[Skipped]]:
        return self.extractor.crops(paths, self.embedder.chip_spec, progress)

    def embed_crops(self, crops: Sequence[Crop]) -> np.ndarray:
        return self.embedder.embed([crop.chip for crop in crops])

    def embed_paths(self, paths: Sequence[str | Path], progress: str | None = None) -> tuple[np.ndarray, list[Crop], list[Skipped]]:
        """Unit embeddings of the faces in ``paths`` (bad files are skipped and returned)."""
        crops, skipped = self.crops(paths, progress)
        return self.embed_crops(crops), crops, skipped

    def embed_one(self, path: str | Path) -> tuple[np.ndarray, Crop]:
        vectors, crops, skipped = self.embed_paths([path])
        if skipped:
            raise InputError(skipped[0].reason.split(": ", 1)[-1], path)
        return vectors[0], crops[0]

    def verify(self, first: str | Path, second: str | Path) -> Verification:
        """Same person or not, by cosine distance against the calibrated threshold."""
        (a, crop_a), (b, crop_b) = self.embed_one(first), self.embed_one(second)
        distance = float(cosine_distance(a, b))
        return Verification(distance, distance <= self.threshold, self.threshold, self.threshold_source,
                            (crop_a.face.fallback, crop_b.face.fallback))
