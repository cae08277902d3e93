"""Recognition evaluation on identity folders: identification (clean gallery, distorted probes),
open-set decisions, source-photo matching (reported apart from face matches) and verification
(genuine / impostor pairs), with plots and an HTML report.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.metrics import f1_score, roc_auc_score

from facesuite.classify.quality import quality_features
from facesuite.data import IdentityDataset
from facesuite.decide import OperatingPoint
from facesuite.errors import InputError, Skipped
from facesuite.evaluate.open_set import Searches, open_set_metrics, plot_det, plot_edc, search
from facesuite.evaluate.plots import plot_bars, plot_histograms, plot_roc
from facesuite.evaluate.verification import tar_figures, tar_text
from facesuite.report.faces import ChipSource, recognition_strips, worst_errors
from facesuite.report.html import Section, figure_html, table_html, write_html, write_json
from facesuite.text import write_rows


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
    # Per probe, the distortion the detector named and the route it took (None: not routed).
    probe_labels: list[str] | None = None
    probe_routes: list[str] | None = None
    # Per probe, the face-quality features (facesuite.classify.quality) and, with a quality model, its score.
    probe_features: np.ndarray | None = None
    probe_quality: np.ndarray | None = None
    # Per probe, whether its box holds no face (facesuite.classify.presence): answered "no face".
    probe_no_face: np.ndarray | None = None
    # Source-photo matching (facesuite.gallery.source_match), when on: per probe, the gallery
    # image it was found to be a processed copy of (-1: none) and the evidence.
    source_rows: np.ndarray | None = None
    source_agreement: np.ndarray | None = None

    def distances(self) -> np.ndarray:
        """Cosine distance of every probe to every gallery image."""
        return 1.0 - self.probes @ self.gallery.T


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
    if len(set(data.gallery_ids)) < 2:
        raise InputError("verification pairs need at least two identities in the gallery")
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


def decisions(data: EmbeddedSet, point: OperatingPoint, with_source: bool = False) -> tuple[Searches, np.ndarray, np.ndarray, np.ndarray]:
    """The open-set searches of every probe and, by the one rule (:mod:`facesuite.decide`), the
    threshold each is held to, which probes are recognisable (at or above the quality floor) and
    which hold no face. ``with_source``: a probe found to be a processed copy of a gallery image,
    its box judged a face, is answered with that image's identity whatever its face shows
    (accepted, recognisable); its non-mated search is left as the face's."""
    found = search(data.distances(), data.gallery_ids, data.probe_ids)
    labels = data.probe_labels or [None] * len(data.probe_ids)
    recognisable = point.recognisable(data.probe_quality, len(labels))
    no_face = data.probe_no_face if data.probe_no_face is not None else np.zeros(len(labels), dtype=bool)
    if with_source and data.source_rows is not None:
        fired = data.source_rows >= 0
        named = np.asarray([data.gallery_ids[row] for row in data.source_rows[fired]], dtype=object)
        found.nearest = found.nearest.astype(object)
        found.nearest[fired] = named
        found.distance = np.where(fired, -np.inf, found.distance)
        found.correct = found.correct.copy()
        found.correct[fired] = named == np.asarray(data.probe_ids, dtype=object)[fired]
        recognisable = recognisable | fired
    return found, point.search_thresholds(labels), recognisable, no_face


