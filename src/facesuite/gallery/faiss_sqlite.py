"""The embedded gallery: a folder of SQLite (the truth) and a FAISS index (a derived cache).

A gallery is a folder holding two files:

``gallery.sqlite``
    The source of truth (SQLite in WAL mode): a ``meta`` table (embedder name, vector size,
    threshold, schema version, gallery id, generation counter) and a ``faces`` table (id,
    identity, source path, float32 vector as a BLOB, the image's content hash). A ``frames``
    table keeps, per face, the whole image's frame for source-photo matching
    (:mod:`facesuite.gallery.source_match`), written in the same transaction and deleted with it. Every enroll or remove is one
    transaction, so a crash -- even SIGKILL -- loses nothing already committed and never exposes
    half an identity. Each write transaction bumps the generation counter. Galleries of older
    schemas are brought up to date when opened (:func:`_upgrade`).

``index.faiss``
    A derived cache: a FAISS inner-product index over the plain unit vectors, keyed by face id and
    tagged with the gallery id and the generation it was built from. It is written atomically
    (temporary file + ``os.replace``). When it is missing, corrupt or from another generation it
    is rebuilt from SQLite, so deleting it is always safe.

    with FolderGallery.create("people/", "dlib", 128, 0.5) as gallery:   # opens it if it exists
        gallery.enroll("alice", vectors, sources)
        for best in gallery.identify(probes):
            print(best[0].identity, best[0].distance)   # decisions: facesuite.decide

Distances are cosine distances (``1 - dot``) between L2-normalised vectors, as everywhere in
facesuite. Several processes may use one gallery at once: SQLite serialises writers, and
:meth:`FolderGallery.identify` re-reads the generation counter (one indexed row) before each search and
reloads the index when another process changed the gallery.

Long because the crash-safety argument (transactions, generations, the index cache) reads top to
bottom: one class and the SQLite and index-file helpers only it uses.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import struct
import uuid
import zlib
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import faiss
import numpy as np

from facesuite.errors import InputError
from facesuite.gallery.base import (
    BACKENDS,
    DB_NAME,
    SCHEMA_VERSION,
    GalleryStore,
    Match,
    check_identity,
    check_threshold,
    rows_to_add,
    unit_rows,
)
from facesuite.text import output_folder

INDEX_NAME = "index.faiss"
# Hashes looked up per query: under SQLite's limit on bound parameters.
_HASHES_PER_QUERY = 500
# Index file header: magic, gallery id (uuid bytes), generation, payload length, payload CRC-32.
# The gallery id stops an index copied from another gallery at the same generation being trusted;
# the CRC catches torn or corrupted files before FAISS parses them.
_INDEX_MAGIC = b"FSGIDX01"
_INDEX_HEADER = struct.Struct("<8s16sQQI")
# A first search pass this wide resolves top-k distinct identities at once for typical galleries
# (a handful of faces per identity); larger identities fall back to widening the search.
_FIRST_PASS_WIDTH = 256
# Long enough to ride out another process's enroll transaction instead of failing with "locked".
_BUSY_TIMEOUT_S = 30.0


@BACKENDS.register("folder")
class FolderGallery(GalleryStore):
    """An open gallery folder: :meth:`create` makes one (or opens the one there), :meth:`open` opens one.

    Not thread-safe: use one instance per thread (instances in several processes are fine).
    """

    def __init__(self, folder: Path, conn: sqlite3.Connection, meta: dict[str, str]) -> None:
        # Private: the classmethods validate the folder and the metadata first.
        self.path = folder
        self._conn = conn
        self.embedder: str = meta["embedder"]
        self.dim: int = int(meta["dim"])
        self.keeps_frames = True
        self._threshold = float(meta["threshold"])
        self._gallery_id = uuid.UUID(hex=meta["gallery_id"]).bytes
        # In-memory search state, valid for committed generation ``_generation`` (None: not loaded
        # or possibly inconsistent, so the next search reloads it).
        self._index: faiss.IndexIDMap | None = None
        self._faces: dict[int, tuple[str, str]] = {}
        self._counts: Counter[str] = Counter()
        self._generation: int | None = None
        # Generation of the index file on disk as far as we know, to skip rewriting it on close.
        self._persisted_generation: int | None = None
        self._sync(persist=True)

    # ------------------------------------------------------------------ opening

    @classmethod
    def create(cls, path: str | Path, embedder: str, dim: int, threshold: float) -> FolderGallery:
        """Create a gallery in folder ``path`` (made if needed), and open it.

        If the folder already holds a gallery for the same embedder and dim it is opened as is
        (its stored threshold is kept); a gallery for another embedder or dim is an
        :class:`InputError`, since its vectors cannot be compared with the new ones.
        """
        folder = Path(path)
        if not isinstance(embedder, str) or not embedder:
            raise ValueError("embedder name must be a non-empty string")
        if isinstance(dim, bool) or not isinstance(dim, int) or dim <= 0:
            raise ValueError(f"dim must be a positive int, got {dim!r}")
        threshold = check_threshold(threshold, folder)
        output_folder(folder)  # made if absent; one that cannot be is the user's to fix
        conn = _connect(folder / DB_NAME, create=True)
        try:
            _enable_wal(conn, folder)
            initial = {
                "schema_version": str(SCHEMA_VERSION),
                "embedder": embedder,
                "dim": str(dim),
                "threshold": repr(threshold),
                "gallery_id": uuid.uuid4().hex,
                "generation": "0",
            }
            # One transaction with INSERT OR IGNORE: if two processes create the same gallery at
            # once, exactly one set of metadata wins and both then validate against it.
            with _transaction(conn, "IMMEDIATE"):
                tables = _table_names(conn)
                if tables and "meta" not in tables:
                    raise InputError(f"no gallery here ({DB_NAME} is some other database)", folder)
                conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS faces ("
                    " id INTEGER PRIMARY KEY, identity TEXT NOT NULL,"
                    " source TEXT NOT NULL, vector BLOB NOT NULL, hash TEXT)"
                )
                conn.execute("CREATE INDEX IF NOT EXISTS faces_identity ON faces (identity)")
                conn.execute("CREATE TABLE IF NOT EXISTS frames (face_id INTEGER PRIMARY KEY, frame BLOB NOT NULL)")
                conn.executemany("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", initial.items())
            _upgrade(conn)
            meta = _read_meta(conn, folder)
            if (meta["embedder"], int(meta["dim"])) != (embedder, dim):
                raise InputError(
                    f"gallery already exists for embedder {meta['embedder']!r} (dim {meta['dim']}); "
                    f"cannot use it with {embedder!r} (dim {dim})",
                    folder,
                )
            return cls(folder, conn, meta)
        except BaseException:
            conn.close()
            raise

    @classmethod
    def open(cls, path: str | Path) -> FolderGallery:
        """Open an existing gallery; :class:`InputError` ("no gallery here") if there is none."""
        folder = Path(path)
        if not (folder / DB_NAME).is_file():
            raise InputError("no gallery here", folder)
        conn = _connect(folder / DB_NAME, create=False)
        try:
            _enable_wal(conn, folder)
            _read_meta(conn, folder)  # refuses what is no gallery before anything is changed
            _upgrade(conn)
            return cls(folder, conn, _read_meta(conn, folder))
        except BaseException:
            conn.close()
            raise

    def set_threshold(self, threshold: float) -> None:
        """Change the decision threshold and store it in the gallery."""
        threshold = check_threshold(threshold, self.path)
        with _transaction(self._conn, "IMMEDIATE"):
            self._conn.execute("UPDATE meta SET value = ? WHERE key = 'threshold'", (repr(threshold),))
        self._threshold = threshold

    # ------------------------------------------------------------------ writing

    def enroll(self, identity: str, vectors: np.ndarray, sources: Sequence[str],
               hashes: Sequence[str | None] | None = None, frames: Sequence[bytes] | None = None) -> int:
        """Add faces of ``identity`` (new or existing) in one transaction; return how many were added.

        ``vectors`` is ``(n, dim)`` with one row per face (re-normalised to unit length),
        ``sources`` names the image each came from, ``hashes`` (optional) each image's content
        hash and ``frames`` (optional) each image's source-matching frame. A face whose hash the
        identity already holds, or that repeats an earlier one, is left out; the rest is stored
        whole or not at all.
        """
        check_identity(identity, self.path)
        vectors = self._check_vectors(vectors, "enrolled")
        sources = [os.fspath(source) for source in sources]
        if len(sources) != len(vectors):
            raise ValueError(f"{len(vectors)} vectors but {len(sources)} sources")
        if len(vectors) == 0:
            raise InputError(f"no faces to enroll for {identity!r}", self.path)
        if frames is not None and len(frames) != len(vectors):
            raise ValueError(f"{len(frames)} frames for {len(vectors)} faces")
        hashes = [None] * len(vectors) if hashes is None else list(hashes)
        if len(hashes) != len(vectors):
            raise ValueError(f"{len(hashes)} hashes for {len(vectors)} faces")
        # IMMEDIATE takes the write lock up front, so the id range chosen below stays ours and no
        # other writer adds the same photo between the check and the insert.
        with _transaction(self._conn, "IMMEDIATE"):
            keep = rows_to_add(hashes, self._held_hashes(identity))
            if not keep:
                return 0
            vectors, sources, hashes = vectors[keep], [sources[i] for i in keep], [hashes[i] for i in keep]
            frames = None if frames is None else [frames[i] for i in keep]
            generation = self._read_generation()
            (first_id,) = self._conn.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM faces").fetchone()
            ids = np.arange(first_id, first_id + len(vectors), dtype=np.int64)
            self._conn.executemany(
                "INSERT INTO faces (id, identity, source, vector, hash) VALUES (?, ?, ?, ?, ?)",
                ((int(face_id), identity, source, vector.astype("<f4", copy=False).tobytes(), digest)
                 for face_id, source, vector, digest in zip(ids, sources, vectors, hashes)),
            )
            if frames is not None:
                self._conn.executemany("INSERT INTO frames (face_id, frame) VALUES (?, ?)",
                                       ((int(face_id), bytes(frame)) for face_id, frame in zip(ids, frames)))
            self._write_generation(generation + 1)
        if self._generation == generation:
            # Nobody else wrote since we loaded: extend the index in place instead of reloading.
            # Marked unloaded meanwhile, so a failure halfway forces a full reload, not bad results.
            self._generation = None
            self._index.add_with_ids(vectors, ids)
            self._faces.update((int(face_id), (identity, source)) for face_id, source in zip(ids, sources))
            self._counts[identity] += len(vectors)
            self._generation = generation + 1
        return len(vectors)

    def enrolled_as(self, hashes: Sequence[str]) -> dict[str, str]:
        """``{hash: identity}`` for those of ``hashes`` an enrolled image has."""
        wanted, found = sorted(set(hashes)), {}
        for start in range(0, len(wanted), _HASHES_PER_QUERY):
            part = wanted[start : start + _HASHES_PER_QUERY]
            found.update(self._conn.execute(
                f"SELECT hash, identity FROM faces WHERE hash IN ({', '.join('?' * len(part))})", part).fetchall())
        return found

    def _held_hashes(self, identity: str) -> set[str]:
        # An identity holds a handful of faces: read through the identity index, compared here.
        rows = self._conn.execute("SELECT hash FROM faces WHERE identity = ? AND hash IS NOT NULL", (identity,))
        return {digest for (digest,) in rows}

    def remove(self, identity: str) -> int:
        """Delete every face of ``identity``; return how many. :class:`InputError` if unknown."""
        with _transaction(self._conn, "IMMEDIATE"):
            generation = self._read_generation()
            ids = [face_id for (face_id,) in self._conn.execute("SELECT id FROM faces WHERE identity = ?", (identity,))]
            if not ids:
                raise InputError(f"no identity {identity!r} in this gallery", self.path)
            self._conn.execute("DELETE FROM frames WHERE face_id IN (SELECT id FROM faces WHERE identity = ?)", (identity,))
            self._conn.execute("DELETE FROM faces WHERE identity = ?", (identity,))
            self._write_generation(generation + 1)
        if self._generation == generation:
            self._generation = None
            self._index.remove_ids(np.asarray(ids, dtype=np.int64))
            for face_id in ids:
                del self._faces[face_id]
            del self._counts[identity]
            self._generation = generation + 1
        return len(ids)

    # ------------------------------------------------------------------ reading

    def identify(self, vectors: np.ndarray, top_k: int = 1) -> list[list[Match]]:
        """For each probe vector, the ``top_k`` nearest distinct identities, best first.

        ``vectors`` is ``(n, dim)`` (or one ``(dim,)`` vector). Each identity is represented by
        its closest face. Fewer than ``top_k`` matches come back only when the gallery holds
        fewer identities. :class:`InputError` if the gallery is empty.
        """
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {top_k}")
        probes = self._check_vectors(vectors, "probe")
        self._sync(persist=False)
        index = self._index
        if index.ntotal == 0:
            raise InputError("gallery is empty", self.path)
        results: list[list[Match]] = [[] for _ in range(len(probes))]
        pending = np.arange(len(probes), dtype=np.int64)
        # Each identity holds at most max_faces of the k nearest faces, so k = top_k * max_faces
        # always yields top_k distinct identities; start narrower when that is large and widen
        # only for the probes that came up short.
        max_faces = max(self._counts.values())
        width = min(index.ntotal, top_k * max_faces, max(top_k, _FIRST_PASS_WIDTH))
        while len(pending):
            similarities, labels = index.search(probes[pending], width)
            short = []
            for row, probe in enumerate(pending):
                matches = self._distinct_matches(similarities[row], labels[row], top_k)
                if len(matches) == top_k or width == index.ntotal:
                    results[probe] = matches
                else:
                    short.append(probe)
            pending = np.asarray(short, dtype=np.int64)
            width = min(index.ntotal, width * 4)
        return results

    def identities(self) -> list[tuple[str, int]]:
        """``(identity, number of faces)`` for every enrolled identity, sorted by name."""
        # SQLite's default BINARY collation orders by code point, like Python's sorted().
        return [
            (identity, count)
            for identity, count in self._conn.execute(
                "SELECT identity, COUNT(*) FROM faces GROUP BY identity ORDER BY identity"
            )
        ]

    def frames(self, since: int | None = None) -> tuple[int, list[tuple[str, str, bytes]] | None]:
        """(generation, ``(identity, source, frame)`` of every enrolled image with a frame, or None
        if the generation is still ``since``), one snapshot."""
        with _transaction(self._conn, "DEFERRED"):
            generation = self._read_generation()
            if generation == since:
                return generation, None
            rows = self._conn.execute("SELECT faces.identity, faces.source, frames.frame FROM frames "
                                      "JOIN faces ON faces.id = frames.face_id ORDER BY frames.face_id").fetchall()
            return generation, rows

    def __len__(self) -> int:
        """Number of enrolled faces (all identities)."""
        (count,) = self._conn.execute("SELECT COUNT(*) FROM faces").fetchone()
        return count

    # ------------------------------------------------------------------ closing

    def close(self) -> None:
        """Save the index cache if it is newer than the file on disk, and close the database."""
        if self._conn is None:
            return
        if self._generation is not None and self._generation != self._persisted_generation:
            self._write_index_file()
        self._conn.close()
        self._conn = None

    # ------------------------------------------------------------------ internals

    def _check_vectors(self, vectors: np.ndarray, what: str) -> np.ndarray:
        return unit_rows(vectors, self.dim, self.embedder, what, self.path)

    def _distinct_matches(self, similarities: np.ndarray, labels: np.ndarray, top_k: int) -> list[Match]:
        matches: list[Match] = []
        seen: set[str] = set()
        for similarity, label in zip(similarities.tolist(), labels.tolist()):
            if label < 0:  # FAISS pads with -1 when fewer results exist
                break
            identity, source = self._faces[label]
            if identity in seen:
                continue
            seen.add(identity)
            # Rounding can push 1 - dot a hair below zero for identical vectors.
            matches.append(Match(identity, max(0.0, 1.0 - similarity), source))
            if len(matches) == top_k:
                break
        return matches

    def _read_generation(self) -> int:
        (value,) = self._conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        return int(value)

    def _write_generation(self, generation: int) -> None:
        self._conn.execute("UPDATE meta SET value = ? WHERE key = 'generation'", (str(generation),))

    def _sync(self, persist: bool) -> None:
        """Make the in-memory index match the latest committed generation.

        Everything is read inside one read transaction, so the generation, the face list and the
        vectors come from the same snapshot even while another process is writing. With
        ``persist`` a rebuilt index is saved at once (on open, so the next open is fast); during
        searches that is left to :meth:`close` to avoid rewriting the file on every change.
        """
        with _transaction(self._conn, "DEFERRED"):
            generation = self._read_generation()
            if generation == self._generation:
                return
            rows = self._conn.execute("SELECT id, identity, source FROM faces").fetchall()
            faces = {face_id: (identity, source) for face_id, identity, source in rows}
            counts = Counter(identity for _, identity, _ in rows)
            index = self._read_index_file(generation, counts.total())
            loaded = index is not None
            if not loaded:
                index = self._build_index()
        self._index, self._faces, self._generation, self._counts = index, faces, generation, counts
        if loaded:
            self._persisted_generation = generation
        elif persist:
            self._write_index_file()

    def _build_index(self) -> faiss.IndexIDMap:
        index = faiss.IndexIDMap(faiss.IndexFlatIP(self.dim))
        rows = self._conn.execute("SELECT id, vector FROM faces").fetchall()
        if rows:
            ids = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
            blob = b"".join(row[1] for row in rows)
            if len(blob) != len(rows) * self.dim * 4:
                raise InputError(f"{DB_NAME} holds vectors of the wrong size (damaged gallery?)", self.path)
            index.add_with_ids(np.frombuffer(blob, dtype="<f4").reshape(len(rows), self.dim), ids)
        return index

    def _read_index_file(self, generation: int, count: int) -> faiss.IndexIDMap | None:
        """The cached index if it is intact and built from ``generation`` of this gallery."""
        try:
            data = (self.path / INDEX_NAME).read_bytes()
        except OSError:
            return None
        if len(data) < _INDEX_HEADER.size:
            return None
        magic, gallery_id, file_generation, length, crc = _INDEX_HEADER.unpack_from(data)
        if (magic, gallery_id, file_generation) != (_INDEX_MAGIC, self._gallery_id, generation):
            return None
        payload = np.frombuffer(data, dtype=np.uint8, offset=_INDEX_HEADER.size)
        if length != len(payload) or zlib.crc32(payload) != crc:
            return None
        try:
            index = faiss.deserialize_index(payload)
        except RuntimeError:
            return None
        if not isinstance(index, faiss.IndexIDMap) or index.d != self.dim or index.ntotal != count:
            return None
        return index

    def _write_index_file(self) -> None:
        payload = faiss.serialize_index(self._index)
        header = _INDEX_HEADER.pack(
            _INDEX_MAGIC, self._gallery_id, self._generation, len(payload), zlib.crc32(payload)
        )
        target = self.path / INDEX_NAME
        # A name unique to this writer, so concurrent writers never interleave in one temp file.
        temporary = target.with_name(f".{INDEX_NAME}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            with open(temporary, "wb") as handle:
                handle.write(header)
                handle.write(payload.data)
            os.replace(temporary, target)
        except OSError:
            # The index is only a cache: failing to save it (read-only media, full disk) costs a
            # rebuild on the next open, never correctness.
            temporary.unlink(missing_ok=True)
            return
        self._persisted_generation = self._generation


def _upgrade(conn: sqlite3.Connection) -> None:
    """Bring an older gallery to the current schema, in one transaction.

    Schema 1 lacks the frames table: it gets an empty one (images enrolled before it are matched
    by face only). Schema 2 kept rendered views of each face (the sunny gallery view, since
    removed) as rows of ``faces`` with a non-empty ``view``: those rows go, and the column with
    them, so every row left is a face; the generation moves on so any cached index is rebuilt.
    Schemas 1-3 lack the ``hash`` column: it is added, NULL in every existing row, and those rows
    are kept as they are (their photos are not known by content, so enrolling one of them again
    adds it once more, with its hash from then on).
    """
    (version,) = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    if int(version) >= SCHEMA_VERSION:
        return
    with _transaction(conn, "IMMEDIATE"):
        (version,) = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if int(version) >= SCHEMA_VERSION:  # another process upgraded it meanwhile
            return
        conn.execute("CREATE TABLE IF NOT EXISTS frames (face_id INTEGER PRIMARY KEY, frame BLOB NOT NULL)")
        columns = {row[1] for row in conn.execute("PRAGMA table_info(faces)")}
        if "hash" not in columns:
            conn.execute("ALTER TABLE faces ADD COLUMN hash TEXT")
        if "view" in columns:
            conn.execute("DELETE FROM frames WHERE face_id IN (SELECT id FROM faces WHERE view != '')")
            conn.execute("DELETE FROM faces WHERE view != ''")
            conn.execute("ALTER TABLE faces DROP COLUMN view")
        conn.execute("DELETE FROM meta WHERE key = 'views'")
        conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))


def _connect(db_path: Path, create: bool) -> sqlite3.Connection:
    # isolation_level=None: we issue BEGIN/COMMIT ourselves, so reads can share one snapshot.
    mode = "rwc" if create else "rw"  # "rw" keeps open() from creating a file in a stray folder
    try:
        uri = f"{db_path.resolve().as_uri()}?mode={mode}"
        return sqlite3.connect(uri, uri=True, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
    except sqlite3.Error as exc:
        raise InputError(f"cannot open gallery database ({exc})", db_path.parent) from None


def _enable_wal(conn: sqlite3.Connection, folder: Path) -> None:
    try:
        # WAL lets readers keep a consistent snapshot while a writer commits; FULL makes each
        # committed enroll survive power loss too, not just a process crash.
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
    except sqlite3.DatabaseError as exc:
        raise InputError(f"no gallery here ({DB_NAME} is not a usable database: {exc})", folder) from None


@contextmanager
def _transaction(conn: sqlite3.Connection, mode: str) -> Iterator[None]:
    conn.execute(f"BEGIN {mode}")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _table_names(conn: sqlite3.Connection) -> set[str]:
    return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _read_meta(conn: sqlite3.Connection, folder: Path) -> dict[str, str]:
    try:
        if not {"meta", "faces"} <= _table_names(conn):
            raise InputError(f"no gallery here ({DB_NAME} holds no gallery tables)", folder)
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    except sqlite3.DatabaseError as exc:
        raise InputError(f"no gallery here ({DB_NAME} is not a usable database: {exc})", folder) from None
    required = {"schema_version", "embedder", "dim", "threshold", "gallery_id", "generation"}
    if not required <= meta.keys():
        raise InputError(f"no gallery here ({DB_NAME} lacks gallery metadata)", folder)
    if int(meta["schema_version"]) > SCHEMA_VERSION:
        raise InputError(
            f"gallery schema version {meta['schema_version']} is newer than this facesuite "
            f"supports ({SCHEMA_VERSION}); upgrade facesuite",
            folder,
        )
    return meta


