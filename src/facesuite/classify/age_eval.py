"""`facesuite eval age` and `predict age`: ages of the main face of each image, and how far off they are."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facesuite.classify.age import AGE_BANDS, age_band
from facesuite.data import read_split, utkface_attributes
from facesuite.errors import InputError, Skipped
from facesuite.text import csv_writer, open_csv

BOOTSTRAP = 1000  # resamples behind each 95% interval


@dataclass(frozen=True)
class AgeSample:
    path: Path
    age: int
    gender: str
    race: str


def read_age_data(folder: str | Path, split: str | Path | None = None) -> list[AgeSample]:
    """UTKFace files under ``folder`` (recursively; the name gives age, gender and race), only
    those named in the ``split`` list when one is given. Names that do not parse are left out."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("no such folder", folder)
    names = read_split(split) if split is not None else None
    samples = []
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or (names is not None and path.name.removeprefix("utk_") not in names):
            continue
        parsed = utkface_attributes(path.name)
        if parsed is not None:
            samples.append(AgeSample(path, *parsed))
    if not samples:
        raise InputError("no UTKFace files (<age>_<gender>_<race>_<date>.jpg) here" + (" named in the split" if names else ""), folder)
    return samples


def predict_ages(analysis, images: Sequence, progress: str | None = None) -> tuple[list, list[Skipped]]:
    """The faces (with ``age`` and ``age_range``) of the main face of each image, from a
    :class:`~facesuite.analysis.FaceAnalysis` holding an age model; ``(faces, skipped)``."""
    if analysis.age is None:
        raise ValueError("this FaceAnalysis has no age model")
    return analysis.faces(images, progress=progress)


def bootstrap_interval(values: np.ndarray, seed: int = 0, resamples: int = BOOTSTRAP) -> list[float]:
    """95% percentile-bootstrap interval of the mean of ``values``."""
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (resamples, len(values)))].mean(axis=1)
    return [round(float(np.percentile(means, 2.5)), 3), round(float(np.percentile(means, 97.5)), 3)]


def age_figures(true_age: np.ndarray, age: np.ndarray, low: np.ndarray, high: np.ndarray) -> dict:
    """MAE with its bootstrap interval, mean signed error, interval coverage and width."""
    errors = np.abs(age - true_age)
    return {"n": int(len(errors)), "mae": round(float(errors.mean()), 3), "mae_ci95": bootstrap_interval(errors),
            "bias": round(float((age - true_age).mean()), 3),
            "interval_coverage": round(float(np.mean((true_age >= low) & (true_age <= high))), 4),
            "interval_width": round(float(np.mean(high - low)), 2)}


