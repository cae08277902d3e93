"""Face embedders behind a registry: aligned face chips in, L2-normalised vectors out.

A backend is a class registered under a name in :data:`EMBEDDERS`; it declares its
embedding size, the aligned-chip geometry it expects and a default verification threshold
(cosine distance on normalised vectors). A threshold calibrated on data (``facesuite calibrate``)
is stored beside the user's models and overrides the default.

    embedder = get_embedder("dlib")            # or "dlib-torch", ...
    vectors = embedder.embed(chips)            # (N, dim) float32, rows of unit length
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from facesuite.registry import Registry


@dataclass(frozen=True)
class ChipSpec:
    """Geometry of the aligned face chip a backend was trained on.

    ``size`` is the square side in pixels and ``padding`` the margin around the landmark
    template as a fraction of the face (dlib's convention: 0.25 around its 5-point template).
    """

    size: int = 150
    padding: float = 0.25


class Embedder(ABC):
    """Maps aligned RGB face chips (uint8, ``chip_spec.size`` square) to unit vectors."""

    name: str = ""
    dim: int = 0
    chip_spec: ChipSpec = ChipSpec()
    #: Default same-person threshold on cosine distance (1 - cosine similarity).
    default_threshold: float = 0.5
    #: The vectors it gives: embedders of one space give the same vectors (runtimes of one network),
    #: so a gallery, route table or head made with one serves the others. Defaults to ``name``.
    space: str = ""

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.space:
            cls.space = cls.name

    @abstractmethod
    def embed(self, chips: Sequence[np.ndarray], batch_size: int = 16) -> np.ndarray:
        """Return an ``(len(chips), dim)`` float32 array with L2-normalised rows."""


def _import_backends() -> None:
    # Backends register themselves on import; importing lazily keeps `import facesuite` light.
    from facesuite.embed.dlib import runtimes  # noqa: F401


#: Embedder classes by name (``facesuite.registry``); backends register with ``@EMBEDDERS.register``.
EMBEDDERS: Registry[type[Embedder]] = Registry("embedder", _import_backends)


def get_embedder(name: str = "default") -> Embedder:
    """Instantiate a registered embedder by name (``"default"`` picks the project's default)."""
    return EMBEDDERS.create(DEFAULT_EMBEDDER if name == "default" else name)


def embedders_of_space(space: str) -> list[str]:
    """Names of the registered embedders that give the vectors of ``space``."""
    return [name for name in EMBEDDERS.list() if EMBEDDERS[name].space == space]


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def cosine_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine distance between two arrays of unit vectors."""
    return 1.0 - np.sum(np.asarray(a) * np.asarray(b), axis=-1)


# dlib's float ResNet under ONNX Runtime (no PyTorch import after its one-time export). The int8
# network (``dlib-int8``) is 1.5 ms a face faster but its vectors are not the same: it moved dev
# recognition figures by 0.006, past the 0.003 allowed to speed work, while the float network
# alone already meets the speed targets (models/embedder/MODEL_CARD.md).
DEFAULT_EMBEDDER = "dlib-onnx"

