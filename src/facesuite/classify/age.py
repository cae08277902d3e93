"""Age from the recognition pass, in NumPy: a small head on the features ``facesuite analyze``
already computes for every face (the unit embedding and the pass's hidden features), with a
calibrated interval.

The head predicts ``log(1 + age)``: errors in years grow with age, and on the log scale one
model serves a baby and a 70-year-old alike, but it pulls older faces young. A stacked model adds
a companion ridge on the same standardised features with the age in years as its target (better
for older faces, worse for children) and blends the two, and how far apart they are, per band of
the head's predicted age.
The interval adds residual quantiles measured out of fold on the training faces (split
conformal), one pair per predicted age band, so the interval of a predicted child is as honest
as an adult's. A model folder holds ``model.json`` (kind, the
columns read, the bands and their quantiles) and ``weights.npz`` (plain arrays, no pickle),
hash-checked against ``models/SHA256SUMS``.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facesuite.config import MODELS_DIR
from facesuite.embed.dlib.reader import POOLED_WIDTH
from facesuite.errors import InputError
from facesuite.integrity import verify_model_folder

DEFAULT_AGE_DIR = MODELS_DIR / "age"
#: The age bands results are reported in: (name, first year, last year).
AGE_BANDS = (("0-2", 0, 2), ("3-12", 3, 12), ("13-19", 13, 19), ("20-39", 20, 39), ("40-59", 40, 59), ("60+", 60, 200))


def blend_inputs(head_log_age: np.ndarray, companion_years: np.ndarray) -> np.ndarray:
    """The stack's blend reads, per face, the head's ``log(1 + age)``, the companion's, and their
    spread (the absolute difference): where the two disagree, a face is often older than either
    linear mix of them says."""
    companion_log_age = np.log1p(np.clip(companion_years, 0.0, None))
    return np.stack([head_log_age, companion_log_age, np.abs(companion_log_age - head_log_age)], axis=1)


def blend_band(head_log_age: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """The blend row of each face: the band of the head's predicted age (below ``edges[i]``: row i)."""
    return np.searchsorted(edges, np.expm1(head_log_age), side="right")


def stack_log_age(head_log_age: np.ndarray, companion_years: np.ndarray, edges: np.ndarray, blend: np.ndarray) -> np.ndarray:
    """``log(1 + age)`` of the stack: its band's row of ``blend`` (intercept, then the weights of
    :func:`blend_inputs`' three columns: head, companion, spread) applied to the two models' outputs."""
    row = blend[blend_band(head_log_age, edges)]
    return row[:, 0] + np.sum(row[:, 1:] * blend_inputs(head_log_age, companion_years), axis=1)


