"""What every face embedder is (:class:`Embedder`, the :class:`ChipSpec` it reads) and the registry
backends register into (:data:`EMBEDDERS`). It imports no backend: :mod:`facesuite.embed` does,
so that is where embedders are listed and made."""

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


#: Embedder classes by name (``facesuite.registry``); backends register with ``@EMBEDDERS.register``.
EMBEDDERS: Registry[type[Embedder]] = Registry("embedder")


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def cosine_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine distance between two arrays of unit vectors."""
    return 1.0 - np.sum(np.asarray(a) * np.asarray(b), axis=-1)
