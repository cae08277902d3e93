"""Age: which models of the same recognition pass to stack with the head, and how, chosen on training folds only.

    python benchmarks/age_pass_stack.py --features-cache /tmp/age-features [--json OUT]

The head (``facesuite train age``'s chosen candidate, its out-of-fold ``log(1 + age)`` through
its cross-fitted isotonic map, as ``model.json`` records it) is stacked with ridge regressions
on the same pass's features whose target is the age in years (good for older faces, where the
head is pulled young): on the 128-D embedding, on the embedding and pooled stages, on everything
the pass gives at three penalties. Combiners that run in NumPy from stored arrays: one ridge on
the models' ``log(1 + age)``, the same with squares and products, or one ridge per band of the
head's predicted age (the interval's six bands, or ``facesuite.train.age.BLEND_EDGES``' eight),
with or without each model's spread from the head (``|log(1 + its age) - log(1 + head's)|``,
as ``facesuite.classify.age.blend_inputs`` gives the shipped blend); each with and without an
isotonic map after it. Everything is out of fold on ``facesuite train age``'s 3 folds of the
training files: a combiner for a fold's faces is fitted on the other folds' out-of-fold outputs.
The anchor of ``benchmarks/age.py`` (ridge in years on the plain chip's 128-D embedding, its
penalty by 3-fold cross-validation, as ``ridge_anchor`` fits it) gets a row computed the same
way: fitted on two folds, scored on the third.

Printed: out-of-fold MAE overall and per true age band of every model and stack, the paired
bootstrap interval of each stack minus the head per band (and of the choice minus the anchor),
and the choice: among the stacks that
are not worse than the head in any band beyond noise (no band's interval above zero), the one
with the fewest models whose overall MAE is within :data:`SIMPLER_MARGIN` of the lowest (a third
model must earn its weights), the lowest of those. Dev is never read here: measure the model ``facesuite train age`` then writes with
``benchmarks/age.py --candidate DIR``.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np
from age import ANCHOR_ALPHAS, RESAMPLES

from facesuite.classify.age import AGE_BANDS, age_band, blend_band
from facesuite.config import data_root
from facesuite.embed.dlib.reader import EMBEDDING_DIM

FOLDS = 3
#: Years of out-of-fold MAE a stack of fewer models may give up against the lowest.
SIMPLER_MARGIN = 0.05


def companions() -> dict[str, object]:
    """The ridges in years that may join the head, by short name."""
    from facesuite.train.age import COMPANION_ALPHA, Candidate

    return {"embedding": Candidate("ridge in years, embedding", "embedding", 1.0, years=True),
            "pooled": Candidate("ridge in years, pooled", "pooled", 100.0, years=True),
            "all, alpha 3000": Candidate("ridge in years, maps", "maps", 3000.0, years=True),
            "all, alpha 10000": Candidate("ridge in years, maps", "maps", COMPANION_ALPHA, years=True),
            "all, alpha 30000": Candidate("ridge in years, maps", "maps", 30000.0, years=True)}


class Combiner:
    """Ridge on the stacked ``log(1 + age)`` columns (``quad``: with their squares and products;
    ``spread``: with each column's distance from the head's, the first), one for all faces or one
    per band of the head's predicted age (``edges``: upper edges in years), then optionally an
    isotonic map."""

    def __init__(self, kind: str, edges: tuple[float, ...] | None, spread: bool, isotonic: bool) -> None:
        self.kind, self.edges, self.spread, self.isotonic = kind, edges, spread, isotonic

    def design(self, columns: np.ndarray) -> np.ndarray:
        x = columns
        if self.spread:
            x = np.hstack([x, np.abs(columns[:, 1:] - columns[:, :1])])
        if self.kind != "quad":
            return x
        pairs = [columns[:, i] * columns[:, j] for i, j in itertools.combinations_with_replacement(range(columns.shape[1]), 2)]
        return np.hstack([x, np.stack(pairs, axis=1)])

    def bands(self, columns: np.ndarray) -> np.ndarray:
        return blend_band(columns[:, 0], np.array(self.edges)) if self.edges else np.zeros(len(columns), dtype=int)

    def fit(self, columns: np.ndarray, log_age: np.ndarray) -> Combiner:
        from sklearn.isotonic import IsotonicRegression
        from sklearn.linear_model import Ridge

        from facesuite.train.age import BLEND_ALPHA

        x, band = self.design(columns), self.bands(columns)
        every = Ridge(alpha=BLEND_ALPHA).fit(x, log_age)
        # A band with under 20 faces gets the all-faces fit, as fit_blend does.
        self.models = {b: Ridge(alpha=BLEND_ALPHA).fit(x[band == b], log_age[band == b]) if np.sum(band == b) >= 20 else every
                       for b in range(len(self.edges or ()) + 1)}
        self.calibration = IsotonicRegression(out_of_bounds="clip").fit(self.raw(columns), log_age) if self.isotonic else None
        return self

    def raw(self, columns: np.ndarray) -> np.ndarray:
        x, band = self.design(columns), self.bands(columns)
        z = np.zeros(len(x))
        for b in np.unique(band):
            z[band == b] = self.models[b].predict(x[band == b])
        return z

    def log_age(self, columns: np.ndarray) -> np.ndarray:
        z = self.raw(columns)
        return self.calibration.predict(z) if self.calibration is not None else z


def band_row(true_age: np.ndarray, years: np.ndarray) -> dict[str, float]:
    errors = np.abs(np.clip(years, 0, None) - true_age)
    bands = np.array([age_band(a) for a in true_age])
    return {"all": round(float(errors.mean()), 3), **{b: round(float(errors[bands == b].mean()), 3) for b, _, _ in AGE_BANDS}}


def anchor_out_of_fold(embedding: np.ndarray, ages: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """``benchmarks/age.py``'s anchor (ridge in years on the plain chip's unit embedding, its
    penalty by 3-fold cross-validation) fitted on the other folds, per fold."""
    from sklearn.linear_model import RidgeCV

    predicted = np.zeros(len(ages))
    for fold in range(FOLDS):
        fit = folds != fold
        predicted[~fit] = RidgeCV(alphas=ANCHOR_ALPHAS, cv=3).fit(embedding[fit], ages[fit]).predict(embedding[~fit])
    return predicted


def paired_intervals(true_age: np.ndarray, stack: np.ndarray, head: np.ndarray, rng: np.random.Generator) -> dict[str, list[float]]:
    """95% bootstrap interval of the mean of (stack error - head error), per true age band."""
    difference = np.abs(np.clip(stack, 0, None) - true_age) - np.abs(np.clip(head, 0, None) - true_age)
    bands = np.array([age_band(a) for a in true_age])
    intervals = {}
    for name, _, _ in AGE_BANDS:
        d = difference[bands == name]
        means = d[rng.integers(0, len(d), (RESAMPLES, len(d)))].mean(axis=1)
        intervals[name] = [round(float(np.percentile(means, 2.5)), 3), round(float(np.percentile(means, 97.5)), 3)]
    return intervals


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features-cache", type=Path, default=None, help="training features cache (facesuite train age --cache)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args()

    from sklearn.isotonic import IsotonicRegression

    from facesuite.classify.age import DEFAULT_AGE_DIR
    from facesuite.detect.extract import FaceExtractor
    from facesuite.embed import get_embedder
    from facesuite.train.age import BLEND_EDGES, INTERVAL_EDGES, Candidate, cached_out_of_fold, folds_of, read_age_samples
    from facesuite.train.backbone_features import pass_features

    root = data_root()
    paths, ages, groups = read_age_samples(root / "utkface/images", root / "splits/utkface_dev.txt")
    features, _ = pass_features(paths, FaceExtractor(), get_embedder(), args.features_cache)
    row = {str(p): i for i, p in enumerate(paths)}
    rows = np.array([row[p] for p in features.paths])
    ages, groups = ages[rows], [groups[i] for i in rows]
    folds = folds_of(groups, FOLDS)
    log_age = np.log1p(ages)
    record = json.loads((DEFAULT_AGE_DIR / "model.json").read_text(encoding="utf-8"))
    metrics = record["metrics"]
    chosen = Candidate(metrics["candidate"], record["inputs"], float(metrics["alpha"]), tuple(metrics["hidden_units"]),
                       metrics["components"])
    raw = cached_out_of_fold(chosen, features, log_age, folds, cache=args.features_cache)
    head = np.zeros(len(ages))
    for fold in range(FOLDS):  # through the isotonic map, cross-fitted, as train_age measures it
        fit = folds != fold
        head[~fit] = IsotonicRegression(out_of_bounds="clip").fit(raw[fit], log_age[fit]).predict(raw[~fit])
    columns = {"head": head}
    for name, candidate in companions().items():
        columns[name] = np.log1p(np.clip(cached_out_of_fold(candidate, features, log_age, folds, cache=args.features_cache), 0, None))

    sweep = {f"{name} alone": band_row(ages, np.expm1(z)) for name, z in columns.items()}
    anchor = anchor_out_of_fold(features.of("plain")[:, -EMBEDDING_DIM:], ages, folds)
    sweep["anchor: ridge in years on the plain 128-D embedding (benchmarks/age.py)"] = band_row(ages, anchor)
    rng = np.random.default_rng(0)
    stacks, noise, size, predictions = {}, {}, {}, {}
    bandings = {"": None, ", per band": INTERVAL_EDGES, ", per finer band": BLEND_EDGES}
    sets = [("embedding",), ("pooled",), ("all, alpha 10000",), ("embedding", "all, alpha 10000"), ("pooled", "all, alpha 10000"),
            ("embedding", "pooled", "all, alpha 10000")]
    for members, kind, banding, spread, isotonic in itertools.product(sets, ("linear", "quad"), bandings, (False, True),
                                                                      (False, True)):
        if kind == "quad" and bandings[banding]:
            continue  # a per-band quadratic has more coefficients than the smallest bands carry
        name = (f"head + {' + '.join(members)}: {kind}{' + spread' if spread else ''}{banding}"
                f"{' + isotonic' if isotonic else ''}")
        x = np.stack([head] + [columns[m] for m in members], axis=1)
        predicted = np.zeros(len(ages))
        for fold in range(FOLDS):
            fit = folds != fold
            predicted[~fit] = Combiner(kind, bandings[banding], spread, isotonic).fit(x[fit], log_age[fit]).log_age(x[~fit])
        stacks[name], size[name], predictions[name] = band_row(ages, np.expm1(predicted)), len(members), np.expm1(predicted)
        noise[name] = paired_intervals(ages, np.expm1(predicted), np.expm1(head), rng)
    eligible = [n for n in stacks if all(low <= 0 for low, _ in noise[n].values())]
    lowest = min((stacks[n]["all"] for n in eligible), default=None)
    close = [n for n in eligible if stacks[n]["all"] <= lowest + SIMPLER_MARGIN]
    choice = min(close, key=lambda n: (size[n], stacks[n]["all"])) if close else None

    print(f"Out-of-fold MAE on the {len(ages)} training faces (years), {FOLDS} folds:")
    for name, figures in {**sweep, **stacks}.items():
        worse = [b for b, (low, _) in noise.get(name, {}).items() if low > 0]
        print(f"  {name:70s} " + "  ".join(f"{b} {v:5.2f}" for b, v in figures.items())
              + (f"  worse than the head at {', '.join(worse)}" if worse else ""))
    print(f"chosen: {choice}")
    if choice is not None:
        print("  stack minus head, per band (95% paired bootstrap): "
              + ", ".join(f"{b} [{low:+.2f}, {high:+.2f}]" for b, (low, high) in noise[choice].items()))
        print("  stack minus anchor, per band (95% paired bootstrap): "
              + ", ".join(f"{b} [{low:+.2f}, {high:+.2f}]"
                          for b, (low, high) in paired_intervals(ages, predictions[choice], anchor, rng).items()))
    if args.json:
        args.json.write_text(json.dumps({"models": sweep, "stacks": stacks, "stack_minus_head_ci95": noise, "chosen": choice},
                                        indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
