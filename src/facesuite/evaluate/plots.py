"""Plots shared by the evaluations and the trainers (matplotlib, written as PNG), and
:func:`save_figure`, how every figure of facesuite is written."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import roc_auc_score, roc_curve


def save_figure(fig: Figure, out: Path, dpi: int = 110) -> Path:
    """Lay ``fig`` out, write it to ``out`` as PNG and close it (pyplot holds every open figure)."""
    fig.tight_layout()
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return out


def plot_curves(history: list[dict], out: Path) -> Path:
    """A training run's loss and accuracy per epoch: ``train_loss``, ``train_accuracy`` and, where
    the records have them, ``val_loss`` and ``val_accuracy``."""
    epochs = [record["epoch"] for record in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, metric in zip(axes, ("loss", "accuracy")):
        for split in ("train", "val"):
            key = f"{split}_{metric}"
            if key in history[0]:
                axis.plot(epochs, [record[key] for record in history], marker="o", label=split)
        axis.set_xlabel("epoch")
        axis.set_title(metric)
        axis.grid(alpha=0.3)
        axis.legend()
    return save_figure(fig, out, dpi=100)


def plot_roc(distances: np.ndarray, labels: np.ndarray, out: Path) -> Path:
    """ROC of pair distances (label 1: same person), false accepts on a log scale."""
    fpr, tpr, _ = roc_curve(labels, -distances)
    fig, ax = plt.subplots(figsize=(5, 4.5))
    ax.plot(fpr, tpr, label=f"AUC {roc_auc_score(labels, -distances):.4f}")
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlim(1e-3, 1)
    ax.set_xlabel("false accept rate")
    ax.set_ylabel("true accept rate")
    ax.legend(loc="lower right")
    return save_figure(fig, out)


def plot_histograms(distances: np.ndarray, labels: np.ndarray, threshold: float, out: Path) -> Path:
    """Same-person and different-people distance histograms with the threshold drawn."""
    fig, ax = plt.subplots(figsize=(6, 4))
    bins = np.linspace(0, 1.05 * max(float(distances.max()), threshold), 60)
    ax.hist(distances[labels == 1], bins=bins, alpha=0.6, label="same person")
    ax.hist(distances[labels == 0], bins=bins, alpha=0.6, label="different people")
    ax.axvline(threshold, color="black", ls="--", label=f"threshold {threshold:.3f}")
    ax.set_xlabel("cosine distance")
    ax.set_ylabel("pairs")
    ax.legend()
    return save_figure(fig, out)


def plot_bars(values: dict[str, float], out: Path, ylabel: str = "top-1") -> Path:
    """One labelled bar per key (a figure per distortion type, per group)."""
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    names = list(values)
    ax.bar(names, [values[n] for n in names], color="#4a7ab5")
    for i, name in enumerate(names):
        ax.text(i, values[name] + 0.01, f"{values[name]:.3f}", ha="center", fontsize=8)
    ax.set_ylim(0, 1.08)
    ax.set_ylabel(ylabel)
    ax.tick_params(axis="x", rotation=30)
    return save_figure(fig, out)