def evaluate_age(samples: Sequence[AgeSample], analysis, out: str | Path) -> tuple[dict, list[Skipped]]:
    """Age of the main face of each sample against the age its name gives: ``metrics.json``,
    ``predictions.csv``, ``predicted_vs_true.png``, ``groups.png`` and ``report.html`` in ``out``."""
    from facesuite.report.html import figure_html, table_html, write_html, write_json

    out = Path(out)
    faces, skipped = predict_ages(analysis, [s.path for s in samples], progress="age")
    # A box judged no face, or a face below the quality floor, has no age: counted, not scored.
    no_face = sum(face.no_face for face in faces)
    unrecognisable = sum(not face.no_face and face.age is None for face in faces)
    faces = [face for face in faces if face.age is not None]
    if not faces:
        raise InputError("no readable images with a face to evaluate", out)
    by_path = {str(s.path): s for s in samples}
    truth = [by_path[face.source] for face in faces]
    true_age = np.array([s.age for s in truth], dtype=np.float64)
    age = np.array([f.age for f in faces])
    low, high = np.array([f.age_range[0] for f in faces]), np.array([f.age_range[1] for f in faces])
    out.mkdir(parents=True, exist_ok=True)
    with open_csv(out / "predictions.csv") as handle:
        writer = csv_writer(handle)
        writer.writerow(["path", "true_age", "age", "age_low", "age_high", "band", "gender", "race"])
        for s, face in zip(truth, faces):
            writer.writerow([face.source, s.age, f"{face.age:.2f}", f"{face.age_range[0]:.2f}", f"{face.age_range[1]:.2f}",
                             age_band(s.age), s.gender, s.race])
    groups: dict[str, np.ndarray] = {}
    bands = np.array([age_band(a) for a in true_age])
    for name, _, _ in AGE_BANDS:
        groups[f"age {name}"] = bands == name
    for key, values in (("race", [s.race for s in truth]), ("gender", [s.gender for s in truth])):
        values = np.array(values)
        for value in sorted(set(values)):
            groups[f"{key} {value}"] = values == value
    metrics = {"overall": age_figures(true_age, age, low, high), "skipped": len(skipped), "no_face": no_face,
               "unrecognisable": unrecognisable,
               "fallback_faces": int(sum(f.fallback for f in faces)), "interval_target": analysis.age.coverage,
               "groups": {name: age_figures(true_age[mask], age[mask], low[mask], high[mask])
                          for name, mask in groups.items() if mask.any()}}
    write_json(out / "metrics.json", metrics)
    scatter = _plot_predicted_vs_true(true_age, age, low, high, out / "predicted_vs_true.png")
    bars = _plot_group_mae(metrics["groups"], out / "groups.png")
    overall = metrics["overall"]
    summary = table_html(["metric", "value"], [
        ["faces", overall["n"]], ["MAE (years)", f"{overall['mae']:.2f} ({overall['mae_ci95'][0]:.2f}-{overall['mae_ci95'][1]:.2f})"],
        ["mean signed error", overall["bias"]],
        [f"{analysis.age.coverage:.0%} interval coverage", overall["interval_coverage"]],
        ["mean interval width (years)", overall["interval_width"]], ["faces below the quality floor (no age)", unrecognisable],
        ["files skipped", len(skipped)]], "headline")
    rows = [[name, g["n"], g["mae"], f"{g['mae_ci95'][0]:.2f}-{g['mae_ci95'][1]:.2f}", g["bias"], g["interval_coverage"], g["interval_width"]]
            for name, g in metrics["groups"].items()]
    write_html(out / "report.html", "Age", [
        ("Summary", summary),
        ("Figures", figure_html("Predicted vs true age (bars: the calibrated interval of every 10th face)", scatter)
         + figure_html("MAE per group, 95% bootstrap interval", bars)),
        ("Per group", table_html(["group", "faces", "MAE", "95% interval", "mean signed error", "interval coverage",
                                  "interval width"], rows)),
    ])
    return metrics, skipped


def _plot_predicted_vs_true(true_age: np.ndarray, age: np.ndarray, low: np.ndarray, high: np.ndarray, out: Path) -> Path:
    from facesuite.evaluate.plots import plt, save_figure

    fig, ax = plt.subplots(figsize=(5, 5))
    every = slice(None, None, 10)
    ax.errorbar(true_age[every], age[every], yerr=[age[every] - low[every], high[every] - age[every]], fmt="none",
                ecolor="#9bb7d4", alpha=0.5, linewidth=0.8)
    ax.scatter(true_age, age, s=4, alpha=0.35, color="#2b5d8a")
    top = float(max(true_age.max(), age.max()) + 5)
    ax.plot([0, top], [0, top], color="#c0392b", linewidth=1)
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel("true age (years)")
    ax.set_ylabel("predicted age (years)")
    return save_figure(fig, out, dpi=100)


def _plot_group_mae(groups: dict[str, dict], out: Path) -> Path:
    from facesuite.evaluate.plots import plt, save_figure

    names = list(groups)
    mae = np.array([groups[n]["mae"] for n in names])
    errors = np.array([[m - groups[n]["mae_ci95"][0] for n, m in zip(names, mae)], [groups[n]["mae_ci95"][1] - m for n, m in zip(names, mae)]])
    fig, ax = plt.subplots(figsize=(max(4.0, 0.6 * len(names) + 1.5), 3.8))
    ax.bar(names, mae, yerr=errors, capsize=3, color="#4a7ab5")
    ax.set_ylabel("MAE, years (95% bootstrap interval)")
    ax.tick_params(axis="x", rotation=40)
    return save_figure(fig, out, dpi=100)
