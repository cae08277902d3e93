"""What every gallery backend offers, and the URI that picks one.

A gallery holds enrolled identities and answers "who is this" by face embedding. Distances are
cosine distances (``1 - dot``) between L2-normalised vectors, as everywhere in facesuite. Where a
gallery lives is a URI, and the backend is picked from it (:func:`backend_of`; opening and
creating are :mod:`facesuite.gallery.backends`, which imports every backend):

- a folder: the embedded FAISS + SQLite gallery (:mod:`facesuite.gallery.faiss_sqlite`);
- ``milvus://HOST:PORT/COLLECTION``: a Milvus server (:mod:`facesuite.gallery.milvus`);
- ``NAME.db``: Milvus Lite, embedded and offline (same module).

Questions about a URI (which backend, is a gallery there, how to show it) are answered here without
importing a backend, so naming a gallery never loads FAISS or pymilvus.
"""

from __future__ import annotations

import math
import os
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self

import numpy as np

from facesuite.classify.presence import NO_FACE
from facesuite.classify.quality import UNRECOGNISABLE
from facesuite.decide import UNKNOWN
from facesuite.errors import InputError
from facesuite.registry import Registry

# 2: rendered views of each face were rows of the one store. 3: no views (the sunny gallery view
# was removed); a schema-2 gallery drops its view rows when first opened. 4: each face row holds
# its image's content hash, so the same photo is not enrolled twice for one identity; rows of
# older galleries keep an empty hash.
SCHEMA_VERSION = 4
MAX_IDENTITY_LENGTH = 200
#: The SQLite file a folder gallery keeps (:mod:`facesuite.gallery.faiss_sqlite`): its presence is
#: what makes a folder a gallery.
DB_NAME = "gallery.sqlite"

@dataclass(frozen=True)
class Match:
    """One gallery identity found for a probe: its best face's distance and source path.

    ``match_kind`` says what was matched: ``face`` (the face embedding) or ``source`` (the probe is
    a processed copy of the enrolled image ``source``; ``agreement`` is the evidence,
    :mod:`facesuite.gallery.source_match`).
    """

    identity: str
    distance: float
    source: str
    match_kind: str = "face"
    agreement: float | None = None


class GalleryStore(Protocol):
    """What every gallery backend offers; see :class:`~facesuite.gallery.faiss_sqlite.FolderGallery` for the meaning of each call.

    Backends subclass it to share the context-manager methods. A store answers "who is nearest";
    what facesuite answers (a name, ``unknown``...) is decided by :mod:`facesuite.decide`, through
    :meth:`facesuite.FaceAnalysis.open_gallery`.
    """

    embedder: str
    dim: int
    #: Whether the store keeps each enrolled image's frame for source-photo matching
    #: (``facesuite.gallery.source_match``); a store that does not is searched by face only.
    keeps_frames: bool = False

    #: The cosine-distance threshold as stored in the gallery, read when it was opened.
    _threshold: float

    @property
    def threshold(self) -> float:
        """Cosine-distance threshold used by :meth:`decide` (read when the gallery was opened)."""
        return self._threshold

    def set_threshold(self, threshold: float) -> None: ...
    def enroll(self, identity: str, vectors: np.ndarray, sources: Sequence[str],
               hashes: Sequence[str | None] | None = None) -> int:
        """Add faces of ``identity``; return how many were added. ``hashes`` (optional) holds each
        face's image content hash (:attr:`facesuite.io.Decoded.digest`): a face whose hash the
        identity already holds, or that repeats one earlier in the call, is left out."""
        ...
    def enrolled_as(self, hashes: Sequence[str]) -> dict[str, str]:
        """``{hash: identity}`` for those of ``hashes`` an enrolled image has (one photo shows one
        person: enrolment keeps it to one identity)."""
        ...
    def remove(self, identity: str) -> int: ...
    def identify(self, vectors: np.ndarray, top_k: int = 1) -> list[list[Match]]: ...
    def identities(self) -> list[tuple[str, int]]: ...
    def __len__(self) -> int: ...

    def frames(self, since: int | None = None) -> tuple[int, list[tuple[str, str, bytes]] | None]:
        """(a stamp that changes whenever the gallery does, ``(identity, source, frame)`` of every
        enrolled image that has a frame, or None when the stamp is still ``since``); no frames in
        a store that keeps none."""
        return 0, None if since == 0 else []
    def close(self) -> None: ...

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


