"""Classification metrics and report: metrics.json, classification_report.txt, confusion matrix PNG, report.html."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    classification_report,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

from facesuite.evaluate.plots import plt, save_figure
from facesuite.report.html import Section, figure_html, table_html, write_html, write_json


def classification_metrics(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str]) -> dict:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix (rows = truth)."""
    labels = list(labels)
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "per_class": {
            label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for label, p, r, f, s in zip(labels, precision, recall, f1, support)
        },
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "labels": labels,
    }


def plot_confusion_matrix(matrix: Sequence[Sequence[int]], labels: Sequence[str], out: Path, title: str) -> Path:
    matrix = np.asarray(matrix)
    size = max(4.0, 0.6 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    normalised = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center", color="white" if normalised[i, j] > 0.5 else "black")
    return save_figure(fig, out)


def write_classification_report(
    out: str | Path,
    y_true: Sequence[str],
    y_pred: Sequence[str],
    labels: Sequence[str],
    title: str,
    extra: dict | None = None,
    images: Sequence[tuple[str, Path]] = (),
    pictures: Sequence[Section] = (),
) -> dict:
    """Write the standard report kit into ``out`` and return the metrics (plus ``extra``).
    ``images`` are plots shown beside the confusion matrix; ``pictures`` are sections of faces
    shown right after them."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    metrics = classification_metrics(y_true, y_pred, labels)
    metrics.update(extra or {})
    write_json(out / "metrics.json", metrics)
    text = classification_report(y_true, y_pred, labels=list(labels), digits=4, zero_division=0)
    (out / "classification_report.txt").write_text(text, encoding="utf-8")
    plot = plot_confusion_matrix(metrics["confusion_matrix"], labels, out / "confusion_matrix.png", title)
    rows = [[label, m["precision"], m["recall"], m["f1"], m["support"]] for label, m in metrics["per_class"].items()]
    summary = table_html(["metric", "value"], [["accuracy", metrics["accuracy"]], ["macro F1", metrics["macro_f1"]], ["samples", len(y_true)]],
                         "headline")
    figures = figure_html("Confusion matrix (rows: true class, columns: predicted)", plot)
    figures += "".join(figure_html(caption, path) for caption, path in images)
    sections = [("Summary", summary), ("Figures", figures), *pictures,
                ("Per class", table_html(["class", "precision", "recall", "F1", "support"], rows))]
    write_html(out / "report.html", title, sections)
    return metrics


def group_accuracy(groups: dict[str, tuple[int, int]]) -> dict[str, dict]:
    """Per group of ``(right, total)``: accuracy and its 95% Wilson interval (scipy), so small
    groups show how little their figure says."""
    from scipy.stats import binomtest

    result = {}
    for name, (right, total) in groups.items():
        if total:
            interval = binomtest(right, total).proportion_ci(method="wilson")
            result[name] = {"accuracy": right / total, "n": total, "ci95": [float(interval.low), float(interval.high)]}
    return result


def plot_group_accuracy(groups: dict[str, dict], out: Path, ylabel: str = "accuracy") -> Path:
    """Bars of :func:`group_accuracy`'s groups, each with its 95% interval."""
    names = list(groups)
    rates = np.array([groups[n]["accuracy"] for n in names])
    errors = np.array([[rate - groups[n]["ci95"][0] for n, rate in zip(names, rates)],
                       [groups[n]["ci95"][1] - rate for n, rate in zip(names, rates)]])
    fig, ax = plt.subplots(figsize=(max(4.0, 0.75 * len(names) + 1.5), 3.8))
    ax.bar(names, rates, yerr=errors, capsize=4, color="#4a7ab5")
    for i, name in enumerate(names):
        ax.text(i, 0.03, f"{rates[i]:.2f}\nn={groups[name]['n']}", ha="center", fontsize=7, color="white")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(f"{ylabel} (95% Wilson interval)")
    ax.tick_params(axis="x", rotation=30)
    return save_figure(fig, out)
