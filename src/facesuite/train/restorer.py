"""Train a learned restoration step for one distortion type: a small residual CNN on chip pairs.

    facesuite train restorer $FACESUITE_DATA/facecom/task_b/train --type noisy \
        --holdout $FACESUITE_DATA/splits/facecom_dev_identities.txt --out noisy.onnx

FACECOM's distorted copies keep their clean photo's geometry, so a copy and its clean photo cut
with the *clean* photo's landmarks are pixel-aligned: the network learns, per pixel, what the
distortion added (DnCNN's residual form: six 3x3 convolutions with ReLUs, 16 channels), with an
L1 loss on random 64 px patches of the pairs, mirrored half the time, AdamW and cosine decay. A
local filter of a few pixels' reach cannot learn who a face belongs to, which is where the
embedding adapters and the fine-tuned stage failed (routing model card): they learned each
training photo's way back to its own clean copy.

The network is exported to ONNX for :class:`facesuite.route.learned.LearnedRestorer`.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from facesuite.classify.gender import chips_to_tensor
from facesuite.data import IdentityDataset
from facesuite.detect.extract import FaceExtractor
from facesuite.embed import ChipSpec
from facesuite.errors import InputError, Skipped
from facesuite.io import load_image

CHIP = ChipSpec(150, 0.25)  # the embedder's chip: the restorer runs on it


@dataclass
class RestorerOptions:
    kind: str
    width: int = 16
    depth: int = 6
    steps: int = 1500
    batch_size: int = 32
    patch: int = 64
    lr: float = 1e-3
    seed: int = 0


class ResidualRestorer(nn.Module):
    """``chip - f(chip)`` with ``f`` a plain stack of 3x3 convolutions: it estimates the distortion."""

    def __init__(self, width: int = 16, depth: int = 6) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, width, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU(inplace=True)]
        layers.append(nn.Conv2d(width, 3, 3, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` in [0, 1] -> the same, restored (not clipped)."""
        return pixels - self.body(pixels)


def aligned_pairs(dataset: IdentityDataset, kind: str, extractor: FaceExtractor) -> tuple[np.ndarray, np.ndarray, list[Skipped]]:
    """(distorted, clean) uint8 chips: each ``kind`` copy and its clean photo, both cut with the
    clean photo's detected landmarks; and the photos or copies that could not be read."""
    copies = {str(d.source): d.path for d in dataset.distorted if d.distortion == kind}
    sources = [path for path, _ in dataset.clean if str(path) in copies]
    if not sources:
        raise InputError(f"no clean photos with a {kind!r} copy (expected <identity>/distortion/<stem>_{kind}.jpg)",
                         dataset.root)
    crops, skipped = extractor.crops(sources, CHIP, progress=f"pairs ({kind})")
    distorted, clean = [], []
    for crop in crops:
        copy = copies[str(crop.path)]
        try:
            distorted.append(crop.face.chip(load_image(copy), CHIP.size, CHIP.padding))
        except InputError as error:
            skipped.append(Skipped(copy, error))
            continue
        clean.append(crop.chip)
    if not clean:
        raise InputError(f"no readable pairs of a clean photo and its {kind!r} copy", dataset.root)
    return np.stack(distorted), np.stack(clean), skipped


def train_restorer(dataset: IdentityDataset, out: str | Path, options: RestorerOptions,
                   extractor: FaceExtractor | None = None) -> tuple[dict, list[Skipped]]:
    """Train on every readable pair of ``dataset``, write the ONNX network to ``out`` and its
    history beside it (``<out>.json``, with the skipped files); returns that history and the skips."""
    torch.manual_seed(options.seed)
    rng = np.random.default_rng(options.seed)
    distorted, clean, skipped = aligned_pairs(dataset, options.kind, extractor or FaceExtractor())
    distorted, clean = chips_to_tensor(distorted) / 255, chips_to_tensor(clean) / 255
    network = ResidualRestorer(options.width, options.depth)
    optimiser = torch.optim.AdamW(network.parameters(), lr=options.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, options.steps)
    size, patch, losses, started = CHIP.size, options.patch, [], time.perf_counter()
    for _ in tqdm(range(options.steps), desc=f"restorer ({options.kind})", unit="step"):
        rows = rng.integers(0, len(clean), options.batch_size)
        tops, lefts = rng.integers(0, size - patch, (2, options.batch_size))
        inputs = torch.stack([distorted[r, :, t : t + patch, x : x + patch] for r, t, x in zip(rows, tops, lefts)])
        targets = torch.stack([clean[r, :, t : t + patch, x : x + patch] for r, t, x in zip(rows, tops, lefts)])
        if rng.random() < 0.5:
            inputs, targets = inputs.flip(3), targets.flip(3)
        loss = (network(inputs) - targets).abs().mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        losses.append(loss.item())
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    network.eval()
    torch.onnx.export(network, torch.zeros(1, 3, size, size), str(out), input_names=["chip"], output_names=["restored"],
                      dynamic_axes={"chip": {0: "n", 2: "h", 3: "w"}, "restored": {0: "n", 2: "h", 3: "w"}},
                      opset_version=17, dynamo=False)
    history = {"options": asdict(options), "pairs": len(clean), "skipped": [item.reason for item in skipped],
               "seconds": round(time.perf_counter() - started),
               # Mean L1 (of [0, 1] pixels) over each tenth of training: the curve, in ten points.
               "loss_by_tenth": [round(float(np.mean(part)), 5) for part in np.array_split(losses, min(10, len(losses)))]}
    out.with_suffix(".json").write_text(json.dumps(history, indent=2) + "\n", encoding="utf-8")
    return history, skipped