def source_matches(data: EmbeddedSet, gallery_frames: Sequence[np.ndarray], probe_frames: Sequence[np.ndarray],
                   progress: bool = False, probe_faces: Sequence[np.ndarray | None] | None = None) -> None:
    """Search every probe's frame among the gallery's (facesuite.gallery.source_match); fills
    ``data.source_rows`` and ``data.source_agreement``. As ``gallery identify``, a probe whose box
    holds no face has no source; ``probe_faces``: per probe, the face's blocks its source must
    agree with (None: not held to it)."""
    from tqdm import tqdm

    from facesuite.gallery.source_match import SourceIndex

    index = SourceIndex(gallery_frames, data.gallery_ids, [str(p) for p in data.gallery_paths])
    faces = probe_faces if probe_faces is not None else [None] * len(probe_frames)
    no_face = data.probe_no_face if data.probe_no_face is not None else np.zeros(len(probe_frames), dtype=bool)
    rows, agreement = np.full(len(probe_frames), -1), np.zeros(len(probe_frames))
    for i, (frame, face) in enumerate(tqdm(list(zip(probe_frames, faces)), desc="source match", disable=not progress, leave=False)):
        row, bound, share, _ = index.best(frame)
        agreement[i] = share
        if not no_face[i] and index.accepts(frame, row, bound, face):
            rows[i] = row
    data.source_rows, data.source_agreement = rows, agreement


def source_match_metrics(data: EmbeddedSet) -> dict:
    """How often source matching fired, per true distortion type, and how often it named the
    probe's own source photo (any other fire is a false one)."""
    if data.source_rows is None:
        return {"enabled": False}
    from facesuite.gallery.source_match import SOURCE_THRESHOLD

    fired = data.source_rows >= 0
    own = np.asarray([fired[i] and str(data.gallery_paths[r]) == str(data.probe_sources[i])
                      for i, r in enumerate(data.source_rows)], dtype=bool)
    wrong = np.asarray([fired[i] and data.gallery_ids[r] != data.probe_ids[i] for i, r in enumerate(data.source_rows)], dtype=bool)
    types = np.asarray(data.probe_types)

    def figures(rows: np.ndarray) -> dict:
        return {"probes": int(rows.sum()), "fired_rate": float(fired[rows].mean()), "own_source_rate": float(own[rows].mean()),
                "fired_elsewhere": int((fired & ~own)[rows].sum()), "wrong_identity": int(wrong[rows].sum())}

    return {"enabled": True, "threshold": SOURCE_THRESHOLD, "fired": int(fired.sum()),
            "overall": figures(np.ones(len(types), dtype=bool)),
            "per_distortion": {kind: figures(types == kind) for kind in sorted(set(types.tolist()))}}


def recognition_metrics(data: EmbeddedSet, point: OperatingPoint, seed: int = 0) -> dict:
    """Identification (closed set), verification pairs at ``point``'s threshold and the open-set
    decisions at ``point`` (the one rule: each face's type threshold, the quality floor, no face)."""
    threshold = point.threshold
    best, _, _ = identification(data)
    predicted = [data.gallery_ids[i] for i in best]
    correct = np.asarray(predicted) == np.asarray(data.probe_ids)
    types = np.asarray(data.probe_types)
    per_type = {kind: float(correct[types == kind].mean()) for kind in sorted(set(data.probe_types))}
    with_source = {}
    if data.source_rows is not None:
        # A source match answers with its photo's identity; every other probe keeps its face's nearest.
        fired = data.source_rows >= 0
        answered = np.where(fired, [data.gallery_ids[r] for r in np.maximum(data.source_rows, 0)], predicted)
        right = answered == np.asarray(data.probe_ids)
        with_source = {"top1_with_source": float(right.mean()),
                       "per_distortion_with_source": {kind: float(right[types == kind].mean()) for kind in per_type}}
    best_ex, _, mask = identification(data, exclude_source=True)
    correct_ex = np.asarray([data.gallery_ids[i] for i in best_ex]) == np.asarray(data.probe_ids)
    distances, labels = verification_pairs(data, seed)
    accepted = distances <= threshold
    return {
        "identification": {
            "top1": float(correct.mean()),
            "macro_f1": float(f1_score(data.probe_ids, predicted, average="macro", zero_division=0)),
            "per_distortion": per_type,
            **with_source,
            "source_excluded": float(correct_ex[mask].mean()) if mask.any() else None,
            "source_excluded_probes": int(mask.sum()),
            "probes": len(data.probe_paths),
            "gallery_images": len(data.gallery_paths),
            "identities": len(set(data.gallery_ids)),
        },
        "verification": {
            "auc": float(roc_auc_score(labels, -distances)),
            **tar_figures(distances, labels, seed),
            "threshold": float(threshold),
            "accuracy": float((accepted == (labels == 1)).mean()),
            "pairs": int(labels.size),
        },
        "open_set": open_set_metrics(*decisions(data, point), data.probe_labels or data.probe_types),
        **({"open_set_with_source": open_set_metrics(*decisions(data, point, with_source=True),
                                                     data.probe_labels or data.probe_types)} if data.source_rows is not None else {}),
        "operating_point": {"threshold": point.threshold, "threshold_source": point.source,
                            "route_thresholds": dict(point.route_thresholds), "quality_floor": point.quality_floor},
        "source_match": source_match_metrics(data),
    }


