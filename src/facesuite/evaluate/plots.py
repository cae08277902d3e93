"""Plots shared by the recognition and verification evaluations (matplotlib, written as PNG)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve


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
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


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
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


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
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
