"""Face quality: the chance (0-1) that a face can be recognised at all, from what the pipeline
already knows about it.

The model is a logistic regression on the distortion detector's eight class probabilities, the
detector score and whether the centre-box fallback was used. Its target is whether the face's
nearest identity is the right one within its route's threshold. It is fitted on the training
identities' cross protocol by ``facesuite calibrate --per-route``. ISO/IEC 29794-5 calls this a
*utility* score. SER-FIQ, CR-FIQA and MagFace learn such scores from the embedding itself; this
one only reads signals the pipeline already has.

Below the floor (a face with less than a 5% chance of being named right), identification answers
``unrecognisable`` rather than ``unknown``: the face is not a stranger, it cannot be told.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from facesuite.distortion import LABELS

UNRECOGNISABLE = "unrecognisable"
DEFAULT_FLOOR = 0.05


def quality_features(probs: Sequence[Mapping[str, float]], det_scores: Sequence[float], fallbacks: Sequence[bool]) -> np.ndarray:
    """One row per face: the detector's probability of each label, the detection score, fallback."""
    return np.array([[p.get(label, 0.0) for label in LABELS] + [float(s), float(f)]
                     for p, s, f in zip(probs, det_scores, fallbacks)], dtype=np.float64).reshape(-1, len(LABELS) + 2)


@dataclass(frozen=True)
class QualityModel:
    coef: tuple[float, ...]
    intercept: float
    floor: float = DEFAULT_FLOOR

    def score(self, features: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(features @ np.asarray(self.coef) + self.intercept)))

    def to_dict(self) -> dict:
        return {"features": [*LABELS, "det_score", "fallback"], "coef": list(self.coef), "intercept": self.intercept,
                "floor": self.floor}

    @classmethod
    def from_dict(cls, record: Mapping) -> QualityModel:
        return cls(tuple(float(c) for c in record["coef"]), float(record["intercept"]), float(record.get("floor", DEFAULT_FLOOR)))


def fit_quality(features: np.ndarray, recognised: np.ndarray, floor: float = DEFAULT_FLOOR) -> QualityModel:
    """Logistic regression of ``recognised`` (named right at the route's threshold) on ``features``."""
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=1.0, max_iter=1000).fit(features, recognised.astype(int))
    return QualityModel(tuple(float(c) for c in model.coef_[0]), float(model.intercept_[0]), floor)