#: Gallery classes by backend name (``facesuite.registry``): ``folder`` and ``milvus``, registered
#: when :mod:`facesuite.gallery.backends` imports them.
BACKENDS: Registry[type[GalleryStore]] = Registry("gallery backend")


def backend_of(uri: str | Path) -> str:
    """The backend a gallery URI names: ``milvus`` for ``milvus://...`` and ``NAME.db``, else ``folder``."""
    return "milvus" if is_milvus_uri(uri) else "folder"


def is_milvus_uri(uri: str | Path) -> bool:
    """True for ``milvus://...`` and for Milvus Lite files (a path ending in ``.db``)."""
    text = os.fspath(uri)
    return text.startswith("milvus://") or text.rstrip("/").endswith(".db")


def gallery_exists(uri: str | Path) -> bool:
    """Whether a gallery may be there to open without creating one: a folder holding
    ``gallery.sqlite``, an existing Milvus Lite file, or any ``milvus://`` URI (only the server
    can say; opening reports a missing collection or an unreachable server)."""
    text = os.fspath(uri)
    if text.startswith("milvus://"):
        return True
    return Path(text).exists() if is_milvus_uri(text) else (Path(text) / DB_NAME).is_file()


def display_uri(uri: str | Path) -> str:
    """``uri`` without the user name and password a ``milvus://`` URI may carry."""
    text = os.fspath(uri)
    if text.startswith("milvus://") and "@" in text.split("/", 3)[2]:
        scheme_host = text.split("/", 3)
        scheme_host[2] = scheme_host[2].rsplit("@", 1)[1]
        return "/".join(scheme_host)
    return text


def unit_rows(vectors: np.ndarray, dim: int, embedder: str, what: str, where: str | Path) -> np.ndarray:
    """``vectors`` as a contiguous float32 ``(n, dim)`` array of unit rows, or a clear error.

    A single ``(dim,)`` probe is accepted as one row. Wrong dimension is an :class:`InputError`
    (the user mixed embedders); NaN, infinity or all-zero rows are programming errors.
    """
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim == 1 and what == "probe":
        array = array[None, :]
    if array.ndim != 2:
        raise ValueError(f"{what} vectors must be a 2-D array, got shape {array.shape}")
    if array.shape[1] != dim:
        raise InputError(
            f"{what} vectors have dimension {array.shape[1]} but this gallery holds "
            f"{dim}-D vectors from embedder {embedder!r}",
            where,
        )
    if not np.isfinite(array).all():
        raise ValueError(f"{what} vectors contain NaN or infinity")
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    if (norms == 0).any():
        raise ValueError(f"{what} vectors contain an all-zero row")
    # Inner product equals cosine similarity only on unit vectors; normalising here keeps
    # the index correct even if a caller passes raw embeddings.
    return np.ascontiguousarray(array / norms, dtype=np.float32)


def check_threshold(threshold: float, folder: str | Path) -> float:
    threshold = float(threshold)
    # Cosine distance between unit vectors lies in [0, 2].
    if not math.isfinite(threshold) or not 0.0 <= threshold <= 2.0:
        raise InputError(f"threshold must be a cosine distance between 0 and 2, got {threshold}", folder)
    return threshold


def check_identity(identity: str, folder: str | Path) -> None:
    if not isinstance(identity, str) or not identity:
        raise InputError("identity name must be a non-empty string", folder)
    if len(identity) > MAX_IDENTITY_LENGTH:
        raise InputError(f"identity name longer than {MAX_IDENTITY_LENGTH} characters", folder)
    # Control characters and line separators would corrupt one-line-per-identity CLI output.
    if any(unicodedata.category(char) in ("Cc", "Zl", "Zp") for char in identity):
        raise InputError(f"identity name {identity!r} contains control characters", folder)
    if identity != identity.strip():
        raise InputError(f"identity name {identity!r} has leading or trailing spaces", folder)
    if identity in (UNKNOWN, UNRECOGNISABLE, NO_FACE):
        raise InputError(f"{identity!r} is reserved: it is a decision, not a name", folder)


def rows_to_add(hashes: Sequence[str | None], held: set[str]) -> list[int]:
    """The rows of an enroll to store: all but those whose content hash is in ``held`` (already
    enrolled for the identity) or repeats an earlier row's; a row without a hash is always stored."""
    seen = set(held)
    rows = []
    for row, digest in enumerate(hashes):
        if digest is None or digest not in seen:
            rows.append(row)
        if digest is not None:
            seen.add(digest)
    return rows