def write_recognition_report(out: Path, data: EmbeddedSet, metrics: dict, title: str, point: OperatingPoint,
                             seed: int = 0, chips: ChipSource | None = None) -> list[Section]:
    """metrics.json, predictions.csv, roc.png, det.png, distances.png, per_distortion.png and report.html;
    returns the report's sections. With ``chips`` (:func:`facesuite.report.faces.chips_of`) the
    report shows faces: a strip per distortion type and the worst errors."""
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "metrics.json", metrics)
    rows = _prediction_rows(data, point)
    write_rows(out / "predictions.csv", rows)
    found, limits, _, _ = decisions(data, point)
    distances, labels = verification_pairs(data, seed)
    threshold = metrics["verification"]["threshold"]
    figures = [
        ("ROC (genuine vs impostor pairs)", plot_roc(distances, labels, out / "roc.png")),
        ("Top-1 per distortion type", plot_bars(metrics["identification"]["per_distortion"], out / "per_distortion.png")),
        ("DET: open-set identification, overall and per detected type", plot_det(found, data.probe_labels or data.probe_types, out / "det.png")),
        *([("EDC: error against the share of lowest-quality faces discarded", plot_edc(found, limits, data.probe_quality, out / "edc.png"))]
          if data.probe_quality is not None else []),
        ("Distance histograms", plot_histograms(distances, labels, threshold, out / "distances.png")),
    ]
    ident, verif = metrics["identification"], metrics["verification"]
    summary = table_html(["metric", "value"], [
        ["identification top-1", ident["top1"]], ["identification macro-F1", ident["macro_f1"]],
        ["top-1, own clean source removed", ident["source_excluded"] if ident["source_excluded"] is not None else "n/a"],
        ["verification AUC", verif["auc"]], ["TAR at FAR 1%", tar_text(verif, "1pct")],
        ["TAR at FAR 0.1%", tar_text(verif, "0.1pct")], ["threshold (cosine distance)", verif["threshold"]], ["accuracy at threshold", verif["accuracy"]],
        ["probes / gallery images / identities", f"{ident['probes']} / {ident['gallery_images']} / {ident['identities']}"],
    ], "headline")
    open_set = metrics["open_set"]
    decided = table_html(["detected type", "probes", "top-1", "FNIR at FPIR 1%", "coverage", "wrong identity", "FPIR", "unrecognisable"], [
        [name, r["probes"], r["top1"], r["fnir_at_fpir_0.01"], r["coverage"], r["wrong_identity_rate"], r["fpir"], r["unrecognisable_rate"]]
        for name, r in [("all", open_set["overall"]), *open_set["per_distortion"].items()]])
    with_source = ident.get("per_distortion_with_source", {})
    per_type = table_html(["true type (how the copy was made)", "top-1 (face)", "top-1 with source matching", "source matches fired"],
                          [[k, v, with_source.get(k, "off"),
                            metrics["source_match"]["per_distortion"][k]["fired_rate"] if metrics["source_match"]["enabled"] else "off"]
                           for k, v in ident["per_distortion"].items()])
    sections = [("Summary", summary), ("Figures", "".join(figure_html(c, p) for c, p in figures))]
    if chips is not None and rows:
        sections += [("Faces per distortion type: probe, nearest gallery face", recognition_strips(rows, chips)),
                     ("Worst errors", worst_errors(rows, chips))]
    sections += [("Per distortion", per_type),
                 ("Open-set decisions at the operating point, by face alone (source-photo matches apart), per detected type", decided)]
    write_html(out / "report.html", title, sections)
    return sections


