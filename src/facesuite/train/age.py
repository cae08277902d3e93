"""`facesuite train age`: the age head on the recognition pass, selected on training folds.

Training faces are UTKFace files (their names carry the age); a split list (``--exclude``) keeps
the development files, and any file whose bytes equal one of them, out. Each face's features come
from :func:`facesuite.train.backbone_features.pass_features` (the chip, its mirror image and one
synthesised distortion: three training rows per face, scored on the plain chip alone).

Selection is by out-of-fold mean absolute error on folds that keep byte-identical photos
together: every candidate head in :data:`CANDIDATES` is fitted on k-1 folds and scored on the
last. The winner is refitted on every training face; a monotone (isotonic) map of its out-of-fold
output onto ``log(1 + age)`` corrects its pull towards the middle ages.

The age model is then a stack: the winner's (calibrated) ``log(1 + age)`` and a companion ridge on
the same columns with the age in years as its target (:func:`companion_of`: good for older faces,
where the log-scale head is pulled young, poor for children) are blended by a linear map of the
two and their spread per band of the head's predicted age (:func:`fit_blend`), fitted on the
out-of-fold outputs of both. The
interval is the stack's out-of-fold residual quantiles per predicted age band, the
split-conformal recipe.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from facesuite.classify.age import AGE_BANDS, age_band, blend_band, blend_inputs, stack_log_age, years_with_interval
from facesuite.data import utkface_attributes
from facesuite.embed.dlib.reader import EMBEDDING_DIM, POOLED_WIDTH
from facesuite.errors import InputError
from facesuite.train.backbone_features import SCALE_FLOOR, PassFeatures, standard_scaler

#: Interval coverage the shipped model's ``age_range`` aims at.
COVERAGE = 0.8
#: Predicted-age bands with their own interval quantiles: upper edges in years.
INTERVAL_EDGES = (3.0, 13.0, 20.0, 40.0, 60.0)
#: Penalty of the companion ridge in years (chosen out of fold on the pass's 4,864 features; the
#: model card has the sweep).
COMPANION_ALPHA = 10000.0
#: Predicted-age bands with their own blend row: upper edges in years (finer than the interval's
#: from 20 up, where most faces are and the head's pull towards the middle changes fastest).
BLEND_EDGES = (3.0, 13.0, 20.0, 30.0, 40.0, 50.0, 60.0)
#: Ridge penalty of each band's blend (four coefficients, hundreds to thousands of faces a band).
BLEND_ALPHA = 0.1
#: Feature columns a candidate reads: the unit embedding alone, the pooled stages with it, or
#: everything the pass gives (pooled stages, the last stage's input map, the embedding).
INPUTS = {"embedding": 0, "pooled": POOLED_WIDTH, "maps": None}


@dataclass(frozen=True)
class Candidate:
    """One head to try: ``hidden_units`` empty is ridge regression (``alpha`` its penalty), else an
    MLP (``alpha`` its L2 term) on the first ``components`` principal components. Its target is
    ``log(1 + age)``, or the age in years where ``years``."""

    name: str
    inputs: str
    alpha: float
    hidden_units: tuple[int, ...] = ()
    components: int | None = None
    years: bool = False


CANDIDATES = (
    Candidate("ridge, embedding", "embedding", 1.0),
    Candidate("ridge, pooled", "pooled", 100.0),
    Candidate("ridge, maps", "maps", 3000.0),
    Candidate("ridge, maps", "maps", 10000.0),
    Candidate("mlp, maps", "maps", 1e-2, (128,), 256),
)


def read_age_samples(folder: str | Path, exclude: str | Path | None = None) -> tuple[list[Path], np.ndarray, list[str]]:
    """UTKFace files under ``folder`` (recursively; names that do not parse are left out) minus
    the names in the ``exclude`` list and files with the same bytes; (paths, ages, groups) where a
    group is a file's content hash (UTKFace holds some photos twice under different names)."""
    from facesuite.data import read_split

    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("no such folder", folder)
    excluded = read_split(exclude) if exclude is not None else set()
    paths, ages, groups, excluded_hashes = [], [], [], set()
    for path in sorted(folder.rglob("*.jpg")):
        parsed = utkface_attributes(path.name)
        if parsed is None:
            continue
        digest = hashlib.sha1(path.read_bytes()).hexdigest()
        if path.name.removeprefix("utk_") in excluded:
            excluded_hashes.add(digest)
            continue
        paths.append(path)
        ages.append(parsed[0])
        groups.append(digest)
    keep = [i for i, digest in enumerate(groups) if digest not in excluded_hashes]
    if not keep:
        raise InputError("no UTKFace files (<age>_<gender>_<race>_<date>.jpg) to train on", folder)
    return [paths[i] for i in keep], np.array([ages[i] for i in keep], dtype=np.float64), [groups[i] for i in keep]


