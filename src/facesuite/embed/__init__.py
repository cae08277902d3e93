"""Face embedders behind a registry: aligned face chips in, L2-normalised vectors out.

A backend is a class registered under a name in :data:`EMBEDDERS` (:mod:`facesuite.embed.base`);
this package imports every backend, so the registry is complete here. A backend declares its
embedding size, the aligned-chip geometry it expects and a default verification threshold
(cosine distance on normalised vectors). A threshold calibrated on data (``facesuite calibrate``)
is stored beside the user's models and overrides the default.

    embedder = get_embedder("dlib")            # or "dlib-torch", ...
    vectors = embedder.embed(chips)            # (N, dim) float32, rows of unit length
"""

from __future__ import annotations

from facesuite.embed.base import EMBEDDERS, ChipSpec, Embedder, cosine_distance, l2_normalise

# Importing a backend registers it; each loads its network only when an embedder is made.
from facesuite.embed.dlib import runtimes  # noqa: F401

# dlib's float ResNet under ONNX Runtime (no PyTorch import after its one-time export). The int8
# network (``dlib-int8``) is 1.5 ms a face faster but its vectors are not the same: it moved dev
# recognition figures by 0.006, past the 0.003 allowed to speed work, while the float network
# alone already meets the speed targets (models/embedder/MODEL_CARD.md).
DEFAULT_EMBEDDER = "dlib-onnx"


def get_embedder(name: str = "default") -> Embedder:
    """Instantiate a registered embedder by name (``"default"`` picks the project's default)."""
    return EMBEDDERS.create(DEFAULT_EMBEDDER if name == "default" else name)


def embedders_of_space(space: str) -> list[str]:
    """Names of the registered embedders that give the vectors of ``space``."""
    return [name for name in EMBEDDERS.list() if EMBEDDERS[name].space == space]


__all__ = ["DEFAULT_EMBEDDER", "EMBEDDERS", "ChipSpec", "Embedder", "cosine_distance", "embedders_of_space",
           "get_embedder", "l2_normalise"]
