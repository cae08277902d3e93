"""Every gallery backend, imported so each registers in :data:`~facesuite.gallery.base.BACKENDS`,
and the two calls that open a gallery by URI through them."""

from __future__ import annotations

import os
from pathlib import Path

from facesuite.gallery import faiss_sqlite, milvus  # noqa: F401  (each registers itself)
from facesuite.gallery.base import BACKENDS, GalleryStore, backend_of


def open_gallery(uri: str | Path) -> GalleryStore:
    """Open an existing gallery of any backend; :class:`~facesuite.errors.InputError` if there is none."""
    return BACKENDS[backend_of(uri)].open(os.fspath(uri))


def create_gallery(uri: str | Path, embedder: str, dim: int, threshold: float) -> GalleryStore:
    """Open the gallery at ``uri``, creating it first if needed (rules of
    :meth:`~facesuite.gallery.faiss_sqlite.FolderGallery.create`)."""
    return BACKENDS[backend_of(uri)].create(os.fspath(uri), embedder, dim, threshold)
