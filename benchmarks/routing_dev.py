"""Distortion routing on the dev split: which recogniser suits each distortion type.

Candidates per type: a restoration step on the chip (``facesuite.route.restore``), and an
embedding adapter trained on the other identities (:class:`EmbeddingAdapter` below: lost on
held-out identities, so no shipped route has one; routing model card). Reports top-1
per type for: the single clean model, a single adapter trained on all types ("mixed"), routing by
the true type (the ceiling of routing) and routing by the distortion detector's prediction.
Gallery = clean images of the dev identities; probes = their distorted copies.

Run: ``python benchmarks/routing_dev.py [--out DIR]``; with ``--save-routes`` it writes the
chosen restorations into the package (``facesuite/models/routing``).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from facesuite.analysis import FaceAnalysis
from facesuite.config import MODELS_DIR, data_root
from facesuite.data import DISTORTIONS, read_identity_folders, read_split
from facesuite.detect.extract import Crop
from facesuite.io import load_image
from facesuite.route.restore import RESTORERS


class EmbeddingAdapter(nn.Module):
    """``normalise(x + MLP(x))``; the last layer starts at zero, so training starts from identity."""

    def __init__(self, dim: int = 128, hidden: int = 512) -> None:
        super().__init__()
        self.hidden = nn.Linear(dim, hidden)
        self.out = nn.Linear(hidden, dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x + self.out(F.gelu(self.hidden(x))), dim=-1)

    def apply_numpy(self, vectors: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self(torch.from_numpy(np.asarray(vectors, dtype=np.float32))).numpy()


def train_adapter(
    distorted: np.ndarray,
    clean: np.ndarray,
    epochs: int = 30,
    batch_size: int = 256,
    lr: float = 1e-3,
    temperature: float = 0.05,
    seed: int = 0,
    progress: str | None = None,
) -> EmbeddingAdapter:
    """Fit an adapter mapping rows of ``distorted`` to the matching rows of ``clean`` (unit vectors).

    AdamW with cosine decay; pairs are shuffled with ``seed`` so a run is reproducible.
    """
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    source = torch.from_numpy(np.asarray(distorted, dtype=np.float32))
    target = torch.from_numpy(np.asarray(clean, dtype=np.float32))
    adapter = EmbeddingAdapter(source.shape[1])
    optimiser = torch.optim.AdamW(adapter.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * max(1, (len(source) + batch_size - 1) // batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps)
    adapter.train()
    for _ in tqdm(range(epochs), desc=progress, disable=progress is None, leave=False):
        order = torch.randperm(len(source), generator=generator)
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            adapted = adapter(source[batch])
            logits = adapted @ target[batch].T / temperature
            # Duplicate clean targets (several copies of one source) are not negatives of each other.
            same_target = (target[batch] @ target[batch].T) > 0.9999
            logits = logits.masked_fill(same_target & ~torch.eye(len(batch), dtype=torch.bool), -1e4)
            loss = F.cross_entropy(logits, torch.arange(len(batch)))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
    return adapter.eval()


def _top1(vectors: np.ndarray, truth: np.ndarray, gallery: np.ndarray, gallery_ids: np.ndarray) -> float:
    return float((gallery_ids[np.argmax(vectors @ gallery.T, axis=1)] == truth).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=str(data_root() / "facecom/task_b/train"))
    parser.add_argument("--split", default=str(data_root() / "splits/facecom_dev_identities.txt"))
    parser.add_argument("--embedder", default="default")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--out", default="runs/routing", help="folder for routing.json")
    parser.add_argument("--save-routes", action="store_true", help="write the chosen restorations into the package")
    parser.add_argument("--restorers", nargs="+", default=list(RESTORERS), choices=list(RESTORERS),
                        help="restoration candidates to compare (default: all)")
    parser.add_argument("--margin", type=float, default=0.01,
                        help="a step is kept for a type only if it beats the plain route by this much top-1")
    args = parser.parse_args()
    dataset = read_identity_folders(args.data)
    dev_ids = read_split(args.split) & set(dataset.identities)
    pipeline = FaceAnalysis(args.embedder, gender=None)
    embed = pipeline.embedder.embed

    def crops_of(part, label):
        clean_crops, _ = pipeline.crops([p for p, _ in part.clean], progress=f"{label} clean")
        probe_crops, _ = pipeline.crops([d.path for d in part.distorted], progress=f"{label} distorted")
        info = {str(d.path): d for d in part.distorted}
        return clean_crops, probe_crops, info

    dev = dataset.subset(dev_ids)
    train = dataset.subset(set(dataset.identities) - dev_ids)
    dev_clean, dev_probes, dev_info = crops_of(dev, "dev")
    identity_of = {str(p): i for p, i in dataset.clean}
    gallery = embed([c.chip for c in dev_clean])
    gallery_ids = np.asarray([identity_of[str(c.path)] for c in dev_clean])
    dev_by_type: dict[str, list] = defaultdict(list)
    for crop in dev_probes:
        dev_by_type[dev_info[str(crop.path)].distortion].append(crop)
    truth = {k: np.asarray([dev_info[str(c.path)].identity for c in v]) for k, v in dev_by_type.items()}
    kinds = [k for k in DISTORTIONS if k in dev_by_type]

    # 1. restoration steps, under the true type
    restored: dict[tuple[str, str], np.ndarray] = {}
    table: dict[str, dict[str, float]] = defaultdict(dict)
    candidates = ["none", *(name for name in args.restorers if name != "none")]  # "none" is the baseline
    for name in candidates:
        restore = RESTORERS[name]
        for kind in kinds:
            restored[name, kind] = embed([restore(c.chip) for c in dev_by_type[kind]])
            table[f"restore:{name}"][kind] = _top1(restored[name, kind], truth[kind], gallery, gallery_ids)
        print(f"restore:{name:18s} " + " ".join(f"{k} {table[f'restore:{name}'][k]:.3f}" for k in kinds), flush=True)
    # Differences below the margin are noise on a few hundred probes per type: keep the plain route.
    def chosen(kind: str) -> str:
        best = max(candidates, key=lambda n: table[f"restore:{n}"][kind])
        return best if table[f"restore:{best}"][kind] >= table["restore:none"][kind] + args.margin else "none"

    best_restorer = {k: chosen(k) for k in kinds}

    # 2. adapters on the train identities: per type (after that type's best restoration) and mixed
    # FACECOM's distorted copies are pixel-aligned with their clean source, so for training the
    # adapters each copy is cut with its source's landmarks (detection runs on the clean images
    # only). Dev probes above went through real detection, as in use.
    train_clean, _ = pipeline.crops([p for p, _ in train.clean], progress="train clean")
    clean_by_path = {str(c.path): c for c in train_clean}
    clean_vec = dict(zip(clean_by_path, embed([c.chip for c in train_clean])))
    spec = pipeline.embedder.chip_spec
    train_info = {str(d.path): d for d in train.distorted}
    train_by_type: dict[str, list] = defaultdict(list)
    for item in tqdm(train.distorted, desc="train distorted chips"):
        source = clean_by_path.get(str(item.source))
        if source is not None and item.path.stat().st_size:
            chip = source.face.chip(load_image(item.path), spec.size, spec.padding)
            train_by_type[item.distortion].append(Crop(item.path, source.face, chip, source.image_shape))
    adapters = {}
    mixed_x, mixed_y = [], []
    for kind in kinds:
        crops = train_by_type[kind]
        targets = np.stack([clean_vec[str(train_info[str(c.path)].source)] for c in crops])
        plain = embed([c.chip for c in crops])
        mixed_x.append(plain)
        mixed_y.append(targets)
        fixed = embed([RESTORERS[best_restorer[kind]](c.chip) for c in crops])
        adapters[kind] = train_adapter(fixed, targets, epochs=args.epochs, progress=f"adapter {kind}")
    mixed = train_adapter(np.concatenate(mixed_x), np.concatenate(mixed_y), epochs=args.epochs, progress="adapter mixed")
    for kind in kinds:
        table["single clean model"][kind] = table["restore:none"][kind]
        table["single mixed adapter"][kind] = _top1(mixed.apply_numpy(restored["none", kind]), truth[kind], gallery, gallery_ids)
        table["restore + type adapter"][kind] = _top1(adapters[kind].apply_numpy(restored[best_restorer[kind], kind]), truth[kind], gallery, gallery_ids)
    for row in ("single clean model", "single mixed adapter", "restore + type adapter"):
        print(f"{row:26s} " + " ".join(f"{k} {table[row][k]:.3f}" for k in kinds), flush=True)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "routing.json").write_text(json.dumps({"top1": table, "best_restorer": best_restorer}, indent=2))
    if args.save_routes:
        folder = MODELS_DIR / "routing"
        folder.mkdir(parents=True, exist_ok=True)
        routes = {kind: {"restore": best_restorer[kind]} for kind in kinds}
        routes["clean"] = {"restore": "none"}
        (folder / "routes.json").write_text(json.dumps({"embedder": pipeline.embedder.name, "routes": routes}, indent=2))
        print(f"routes written to {folder}")


if __name__ == "__main__":
    main()
