"""Open-set (1:N) identification, NIST style, and the protocol where a probe's own photo is not enrolled.

- **Protocols.** ``facecom`` (FACECOM's): every clean image is enrolled and every distorted copy is
  a probe, so a probe's own source photo is in the gallery. ``cross``: for identities with two or
  more clean images, alternate clean images (the 1st, 3rd, ...) are enrolled and the distorted
  copies of the others are the probes (a new photo of an enrolled person, the real case);
  single-image identities stay in the gallery as distractors.
- **Mated and non-mated searches.** Each probe is searched against the gallery (mated: its identity
  is enrolled) and against the gallery without its identity (non-mated: anything accepted there is
  a false positive), so one probe set gives both.
- **Figures** (ISO/IEC 19795-1 / NIST FRVT terms): FPIR, the share of non-mated searches whose
  nearest identity is within the threshold; FNIR, the share of mated searches not answered with
  the right identity within it; FNIR at FPIR 1% and 0.1%; at the operating point, the
  **wrong-identity rate** (mated searches answered with someone else) and the coverage (answered
  at all). Overall and per distortion type the detector named.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facesuite.data import DistortedImage, IdentityDataset
from facesuite.errors import InputError

#: The recognition protocols (``facesuite eval recognition --protocol``): see :func:`protocol_dataset`.
PROTOCOLS = ("facecom", "cross")
FPIR_TARGETS = (0.01, 0.001)


def cross_protocol(dataset: IdentityDataset) -> IdentityDataset:
    """The ``cross`` protocol's gallery (as ``clean``) and probes (as ``distorted``): alternate
    photos of each identity enrolled, the distorted copies of the others searched. A dataset of
    plain photos (identity folders with no distorted copies, as LFW's) searches the other photos
    themselves, as probes of type ``clean``."""
    by_identity: dict[str, list[Path]] = {}
    for path, identity in dataset.clean:
        by_identity.setdefault(identity, []).append(path)
    enrolled, probe_sources = [], set()
    for identity, paths in by_identity.items():
        paths = sorted(paths)
        enrolled += [(path, identity) for path in paths[::2]]
        probe_sources |= {str(path) for path in paths[1::2]}
    if dataset.distorted:
        probes = [d for d in dataset.distorted if str(d.source) in probe_sources]
    else:
        probes = [DistortedImage(path, identity, "clean", path) for path, identity in dataset.clean if str(path) in probe_sources]
    return IdentityDataset(dataset.root, enrolled, probes)


def route_calibration_protocol(dataset: IdentityDataset) -> IdentityDataset:
    """What ``facesuite calibrate --per-route`` fits each route's threshold on: the ``cross``
    protocol, its alternate clean photos searched as well, as themselves (a clean face of a
    stranger must be held to a threshold fitted on clean faces)."""
    cross = cross_protocol(dataset)
    enrolled = {str(path) for path, _ in cross.clean}
    clean_probes = [DistortedImage(path, identity, "clean", path) for path, identity in dataset.clean if str(path) not in enrolled]
    return IdentityDataset(cross.root, cross.clean, cross.distorted + clean_probes)


def protocol_dataset(dataset: IdentityDataset, source: str | Path, protocol: str | None = None) -> tuple[IdentityDataset, str]:
    """The gallery and probes of ``protocol`` (default: ``facecom`` where the identities have
    distorted copies, ``cross`` for folders of plain photos, which have no facecom protocol), and
    the protocol's name; :class:`InputError` naming ``source`` when the data set holds no probes
    for it, or fewer than two identities in its gallery."""
    protocol = protocol or ("facecom" if dataset.distorted else "cross")
    if protocol not in PROTOCOLS:
        raise InputError(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")
    if protocol == "facecom" and not dataset.distorted:
        raise InputError("no distorted probes for the facecom protocol (expected <identity>/distortion/<stem>_<type>.jpg); "
                         "--protocol cross searches each identity's other photos instead", source)
    if protocol == "cross":
        dataset = cross_protocol(dataset)
        if not dataset.distorted:
            raise InputError("the cross protocol needs identities with two or more photos", source)
    if len({identity for _, identity in dataset.clean}) < 2:
        # One enrolled identity leaves no one to mistake a probe for, and no different-person pairs.
        raise InputError("a recognition evaluation needs at least two identities in the gallery", source)
    return dataset, protocol


@dataclass
class Searches:
    """Per probe: the nearest identity and its distance (mated search), and the nearest distance
    with the probe's own identity left out (non-mated search)."""

    nearest: np.ndarray  # identity names
    distance: np.ndarray
    non_mated: np.ndarray
    correct: np.ndarray  # nearest identity is the probe's own


def search(distances: np.ndarray, gallery_ids: Sequence[str], probe_ids: Sequence[str]) -> Searches:
    """:class:`Searches` from the probe x gallery distance matrix."""
    names, column_identity = np.unique(np.asarray(gallery_ids), return_inverse=True)
    per_identity = np.full((distances.shape[0], len(names)), np.inf)
    for k in range(len(names)):
        per_identity[:, k] = distances[:, column_identity == k].min(axis=1)
    best = per_identity.argmin(axis=1)
    rows = np.arange(len(best))
    own = np.searchsorted(names, np.asarray(probe_ids))
    enrolled = (own < len(names)) & (names[np.minimum(own, len(names) - 1)] == np.asarray(probe_ids))
    without_own = per_identity.copy()
    without_own[rows[enrolled], own[enrolled]] = np.inf
    return Searches(names[best], per_identity[rows, best], without_own.min(axis=1), (names[best] == np.asarray(probe_ids)) & enrolled)


def threshold_at_fpir(non_mated: np.ndarray, fpir: float) -> float:
    """The largest threshold accepting at most ``fpir`` of non-mated searches (distance <= t)."""
    ordered = np.sort(non_mated[np.isfinite(non_mated)])
    allowed = int(np.floor(fpir * ordered.size))
    if ordered.size == 0:
        return 0.0
    if allowed == 0:
        return float(ordered[0] - 1e-6)
    return float((ordered[allowed - 1] + ordered[allowed]) / 2) if allowed < ordered.size else float(ordered[-1])


def open_set_metrics(found: Searches, thresholds: np.ndarray, recognisable: np.ndarray, no_face: np.ndarray,
                     groups: Sequence[str]) -> dict:
    """Overall and per group (the detector's distortion label): top-1, FNIR at FPIR 1% and 0.1%,
    and at the operating point (one threshold per probe; faces below the quality floor answered
    ``unrecognisable``, boxes with no face ``no face``) FPIR, coverage, correct, wrong-identity,
    unrecognisable and no-face rates."""

    def figures(rows: np.ndarray) -> dict:
        distance, correct, non_mated, limit = found.distance[rows], found.correct[rows], found.non_mated[rows], thresholds[rows]
        told = recognisable[rows] & ~no_face[rows]
        record = {"probes": int(rows.sum()), "top1": float(correct.mean())}
        for target in FPIR_TARGETS:
            t = threshold_at_fpir(non_mated, target)
            record[f"fnir_at_fpir_{target:g}"] = float(1.0 - (correct & (distance <= t)).mean())
        accepted = (distance <= limit) & told
        record.update(
            fpir=float(((non_mated <= limit) & told).mean()), coverage=float(accepted.mean()),
            unrecognisable_rate=float((~recognisable[rows] & ~no_face[rows]).mean()), no_face_rate=float(no_face[rows].mean()),
            correct_identity_rate=float((accepted & correct).mean()),
            wrong_identity_rate=float((accepted & ~correct).mean()),
        )
        return record

    groups = np.asarray(groups)
    everything = np.ones(len(groups), dtype=bool)
    return {"overall": figures(everything), "per_distortion": {g: figures(groups == g) for g in sorted(set(groups.tolist()))}}


def plot_edc(found: Searches, thresholds: np.ndarray, quality: np.ndarray, out: Path) -> Path:
    """Error-versus-discard: FNIR at the operating point of the faces kept, as the lowest-quality
    share is discarded (a falling curve means the quality score ranks faces by how recognisable they are)."""
    from facesuite.evaluate.plots import plt, save_figure

    order = np.argsort(quality)
    named = found.correct & (found.distance <= thresholds)
    shares = np.linspace(0, 0.8, 41)
    errors = [1.0 - named[order[int(s * len(order)):]].mean() for s in shares]
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.plot(shares, errors, lw=2)
    if not any(errors):
        # A curve at zero lies on the axis, where it reads as an empty plot: say what it means.
        ax.text(0.4, 0.08, "every face kept is named right (FNIR 0)", ha="center")
    ax.set_xlabel("share of lowest-quality faces discarded")
    ax.set_ylabel("FNIR of the faces kept")
    # A little below zero, so a curve at zero is drawn above the axis, not hidden under it.
    ax.set_ylim(-0.03, 1)
    return save_figure(fig, out)


def plot_det(found: Searches, groups: Sequence[str], out: Path) -> Path:
    """DET curves (FNIR against FPIR, log scale), overall and per group."""
    from facesuite.evaluate.plots import plt, save_figure

    groups = np.asarray(groups)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name, rows in [("all", np.ones(len(groups), dtype=bool))] + [(g, groups == g) for g in sorted(set(groups.tolist()))]:
        limits = np.quantile(found.non_mated[rows], np.linspace(0.0005, 0.5, 60))
        fpir = [(found.non_mated[rows] <= t).mean() for t in limits]
        fnir = [1.0 - (found.correct[rows] & (found.distance[rows] <= t)).mean() for t in limits]
        ax.plot(fpir, fnir, lw=2.2 if name == "all" else 1.1, label=name)
    ax.set_xscale("log")
    ax.set_xlim(1e-3, 0.5)
    ax.set_ylim(-0.03, 1)  # as plot_edc's: a curve at FNIR 0 stays visible
    ax.set_xlabel("FPIR (non-mated searches accepted)")
    ax.set_ylabel("FNIR (mated searches not named right)")
    ax.legend(fontsize=7, ncol=2)
    return save_figure(fig, out)