def select_columns(x: np.ndarray, inputs: str) -> np.ndarray:
    """The columns of ``[hidden..., unit]`` feature rows that an input choice reads."""
    hidden = INPUTS[inputs]
    if hidden is None:
        return x
    return np.hstack([x[:, :hidden], x[:, -EMBEDDING_DIM:]])


@dataclass
class FittedHead:
    """A fitted head as plain arrays: standardisation, then linear layers (ReLU between)."""

    hidden_columns: int
    mean: np.ndarray
    scale: np.ndarray
    weights: list[np.ndarray]
    biases: list[np.ndarray]

    def output(self, x: np.ndarray) -> np.ndarray:
        """The head's target (``log(1 + age)`` or years) for feature rows ``x``."""
        h = (x - self.mean) / self.scale
        for layer, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = h @ w + b
            if layer < len(self.weights) - 1:
                h = np.maximum(h, 0.0)
        return h.reshape(-1)


def companion_of(head: Candidate) -> Candidate:
    """The stack's second model: ridge on the head's columns, age in years."""
    return Candidate(f"ridge in years, {head.inputs}", head.inputs, COMPANION_ALPHA, years=True)


def fit_head(candidate: Candidate, x: np.ndarray, log_age: np.ndarray, seed: int = 0) -> FittedHead:
    """Fit ``candidate`` on feature rows ``x`` (all columns of the pass) and ages given as
    ``log(1 + age)`` (its target is that, or the years)."""
    target = np.expm1(log_age) if candidate.years else log_age
    x = select_columns(x, candidate.inputs)
    scaler = standard_scaler(x)
    z = scaler.transform(x).astype(np.float32)
    scale = scaler.scale_.astype(np.float32)
    hidden_columns = x.shape[1] - EMBEDDING_DIM
    if not candidate.hidden_units:
        from sklearn.linear_model import Ridge

        ridge = Ridge(alpha=candidate.alpha).fit(z, target)
        return FittedHead(hidden_columns, scaler.mean_.astype(np.float32), scale,
                          [ridge.coef_.reshape(-1, 1).astype(np.float32)], [np.array([ridge.intercept_], np.float32)])
    from sklearn.neural_network import MLPRegressor

    projection, offset = None, None
    if candidate.components is not None:
        from sklearn.decomposition import PCA

        pca = PCA(min(candidate.components, *z.shape), random_state=seed).fit(z)
        projection, offset = pca.components_.T.astype(np.float32), pca.mean_.astype(np.float32)
        z = pca.transform(z).astype(np.float32)
    # Early stopping on a held-out tenth of the rows; 60 epochs at most keeps a fit to minutes on a CPU.
    mlp = MLPRegressor(hidden_layer_sizes=candidate.hidden_units, alpha=candidate.alpha, batch_size=256, learning_rate_init=1e-3,
                       max_iter=60, early_stopping=True, n_iter_no_change=5, random_state=seed).fit(z, target)
    weights = [w.astype(np.float32) for w in mlp.coefs_]
    biases = [b.astype(np.float32) for b in mlp.intercepts_]
    if projection is not None:
        # The projection folds into the first layer: no PCA at run time.
        biases[0] = biases[0] - offset @ projection @ weights[0]
        weights[0] = projection @ weights[0]
    return FittedHead(hidden_columns, scaler.mean_.astype(np.float32), scale, weights, biases)