def _prediction_rows(data: EmbeddedSet, point: OperatingPoint) -> list[dict[str, str]]:
    """predictions.csv: per probe its nearest gallery face (``gallery_path``), the decision by the
    one rule (:mod:`facesuite.decide`) with the threshold it was held to and why, and its own
    identity's nearest gallery face (``mate_path``, ``mate_distance``)."""
    distances = data.distances()
    best = distances.argmin(axis=1)
    labels = data.probe_labels or [None] * len(data.probe_ids)
    routes = data.probe_routes or ["plain"] * len(data.probe_ids)
    quality = data.probe_quality if data.probe_quality is not None else [None] * len(data.probe_ids)
    no_face = data.probe_no_face if data.probe_no_face is not None else np.zeros(len(data.probe_ids), dtype=bool)
    source_rows = data.source_rows if data.source_rows is not None else np.full(len(data.probe_ids), -1)
    gallery_ids = np.asarray(data.gallery_ids)
    rows = []
    for row, (path, identity, index) in enumerate(zip(data.probe_paths, data.probe_ids, best)):
        distance = float(distances[row, index])
        source = source_rows[row] if source_rows[row] >= 0 else None  # a processed copy of an enrolled photo
        decision = point.search(data.gallery_ids[index], distance, labels[row],
                                None if quality[row] is None else float(quality[row]), bool(no_face[row]),
                                None if source is None else data.gallery_ids[source])
        kind = "" if source is None and no_face[row] else "face" if source is None else "source"
        photo = "" if source is None else str(data.gallery_paths[source])
        own = np.flatnonzero(gallery_ids == identity)
        mate = own[distances[row, own].argmin()] if own.size else None
        rows.append({"path": str(path), "true_identity": identity, "predicted_identity": data.gallery_ids[index],
                     "distance": f"{distance:.6f}", "decision": decision.answer,
                     "threshold": "" if decision.threshold is None else f"{decision.threshold:.6f}", "held_to": decision.held_to,
                     "match_kind": kind, "source_photo": photo,
                     "source_agreement": "" if data.source_agreement is None else f"{data.source_agreement[row]:.3f}",
                     "route": routes[row],
                     "quality": "" if quality[row] is None else f"{quality[row]:.4f}",
                     "distortion": data.probe_types[row], "gallery_path": str(data.gallery_paths[index]),
                     "mate_path": "" if mate is None else str(data.gallery_paths[mate]),
                     "mate_distance": "" if mate is None else f"{distances[row, mate]:.6f}"})
    return rows


