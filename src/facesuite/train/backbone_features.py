"""The recognition pass's features of a set of training faces, computed once and cached.

The age head and the gender abstention rule are both fitted on what ``facesuite analyze`` reads
for every face: the unit embedding and the hidden features of the same pass
(``describe(maps=True)``: 640 pooled stage channels and the last stage's 256x4x4 input map). Each
face is passed three times, as the gender head is trained: the chip, its mirror image and one
synthesised distortion (:func:`facesuite.distortion.synth.one_type_each`).
"""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
from facesuite.detect.extract import FaceExtractor
from facesuite.embed import Embedder
from facesuite.errors import InputError, Skipped

#: The passes cached per face, in this order.
VARIANTS = ("plain", "mirrored", "distorted")


#: Faces of a cached file passed again before it is used (:func:`_still_current`).
PROBES = 16
#: No column is divided by less than this share of the median column's spread (:func:`standard_scaler`).
SCALE_FLOOR = 0.3


@dataclass
class PassFeatures:
    """Per face (rows in :attr:`paths` order) and per variant, ``[hidden, unit embedding]``: the
    columns in the order the gender head concatenates them."""

    paths: list[str]
    features: dict[str, np.ndarray]  # variant -> (N, hidden + 128) float16

    @cached_property
    def digest(self) -> str:
        """A fingerprint of the faces and their plain features: what a cache of results computed
        from them is keyed by, so new features never meet old results (hashed once: every
        candidate's out-of-fold result asks for it)."""
        plain = np.ascontiguousarray(self.features["plain"])
        return hashlib.sha1("\n".join(self.paths).encode("utf-8") + plain.tobytes()).hexdigest()[:16]

    def of(self, variant: str, rows: np.ndarray | None = None) -> np.ndarray:
        x = self.features[variant]
        return np.asarray(x if rows is None else x[rows], dtype=np.float32)


def standard_scaler(x: np.ndarray):
    """A ``StandardScaler`` fitted on ``x`` whose smallest scales are raised to
    :data:`SCALE_FLOOR` times the median one. Cells of the last stage's map that are almost always
    zero (the black fill outside a tight crop) have a tiny spread: one face that lights one up
    would be thousands of spreads out and outvote every other feature. Out of fold (age ridge on
    the pass, 3 folds): largest standardised value 7,499 -> 42, MAE 6.38 -> 6.27 years."""
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x)
    scaler.scale_ = np.maximum(scaler.scale_, SCALE_FLOOR * np.median(scaler.scale_))
    return scaler


def _cache_key(paths: Sequence[str]) -> str:
    return hashlib.sha1("\n".join(paths).encode("utf-8")).hexdigest()[:16]


def _still_current(features: PassFeatures, extractor: FaceExtractor, embedder: Embedder) -> bool:
    """Whether a cached file holds what today's detector, alignment and embedder give: a few of its
    faces are passed again. A change to any of them (a new detection rule moves the chips of
    tight crops) would otherwise train a head on chips the analyzer no longer makes."""
    rows = np.random.default_rng(0).choice(len(features.paths), min(PROBES, len(features.paths)), replace=False)
    row_of = {features.paths[i]: i for i in rows}
    chips, kept = [], []
    for item in extractor.iter_crops([Path(features.paths[i]) for i in rows], embedder.chip_spec):
        if not isinstance(item, Skipped):
            chips.append(item.chip)
            kept.append(row_of[str(item.path)])
    if not chips:
        return False
    unit, _ = embedder.describe(chips, maps=False)
    cached = features.of("plain", np.array(kept))[:, -unit.shape[1]:]
    cached /= np.linalg.norm(cached, axis=1, keepdims=True)
    # float16 storage keeps the same chip's embedding within 1e-3 of itself.
    return bool(np.min(np.sum(unit * cached, axis=1)) > 0.999)


def _from_cache(names: Sequence[str], cache: Path, extractor: FaceExtractor, embedder: Embedder) -> PassFeatures | None:
    """The rows of ``names`` from a cached file holding all of them (matched by resolved path:
    a folder of links and the files they point to share a cache). A file that no longer holds what
    the detector and embedder give is removed."""
    wanted = [str(Path(name).resolve()) for name in names]
    for cached in sorted(cache.glob(f"features-{embedder.space}-*.npz")):
        try:
            with np.load(cached, allow_pickle=False) as stored:
                row_of = {str(Path(name).resolve()): i for i, name in enumerate(stored["paths"])}
                rows = [row_of.get(name) for name in wanted]
                present = [i for i, row in enumerate(rows) if row is not None]
                # Faces the cache skipped as unreadable stay skipped; most must be there.
                if len(present) < 0.99 * len(wanted):
                    continue
                index = np.array([rows[i] for i in present])
                found = PassFeatures([names[i] for i in present], {v: stored[v][index] for v in VARIANTS})
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            # A cache file cut short or overwritten is ours to rebuild, not a fault to stop on.
            print(f"{cached} cannot be read as a features cache: removed")
            cached.unlink()
            continue
        if _still_current(found, extractor, embedder):
            return found
        print(f"{cached} holds features of other chips than today's detector and embedder give: removed")
        cached.unlink()
    return None


def pass_features(paths: Sequence[Path], extractor: FaceExtractor, embedder: Embedder, cache: Path | None = None,
                  seed: int = 0, step: int = 128) -> tuple[PassFeatures, list[Skipped]]:
    """Features of the main face of each image (``cache``: a folder where they are kept, keyed by
    the paths and the embedder's space). Unreadable images are skipped and returned."""
    from facesuite.distortion.synth import one_type_each

    if not hasattr(embedder, "describe"):
        raise InputError(f"embedder {embedder.name!r} gives no hidden features to train a head on")
    names = [str(p) for p in paths]
    if cache is not None:
        found = _from_cache(names, cache, extractor, embedder)
        if found is not None:
            return found, []
    cached = cache / f"features-{embedder.space}-{_cache_key(names)}.npz" if cache is not None else None
    rows: dict[str, list[np.ndarray]] = {v: [] for v in VARIANTS}
    kept: list[str] = []
    skipped: list[Skipped] = []
    batch: list = []

    def flush() -> None:
        # A batch of chips at a time: the whole set's chips would not need to sit in memory.
        chips = np.stack([c.chip for c in batch])
        inputs = {
            "plain": chips,
            "mirrored": np.ascontiguousarray(chips[:, :, ::-1]),
            "distorted": one_type_each(chips, [str(c.path) for c in batch], seed),
        }
        for variant, pixels in inputs.items():
            unit, hidden = embedder.describe(list(pixels), maps=True)
            rows[variant].append(np.hstack([hidden, unit]).astype(np.float16))
        kept.extend(str(c.path) for c in batch)
        batch.clear()

    for item in extractor.iter_crops(list(paths), embedder.chip_spec, progress="faces and backbone pass"):
        if isinstance(item, Skipped):
            skipped.append(item)
            continue
        batch.append(item)
        if len(batch) == step:
            flush()
    if batch:
        flush()
    if not kept:
        raise InputError("no readable images")
    features = PassFeatures(kept, {v: np.concatenate(rows[v]) for v in VARIANTS})
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cached, paths=np.array(features.paths), **features.features)
    return features, skipped
