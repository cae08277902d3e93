"""On-disk cache of detections, keyed by image content hash + detector settings.

MTCNN costs ~50 ms per image on this CPU; alignment from cached landmarks costs well under a
millisecond. Caching the face geometry (box, landmarks, score) rather than pixels keeps the cache
small and lets one detection serve chips of every size and padding; "no face found" is cached
too, and the fallback box is applied after the cache, so changing it needs no re-detection.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

import numpy as np

from facesuite.detect import Detection

# Part of each row's key: rows of an older encoding (rounded coordinates, or no count of the
# image's faces) are not read back.
FORMAT = "v3"


class DetectionCache:
    """A SQLite table ``(digest, settings) -> face JSON``; safe for concurrent processes and threads.

    A SQLite connection may only be used by the thread that opened it, and callers do not all stay
    on one thread (a Ray actor runs each call on a thread of Ray's choosing; the API answers on its
    model thread), so each thread gets a connection of its own, opened on first use.
    """

    def __init__(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self._path = folder / "detections.sqlite"
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS detections (digest TEXT, settings TEXT, face TEXT, "
            "PRIMARY KEY (digest, settings))"
        )

    @property
    def _db(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            # check_same_thread=False only so close() may close every thread's connection; each
            # connection is still used by its own thread alone.
            connection = sqlite3.connect(self._path, timeout=30, isolation_level=None, check_same_thread=False)
            connection.execute("PRAGMA journal_mode=WAL")
            self._local.connection = connection
            with self._lock:
                self._connections.append(connection)
        return connection

    def get(self, digest: str, settings: str) -> tuple[bool, Detection | None]:
        """``(hit, face)``; a hit with ``None`` means the detector found no face in that image."""
        row = self._db.execute(
            "SELECT face FROM detections WHERE digest = ? AND settings = ?", (digest, f"{FORMAT}:{settings}")
        ).fetchone()
        if row is None:
            return False, None
        return True, (Detection.from_dict(json.loads(row[0])) if row[0] != "null" else None)

    @staticmethod
    def _encode(face: Detection | None) -> str:
        # Full precision (Detection.to_dict rounds for display): a cached face must give exactly the
        # chip and embedding a fresh detection gives.
        if face is None:
            return "null"
        return json.dumps({"box": [float(v) for v in face.box], "landmarks": np.asarray(face.landmarks, dtype=float).tolist(),
                           "score": float(face.score), "fallback": face.fallback, "turn": face.turn,
                           "faces_in_image": face.faces_in_image})

    def put_many(self, entries: list[tuple[str, str, Detection | None]]) -> None:
        if not entries:
            return
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR REPLACE INTO detections VALUES (?, ?, ?)",
                [(digest, f"{FORMAT}:{settings}", self._encode(face)) for digest, settings, face in entries],
            )

    def close(self) -> None:
        with self._lock:
            for connection in self._connections:
                connection.close()
            self._connections.clear()
        self._local = threading.local()