def head_of_columns(head: FittedHead, x: np.ndarray, inputs: str) -> np.ndarray:
    return head.output(select_columns(x, inputs))


def folds_of(groups: Sequence[str], k: int, seed: int = 0) -> np.ndarray:
    """Fold number of each row: groups (photos, identities) kept whole, folds of about equal size."""
    unique = sorted(set(groups))
    order = np.random.default_rng(seed).permutation(len(unique))
    fold_of_group = {unique[i]: n % k for n, i in enumerate(order)}
    return np.array([fold_of_group[g] for g in groups])


def training_rows(features: PassFeatures, rows: np.ndarray) -> np.ndarray:
    """Plain, mirrored and distorted passes of ``rows``, stacked (three training rows per face)."""
    return np.concatenate([features.of(v, rows) for v in features.features])


def out_of_fold(candidate: Candidate, features: PassFeatures, log_age: np.ndarray, folds: np.ndarray,
                seed: int = 0) -> np.ndarray:
    """Each face's output (``log(1 + age)``, or years) from a head fitted on the other folds (plain chip scored)."""
    predicted = np.zeros(len(log_age))
    variants = len(features.features)
    for fold in np.unique(folds):
        train = np.flatnonzero(folds != fold)
        held = np.flatnonzero(folds == fold)
        head = fit_head(candidate, training_rows(features, train), np.tile(log_age[train], variants), seed)
        predicted[held] = head_of_columns(head, features.of("plain", held), candidate.inputs)
    return predicted


def cached_out_of_fold(candidate: Candidate, features: PassFeatures, log_age: np.ndarray, folds: np.ndarray,
                       seed: int = 0, cache: Path | None = None) -> np.ndarray:
    """:func:`out_of_fold`, kept in ``cache`` when given (keyed by the candidate, the folds and the
    faces' features): a rerun, or a benchmark stacking on the head's out-of-fold output, redoes none."""
    key = hashlib.sha1(repr((candidate, int(folds.max()) + 1, seed, features.digest, SCALE_FLOOR)).encode("utf-8")).hexdigest()[:16]
    stored = cache / f"oof-{key}.npy" if cache is not None else None
    if stored is not None and stored.is_file():
        return np.load(stored)
    predicted = out_of_fold(candidate, features, log_age, folds, seed)
    if stored is not None:
        np.save(stored, predicted)
    return predicted


def band_mae(true_age: np.ndarray, predicted_age: np.ndarray) -> dict[str, float]:
    errors = np.abs(predicted_age - true_age)
    bands = np.array([age_band(a) for a in true_age])
    return {name: round(float(errors[bands == name].mean()), 3) for name, _, _ in AGE_BANDS if np.any(bands == name)}


def interval_quantiles(true_age: np.ndarray, log_predicted: np.ndarray, coverage: float = COVERAGE) -> dict:
    """Residual quantiles of ``log(1 + age)`` per predicted band, for an interval of ``coverage``
    (split conformal: the finite-sample quantile levels, on out-of-fold predictions)."""
    residual = np.log1p(true_age) - log_predicted
    band = np.searchsorted(np.array(INTERVAL_EDGES), np.expm1(log_predicted), side="right")
    tail = (1 - coverage) / 2
    low, high = [], []
    for row in range(len(INTERVAL_EDGES) + 1):
        r = residual[band == row]
        if len(r) < 20:  # too few faces for their own quantiles: the whole set's
            r = residual
        n = len(r)
        low.append(float(np.quantile(r, max(0.0, np.floor(tail * (n + 1)) / n))))
        high.append(float(np.quantile(r, min(1.0, np.ceil((1 - tail) * (n + 1)) / n))))
    return {"coverage": coverage, "band_edges": list(INTERVAL_EDGES), "low": low, "high": high}