def years_with_interval(z: np.ndarray, band_edges: np.ndarray, low: np.ndarray,
                        high: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(age, interval low, interval high) in years from ``log(1 + age)``: the residual quantiles
    ``low``/``high`` of the predicted age's band (below ``band_edges[i]``: row i)."""
    age = np.clip(np.expm1(z), 0.0, None)
    row = np.minimum(np.searchsorted(band_edges, age, side="right"), len(low) - 1)
    return age, np.clip(np.expm1(z + low[row]), 0.0, None), np.expm1(z + high[row])


def age_band(age: float) -> str:
    """The band of :data:`AGE_BANDS` an age in years falls in (fractions round down)."""
    years = int(np.floor(age))
    return next(name for name, first, last in AGE_BANDS if years <= last) if years >= 0 else AGE_BANDS[0][0]


@dataclass(frozen=True)
class AgeHead:
    """``log(1 + age) = MLP(standardised [hidden[:hidden_columns], unit embedding])``; zero hidden
    layers is a linear model; a stacked model blends that with its companion's output (age in years)
    on the same standardised features. ``band_edges``/``low``/``high``: residual quantiles of the
    calibrated interval per predicted band (a predicted age below ``band_edges[i]`` uses row i)."""

    hidden_columns: int
    mean: np.ndarray
    scale: np.ndarray
    weights: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]
    band_edges: np.ndarray
    low: np.ndarray
    high: np.ndarray
    coverage: float
    space: str
    #: Monotone map of the head's output onto ``log(1 + age)`` (isotonic, fitted out of fold):
    #: ``(knots in, knots out)``; it undoes the regression's pull towards the middle ages.
    calibration: tuple[np.ndarray, np.ndarray] | None = None
    #: The stack (absent in a head-only model): the companion's ``(weights, bias)`` on the same
    #: standardised features (age in years), and the blend's band edges and rows
    #: (:func:`stack_log_age`).
    companion: tuple[np.ndarray, np.ndarray] | None = None
    blend: tuple[np.ndarray, np.ndarray] | None = None

    @classmethod
    def load(cls, folder: str | Path | None = None) -> AgeHead:
        """The age model of ``folder`` (default: the shipped one), hash-checked."""
        folder = Path(folder) if folder is not None else DEFAULT_AGE_DIR
        if not (folder / "model.json").is_file() or not (folder / "weights.npz").is_file():
            raise InputError("not an age model folder (needs model.json and weights.npz)", folder)
        verify_model_folder(folder)
        try:
            record = json.loads((folder / "model.json").read_text(encoding="utf-8"))
            if isinstance(record, dict) and "labels" in record and "interval" not in record:
                raise InputError("holds a gender model, not an age model (give it as the gender model)", folder)
            interval = record["interval"]
            with np.load(folder / "weights.npz", allow_pickle=False) as stored:
                arrays = {name: np.asarray(stored[name], dtype=np.float32) for name in stored.files}
            layers = int(record["layers"])
            calibration = ((arrays["calibration_in"].astype(np.float64), arrays["calibration_out"].astype(np.float64))
                           if "calibration_in" in arrays else None)
            stacked = "blend" in arrays
            if stacked and arrays["blend"].shape[1] != 4:
                raise ValueError(f"blend rows of {arrays['blend'].shape[1]} coefficients, this version reads 4 "
                                 "(intercept, head, companion, spread): retrain with facesuite train age")
            return cls(int(record["hidden_columns"]), arrays["mean"], arrays["scale"],
                       tuple(arrays[f"w{i}"] for i in range(layers)), tuple(arrays[f"b{i}"] for i in range(layers)),
                       np.asarray(interval["band_edges"], dtype=np.float64), np.asarray(interval["low"], dtype=np.float64),
                       np.asarray(interval["high"], dtype=np.float64), float(interval["coverage"]), record["embedder"], calibration,
                       (arrays["companion_w"], arrays["companion_b"]) if stacked else None,
                       (arrays["blend_edges"].astype(np.float64), arrays["blend"].astype(np.float64)) if stacked else None)
        except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as error:
            raise InputError(f"unreadable age model ({type(error).__name__}: {error})", folder) from None

    @property
    def reads_maps(self) -> bool:
        """Whether the pass must carry the last stage's input map (``describe(maps=True)``)."""
        return self.hidden_columns > POOLED_WIDTH

    def log_age(self, embedding: np.ndarray, hidden: np.ndarray | None) -> np.ndarray:
        """``log(1 + age)`` from a pass's descriptors (unit or raw) and hidden features: the head's
        output through its calibration, blended with the companion's in a stacked model."""
        x = np.asarray(embedding, dtype=np.float32)
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        if self.hidden_columns:
            if hidden is None or hidden.shape[1] < self.hidden_columns:
                given = 0 if hidden is None else hidden.shape[1]
                raise ValueError(f"the age head reads {self.hidden_columns} hidden features, the pass gave {given}")
            x = np.concatenate([np.asarray(hidden[:, : self.hidden_columns], dtype=np.float32), x], axis=1)
        if x.shape[1] != len(self.mean):
            raise ValueError(f"the age head reads {len(self.mean)} features, got {x.shape[1]}")
        standardised = (x - self.mean) / self.scale
        x = standardised
        for layer, (w, b) in enumerate(zip(self.weights, self.biases)):
            x = x @ w + b
            if layer < len(self.weights) - 1:
                x = np.maximum(x, 0.0)
        z = x.reshape(-1).astype(np.float64)
        z = z if self.calibration is None else np.interp(z, *self.calibration)
        if self.blend is None:
            return z
        companion_w, companion_b = self.companion
        years = (standardised @ companion_w + companion_b).reshape(-1).astype(np.float64)
        return stack_log_age(z, years, *self.blend)

    def predict(self, embedding: np.ndarray, hidden: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(age, interval low, interval high) in years for each face."""
        z = self.log_age(embedding, hidden)
        return self.from_log_age(z)

    def from_log_age(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Years and the calibrated interval from the head's output."""
        return years_with_interval(z, self.band_edges, self.low, self.high)

