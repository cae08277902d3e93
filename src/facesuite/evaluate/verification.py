"""Verification on a list of image pairs (``img1,img2,same``), the way LFW's protocol reports it:
ROC and AUC, TAR at FAR 1% and 0.1%, accuracy at the calibrated threshold, and the 10-fold
accuracy (the threshold picked on nine folds, counted on the tenth), with plots and a report.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from facesuite.decide import NO_FACE, SAME
from facesuite.errors import InputError, Skipped
from facesuite.evaluate.plots import plot_histograms, plot_roc
from facesuite.report.faces import ChipSource, hardest_pairs
from facesuite.report.html import figure_html, table_html, write_html, write_json
from facesuite.text import csv_writer, open_csv

FOLDS = 10
#: (key suffix, FAR) of the TAR figures every verification reports.
FAR_TARGETS = (("1pct", 0.01), ("0.1pct", 0.001))
BOOTSTRAP_ROUNDS = 500


def tar_at_far(distances: np.ndarray, labels: np.ndarray, far: float) -> float:
    """Share of same-person pairs accepted at the distance that accepts ``far`` of the others."""
    return float(_tars(distances, labels, [far])[0])


def _tars(distances: np.ndarray, labels: np.ndarray, fars: Sequence[float]) -> np.ndarray:
    """:func:`tar_at_far` at each of ``fars``, from one ROC curve."""
    fpr, tpr, _ = roc_curve(labels, -distances)
    return np.interp(fars, fpr, tpr)


def tar_figures(distances: np.ndarray, labels: np.ndarray, seed: int = 0) -> dict:
    """TAR at FAR 1% and 0.1%, each with a bootstrap 95% interval (same-person and
    different-person pairs resampled separately) and how many different-person pairs that FAR is:
    at 0.1% of a few thousand pairs the figure rests on a handful of them."""
    rng = np.random.default_rng(seed)
    fars = [far for _, far in FAR_TARGETS]
    genuine, impostor = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    rounds = np.empty((BOOTSTRAP_ROUNDS, len(FAR_TARGETS)))
    for row in rounds:
        picked = np.concatenate([rng.choice(genuine, genuine.size), rng.choice(impostor, impostor.size)])
        row[:] = _tars(distances[picked], labels[picked], fars)
    record = {}
    for column, ((name, far), point) in enumerate(zip(FAR_TARGETS, _tars(distances, labels, fars))):
        low, high = np.percentile(rounds[:, column], [2.5, 97.5])
        record.update({f"tar_at_far_{name}": float(point), f"tar_at_far_{name}_ci95": [float(low), float(high)],
                       f"impostors_within_far_{name}": round(far * impostor.size, 1)})
    return record


def tar_text(metrics: dict, name: str) -> str:
    """A TAR figure of :func:`tar_figures` with its interval and footing, for tables and summaries."""
    low, high = metrics[f"tar_at_far_{name}_ci95"]
    return (f"{metrics[f'tar_at_far_{name}']:.4f} (95% {low:.3f}-{high:.3f}; "
            f"{metrics[f'impostors_within_far_{name}']:g} different-person pairs at that FAR)")


#: The distance given to a pair with no face in one of its images: the largest cosine distance, so
#: the pair is "not the same person" at every threshold of the curves, as ``verify`` answers it
#: ``no face`` and never ``same``.
NO_FACE_DISTANCE = 2.0


@dataclass
class PairScores:
    """The pairs whose two images could be read (``kept``: their indices in the pair list), each
    with its cosine distance (:data:`NO_FACE_DISTANCE` when an image holds no face) and the answer
    ``verify`` gives it (:meth:`facesuite.decide.OperatingPoint.pair`); the images skipped."""

    distances: np.ndarray
    labels: np.ndarray
    kept: list[int]
    decisions: list[str]
    skipped: list[Skipped]


def pair_distances(analysis, pairs: list[tuple[Path, Path, bool]], progress: bool = True,
                   source: str | Path | None = None) -> PairScores:
    """Each readable pair's distance and decision, from the main face of each image as ``verify``
    reads it (the same pass: route, presence, quality)."""
    images = list(dict.fromkeys(str(path) for a, b, _ in pairs for path in (a, b)))
    faces, skipped = analysis.faces(images, progress="verification pairs" if progress else None)
    face_of = {face.source: face for face in faces}
    kept = [i for i, (a, b, _) in enumerate(pairs) if str(a) in face_of and str(b) in face_of]
    if not kept:
        first = skipped[0] if skipped else None
        why = f" (first: {first.error})" if first is not None else ""
        raise InputError(f"no pair has two readable images{why}; relative paths are read from the list's folder", source)
    point = analysis.operating_point
    distances, decisions = np.empty(len(kept)), []
    for row, index in enumerate(kept):
        first, second = face_of[str(pairs[index][0])], face_of[str(pairs[index][1])]
        no_face = (first.no_face, second.no_face)
        distance = NO_FACE_DISTANCE if any(no_face) else float(1.0 - np.dot(first.embedding, second.embedding))
        distances[row] = distance
        decisions.append(point.pair(distance, (first.quality, second.quality), no_face).answer)
    labels = np.array([int(pairs[i][2]) for i in kept])
    return PairScores(distances, labels, kept, decisions, skipped)


def verification_metrics(scores: PairScores, threshold: float, seed: int = 0) -> dict:
    """The curves' figures on the distances; the accuracy at the operating point on the decisions
    (a pair answered ``no face`` or ``unrecognisable`` counts as not the same person)."""
    distances, labels = scores.distances, scores.labels
    if len(set(labels.tolist())) < 2:
        raise InputError("the pair list needs both same-person and different-person pairs")
    predicted_same = np.array([decision == SAME for decision in scores.decisions])
    return {
        "pairs": int(labels.size), "same_pairs": int(labels.sum()), "different_pairs": int((labels == 0).sum()),
        "no_face_pairs": int(sum(decision == NO_FACE for decision in scores.decisions)),
        "auc": float(roc_auc_score(labels, -distances)),
        **tar_figures(distances, labels, seed),
        "threshold": float(threshold),
        "accuracy_at_threshold": float((predicted_same == (labels == 1)).mean()),
        "accuracy_10_fold": _fold_accuracy(distances, labels, seed),
    }


def _fold_accuracy(distances: np.ndarray, labels: np.ndarray, seed: int) -> float:
    """Mean accuracy over folds, each at the threshold that is best on the other folds: the middle
    of the gap between two neighbouring distances (a threshold on a pair's own distance sits at
    the edge of its class, and held-out pairs just past it fall on the wrong side)."""
    order = np.random.default_rng(seed).permutation(labels.size)
    folds = np.array_split(order, min(FOLDS, labels.size))
    accuracies = []
    for held_out in folds:
        train = np.setdiff1d(order, held_out)
        seen = np.unique(distances[train])
        candidates = np.concatenate([seen[:1] - 1e-6, (seen[1:] + seen[:-1]) / 2, seen[-1:] + 1e-6])
        best = max(candidates, key=lambda t: ((distances[train] <= t) == (labels[train] == 1)).mean())
        accuracies.append(((distances[held_out] <= best) == (labels[held_out] == 1)).mean())
    return float(np.mean(accuracies))


def write_verification_report(out: Path, pairs: list[tuple[Path, Path, bool]], scores: PairScores, metrics: dict,
                              title: str, chips: ChipSource | None = None) -> Path:
    """metrics.json, pairs.csv (one row per pair evaluated, with ``verify``'s answer), roc.png,
    distances.png, report.html; with ``chips`` (:func:`facesuite.report.faces.chips_of`) the report
    shows the hardest pairs' faces."""
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "metrics.json", metrics)
    threshold, distances, labels, kept = metrics["threshold"], scores.distances, scores.labels, scores.kept
    with open_csv(out / "pairs.csv") as handle:
        writer = csv_writer(handle)
        writer.writerow(["img1", "img2", "same", "distance", "decision", "predicted_same"])
        for index, distance, decision in zip(kept, distances, scores.decisions):
            a, b, same = pairs[index]
            shown = "" if decision == NO_FACE else f"{distance:.6f}"
            writer.writerow([str(a), str(b), int(same), shown, decision, int(decision == SAME)])
    figures = [("ROC (same vs different pairs)", plot_roc(distances, labels, out / "roc.png")),
               ("Distance histograms", plot_histograms(distances, labels, threshold, out / "distances.png"))]
    summary = table_html(["metric", "value"], [
        ["AUC", metrics["auc"]], ["TAR at FAR 1%", tar_text(metrics, "1pct")], ["TAR at FAR 0.1%", tar_text(metrics, "0.1pct")],
        ["10-fold accuracy (threshold chosen on the other folds)", metrics["accuracy_10_fold"]],
        ["accuracy at the calibrated threshold", metrics["accuracy_at_threshold"]],
        ["threshold (cosine distance)", threshold],
        ["pairs: same / different", f"{metrics['same_pairs']} / {metrics['different_pairs']}"],
        ["pairs with no face in an image (not the same at any threshold)", metrics["no_face_pairs"]],
    ], "headline")
    sections = [("Summary", summary), ("Figures", "".join(figure_html(c, p) for c, p in figures))]
    if chips is not None:
        rows = [(str(pairs[i][0]), str(pairs[i][1]), bool(pairs[i][2]), float(d)) for i, d in zip(kept, distances)]
        sections.append(("Hardest pairs", hardest_pairs(rows, threshold, chips)))
    return write_html(out / "report.html", title, sections)
