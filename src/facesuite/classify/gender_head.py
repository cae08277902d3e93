"""The ``embedding`` and ``backbone`` gender kinds' head in NumPy: a logistic regression on the
recognition pass's unit embedding (and, for ``backbone``, its hidden features: the pooled hidden
stages, and in newer models also the last stage's 256x4x4 input map), read from
the model folder's ``weights.npz``.

:class:`~facesuite.classify.gender.EmbeddingGenderNet` is the same head in PyTorch, with its own
backbone, for standalone chips and Grad-CAM. The analyzer runs this one on the features its
embedder already computed, so analysing a face never imports PyTorch for gender.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facesuite.config import MODELS_DIR
from facesuite.embed import Embedder
from facesuite.embed.dlib.reader import EMBEDDING_DIM, POOLED_WIDTH
from facesuite.integrity import verify_model_folder

DEFAULT_GENDER_DIR = MODELS_DIR / "gender"
#: The kinds whose whole head is this logistic regression.
LINEAR_KINDS = ("embedding", "backbone")


def mirror_when_unsure(p_female: np.ndarray, margin: float, p_female_mirrored: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``p_female`` with each score within ``margin`` of 0.5 averaged with the score of the same
    chip mirrored (``p_female_mirrored(rows)`` scores those rows' mirror images).

    Mirroring every face gains almost nothing on the faces the head is sure of, and costs a
    second pass of the network: out of fold on the training faces, margin 0.2 mirrors 9% of them
    and gains what mirroring all of them does (model card). The window is the head's own
    uncertainty, around 0.5, not around the decision threshold, which is tuned on these scores.
    """
    p_female = np.asarray(p_female, dtype=np.float32).copy()
    unsure = np.flatnonzero(np.abs(p_female - 0.5) < margin)
    if len(unsure):
        p_female[unsure] = (p_female[unsure] + np.asarray(p_female_mirrored(unsure), dtype=np.float32)) / 2
    return p_female


@dataclass(frozen=True)
class LinearGenderHead:
    """``p_female = sigmoid(((x - mean) / scale) . coef + intercept)`` with ``x`` the unit embedding,
    after the first :attr:`hidden_columns` hidden features for the ``backbone`` kind."""

    kind: str
    threshold: float
    labels: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    #: Scores this close to 0.5 are averaged with the mirrored chip's (0: never).
    mirror_margin: float = 0.0
    #: The embedder space whose pass it reads (heads saved before it was recorded read dlib-torch's).
    space: str = "dlib-torch"

    @classmethod
    def load(cls, folder: Path) -> LinearGenderHead | None:
        """The head of a model folder of a linear kind, hash-checked; None for any other folder
        (:meth:`facesuite.classify.gender.GenderModel.load` reads those, and names what is wrong)."""
        weights = folder / "weights.npz"
        try:
            record = json.loads((folder / "model.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(record, dict) or record.get("kind") not in LINEAR_KINDS or not weights.is_file():
            return None
        verify_model_folder(folder)
        with np.load(weights, allow_pickle=False) as head:
            arrays = {name: np.asarray(head[name], dtype=np.float64) for name in ("mean", "scale", "coef", "intercept")}
        return cls(record["kind"], float(record.get("threshold", 0.5)), tuple(record.get("labels", ("male", "female"))),
                   arrays["mean"], arrays["scale"], arrays["coef"].reshape(-1), float(arrays["intercept"]),
                   float(record.get("mirror_margin", 0.0)), record.get("embedder") or "dlib-torch")

    @property
    def hidden_columns(self) -> int:
        """Hidden features read before the embedding: 640 pooled, or 640 + 4096 with the map."""
        return len(self.mean) - EMBEDDING_DIM if self.kind == "backbone" else 0

    @property
    def reads_maps(self) -> bool:
        """Whether the pass must include the last stage's input map (``describe(maps=True)``)."""
        return self.hidden_columns > POOLED_WIDTH

    def p_female(self, embedding: np.ndarray, pooled: np.ndarray | None = None) -> np.ndarray:
        """Probability of ``female`` from a pass's descriptors (unit or raw) and, for the backbone
        kind, its hidden features (the first :attr:`hidden_columns` are read)."""
        x = np.asarray(embedding, dtype=np.float64)
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        if self.kind == "backbone":
            hidden = np.asarray(pooled, dtype=np.float64)
            if hidden.shape[1] < self.hidden_columns:
                raise ValueError(f"the gender head reads {self.hidden_columns} hidden features, the pass gave {hidden.shape[1]}")
            x = np.concatenate([hidden[:, : self.hidden_columns], x], axis=1)
        z = ((x - self.mean) / self.scale) @ self.coef + self.intercept
        return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)

    def p_female_of_chips(self, embedder: Embedder, chips: Sequence[np.ndarray]) -> np.ndarray:
        """Probability of ``female`` for chips, from one pass of ``embedder`` (of :attr:`space`)
        giving what this kind reads: the embedding, and for ``backbone`` the hidden features."""
        if self.kind == "embedding":
            return self.p_female(embedder.embed(chips))
        return self.p_female(*embedder.describe(chips, maps=self.reads_maps))

    def labels_for(self, p_female: np.ndarray) -> list[str]:
        return [self.labels[1] if p >= self.threshold else self.labels[0] for p in p_female]
