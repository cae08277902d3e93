"""On-disk cache of detections, keyed by image content hash + detector settings.

MTCNN costs ~50 ms per image on this CPU; alignment from cached landmarks costs well under a
millisecond. Caching the face geometry (box, landmarks, score) rather than pixels keeps the cache
small and lets one detection serve chips of every size and padding; "no face found" is cached
too, and the fallback box is applied after the cache, so changing it needs no re-detection.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from facesuite.detect import Face


class DetectionCache:
    """A SQLite table ``(digest, settings) -> face JSON``; safe for concurrent processes."""

    def __init__(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(folder / "detections.sqlite", timeout=30, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS detections (digest TEXT, settings TEXT, face TEXT, "
            "PRIMARY KEY (digest, settings))"
        )

    def get(self, digest: str, settings: str) -> tuple[bool, Face | None]:
        """``(hit, face)``; a hit with ``None`` means the detector found no face in that image."""
        row = self._db.execute(
            "SELECT face FROM detections WHERE digest = ? AND settings = ?", (digest, settings)
        ).fetchone()
        if row is None:
            return False, None
        return True, (Face.from_dict(json.loads(row[0])) if row[0] != "null" else None)

    def put_many(self, entries: list[tuple[str, str, Face | None]]) -> None:
        if not entries:
            return
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR REPLACE INTO detections VALUES (?, ?, ?)",
                [(digest, settings, json.dumps(face.to_dict() if face else None)) for digest, settings, face in entries],
            )

    def close(self) -> None:
        self._db.close()
