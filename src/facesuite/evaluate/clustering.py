"""How well faces were grouped by person: pairwise and BCubed precision/recall/F, impurity, counts.

A face left unclustered (no face, unrecognisable) counts as a group of its own in every figure, so
leaving faces out never raises a score; ``unclustered`` says how many were.

- pairwise: over all pairs of faces, precision = same-cluster pairs that are the same person /
  same-cluster pairs; recall = same-person pairs put in one cluster / same-person pairs.
- BCubed (Bagga and Baldwin 1998; Amigo et al. 2009): per face, the share of its cluster that is
  its person (precision) and the share of its person that is in its cluster (recall), averaged.
- impurity: the share of clustered faces that are not of their cluster's most common person
  (what "no cluster mixes two people" is measured by).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.metrics.cluster import contingency_matrix

from facesuite.errors import InputError


def _f(precision: float, recall: float) -> float:
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def clustering_metrics(truth: Sequence[str], clusters: Sequence[int | None]) -> dict:
    """Figures for one clustering: ``truth`` is each face's person, ``clusters`` its cluster id
    (None: unclustered, counted as a singleton)."""
    if len(truth) != len(clusters):
        raise ValueError("truth and clusters must have one entry per face")
    n = len(truth)
    unclustered = [c is None for c in clusters]
    # Unclustered faces become singletons with ids no real cluster has.
    labels = [f"u{i}" if c is None else f"c{c}" for i, c in enumerate(clusters)]
    table = contingency_matrix(truth, labels, sparse=True).tocsr().astype(np.float64)  # people x clusters
    cells = table.data
    person_sizes = np.asarray(table.sum(axis=1)).ravel()
    cluster_sizes = np.asarray(table.sum(axis=0)).ravel()
    same_cluster = float((cluster_sizes * (cluster_sizes - 1)).sum() / 2)
    same_person = float((person_sizes * (person_sizes - 1)).sum() / 2)
    both = float((cells * (cells - 1)).sum() / 2)
    pair_p = both / same_cluster if same_cluster else 1.0
    pair_r = both / same_person if same_person else 1.0
    # BCubed: sum over cells of n_ij^2 / |cluster j| (precision) and / |person i| (recall).
    coo = table.tocoo()
    b_p = float((coo.data ** 2 / cluster_sizes[coo.col]).sum() / n) if n else 1.0
    b_r = float((coo.data ** 2 / person_sizes[coo.row]).sum() / n) if n else 1.0
    real = [j for j, label in enumerate(np.unique(labels)) if label.startswith("c")]
    clustered = int(n - sum(unclustered))
    majority = float(np.asarray(table[:, real].max(axis=0).todense()).sum()) if real else 0.0
    return {
        "faces": n, "people": int(len(person_sizes)), "clusters": len(real),
        "singleton_clusters": int(sum(cluster_sizes[j] == 1 for j in real)),
        "unclustered": int(sum(unclustered)), "unclustered_share": sum(unclustered) / n if n else 0.0,
        "pairwise": {"precision": pair_p, "recall": pair_r, "f1": _f(pair_p, pair_r)},
        "bcubed": {"precision": b_p, "recall": b_r, "f": _f(b_p, b_r)},
        "impurity": (clustered - majority) / clustered if clustered else 0.0,
    }


def evaluate_clustering(analysis, dataset, with_distorted: bool = True) -> tuple:
    """Cluster every face of the dataset's photos (``analysis``: a FaceAnalysis) and score the
    main face of each photo against its identity (a bystander has no label). Returns the
    clusters, each scored face's person by row, and :func:`clustering_metrics` of them."""
    photos = [(path, identity) for path, identity in dataset.clean]
    if with_distorted:
        photos += [(d.path, d.identity) for d in dataset.distorted]
    person = {str(path): identity for path, identity in photos}
    clusters = analysis.cluster([path for path, _ in photos], progress="cluster")
    truth = {row: person[face.path] for row, face in enumerate(clusters.faces) if face.index == 0}
    if not truth:
        raise InputError("no photo could be read", dataset.root)
    rows = sorted(truth)
    metrics = clustering_metrics([truth[row] for row in rows], [clusters.faces[row].cluster for row in rows])
    metrics.update(photos=len(photos), skipped=len(clusters.skipped), bystanders=len(clusters.faces) - len(rows),
                   edge_threshold=clusters.threshold, embedder=clusters.embedder,
                   clustered_faces_all=len(clusters.faces) - len(clusters.unclustered()))
    return clusters, truth, metrics


def write_clustering_report(out: Path, clusters, truth: dict[int, str], metrics: dict, title: str) -> Path:
    """metrics.json, clusters.csv / clusters.json, and report.html: the figures, then the mixed
    clusters and the largest ones as strips of faces (faces not of the cluster's person in red)."""
    from facesuite.cluster import write_clusters
    from facesuite.report.clusters import cluster_rows_html, unclustered_html
    from facesuite.report.html import table_html, write_html, write_json

    write_clusters(clusters, out, title)  # its report.html is replaced below
    write_json(out / "metrics.json", metrics)
    figures = table_html(["", "value"], [
        ("faces scored (main face of each photo)", metrics["faces"]), ("people", metrics["people"]),
        ("clusters", metrics["clusters"]), ("BCubed precision", metrics["bcubed"]["precision"]),
        ("BCubed recall", metrics["bcubed"]["recall"]), ("BCubed F", metrics["bcubed"]["f"]),
        ("pairwise precision", metrics["pairwise"]["precision"]), ("pairwise recall", metrics["pairwise"]["recall"]),
        ("pairwise F1", metrics["pairwise"]["f1"]), ("impurity", metrics["impurity"]),
        ("share left unclustered", metrics["unclustered_share"]), ("files skipped", metrics["skipped"])])
    mixed = [c for c in clusters.ids() if len({truth[r] for r in clusters.members(c) if r in truth}) > 1]
    mixed_view = clusters if not mixed else _only(clusters, mixed)
    sections = [("Figures", figures),
                ("Clusters that mix people", cluster_rows_html(mixed_view, truth) if mixed else '<p class="muted">none</p>'),
                ("Largest clusters", cluster_rows_html(clusters, truth, limit=20)),
                ("Unclustered faces", unclustered_html(clusters))]
    return write_html(out / "report.html", title, sections)


def _only(clusters, ids: Sequence[int]):
    """A view of ``clusters`` in which only the clusters ``ids`` have members."""
    from dataclasses import replace

    keep = set(ids)
    faces = [face if face.cluster in keep else replace(face, cluster=None) for face in clusters.faces]
    return replace(clusters, faces=faces)
