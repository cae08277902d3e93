"""A stored gallery together with its rendered views (``facesuite.distortion.views``).

The sunny route compares an overexposed face with the gallery rendered overexposed. For a stored
gallery that rendering is kept in a companion store of the same backend, written by the same
``enroll``/``remove`` calls:

* folder gallery ``G``            -> ``G/views/<view>/``
* Milvus Lite file ``g.db``       -> ``g.view-<view>.db``
* Milvus server ``milvus://h:p/c`` -> collection ``c_view_<view>``

A view store whose identities differ from the main store's (a gallery built before views existed,
or a write interrupted between the two stores) is left unused, with a warning: sunny faces then meet
the clean gallery, as they did before views. Re-enrolling the gallery brings the view back.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from facesuite.errors import InputError
from facesuite.gallery.base import (
    GalleryStore,
    Match,
    create_gallery,
    is_milvus_uri,
    open_gallery,
)

log = logging.getLogger(__name__)

#: Maps a view's distances onto the main gallery's scale (``Route.view_distance``).
DistanceScale = Callable[[np.ndarray], np.ndarray]


def view_uri(uri: str | Path, view: str) -> str:
    """Where the gallery at ``uri`` keeps its ``view`` rendering (same backend)."""
    text = os.fspath(uri).rstrip("/")
    if text.startswith("milvus://"):
        return f"{text}_view_{view}"
    if is_milvus_uri(text):
        path = Path(text)
        return str(path.with_name(f"{path.stem}.view-{view}{path.suffix}"))
    return str(Path(text) / "views" / view)


class ViewedGallery(GalleryStore):
    """A :class:`~facesuite.gallery.base.GalleryStore` plus one companion store per rendered view.

    Reads and the threshold come from the main store; ``enroll`` and ``remove`` write the views
    too; ``identify`` answers each probe from the view its route names, distances mapped onto the
    main store's scale.
    """

    def __init__(self, main: GalleryStore, views: Mapping[str, tuple[GalleryStore, DistanceScale]]) -> None:
        self.main = main
        self.views = dict(views)
        self.embedder = main.embedder
        self.dim = main.dim

    @classmethod
    def open(cls, uri: str | Path, views: Mapping[str, DistanceScale]) -> ViewedGallery:
        """The existing gallery at ``uri`` with those of ``views`` it holds in step."""
        return cls._with_views(open_gallery(uri), uri, views, create=False)

    @classmethod
    def create(cls, uri: str | Path, embedder: str, dim: int, threshold: float,
               views: Mapping[str, DistanceScale]) -> ViewedGallery:
        """Open the gallery at ``uri``, creating it (and, while it is empty, its views) if needed."""
        return cls._with_views(create_gallery(uri, embedder, dim, threshold), uri, views, create=True)

    @classmethod
    def _with_views(cls, main: GalleryStore, uri: str | Path, views: Mapping[str, DistanceScale], create: bool) -> ViewedGallery:
        opened: dict[str, tuple[GalleryStore, DistanceScale]] = {}
        for name, scale in views.items():
            location = view_uri(uri, name)
            try:
                # A view can only start together with an empty gallery, or it would miss identities.
                store = (create_gallery(location, main.embedder, main.dim, main.threshold) if create and not len(main)
                         else open_gallery(location))
            except InputError:
                continue
            if sorted(store.identities()) != sorted(main.identities()):
                log.warning("gallery view %r at %s is out of step with %s: not used (re-enroll to rebuild it)", name, location, uri)
                store.close()
                continue
            opened[name] = (store, scale)
        return cls(main, opened)

    @property
    def threshold(self) -> float:
        return self.main.threshold

    def set_threshold(self, threshold: float) -> None:
        self.main.set_threshold(threshold)

    def enroll(self, identity: str, vectors: np.ndarray, sources: Sequence[str],
               view_vectors: Mapping[str, np.ndarray] | None = None) -> int:
        """Enroll into the main store, then each view its rendered vectors (rows match ``vectors``)."""
        missing = set(self.views) - set(view_vectors or {})
        if missing:
            raise ValueError(f"no vectors for gallery view(s) {', '.join(sorted(missing))}")
        added = self.main.enroll(identity, vectors, sources)
        for name, (store, _) in self.views.items():
            store.enroll(identity, view_vectors[name], sources)
        return added

    def remove(self, identity: str) -> int:
        # Views first: an interruption leaves a view missing an identity, which makes it unused,
        # never a view answering for someone the gallery no longer holds.
        for store, _ in self.views.values():
            try:
                store.remove(identity)
            except InputError:  # the view never had it: the main store decides whether that is an error
                pass
        return self.main.remove(identity)

    def identify(self, vectors: np.ndarray, top_k: int = 1, views: Sequence[str | None] | None = None) -> list[list[Match]]:
        """Nearest identities per probe; a probe whose entry in ``views`` names a held view is
        answered from that view."""
        vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        matches = self.main.identify(vectors, top_k)
        for name, (store, scale) in self.views.items():
            rows = [i for i, view in enumerate(views or []) if view == name]
            if not rows:
                continue
            for row, found in zip(rows, store.identify(vectors[rows], top_k)):
                matches[row] = [Match(m.identity, float(scale(np.float64(m.distance))), m.source) for m in found]
        return matches

    def identities(self) -> list[tuple[str, int]]:
        return self.main.identities()

    def __len__(self) -> int:
        return len(self.main)

    def close(self) -> None:
        for store, _ in self.views.values():
            store.close()
        self.main.close()
