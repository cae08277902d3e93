"""Train the distortion detector: views in memory, AdamW + cosine schedule, curves and history.

    samples = distortion_samples(read_identity_folders(root))   # [(path, label)]
    result = train_detector(samples, out, epochs=12, seed=0)

With ``synthetic=True`` only the clean images are used and each of the seven distortions is
synthesised from them (:mod:`facesuite.distortion.synth`), so no distorted data is needed.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from facesuite.classify.distortion import DistortionDetector, InputSpec, make_views
from facesuite.classify.distortion_net import DistortionNet, to_tensor
from facesuite.data import DISTORTIONS, IdentityDataset
from facesuite.distortion import LABELS
from facesuite.errors import InputError, Skipped
from facesuite.io import load_image

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


def _margin_spec(spec: InputSpec, margin: int) -> InputSpec:
    return replace(spec, crop=spec.crop + 2 * margin) if spec.crop else spec


def load_views(
    samples: Sequence[tuple[Path, str]], spec: InputSpec, margin: int = JITTER, progress: str | None = None
) -> tuple[Views, list[tuple[Path, str]]]:
    """Read every file once and keep only its views; unreadable files are returned as skips."""
    images, labels, skipped = [], [], []
    wide = _margin_spec(spec, margin)
    for path, label in tqdm(samples, desc=progress, unit="img", disable=progress is None, leave=False):
        try:
            images.append(make_views(load_image(path), wide))
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
    wide = _margin_spec(spec, margin)
    crops, frames, labels, skipped = [], [], [], []
    for path in tqdm(clean_paths, desc=progress, unit="img", disable=progress is None, leave=False):
        try:
            image = load_image(path)
        except InputError as error:
            skipped.append(Skipped(path, error))
            continue
        for label, version in [("clean", image), *synthesizer.all_types(image).items()]:
            crop, frame = make_views(version, wide)
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


def evaluate_views(net: nn.Module, views: Views, spec: InputSpec, batch_size: int = 256) -> tuple[float, np.ndarray]:
    """Mean cross-entropy and predicted class indices on centred views."""
    net.eval()
    losses, predictions = [], []
    with torch.inference_mode():
        for start in range(0, len(views), batch_size):
            index = np.arange(start, min(start + batch_size, len(views)))
            crops, frames, target = _batch(views, index, spec, None)
            logits = net(crops, frames)
            losses.append(nn.functional.cross_entropy(logits, target, reduction="sum").item())
            predictions.append(logits.argmax(1).numpy())
    return sum(losses) / len(views), np.concatenate(predictions)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def fit(train: Views, settings: TrainSettings, val: Views | None = None, progress: bool = True) -> tuple[DistortionDetector, list[dict]]:
    """Train a fresh network on ``train``; history has loss/accuracy per epoch (and on ``val``)."""
    seed_everything(settings.seed)
    rng = np.random.default_rng(settings.seed)
    spec = settings.spec
    net = DistortionNet(spec)
    optimiser = torch.optim.AdamW(net.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    steps = settings.epochs * -(-len(train) // settings.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=settings.lr, total_steps=steps, pct_start=0.1, anneal_strategy="cos"
    )  # a short warm-up then cosine decay: stable with BatchNorm from scratch at this learning rate
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


def plot_curves(history: list[dict], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, metric in zip(axes, ("loss", "accuracy")):
        for split in ("train", "val"):
            key = f"{split}_{metric}"
            if key in history[0]:
                axis.plot(epochs, [h[key] for h in history], marker="o", label=split)
        axis.set_xlabel("epoch")
        axis.set_title(metric)
        axis.grid(alpha=0.3)
        axis.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def train_detector(
    dataset: IdentityDataset,
    out: str | Path,
    settings: TrainSettings = TrainSettings(),
    val_identities: set[str] | None = None,
    synthetic: bool = False,
    command: str | None = None,
) -> dict:
    """Train on ``dataset`` (minus ``val_identities``, which become the validation set) into ``out``.

    Writes weights.pt, config.json, history.json and curves.png; returns a summary dict.
    """
    out = Path(out)
    val_identities = val_identities or set()
    train_set = dataset.subset(set(dataset.identities) - val_identities)
    if synthetic:
        clean = [path for path, _ in train_set.clean]
        if not clean:
            raise InputError("--synthetic needs clean images in the identity folders", dataset.root)
        train, skipped = synthetic_views(clean, settings.spec, settings.seed, progress="synthesise")
    else:
        train, skipped = load_views(distortion_samples(train_set), settings.spec, progress="load train")
    val = None
    if val_identities:
        val, val_skipped = load_views(
            distortion_samples(dataset.subset(val_identities)), settings.spec, progress="load val"
        )
        skipped += val_skipped
    detector, history = fit(train, settings, val)
    summary = {
        "train_images": len(train),
        "val_images": len(val) if val is not None else 0,
        "skipped": len(skipped),
        "synthetic": synthetic,
        "epochs": settings.epochs,
        "seed": settings.seed,
        "command": command,
    }
    detector.save(out, {"training": summary})
    (out / "history.json").write_text(json.dumps(history, indent=2) + "\n", encoding="utf-8")
    plot_curves(history, out / "curves.png")
    return {**summary, "history": history, "skipped_files": skipped}
