"""One small face picture per enrolled identity, for the dashboard's gallery page.

Galleries hold vectors and source names, not pictures (an upload is never kept), so the server
keeps its own: the aligned chip of an identity's first enrolled face, as a JPEG of about 3 KB,
under ``WORK_DIR/thumbnails/<gallery>/``, one file per identity named by a hash (identity names
are data, never paths). Removing the identity removes its file. An identity enrolled elsewhere
(the CLI, the demo) gets its file the first time its picture is asked for, made from its first
enrolled photo (:meth:`facesuite.serve.service.ModelService.thumbnail`).
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import numpy as np

THUMBNAIL_SIZE = 112


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


class ThumbnailStore:
    def __init__(self, root: Path, gallery_uri: str) -> None:
        self.folder = root / _digest(gallery_uri)

    def _path(self, identity: str) -> Path:
        return self.folder / f"{_digest(identity)}.jpg"

    def has(self, identity: str) -> bool:
        return self._path(identity).is_file()

    def get(self, identity: str) -> bytes | None:
        try:
            return self._path(identity).read_bytes()
        except FileNotFoundError:
            return None

    def put(self, identity: str, chip: np.ndarray) -> None:
        """Store ``chip`` (RGB) as the identity's picture, written whole (rename) or not at all."""
        from PIL import Image

        picture = Image.fromarray(np.asarray(chip, dtype=np.uint8))
        picture.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        picture.convert("RGB").save(buffer, format="JPEG", quality=85)
        self.folder.mkdir(parents=True, exist_ok=True)
        target = self._path(identity)
        partial = target.with_suffix(".part")
        partial.write_bytes(buffer.getvalue())
        os.replace(partial, target)

    def remove(self, identity: str) -> None:
        self._path(identity).unlink(missing_ok=True)
