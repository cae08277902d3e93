"""Routes: which restoration step and embedding adapter each distortion type is sent through.

The shipped table (``facesuite/models/routing/routes.json``) was chosen per type on the dev split
by ``benchmarks/routing_dev.py``; a type missing from the table goes through the plain embedder.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from facesuite.config import MODELS_DIR
from facesuite.embed import Embedder
from facesuite.errors import InputError
from facesuite.integrity import verify_model_folder
from facesuite.route.restore import RESTORERS
from facesuite.route.views import VIEWS

if TYPE_CHECKING:  # adapters run in PyTorch: imported only when a route has one
    from facesuite.embed.adapter import EmbeddingAdapter

DEFAULT_ROUTES = MODELS_DIR / "routing"


@dataclass
class Route:
    name: str
    restore: str = "none"
    adapter: EmbeddingAdapter | None = None
    # Compare with the gallery rendered this way (``facesuite.route.views``) instead of the
    # clean gallery: for distortions whose lost pixels no restoration brings back.
    gallery_view: str | None = None
    # (view impostor mean, std, clean impostor mean, std) of cosine distances, fitted on training
    # identities: maps view distances onto the clean gallery's scale so one threshold serves both.
    gallery_view_scale: tuple[float, float, float, float] | None = None

    def view_distance(self, distances: np.ndarray) -> np.ndarray:
        """Distances to the gallery view, on the clean gallery's scale."""
        if self.gallery_view_scale is None:
            return distances
        view_mean, view_std, clean_mean, clean_std = self.gallery_view_scale
        return clean_mean + (distances - view_mean) * (clean_std / view_std)

    def describe(self) -> str:
        parts = [self.restore] if self.restore != "none" else []
        if self.adapter is not None:
            parts.append(f"adapter:{self.name}")
        if self.gallery_view is not None:
            parts.append(f"view:{self.gallery_view}")
        return "+".join(parts) or "plain"


class Router:
    """Embeds chips through the route of their distortion type."""

    def __init__(self, embedder: Embedder, routes: dict[str, Route]) -> None:
        self.embedder = embedder
        self.routes = routes

    @classmethod
    def load(cls, embedder: Embedder, folder: str | Path | None = DEFAULT_ROUTES) -> Router:
        """Routes from ``folder/routes.json``; ``None`` (or an absent default folder) routes nothing."""
        if folder is None or (Path(folder) == DEFAULT_ROUTES and not (DEFAULT_ROUTES / "routes.json").is_file()):
            return cls(embedder, {})
        folder = Path(folder)
        verify_model_folder(folder)
        table_path = folder / "routes.json"
        if not table_path.is_file():
            raise InputError("no routes.json in this routing folder", folder)
        table = json.loads(table_path.read_text(encoding="utf-8"))
        unknown = {spec["gallery_view"] for spec in table["routes"].values() if spec.get("gallery_view")} - set(VIEWS)
        if unknown:
            raise InputError(f"unknown gallery view(s) {', '.join(sorted(unknown))}; known: {', '.join(VIEWS)}", table_path)
        unknown = {spec["restore"] for spec in table["routes"].values()} - set(RESTORERS)
        if unknown:
            raise InputError(f"unknown restorer(s) {', '.join(sorted(unknown))}; known: {', '.join(RESTORERS)}", table_path)
        if table.get("embedder") != embedder.space:
            # Adapters live in one embedder's space; another embedder gets restoration only.
            return cls(embedder, {k: Route(k, v["restore"]) for k, v in table["routes"].items()})
        if any(spec.get("adapter") for spec in table["routes"].values()):
            from facesuite.embed.adapter import EmbeddingAdapter
        routes = {
            kind: Route(
                kind,
                spec["restore"],
                EmbeddingAdapter.load(folder / spec["adapter"]) if spec.get("adapter") else None,
                spec.get("gallery_view"),
                tuple(spec["gallery_view_scale"]) if spec.get("gallery_view_scale") else None,
            )
            for kind, spec in table["routes"].items()
        }
        return cls(embedder, routes)

    @property
    def gallery_views(self) -> dict[str, Route]:
        """The routes that compare with a gallery view, by view name."""
        return {route.gallery_view: route for route in self.routes.values() if route.gallery_view}

    def route(self, kind: str) -> Route:
        return self.routes.get(kind, Route(kind))

    def embed(
        self, chips: Sequence[np.ndarray], kinds: Sequence[str], hidden: bool = False, maps: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(routed embeddings, embeddings before the adapter, hidden features of the same pass when
        ``hidden`` -- the dlib port's runtimes only, with the last stage's input map when ``maps`` -- else None)
        for chips of the given types."""
        restored = [RESTORERS[self.route(kind).restore](chip) for chip, kind in zip(chips, kinds)]
        pooled = None
        if hidden:
            plain, pooled = self.embedder.describe(restored, maps=maps)
        else:
            plain = self.embedder.embed(restored)
        routed = plain.copy()
        for kind in set(kinds):
            adapter = self.route(kind).adapter
            if adapter is not None:
                rows = [i for i, k in enumerate(kinds) if k == kind]
                routed[rows] = adapter.apply_numpy(plain[rows])
        return routed, plain, pooled
