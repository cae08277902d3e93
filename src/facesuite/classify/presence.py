"""Face presence: whether the box the pipeline analyses holds a face at all.

MTCNN either finds a face or the pipeline falls back to a box it guesses (the centre box of an
LFW-style frame, or the inner part of an image given as a crop). A guess is not a face: a blank or
noise image embeds somewhere, and two blank images lie closer than two photos of one person. This
head reads the hidden features of the recognition pass the face already went through (the pooled
stages of dlib's ResNet) with a logistic regression, trained by ``facesuite train presence`` on
faces of every kind against non-face images, and says how likely the box is to hold a face.

A guessed box is a face when :meth:`PresenceHead.p_face` reaches :attr:`threshold`; a face MTCNN
found is taken as one unless the head is sure it is not (below :attr:`veto`): MTCNN now and then
scores a drawing or a texture as a face. A box that is not a face gets the decision ``no face``:
no distortion type, gender, identity or verification is decided on it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facesuite.config import MODELS_DIR
from facesuite.embed.dlib.reader import POOLED_WIDTH
from facesuite.integrity import verify_model_folder

NO_FACE = "no face"
DEFAULT_PRESENCE_DIR = MODELS_DIR / "presence"


@dataclass(frozen=True)
class PresenceHead:
    """``p_face = sigmoid(((pooled - mean) / scale) . coef + intercept)`` on the pass's
    :data:`POOLED_WIDTH` pooled hidden features."""

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    threshold: float  # a guessed box holds a face from this probability on
    veto: float  # a detected face is no face below this probability
    space: str  # the embedder space whose pass it reads

    @classmethod
    def load(cls, folder: Path = DEFAULT_PRESENCE_DIR) -> PresenceHead:
        verify_model_folder(folder)
        record = json.loads((folder / "model.json").read_text(encoding="utf-8"))
        with np.load(folder / "weights.npz", allow_pickle=False) as weights:
            arrays = {name: np.asarray(weights[name], dtype=np.float64) for name in ("mean", "scale", "coef", "intercept")}
        return cls(arrays["mean"], arrays["scale"], arrays["coef"].reshape(-1), float(arrays["intercept"]),
                   float(record["threshold"]), float(record["veto"]), str(record["embedder"]))

    def p_face(self, pooled: np.ndarray) -> np.ndarray:
        """Probability that each row's box holds a face, from the pass's hidden features."""
        x = np.asarray(pooled, dtype=np.float64)[:, :POOLED_WIDTH]
        z = ((x - self.mean) / self.scale) @ self.coef + self.intercept
        return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)

    def judge(self, pooled: np.ndarray, detected: np.ndarray, chips: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(probability that each box holds a face, whether it is one). A flat chip
        (:func:`flat_chips`) shows nothing: its probability is 0 and it is never a face (the head
        alone would score a white page like a blown-out face)."""
        flat = flat_chips(chips)
        p_face = np.where(flat, np.float32(0.0), self.p_face(pooled))
        return p_face, self.is_face(p_face, detected, flat)

    def is_face(self, p_face: np.ndarray, detected: np.ndarray, flat: np.ndarray | None = None) -> np.ndarray:
        """Per row, whether it is a face: a detected one unless vetoed, a guessed one above the
        threshold; never a flat chip (:func:`flat_chips`)."""
        p_face, detected = np.asarray(p_face), np.asarray(detected, dtype=bool)
        face = np.where(detected, p_face >= self.veto, p_face >= self.threshold)
        return face if flat is None else face & ~np.asarray(flat, dtype=bool)


#: A chip whose grey levels spread less than this (standard deviation) shows nothing at all. The
#: head scores a white page (spread 0) like an overexposed face (0.89 against its 0.85 threshold);
#: the faintest of 300 FACECOM training identities' `sunny` copies still spreads 0.22 levels, so
#: the bound sits just below it (chosen on training identities, not dev).
FLAT_SPREAD = 0.2


def flat_chips(chips: Sequence[np.ndarray]) -> np.ndarray:
    """Per chip (RGB), whether it is flat: a blank page, a fully transparent image, one colour."""
    return np.array([float(np.asarray(chip, dtype=np.float32).mean(axis=2).std()) < FLAT_SPREAD for chip in chips], dtype=bool)