def _isotonic(x: np.ndarray, y: np.ndarray):
    from sklearn.isotonic import IsotonicRegression

    return IsotonicRegression(out_of_bounds="clip").fit(x, y)


def fit_blend(head_log_age: np.ndarray, companion_years: np.ndarray, log_age: np.ndarray) -> np.ndarray:
    """The stack's blend: per band of the head's predicted age (:data:`BLEND_EDGES`), a ridge of
    ``log(1 + age)`` on :func:`~facesuite.classify.age.blend_inputs` (the head's ``log(1 + age)``,
    the companion's and their spread), as rows of ``(intercept, head weight, companion weight,
    spread weight)``; a band with under 20 faces gets the all-faces fit."""
    from sklearn.linear_model import Ridge

    x = blend_inputs(head_log_age, companion_years)
    band = blend_band(head_log_age, np.array(BLEND_EDGES))
    rows = []
    for row in range(len(BLEND_EDGES) + 1):
        chosen = band == row if np.sum(band == row) >= 20 else np.ones(len(band), dtype=bool)
        ridge = Ridge(alpha=BLEND_ALPHA).fit(x[chosen], log_age[chosen])
        rows.append([ridge.intercept_, *ridge.coef_])
    return np.array(rows)


def interval_coverage(true_age: np.ndarray, low: np.ndarray, high: np.ndarray) -> float:
    return float(np.mean((true_age >= low) & (true_age <= high)))


