"""The ``embedding`` and ``backbone`` gender kinds' head in NumPy: a logistic regression on the
recognition pass's unit embedding (and, for ``backbone``, its hidden features: the pooled hidden
stages, and in newer models also the last stage's 256x4x4 input map), read from
the model folder's ``weights.npz``.

It is the only place these kinds' answers are computed: the analyzer runs it on the features its
embedder already computed (so analysing a face never imports PyTorch for gender), and
:class:`~facesuite.classify.gender.GenderModel` on a pass of its own for standalone chips.
Grad-CAM needs gradients, so :class:`~facesuite.classify.gender.EmbeddingGenderNet` puts the
weights of :meth:`LinearGenderHead.folded` on the PyTorch network; it explains, it never answers.
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
#: The answer when the head's calibrated confidence is below the model's floor.
UNCERTAIN = "uncertain"
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
class Abstention:
    """When a gender head says ``uncertain``: its calibrated confidence is below :attr:`floor`.

    The confidence is the chance that the answer is right, ``sigmoid(slope * m + offset)`` of the
    margin ``m = |logit(p_female) - logit(threshold)|``, fitted out of fold on the training faces
    (:mod:`facesuite.train.gender_abstention`). With a predicted age each predicted age band has
    its own slope, offset and floor (below ``band_edges[i]`` years: row i): a child's face carries
    less gender signal than an adult's at the same margin, and is said to be less sure. Without an
    age, the age-blind row ``slope``/``offset`` with its own :attr:`floor` applies.
    """

    floor: float
    slope: float
    offset: float
    band_edges: tuple[float, ...] = ()
    band_slopes: tuple[float, ...] = ()
    band_offsets: tuple[float, ...] = ()
    #: The floor of each predicted band when ``band_*`` rows are used (the age-conditioned rule;
    #: 1.0: that band never answers).
    band_floors: tuple[float, ...] = ()

    @classmethod
    def from_dict(cls, record: dict | None) -> Abstention | None:
        if not record:
            return None
        by_age = record.get("by_age") or {}
        return cls(float(record["floor"]), float(record["slope"]), float(record["offset"]),
                   tuple(float(v) for v in by_age.get("band_edges", ())), tuple(float(v) for v in by_age.get("slopes", ())),
                   tuple(float(v) for v in by_age.get("offsets", ())), tuple(float(v) for v in by_age.get("floors", ())))

    @property
    def uses_age(self) -> bool:
        return bool(self.band_slopes)

    def confidence(self, p_female: np.ndarray, threshold: float, ages: np.ndarray | None = None) -> np.ndarray:
        """The calibrated chance that the answer ``p_female >= threshold`` is right, per face."""
        margin = np.abs(logit(p_female) - logit(np.full(1, threshold)))
        if ages is None or not self.uses_age:
            z = self.slope * margin + self.offset
        else:
            row = self._band(ages)
            z = np.asarray(self.band_slopes)[row] * margin + np.asarray(self.band_offsets)[row]
        return 1.0 / (1.0 + np.exp(-z))

    def answers(self, p_female: np.ndarray, threshold: float, ages: np.ndarray | None = None) -> np.ndarray:
        """Which faces get an answer (True) rather than ``uncertain``."""
        confidence = self.confidence(p_female, threshold, ages)
        if ages is None or not self.uses_age:
            return confidence >= self.floor
        return confidence >= np.asarray(self.band_floors)[self._band(ages)]

    def _band(self, ages: np.ndarray) -> np.ndarray:
        return np.minimum(np.searchsorted(np.asarray(self.band_edges), np.asarray(ages, dtype=np.float64), side="right"),
                          len(self.band_slopes) - 1)


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))


def gender_labels(p_female: np.ndarray, threshold: float, labels: Sequence[str], abstention: Abstention | None = None,
                  ages: np.ndarray | None = None) -> list[str]:
    """``labels[1]`` (female) where ``p_female >= threshold``, else ``labels[0]``; ``uncertain``
    where ``abstention`` is given and the calibrated confidence is below its floor (``ages``:
    each face's predicted age, for the age-conditioned rule)."""
    p_female = np.asarray(p_female, dtype=np.float64).reshape(-1)
    answered = abstention.answers(p_female, threshold, ages) if abstention is not None else np.ones(len(p_female), bool)
    return [(labels[1] if p >= threshold else labels[0]) if ok else UNCERTAIN for p, ok in zip(p_female, answered)]


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
    #: When it says ``uncertain`` (None: it always answers).
    abstention: Abstention | None = None

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
                   float(record.get("mirror_margin", 0.0)), record.get("embedder") or "dlib-torch",
                   Abstention.from_dict(record.get("abstention")))

    @property
    def hidden_columns(self) -> int:
        """Hidden features read before the embedding: 640 pooled, or 640 + 4096 with the map."""
        return len(self.mean) - EMBEDDING_DIM if self.kind == "backbone" else 0

    @property
    def reads_maps(self) -> bool:
        """Whether the pass must include the last stage's input map (``describe(maps=True)``)."""
        return self.hidden_columns > POOLED_WIDTH

    def folded(self) -> tuple[np.ndarray, float]:
        """``(weights, bias)`` with ``z = x . weights + bias`` on the head's input ``x`` (the hidden
        features read, then the unit embedding): the standardisation folded into the linear map."""
        weights = self.coef / self.scale
        return weights, float(self.intercept - self.mean @ weights)

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

    def labels_for(self, p_female: np.ndarray, abstain: bool = True, ages: np.ndarray | None = None) -> list[str]:
        """The answers for scores ``p_female``; ``abstain=False``: male or female for every face."""
        return gender_labels(p_female, self.threshold, self.labels, self.abstention if abstain else None, ages)
