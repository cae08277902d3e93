"""Recognition evaluation on identity folders: identification (clean gallery, distorted probes)
and verification (genuine / impostor pairs), with plots and an HTML report.
"""

from __future__ import annotations

import csv
import random
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import f1_score, roc_auc_score, roc_curve

from facesuite.data import IdentityDataset
from facesuite.classify.quality import UNRECOGNISABLE, quality_features
from facesuite.evaluate.open_set import Searches, open_set_metrics, operating_thresholds, plot_det, plot_edc, search
from facesuite.gallery.base import UNKNOWN
from facesuite.report.faces import ChipSource, recognition_strips, worst_errors
from facesuite.report.html import Section, figure_html, table_html, write_html, write_json


@dataclass
class EmbeddedSet:
    """Unit embeddings of a dataset's clean (gallery) and distorted (probe) images."""

    gallery_paths: list[Path]
    gallery_ids: list[str]
    gallery: np.ndarray
    probe_paths: list[Path]
    probe_ids: list[str]
    probe_types: list[str]
    probe_sources: list[Path]
    probes: np.ndarray
    # Route-specific renderings of the gallery (``facesuite.route.views``) and, per probe, the
    # view its route compares it with (None: the clean gallery).
    gallery_views: dict[str, np.ndarray] = field(default_factory=dict)
    probe_views: list[str | None] | None = None
    # Per view, the mapping of its distances onto the clean gallery's scale (Route.view_distance).
    view_scales: dict[str, Callable[[np.ndarray], np.ndarray]] = field(default_factory=dict)
    # Per probe, the distortion the detector named and the route it took (None: not routed).
    probe_labels: list[str] | None = None
    probe_routes: list[str] | None = None
    # Per probe, the face-quality features (facesuite.classify.quality) and, with a quality model, its score.
    probe_features: np.ndarray | None = None
    probe_quality: np.ndarray | None = None
    quality_floor: float | None = None

    def distances(self) -> np.ndarray:
        """Cosine distance of every probe to every gallery image, each probe against the gallery
        view its route asks for."""
        distances = 1.0 - self.probes @ self.gallery.T
        for view, vectors in self.gallery_views.items():
            rows = [i for i, name in enumerate(self.probe_views or []) if name == view]
            if rows:
                scale = self.view_scales.get(view, lambda d: d)
                distances[rows] = scale(1.0 - self.probes[rows] @ vectors.T)
        return distances


