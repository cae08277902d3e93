"""Routes: which restoration step each distortion type is sent through, and whether its face is
also embedded mirrored.

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

import numpy as np

from facesuite.config import MODELS_DIR
from facesuite.embed import Embedder, l2_normalise
from facesuite.errors import InputError
from facesuite.integrity import verify_model_folder
from facesuite.route.restore import RESTORERS

DEFAULT_ROUTES = MODELS_DIR / "routing"


@dataclass
class Route:
    name: str
    restore: str = "none"
    # Embed the (restored) chip and its mirror image and average the two: test-time augmentation
    # that makes a distorted face's embedding steadier, at the cost of a second embedding pass.
    mirror: bool = False

    def describe(self) -> str:
        parts = [self.restore] if self.restore != "none" else []
        if self.mirror:
            parts.append("mirror")
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
        # Every key of a route but restore and mirror is ignored.
        table = json.loads(table_path.read_text(encoding="utf-8"))
        unknown = {spec["restore"] for spec in table["routes"].values()} - set(RESTORERS)
        if unknown:
            raise InputError(f"unknown restorer(s) {', '.join(sorted(unknown))}; known: {', '.join(RESTORERS)}", table_path)
        adapted = sorted(kind for kind, spec in table["routes"].items() if spec.get("adapter"))
        if adapted:
            # Embedding adapters are no longer run: refused rather than silently skipped.
            raise InputError(f"embedding adapters are not supported (routes {', '.join(adapted)})", table_path)
        return cls(embedder, {kind: Route(kind, spec["restore"], bool(spec.get("mirror"))) for kind, spec in table["routes"].items()})

    def route(self, kind: str) -> Route:
        return self.routes.get(kind, Route(kind))

    def restored(self, chips: Sequence[np.ndarray], kinds: Sequence[str]) -> list[np.ndarray]:
        """Each chip through its type's restoration step (the chip itself where there is none)."""
        return [RESTORERS[self.route(kind).restore](chip) for chip, kind in zip(chips, kinds)]

    def embed(
        self, chips: Sequence[np.ndarray], kinds: Sequence[str], hidden: bool = False, maps: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(routed embeddings; embeddings of the restored chips as they are, not mirrored; hidden
        features of that same pass when ``hidden`` -- the dlib port's runtimes only, with the last
        stage's input map when ``maps`` -- else None) for chips of the given types.
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
        return routed, plain, pooled
