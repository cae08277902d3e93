"""Routes: which restoration step and embedding adapter each distortion type is sent through,
and whether its face is also embedded mirrored.

The shipped table (``facesuite/models/routing/routes.json``) was chosen per type by
``benchmarks/routing_dev.py`` and ``benchmarks/restore_select.py``; mirroring by
``benchmarks/cross_tta.py`` on the train identities' cross protocol. A type missing from the
table goes through the plain embedder.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from facesuite.config import MODELS_DIR
from facesuite.embed import Embedder, l2_normalise
from facesuite.errors import InputError
from facesuite.integrity import verify_model_folder
from facesuite.route.restore import RESTORERS

if TYPE_CHECKING:  # adapters run in PyTorch: imported only when a route has one
    from facesuite.embed.adapter import EmbeddingAdapter

DEFAULT_ROUTES = MODELS_DIR / "routing"


@dataclass
class Route:
    name: str
    restore: str = "none"
    adapter: EmbeddingAdapter | None = None
    # Embed the (restored) chip and its mirror image and average the two: test-time augmentation
    # that makes a distorted face's embedding steadier, at the cost of a second embedding pass.
    mirror: bool = False

    def describe(self) -> str:
        parts = [self.restore] if self.restore != "none" else []
        if self.mirror:
            parts.append("mirror")
        if self.adapter is not None:
            parts.append(f"adapter:{self.name}")
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
        # Tables written before the sunny gallery view was removed may still name it
        # ("gallery_view"): it is ignored, as every key but restore, adapter and mirror is.
        table = json.loads(table_path.read_text(encoding="utf-8"))
        unknown = {spec["restore"] for spec in table["routes"].values()} - set(RESTORERS)
        if unknown:
            raise InputError(f"unknown restorer(s) {', '.join(sorted(unknown))}; known: {', '.join(RESTORERS)}", table_path)
        if table.get("embedder") != embedder.space:
            # Adapters live in one embedder's space; another embedder gets restoration only.
            return cls(embedder, {k: Route(k, v["restore"], mirror=bool(v.get("mirror"))) for k, v in table["routes"].items()})
        if any(spec.get("adapter") for spec in table["routes"].values()):
            from facesuite.embed.adapter import EmbeddingAdapter
        routes = {
            kind: Route(
                kind,
                spec["restore"],
                EmbeddingAdapter.load(folder / spec["adapter"]) if spec.get("adapter") else None,
                bool(spec.get("mirror")),
            )
            for kind, spec in table["routes"].items()
        }
        return cls(embedder, routes)

    def route(self, kind: str) -> Route:
        return self.routes.get(kind, Route(kind))

    def restored(self, chips: Sequence[np.ndarray], kinds: Sequence[str]) -> list[np.ndarray]:
        """Each chip through its type's restoration step (the chip itself where there is none)."""
        return [RESTORERS[self.route(kind).restore](chip) for chip, kind in zip(chips, kinds)]

    def embed(
        self, chips: Sequence[np.ndarray], kinds: Sequence[str], hidden: bool = False, maps: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(routed embeddings; embeddings of the restored chips as they are, neither mirrored nor
        adapted; hidden features of that same pass when ``hidden`` -- the dlib port's runtimes only,
        with the last stage's input map when ``maps`` -- else None) for chips of the given types.
        A gender head reads the second and third together, as it was trained: one chip's pass."""
        restored = self.restored(chips, kinds)
        pooled = None
        if hidden:
            plain, pooled = self.embedder.describe(restored, maps=maps)
        else:
            plain = self.embedder.embed(restored)
        # Mirrored chips of the routes that ask for them, in one batch, averaged into the routed
        # vectors only.
        routed = plain.copy()
        mirrored = [i for i, kind in enumerate(kinds) if self.route(kind).mirror]
        if mirrored:
            flipped = self.embedder.embed([np.ascontiguousarray(restored[i][:, ::-1]) for i in mirrored])
            routed[mirrored] = l2_normalise(routed[mirrored] + flipped)
        for kind in set(kinds):
            adapter = self.route(kind).adapter
            if adapter is not None:
                rows = [i for i, k in enumerate(kinds) if k == kind]
                routed[rows] = adapter.apply_numpy(routed[rows])
        return routed, plain, pooled