def identification(data: EmbeddedSet, exclude_source: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest gallery image per probe: (predicted index, distance, mask of probes evaluated).

    With ``exclude_source`` each probe's own clean source image is removed from the gallery and
    only probes whose identity keeps another clean image are evaluated.
    """
    distances = data.distances()
    mask = np.ones(len(data.probe_paths), dtype=bool)
    if exclude_source:
        index_of = {str(p): i for i, p in enumerate(data.gallery_paths)}
        per_identity = defaultdict(int)
        for identity in data.gallery_ids:
            per_identity[identity] += 1
        for row, (source, identity) in enumerate(zip(data.probe_sources, data.probe_ids)):
            column = index_of.get(str(source))
            if column is not None:
                distances[row, column] = np.inf
            mask[row] = per_identity[identity] - (column is not None) > 0
    best = distances.argmin(axis=1)
    return best, distances[np.arange(len(best)), best], mask


def verification_pairs(data: EmbeddedSet, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per probe: one genuine pair (a clean image of its identity, preferring one other than its
    own source) and one impostor pair (a clean image of another identity). Returns (distances, labels)."""
    rng = random.Random(seed)
    all_distances = data.distances()
    by_identity: dict[str, list[int]] = defaultdict(list)
    for index, identity in enumerate(data.gallery_ids):
        by_identity[identity].append(index)
    distances, labels = [], []
    for row, (identity, source) in enumerate(zip(data.probe_ids, data.probe_sources)):
        own = by_identity.get(identity)
        if not own:
            continue
        others = [i for i in own if str(data.gallery_paths[i]) != str(source)] or own
        genuine = rng.choice(others)
        impostor = rng.randrange(len(data.gallery_ids))
        while data.gallery_ids[impostor] == identity:
            impostor = rng.randrange(len(data.gallery_ids))
        for column, label in ((genuine, 1), (impostor, 0)):
            distances.append(float(all_distances[row, column]))
            labels.append(label)
    return np.asarray(distances), np.asarray(labels)


def decisions(data: EmbeddedSet, threshold: float, route_thresholds: Mapping[str, float] | None = None) -> tuple[Searches, np.ndarray, np.ndarray]:
    """The open-set searches of every probe, the threshold each is decided with, and which probes
    are recognisable (at or above the quality floor)."""
    found = search(data.distances(), data.gallery_ids, data.probe_ids)
    labels = data.probe_labels or ["clean"] * len(data.probe_ids)
    recognisable = np.ones(len(labels), dtype=bool)
    if data.probe_quality is not None and data.quality_floor is not None:
        recognisable = data.probe_quality >= data.quality_floor
    return found, operating_thresholds(labels, threshold, route_thresholds or {}), recognisable


def recognition_metrics(data: EmbeddedSet, threshold: float, seed: int = 0,
                        route_thresholds: Mapping[str, float] | None = None) -> dict:
    best, _, _ = identification(data)
    predicted = [data.gallery_ids[i] for i in best]
    correct = np.asarray(predicted) == np.asarray(data.probe_ids)
    types = np.asarray(data.probe_types)
    per_type = {kind: float(correct[types == kind].mean()) for kind in sorted(set(data.probe_types))}
    best_ex, _, mask = identification(data, exclude_source=True)
    correct_ex = np.asarray([data.gallery_ids[i] for i in best_ex]) == np.asarray(data.probe_ids)
    distances, labels = verification_pairs(data, seed)
    fpr, tpr, _ = roc_curve(labels, -distances)
    accepted = distances <= threshold
    return {
        "identification": {
            "top1": float(correct.mean()),
            "macro_f1": float(f1_score(data.probe_ids, predicted, average="macro", zero_division=0)),
            "per_distortion": per_type,
            "source_excluded": float(correct_ex[mask].mean()) if mask.any() else None,
            "source_excluded_probes": int(mask.sum()),
            "probes": len(data.probe_paths),
            "gallery_images": len(data.gallery_paths),
            "identities": len(set(data.gallery_ids)),
        },
        "verification": {
            "auc": float(roc_auc_score(labels, -distances)),
            "tar_at_far_1pct": float(np.interp(0.01, fpr, tpr)),
            "threshold": float(threshold),
            "accuracy": float((accepted == (labels == 1)).mean()),
            "pairs": int(labels.size),
            "tar_at_far_0.1pct": float(np.interp(0.001, fpr, tpr)),
        },
        "open_set": open_set_metrics(*decisions(data, threshold, route_thresholds),
                                     data.probe_labels or data.probe_types),
    }


def write_recognition_report(out: Path, data: EmbeddedSet, metrics: dict, title: str, seed: int = 0,
                             route_thresholds: Mapping[str, float] | None = None,
                             chips: ChipSource | None = None) -> list[Section]:
    """metrics.json, predictions.csv, roc.png, det.png, distances.png, per_distortion.png and report.html;
    returns the report's sections. With ``chips`` (:func:`facesuite.report.faces.chips_of`) the
    report shows faces: a strip per distortion type and the worst errors."""
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "metrics.json", metrics)
    rows = _prediction_rows(data, metrics["verification"]["threshold"], route_thresholds)
    with open(out / "predictions.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["path"])
        writer.writeheader()
        writer.writerows(rows)
    found, limits, _ = decisions(data, metrics["verification"]["threshold"], route_thresholds)
    distances, labels = verification_pairs(data, seed)
    threshold = metrics["verification"]["threshold"]
    figures = [
        ("ROC (genuine vs impostor pairs)", plot_roc(distances, labels, out / "roc.png")),
        ("Top-1 per distortion type", _plot_bars(metrics["identification"]["per_distortion"], out / "per_distortion.png")),
        ("DET: open-set identification, overall and per detected type", plot_det(found, data.probe_labels or data.probe_types, out / "det.png")),
        *([("EDC: error against the share of lowest-quality faces discarded", plot_edc(found, limits, data.probe_quality, out / "edc.png"))]
          if data.probe_quality is not None else []),
        ("Distance histograms", plot_histograms(distances, labels, threshold, out / "distances.png")),
    ]
    ident, verif = metrics["identification"], metrics["verification"]
    summary = table_html(["metric", "value"], [
        ["identification top-1", ident["top1"]], ["identification macro-F1", ident["macro_f1"]],
        ["top-1, own clean source removed", ident["source_excluded"] if ident["source_excluded"] is not None else "n/a"],
        ["verification AUC", verif["auc"]], ["TAR at FAR 1%", verif["tar_at_far_1pct"]],
        ["threshold (cosine distance)", verif["threshold"]], ["accuracy at threshold", verif["accuracy"]],
        ["probes / gallery images / identities", f"{ident['probes']} / {ident['gallery_images']} / {ident['identities']}"],
    ], "headline")
    open_set = metrics["open_set"]
    decided = table_html(["detected type", "probes", "top-1", "FNIR at FPIR 1%", "coverage", "wrong identity", "FPIR", "unrecognisable"], [
        [name, r["probes"], r["top1"], r["fnir_at_fpir_0.01"], r["coverage"], r["wrong_identity_rate"], r["fpir"], r["unrecognisable_rate"]]
        for name, r in [("all", open_set["overall"]), *open_set["per_distortion"].items()]])
    per_type = table_html(["distortion", "top-1"], [[k, v] for k, v in ident["per_distortion"].items()])
    sections = [("Summary", summary), ("Figures", "".join(figure_html(c, p) for c, p in figures))]
    if chips is not None and rows:
        sections += [("Faces per distortion type: probe, nearest gallery face", recognition_strips(rows, chips)),
                     ("Worst errors", worst_errors(rows, chips))]
    sections += [("Per distortion", per_type), ("Open-set decisions at the operating point", decided)]
    write_html(out / "report.html", title, sections)
    return sections


def _prediction_rows(data: EmbeddedSet, threshold: float, route_thresholds: Mapping[str, float] | None) -> list[dict[str, str]]:
    """predictions.csv: per probe its nearest gallery face (``gallery_path``), the decision at the
    operating point, and its own identity's nearest gallery face (``mate_path``, ``mate_distance``)."""
    distances = data.distances()
    best = distances.argmin(axis=1)
    _, limits, recognisable = decisions(data, threshold, route_thresholds)
    routes = data.probe_routes or ["plain"] * len(data.probe_ids)
    quality = data.probe_quality if data.probe_quality is not None else [None] * len(data.probe_ids)
    gallery_ids = np.asarray(data.gallery_ids)
    rows = []
    for row, (path, identity, index) in enumerate(zip(data.probe_paths, data.probe_ids, best)):
        distance = float(distances[row, index])
        decision = (UNRECOGNISABLE if not recognisable[row] else data.gallery_ids[index] if distance <= limits[row] else UNKNOWN)
        own = np.flatnonzero(gallery_ids == identity)
        mate = own[distances[row, own].argmin()] if own.size else None
        rows.append({"path": str(path), "true_identity": identity, "predicted_identity": data.gallery_ids[index],
                     "distance": f"{distance:.6f}", "decision": decision, "route": routes[row],
                     "quality": "" if quality[row] is None else f"{quality[row]:.4f}",
                     "distortion": data.probe_types[row], "gallery_path": str(data.gallery_paths[index]),
                     "mate_path": "" if mate is None else str(data.gallery_paths[mate]),
                     "mate_distance": "" if mate is None else f"{distances[row, mate]:.6f}"})
    return rows


def plot_roc(distances: np.ndarray, labels: np.ndarray, out: Path) -> Path:
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


def _plot_bars(values: dict[str, float], out: Path, ylabel: str = "top-1") -> Path:
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


def embed_dataset(analysis, dataset: IdentityDataset, progress: bool = True) -> tuple[EmbeddedSet, list, dict]:
    """Embed a dataset's clean and distorted images with a :class:`~facesuite.analysis.FaceAnalysis`.

    When it has routes, each probe goes through the route of the distortion type the detector
    predicts for it (``facesuite.route.routes``); the third value then reports how often the
    predicted type was the true one. Gallery images are clean and take the plain route; routes that
    compare with a gallery view (sunny) get the gallery rendered that way.
    """
    clean_paths = [p for p, _ in dataset.clean]
    identity_of = {str(p): i for p, i in dataset.clean}
    routed = analysis.routed
    g_crops, skipped = analysis.crops(clean_paths, progress="gallery" if progress else None)
    gallery = analysis.embed_crops(g_crops)[0]
    probe_info = {str(d.path): d for d in dataset.distorted}
    p_crops, p_skipped = analysis.crops([d.path for d in dataset.distorted], progress="probes" if progress else None)
    probe_items = [probe_info[str(c.path)] for c in p_crops]
    routing: dict = {}
    views: dict[str, np.ndarray] = {}
    probe_views = features = None
    if routed:
        probes, _, kinds, _ = analysis.route_crops(p_crops)
        labels = [k.label for k in kinds]
        features = quality_features([k.probs for k in kinds], [c.face.score for c in p_crops], [c.face.fallback for c in p_crops])
        probe_views = analysis.views_of(labels)
        # Every view the routes use, even with no probe taking it here: slices of one evaluation
        # (the API's progress steps) are merged gallery by gallery.
        views = analysis.view_embeddings(g_crops, progress=progress)
        routing = {"detector_accuracy": float(np.mean([k == d.distortion for k, d in zip(labels, probe_items)])) if labels else None,
                   "routes": {kind: analysis.router.route(kind).describe() for kind in sorted(set(labels))}}
    else:
        probes = analysis.embedder.embed([c.chip for c in p_crops])
    data = EmbeddedSet(
        gallery_paths=[c.path for c in g_crops],
        gallery_ids=[identity_of[str(c.path)] for c in g_crops],
        gallery=gallery,
        probe_paths=[d.path for d in probe_items],
        probe_ids=[d.identity for d in probe_items],
        probe_types=[d.distortion for d in probe_items],
        probe_sources=[d.source for d in probe_items],
        probes=probes,
        gallery_views=views,
        probe_views=probe_views,
        view_scales={view: route.view_distance for view, route in analysis.router.gallery_views.items()} if routed else {},
        probe_labels=labels if routed else None,
        probe_routes=[analysis.router.route(label).describe() for label in labels] if routed else None,
        probe_features=features,
        probe_quality=analysis.quality.score(features) if routed and analysis.quality is not None else None,
        quality_floor=analysis.quality.floor if routed and analysis.quality is not None else None,
    )
    return data, skipped + p_skipped, routing


def calibration_pairs(
    vectors: np.ndarray, identities: Sequence[str], impostors: int = 200_000, genuine_per_identity: int = 200, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Distances of genuine pairs (up to ``genuine_per_identity`` per identity) and of
    ``impostors`` random pairs of different identities: (genuine, impostor)."""
    rng = np.random.default_rng(seed)
    ids = np.asarray(identities)
    genuine_a, genuine_b = [], []
    for identity in np.unique(ids):
        members = np.flatnonzero(ids == identity)
        a, b = np.triu_indices(len(members), 1)
        if a.size > genuine_per_identity:
            keep = rng.choice(a.size, genuine_per_identity, replace=False)
            a, b = a[keep], b[keep]
        genuine_a.append(members[a])
        genuine_b.append(members[b])
    first = rng.integers(0, len(ids), impostors)
    second = rng.integers(0, len(ids), impostors)
    different = ids[first] != ids[second]
    first, second = first[different], second[different]
    a, b = np.concatenate(genuine_a), np.concatenate(genuine_b)
    genuine = 1.0 - np.einsum("ij,ij->i", vectors[a], vectors[b])
    impostor = 1.0 - np.einsum("ij,ij->i", vectors[first], vectors[second])
    return genuine, impostor