def train_age(folder: str | Path, out: str | Path, exclude: str | Path | None = None, cache: str | Path | None = None,
              folds: int = 3, seed: int = 0, extractor=None, candidates: Sequence[Candidate] = CANDIDATES) -> dict:
    """Select, fit and save the age head; returns a summary (the out-of-fold sweep included)."""
    from facesuite.detect.extract import FaceExtractor
    from facesuite.embed import get_embedder
    from facesuite.train.backbone_features import pass_features

    if folds < 2:
        raise InputError("--folds must be at least 2")
    paths, ages, groups = read_age_samples(folder, exclude)
    embedder = get_embedder()
    features, skipped = pass_features(paths, extractor or FaceExtractor(), embedder, Path(cache) if cache else None, seed)
    index = {str(p): i for i, p in enumerate(paths)}
    rows = np.array([index[p] for p in features.paths])
    ages, groups = ages[rows], [groups[i] for i in rows]
    if len(ages) < 10 * folds:
        raise InputError(f"too few readable faces to train an age model ({len(ages)})", folder)
    fold_of = folds_of(groups, folds, seed)
    log_age = np.log1p(ages)
    sweep, best = [], None
    for candidate in tqdm(candidates, desc="candidates (out of fold)", unit="head"):
        predicted = cached_out_of_fold(candidate, features, log_age, fold_of, seed, Path(cache) if cache else None)
        years = np.clip(np.expm1(predicted), 0, None)
        mae = float(np.mean(np.abs(years - ages)))
        sweep.append({"candidate": candidate.name, "alpha": candidate.alpha, "hidden_units": list(candidate.hidden_units),
                      "components": candidate.components, "oof_mae": round(mae, 3), "oof_band_mae": band_mae(ages, years)})
        tqdm.write(f"{candidate.name} (alpha {candidate.alpha:g}): out-of-fold MAE {mae:.3f}")
        if best is None or mae < best[0]:
            best = (mae, candidate, predicted)
    mae, chosen, raw_oof = best
    # The regression pulls ages towards the middle; a monotone map of its output onto log(1 + age)
    # undoes that. Cross-fitted: each fold's faces mapped by a map fitted on the other folds.
    head_oof = np.zeros(len(ages))
    for fold in np.unique(fold_of):
        fit = fold_of != fold
        head_oof[~fit] = _isotonic(raw_oof[fit], log_age[fit]).predict(raw_oof[~fit])
    calibration = _isotonic(raw_oof, log_age)
    # The stack: the blend of each fold's faces fitted on the other folds' out-of-fold outputs.
    companion = companion_of(chosen)
    companion_oof = cached_out_of_fold(companion, features, log_age, fold_of, seed, Path(cache) if cache else None)
    oof = np.zeros(len(ages))
    for fold in np.unique(fold_of):
        fit = fold_of != fold
        oof[~fit] = stack_log_age(head_oof[~fit], companion_oof[~fit], np.array(BLEND_EDGES),
                                  fit_blend(head_oof[fit], companion_oof[fit], log_age[fit]))
    blend = fit_blend(head_oof, companion_oof, log_age)
    interval = interval_quantiles(ages, oof)
    stack_mae = float(np.mean(np.abs(np.clip(np.expm1(oof), 0, None) - ages)))
    figures = {"head (calibrated)": np.clip(np.expm1(head_oof), 0, None), companion.name: np.clip(companion_oof, 0, None),
               "stack": np.clip(np.expm1(oof), 0, None)}
    for name, years in figures.items():
        sweep.append({"candidate": name, "oof_mae": round(float(np.mean(np.abs(years - ages))), 3),
                      "oof_band_mae": band_mae(ages, years)})
    tqdm.write(f"stack of {chosen.name} and {companion.name}: out-of-fold MAE {stack_mae:.3f}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    every_row = training_rows(features, np.arange(len(ages)))
    head = fit_head(chosen, every_row, np.tile(log_age, len(features.features)), seed)
    companion_head = fit_head(companion, every_row, np.tile(log_age, len(features.features)), seed)
    arrays = {"mean": head.mean, "scale": head.scale, "calibration_in": calibration.X_thresholds_.astype(np.float32),
              "calibration_out": calibration.y_thresholds_.astype(np.float32),
              # Same columns, same rows: the companion's standardisation is the head's.
              "companion_w": companion_head.weights[0], "companion_b": companion_head.biases[0],
              "blend_edges": np.array(BLEND_EDGES, dtype=np.float32), "blend": blend.astype(np.float32)}
    for i, (w, b) in enumerate(zip(head.weights, head.biases)):
        arrays[f"w{i}"], arrays[f"b{i}"] = w, b
    np.savez(out / "weights.npz", **arrays)
    record = {
        "kind": "stack", "head": "mlp" if chosen.hidden_units else "linear", "target": "log(1 + age)", "inputs": chosen.inputs,
        "hidden_columns": head.hidden_columns, "layers": len(head.weights), "embedder": embedder.space,
        "companion": {"candidate": companion.name, "alpha": companion.alpha, "target": "years"},
        "interval": interval,
        "metrics": {"train_faces": int(len(ages)), "folds": folds, "head_oof_mae_uncalibrated": round(mae, 3),
                    "head_oof_mae": round(float(np.mean(np.abs(figures["head (calibrated)"] - ages))), 3),
                    "oof_mae": round(stack_mae, 3), "oof_band_mae": band_mae(ages, figures["stack"]), "candidate": chosen.name,
                    "alpha": chosen.alpha, "hidden_units": list(chosen.hidden_units), "components": chosen.components},
    }
    (out / "model.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    (out / "history.json").write_text(json.dumps({"sweep": sweep, "seed": seed}, indent=2) + "\n", encoding="utf-8")
    # From the interval's arrays, not the written folder: the shipped folder's hashes are recorded after training.
    _, low, high = years_with_interval(oof, *(np.array(interval[k]) for k in ("band_edges", "low", "high")))
    return {"out": str(out), "train_faces": int(len(ages)), "skipped": [s.reason for s in skipped], "chosen": chosen.name,
            "head_oof_mae_uncalibrated": round(mae, 3), "oof_mae": round(stack_mae, 3),
            "oof_interval_coverage": round(interval_coverage(ages, low, high), 4), "sweep": sweep}