def embed_dataset(analysis, dataset: IdentityDataset, progress: bool = True,
                  source_match: bool | None = None) -> tuple[EmbeddedSet, list, dict]:
    """Embed a dataset's clean and distorted images with a :class:`~facesuite.analysis.FaceAnalysis`.

    When it has routes, each probe goes through the route of the distortion type the detector
    predicts for it (``facesuite.route.routes``); the third value then reports how often the
    predicted type was the true one. Gallery images are clean and take the plain route. With ``source_match``
    (default: the analysis's setting) every probe's frame is also searched among the gallery's.
    """
    clean_paths = [p for p, _ in dataset.clean]
    identity_of = {str(p): i for p, i in dataset.clean}
    routed = analysis.routed
    g_crops, skipped = analysis.crops(clean_paths, progress="gallery" if progress else None)
    g_judged = analysis.judged_pass(g_crops)
    g_crops, gallery, g_face = g_judged.crops, g_judged.routed, g_judged.is_face
    # A gallery photo with no face is not enrolled, as `gallery enroll` skips it.
    skipped += [Skipped.of(c.path, InputError("no face found", c.path)) for c, face in zip(g_crops, g_face) if not face]
    g_crops, gallery = [c for c, face in zip(g_crops, g_face) if face], gallery[g_face]
    if not g_crops:
        raise InputError("no gallery photo could be read as a face", dataset.root)
    probe_info = {str(d.path): d for d in dataset.distorted}
    p_crops, p_skipped = analysis.crops([d.path for d in dataset.distorted], progress="probes" if progress else None)
    probe_items = [probe_info[str(c.path)] for c in p_crops]
    routing: dict = {}
    features = None
    p_judged = analysis.judged_pass(p_crops)
    p_crops, probes, kinds, p_face = p_judged.crops, p_judged.routed, p_judged.kinds, p_judged.is_face
    if routed:
        labels = [k.label for k in kinds]
        features = quality_features([k.probs for k in kinds], [c.face.score for c in p_crops], [c.face.fallback for c in p_crops])
        routing = {"detector_accuracy": float(np.mean([k == d.distortion for k, d in zip(labels, probe_items)])) if labels else None,
                   "routes": {kind: analysis.router.route(kind).describe() for kind in sorted(set(labels))}}
    data = EmbeddedSet(
        gallery_paths=[c.path for c in g_crops],
        gallery_ids=[identity_of[str(c.path)] for c in g_crops],
        gallery=gallery,
        probe_paths=[d.path for d in probe_items],
        probe_ids=[d.identity for d in probe_items],
        probe_types=[d.distortion for d in probe_items],
        probe_sources=[d.source for d in probe_items],
        probes=probes,
        probe_labels=labels if routed else None,
        probe_routes=[analysis.router.route(analysis.distortion.route_label(k)).describe() for k in kinds] if routed else None,
        probe_features=features,
        probe_quality=analysis.quality.score(features) if routed and analysis.quality is not None else None,
        probe_no_face=~p_face,
    )
    if analysis.source_match if source_match is None else source_match:
        from facesuite.gallery.source_match import face_blocks, frame_of

        # A recognisable probe's face is held to its source's, as Gallery.answer holds it.
        held = analysis.operating_point.recognisable(data.probe_quality, len(p_crops))
        probe_frames, probe_faces = [], []
        for crop, holds in zip(p_crops, held):
            pixels = crop.pixels()
            probe_frames.append(frame_of(pixels))
            probe_faces.append(face_blocks(crop.face.box, pixels.shape) if holds else None)
        source_matches(data, [frame_of(c.pixels()) for c in g_crops], probe_frames, progress, probe_faces)
    return data, skipped + p_skipped, routing


def calibration_pairs(
    vectors: np.ndarray, identities: Sequence[str], impostors: int = 200_000, genuine_per_identity: int = 200, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Distances of genuine pairs (up to ``genuine_per_identity`` per identity) and of distinct
    pairs of different identities (every one when the images give at most ``impostors`` pairs,
    else about ``impostors`` drawn at random): (genuine, impostor). Each pair counts once, so a
    rate's threshold never rests on one pair counted many times."""
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
    count = len(ids)
    if count * (count - 1) // 2 <= impostors:
        first, second = np.triu_indices(count, 1)
    else:
        drawn = np.sort(rng.integers(0, count, (impostors, 2)), axis=1)
        first, second = np.unique(drawn, axis=0).T
    different = ids[first] != ids[second]
    first, second = first[different], second[different]
    a, b = np.concatenate(genuine_a), np.concatenate(genuine_b)
    genuine = 1.0 - np.einsum("ij,ij->i", vectors[a], vectors[b])
    impostor = 1.0 - np.einsum("ij,ij->i", vectors[first], vectors[second])
    return genuine, impostor
