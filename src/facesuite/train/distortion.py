"""Train the distortion detector: views in memory, AdamW + cosine schedule, curves and history.

    samples = distortion_samples(read_identity_folders(root))   # [(path, label)]
    result = train_detector(samples, out, epochs=12, seed=0)

With ``synthetic=True`` only the clean images are used and each of the seven distortions is
synthesised from them (:mod:`facesuite.distortion.synth`), so no distorted data is needed.

:class:`CleanVariety` adds clean photos of other kinds, each with its distortions, so that
``clean`` means "no distortion" and not "looks like a FACECOM frame": variants of the training
frames (:mod:`facesuite.distortion.variants`) applied alike to a clean frame and its seven real
copies, and other clean face photos (e.g. UTKFace crops) with seven synthetic copies each. A share
of the training identities (and of the other photos) is held out as a calibration fold, on which
the confidence below which a face takes the plain route is chosen (:func:`route_floor`).

Long because every data source's views and the training loop share the :class:`Views` layout and
the crop's jitter margin.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from facesuite.classify.distortion import DistortionDetector
from facesuite.classify.distortion_input import InputSpec, make_views, photo_reader
from facesuite.classify.distortion_net import DistortionNet, to_tensor
from facesuite.data import DISTORTIONS, DistortedImage, IdentityDataset
from facesuite.distortion import LABELS
from facesuite.distortion.variants import RESOLUTION_UNKNOWN, VARIANTS, sample_variant
from facesuite.errors import InputError, Skipped
from facesuite.evaluate.plots import plot_curves
from facesuite.io import load_image, readable_images
from facesuite.train import seed_everything

# Training crops are taken this many pixels larger on each side and cut at a random offset, so
# the network does not learn the exact position of the face.
JITTER = 8


@dataclass
class Views:
    """uint8 network inputs for N images (crops carry the training jitter margin) and labels."""

    crops: np.ndarray | None
    frames: np.ndarray | None
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    @staticmethod
    def concat(parts: Sequence[Views]) -> Views:
        parts = [part for part in parts if len(part)]
        return Views(
            np.concatenate([p.crops for p in parts]) if parts[0].crops is not None else None,
            np.concatenate([p.frames for p in parts]) if parts[0].frames is not None else None,
            np.concatenate([p.labels for p in parts]),
        )


@dataclass(frozen=True)
class CleanVariety:
    """Clean photos beyond the identity folders' frames, each with its distorted copies.

    ``per_variant``: clean training frames (each with its seven real copies) given each variant of
    :data:`~facesuite.distortion.variants.VARIANTS`; ``photos``: other clean face photos, each with
    one synthetic copy per distortion type but ``resized``; ``calibration_share``: the share of training identities
    (and of ``photos``) held out to choose the route floor on, 0 for none.
    """

    per_variant: int = 400
    photos: Sequence[Path] = field(default_factory=tuple)
    calibration_share: float = 0.15


@dataclass
class TrainSettings:
    epochs: int = 12
    seed: int = 0
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    spec: InputSpec = InputSpec()


def distortion_samples(dataset: IdentityDataset) -> list[tuple[Path, str]]:
    """``(path, label)``: clean images as ``clean``, copies as their type (unknown types dropped)."""
    samples = [(path, "clean") for path, _ in dataset.clean]
    samples += [(d.path, d.distortion) for d in dataset.distorted if d.distortion in DISTORTIONS]
    return samples


#: A copy closer to its clean source than this (PSNR, dB) and than its type's outlier fence
#: (:func:`learnable_copies`) shows too little of its distortion to learn it from.
FAINT_PSNR = 35.0


def _psnr(copy: np.ndarray, source: np.ndarray) -> float:
    if copy.shape != source.shape:
        copy = cv2.resize(copy, (source.shape[1], source.shape[0]), interpolation=cv2.INTER_AREA)
    error = float(np.mean((copy.astype(np.float32) - source.astype(np.float32)) ** 2))
    return 10.0 * np.log10(255.0**2 / max(error, 1e-6))


def learnable_copies(dataset: IdentityDataset, progress: str | None = None) -> tuple[IdentityDataset, list[DistortedImage]]:
    """``dataset`` without the distorted copies that barely differ from their clean source, and
    those copies.

    A copy is dropped where its PSNR to its source is above :data:`FAINT_PSNR` and above its
    type's outlier fence (the third quartile plus 1.5 interquartile ranges of the type's copies).
    FACECOM's studio portraits (``NNN_frontal``) have such `blurred` and `resized` copies, 37-49 dB
    from their sources where every other blurred copy is under 34 dB: trained as distorted, a
    photo indistinguishable from its clean source teaches the network that clean photos are
    blurred or resized. A copy whose source is missing or unreadable is kept."""
    closeness: dict[int, float] = {}
    by_source: dict[Path, list[int]] = {}
    for index, item in enumerate(dataset.distorted):
        by_source.setdefault(item.source, []).append(index)
    # Each clean source is read once for all its copies.
    for source, indices in tqdm(by_source.items(), desc=progress, unit="source", disable=progress is None, leave=False):
        try:
            clean = load_image(source)
        except InputError:
            continue
        for index in indices:
            try:
                closeness[index] = _psnr(load_image(dataset.distorted[index].path), clean)
            except InputError:
                continue
    fences = {}
    for kind in {item.distortion for item in dataset.distorted}:
        values = [closeness[i] for i, item in enumerate(dataset.distorted) if item.distortion == kind and i in closeness]
        if values:
            q1, q3 = np.percentile(values, [25, 75])
            fences[kind] = max(FAINT_PSNR, q3 + 1.5 * (q3 - q1))
    faint = {i for i, value in closeness.items() if value > fences[dataset.distorted[i].distortion]}
    kept = [item for i, item in enumerate(dataset.distorted) if i not in faint]
    return IdentityDataset(dataset.root, list(dataset.clean), kept), [dataset.distorted[i] for i in sorted(faint)]


def _margin_spec(spec: InputSpec, margin: int) -> InputSpec:
    return replace(spec, crop=spec.crop + 2 * margin) if spec.crop else spec


def load_views(
    samples: Sequence[tuple[Path, str]], spec: InputSpec, margin: int = JITTER, progress: str | None = None
) -> tuple[Views, list[tuple[Path, str]]]:
    """Read every file once and keep only its views; unreadable files are returned as skips."""
    images, labels, skipped = [], [], []
    wide, read = _margin_spec(spec, margin), photo_reader(spec.framing)
    for path, label in tqdm(samples, desc=progress, unit="img", disable=progress is None, leave=False):
        try:
            images.append(make_views(read(load_image(path)), wide))
            labels.append(label)
        except InputError as error:
            skipped.append(Skipped(path, error))
    if not images:
        raise InputError("no readable images to train on")
    views = Views(
        np.stack([c for c, _ in images]) if spec.crop else None,
        np.stack([f for _, f in images]) if spec.frame else None,
        np.array([LABELS.index(label) for label in labels], dtype=np.int64),
    )
    return views, skipped


def synthetic_views(
    clean_paths: Sequence[Path], spec: InputSpec, seed: int, margin: int = JITTER, progress: str | None = None
) -> tuple[Views, list[tuple[Path, str]]]:
    """Each clean image plus one synthetic copy per distortion type, as views."""
    from facesuite.distortion.synth import Synthesizer

    synthesizer = Synthesizer(seed=seed)
    wide, read = _margin_spec(spec, margin), photo_reader(spec.framing)
    crops, frames, labels, skipped = [], [], [], []
    for path, image in readable_images(tqdm(clean_paths, desc=progress, unit="img", disable=progress is None, leave=False), skipped):
        for label, version in [("clean", image), *synthesizer.all_types(image).items()]:
            crop, frame = make_views(read(version), wide)
            crops.append(crop)
            frames.append(frame)
            labels.append(LABELS.index(label))
    if not labels:
        raise InputError("no readable clean images to synthesise from")
    views = Views(
        np.stack(crops) if spec.crop else None,
        np.stack(frames) if spec.frame else None,
        np.array(labels, dtype=np.int64),
    )
    return views, skipped


def _stack_views(views: list[tuple[np.ndarray | None, np.ndarray | None]], labels: list[str], spec: InputSpec) -> Views:
    return Views(
        np.stack([c for c, _ in views]) if spec.crop and views else None,
        np.stack([f for _, f in views]) if spec.frame and views else None,
        np.array([LABELS.index(label) for label in labels], dtype=np.int64),
    )


def variant_views(
    dataset: IdentityDataset, per_variant: int, spec: InputSpec, seed: int, margin: int = JITTER, progress: str | None = None
) -> tuple[Views, list[Skipped]]:
    """For each variant, ``per_variant`` clean frames of ``dataset`` (seeded choice) and their
    real distorted copies, all through one sampled instance of that variant; views and labels.
    Frames without all seven copies are not chosen; ``tight_crop`` skips frames with no detected face
    and, like every variant in :data:`~facesuite.distortion.variants.RESOLUTION_UNKNOWN`, the
    ``resized`` copy."""
    copies: dict[Path, list[DistortedImage]] = {}
    for item in dataset.distorted:
        if item.distortion in DISTORTIONS:
            copies.setdefault(item.source, []).append(item)
    complete = sorted(path for path, _ in dataset.clean if len(copies.get(path, ())) == len(DISTORTIONS))
    rng = np.random.default_rng(seed)
    chosen = {kind: [complete[i] for i in rng.permutation(len(complete))[:per_variant]] for kind in VARIANTS}
    boxes = _face_boxes(chosen["tight_crop"], progress and f"face boxes ({progress})")
    wide, read = _margin_spec(spec, margin), photo_reader(spec.framing)
    views, labels, skipped = [], [], []
    groups = [(kind, path) for kind in VARIANTS for path in chosen[kind]]
    for kind, path in tqdm(groups, desc=progress, unit="group", disable=progress is None, leave=False):
        if kind == "tight_crop" and path not in boxes:
            continue
        transform = sample_variant(kind, rng, boxes.get(path))
        members = [(path, "clean"), *sorted((d.path, d.distortion) for d in copies[path]
                                            if not (kind in RESOLUTION_UNKNOWN and d.distortion == "resized"))]
        try:
            images = [(load_image(member), label) for member, label in members]
        except InputError as error:
            skipped.append(Skipped(path, error))
            continue
        for image, label in images:
            views.append(make_views(read(transform(image)), wide))
            labels.append(label)
    return _stack_views(views, labels, spec), skipped


def _face_boxes(paths: Sequence[Path], progress: str | None = None) -> dict[Path, tuple[float, float, float, float]]:
    """The detected face box of each readable image in which a face was found."""
    from facesuite.detect import FaceDetector

    detector = FaceDetector()
    boxes = {}
    for path in tqdm(paths, desc=progress, unit="img", disable=progress is None, leave=False):
        try:
            face = detector.detect_one(load_image(path))
        except InputError:
            continue
        if not face.fallback:
            boxes[path] = face.box
    return boxes


def photo_views(
    photos: Sequence[Path], spec: InputSpec, seed: int, margin: int = JITTER, progress: str | None = None
) -> tuple[Views, list[Skipped]]:
    """Clean photos as ``clean`` and one synthetic copy of each distortion type (keyed by file name,
    as ``facesuite distort`` makes them) as that type -- except ``resized``: these are face crops of
    unknown native resolution (see :data:`~facesuite.distortion.variants.RESOLUTION_UNKNOWN`)."""
    from facesuite.distortion.synth import Synthesizer

    synthesizer = Synthesizer(seed=seed, types=[kind for kind in DISTORTIONS if kind != "resized"])
    wide, read = _margin_spec(spec, margin), photo_reader(spec.framing)
    views, labels, skipped = [], [], []
    for path, image in readable_images(tqdm(photos, desc=progress, unit="img", disable=progress is None, leave=False), skipped):
        for label, version in [("clean", image), *synthesizer.all_types(image, key=Path(path).name).items()]:
            views.append(make_views(read(version), wide))
            labels.append(label)
    return _stack_views(views, labels, spec), skipped


def route_floor(probabilities: np.ndarray, truth: np.ndarray, precision: float = 0.99) -> dict:
    """The lowest top-class probability at which the faces sent through a distortion route (top
    class not ``clean``) were sent through the right one at least ``precision`` of the time.

    ``probabilities``: (N, classes) on held-out images; ``truth``: their label indices. Faces below
    the floor take the plain route. Returns the floor and what it does on these images.
    """
    clean = LABELS.index("clean")
    top, best = probabilities.argmax(1), probabilities.max(1)
    routed = top != clean
    floor = 0.0
    for candidate in np.unique(best[routed]):
        kept = routed & (best >= candidate)
        if kept.any() and (top[kept] == truth[kept]).mean() >= precision:
            floor = float(candidate)
            break
    else:
        floor = 1.0 if routed.any() else 0.0
    kept = routed & (best >= floor)
    before = float((top[routed] == truth[routed]).mean()) if routed.any() else 1.0
    distorted = truth != clean
    return {
        "route_floor": round(floor, 4),
        "target_precision": precision,
        "routed_precision_without_floor": round(before, 4),
        "routed_precision": round(float((top[kept] == truth[kept]).mean()) if kept.any() else 1.0, 4),
        "distorted_routed_right": round(float((kept & (top == truth))[distorted].mean()), 4),
        "clean_routed_plain": round(float((~kept)[~distorted].mean()), 4),
        "images": int(len(truth)),
    }


def _batch(views: Views, index: np.ndarray, spec: InputSpec, rng: np.random.Generator | None):
    """Tensors for ``index``: random jitter and horizontal flip when ``rng`` is given, else centred."""
    crops = frames = None
    flip = rng.random(len(index)) < 0.5 if rng is not None else np.zeros(len(index), dtype=bool)
    if views.crops is not None:
        margin = (views.crops.shape[1] - spec.crop) // 2
        offsets = rng.integers(0, 2 * margin + 1, size=(len(index), 2)) if rng is not None else np.full((len(index), 2), margin)
        cut = np.stack([views.crops[i, y : y + spec.crop, x : x + spec.crop] for i, (y, x) in zip(index, offsets)])
        cut[flip] = cut[flip, :, ::-1]
        crops = to_tensor(cut)
    if views.frames is not None:
        whole = views.frames[index].copy()
        whole[flip] = whole[flip, :, ::-1]
        frames = to_tensor(whole)
    return crops, frames, torch.from_numpy(views.labels[index])


def evaluate_views(net: nn.Module, views: Views, spec: InputSpec, batch_size: int = 256,
                   probabilities: bool = False) -> tuple[float, np.ndarray]:
    """Mean cross-entropy and predicted class indices (or, with ``probabilities``, the class
    probabilities) on centred views."""
    net.eval()
    losses, predictions = [], []
    with torch.inference_mode():
        for start in range(0, len(views), batch_size):
            index = np.arange(start, min(start + batch_size, len(views)))
            crops, frames, target = _batch(views, index, spec, None)
            logits = net(crops, frames)
            losses.append(nn.functional.cross_entropy(logits, target, reduction="sum").item())
            predictions.append(logits.softmax(1).numpy() if probabilities else logits.argmax(1).numpy())
    return sum(losses) / len(views), np.concatenate(predictions)


def fit(train: Views, settings: TrainSettings, val: Views | None = None, progress: bool = True) -> tuple[DistortionDetector, list[dict]]:
    """Train a fresh network on ``train``; history has loss/accuracy per epoch (and on ``val``)."""
    seed_everything(settings.seed)
    rng = np.random.default_rng(settings.seed)
    spec = settings.spec
    net = DistortionNet(spec)
    optimiser = torch.optim.AdamW(net.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    steps = settings.epochs * -(-len(train) // settings.batch_size)
    # A short warm-up then cosine decay: stable with BatchNorm from scratch at this learning rate.
    # torch's schedule divides by zero when the warm-up ends exactly one step in (10 steps at 10%),
    # so tiny runs warm up for half a step.
    warm_up = 0.1 if steps > 10 else 0.5 / steps
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=settings.lr, total_steps=steps, pct_start=warm_up, anneal_strategy="cos"
    )
    history: list[dict] = []
    for epoch in range(1, settings.epochs + 1):
        net.train()
        order = rng.permutation(len(train))
        started, total_loss, correct = time.perf_counter(), 0.0, 0
        bar = tqdm(range(0, len(order), settings.batch_size), desc=f"epoch {epoch}/{settings.epochs}", unit="batch",
                   disable=not progress, leave=False)
        for start in bar:
            index = order[start : start + settings.batch_size]
            crops, frames, target = _batch(train, index, spec, rng)
            logits = net(crops, frames)
            loss = nn.functional.cross_entropy(logits, target)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            total_loss += loss.item() * len(index)
            correct += int((logits.argmax(1) == target).sum())
            bar.set_postfix(loss=f"{loss.item():.3f}")
        record = {"epoch": epoch, "lr": schedule.get_last_lr()[0], "train_loss": total_loss / len(train),
                  "train_accuracy": correct / len(train), "seconds": round(time.perf_counter() - started, 1)}
        if val is not None and len(val):
            val_loss, predicted = evaluate_views(net, val, spec)
            record.update(val_loss=val_loss, val_accuracy=float((predicted == val.labels).mean()))
        history.append(record)
        if progress:
            tqdm.write(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))
    return DistortionDetector(net.eval(), spec), history


def train_detector(
    dataset: IdentityDataset,
    out: str | Path,
    settings: TrainSettings = TrainSettings(),
    val_identities: set[str] | None = None,
    synthetic: bool = False,
    command: str | None = None,
    variety: CleanVariety = CleanVariety(),
) -> dict:
    """Train on ``dataset`` minus ``val_identities`` (held out) into ``out``, with ``variety``.

    The curves in history.json are measured on the calibration fold when there is one, else on
    ``val_identities``. Writes weights.pt, config.json (with the route floor chosen on the
    calibration fold), history.json and curves.png; returns a summary dict.
    """
    out = Path(out)
    val_identities = val_identities or set()
    train_ids = sorted(set(dataset.identities) - val_identities)
    learnable, faint = (dataset.subset(set(train_ids)), []) if synthetic else \
        learnable_copies(dataset.subset(set(train_ids)), progress="copies against their sources")
    rng = np.random.default_rng(settings.seed)
    fold_ids = set(rng.permutation(train_ids)[: round(len(train_ids) * variety.calibration_share)].tolist())
    photos = sorted(Path(p) for p in variety.photos)
    fold_photos = set(rng.permutation(len(photos))[: round(len(photos) * variety.calibration_share)].tolist())
    fit_set, fold_set = learnable.subset(set(train_ids) - fold_ids), learnable.subset(fold_ids)
    fit_photos = [p for i, p in enumerate(photos) if i not in fold_photos]

    def views_of(part: IdentityDataset, part_photos: list[Path], per_variant: int, name: str) -> tuple[Views, list]:
        if synthetic:
            clean = [path for path, _ in part.clean]
            if not clean:
                raise InputError("--synthetic needs clean images in the identity folders", dataset.root)
            base, skipped = synthetic_views(clean, settings.spec, settings.seed, progress=f"synthesise {name}")
        else:
            base, skipped = load_views(distortion_samples(part), settings.spec, progress=f"load {name}")
        parts = [base]
        if per_variant and not synthetic:  # the variants are made of the real distorted copies
            varied, more = variant_views(part, per_variant, settings.spec, settings.seed, progress=f"variants {name}")
            parts.append(varied)
            skipped += more
        if part_photos:
            other, more = photo_views(part_photos, settings.spec, settings.seed, progress=f"photos {name}")
            parts.append(other)
            skipped += more
        return Views.concat(parts), skipped

    train, skipped = views_of(fit_set, fit_photos, variety.per_variant, "train")
    fold = None
    if fold_ids:
        fold_per_variant = round(variety.per_variant * variety.calibration_share / (1 - variety.calibration_share))
        fold, fold_skipped = views_of(fold_set, [photos[i] for i in sorted(fold_photos)], fold_per_variant, "fold")
        skipped += fold_skipped
    val = fold
    if val is None and val_identities:
        val, val_skipped = load_views(
            distortion_samples(dataset.subset(val_identities)), settings.spec, progress="load val"
        )
        skipped += val_skipped
    detector, history = fit(train, settings, val)
    calibration = None
    if fold is not None:
        _, probabilities = evaluate_views(detector.net, fold, settings.spec, probabilities=True)
        calibration = route_floor(probabilities, fold.labels)
        calibration["identities"] = len(fold_ids)
        calibration["photos"] = len(fold_photos)
    summary = {
        "train_images": len(train),
        "calibration_images": len(fold) if fold is not None else 0,
        "held_out_identities": len(val_identities),
        "skipped": len(skipped),
        # Copies left out for barely differing from their source, per type (learnable_copies).
        "faint_copies": {kind: sum(item.distortion == kind for item in faint) for kind in sorted({item.distortion for item in faint})},
        "synthetic": synthetic,
        "variants_per_kind": variety.per_variant,
        "other_photos": len(fit_photos),
        "epochs": settings.epochs,
        "seed": settings.seed,
        "command": command,
    }
    extra = {"training": summary}
    if calibration is not None:
        extra["route_floor"] = calibration["route_floor"]
        extra["route_floor_calibration"] = calibration
    detector.save(out, extra)
    (out / "history.json").write_text(json.dumps(history, indent=2) + "\n", encoding="utf-8")
    plot_curves(history, out / "curves.png")
    return {**summary, "calibration": calibration, "history": history, "skipped_files": skipped}
