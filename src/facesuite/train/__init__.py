"""Training loops for facesuite's models; each task has its own module."""

from __future__ import annotations


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and PyTorch's global generators, and have PyTorch pick deterministic
    kernels: the same seed gives the same model."""
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    # warn_only: a few CUDA kernels have no deterministic version; CPU runs are exact.
    torch.use_deterministic_algorithms(True, warn_only=True)
