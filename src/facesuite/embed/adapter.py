"""Embedding adapters: a small residual MLP that moves the embedding of a distorted face towards
the embedding the same face has when clean.

Trained on pairs (distorted copy, its clean source) with an in-batch contrastive loss: each
adapted vector must be closer to its own clean vector than to the other clean vectors of the
batch, which pulls distorted faces home without collapsing identities together. Weights are
saved as ``.npz`` (plain arrays, no pickle).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm


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

    def save(self, path: str | Path) -> None:
        arrays = {name: tensor.detach().cpu().numpy() for name, tensor in self.state_dict().items()}
        np.savez(path, **arrays)

    @classmethod
    def load(cls, path: str | Path) -> EmbeddingAdapter:
        with np.load(path, allow_pickle=False) as arrays:
            state = {name: torch.from_numpy(arrays[name]) for name in arrays.files}
        adapter = cls(dim=state["hidden.weight"].shape[1], hidden=state["hidden.weight"].shape[0])
        adapter.load_state_dict(state)
        return adapter.eval()


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
