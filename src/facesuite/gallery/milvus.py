"""A gallery on Milvus: the API of :class:`facesuite.gallery.faiss_sqlite.FolderGallery`, for millions of faces.

A gallery is one Milvus collection with fields ``id`` (assigned by Milvus), ``identity``,
``source``, ``hash`` (the image's content hash, so a photo is enrolled once per identity) and the
unit ``vector``, searched by inner product on a FLAT index: an exact search, so results match the
embedded FAISS gallery's. The embedder name, vector size, threshold and schema version are stored
as collection properties, so every client applies the same calibrated threshold. A collection of
an older schema is rewritten in the current one when first opened (:func:`_upgrade`).

Where it lives is given by a URI:

``milvus://HOST:PORT/COLLECTION``
    a Milvus server (``milvus://USER:PASSWORD@HOST:PORT/COLLECTION`` to log in);
``PATH.db``
    a Milvus Lite folder, embedded in this process and fully offline (collection ``faces``).

Milvus has no multi-statement transactions: an enroll is one insert request, which Milvus
accepts or rejects as a whole, and a remove is one delete by identity. Collections are created
with Strong consistency so a search sees every enroll acknowledged before it.

Long because the URI parsing, the connection, the schema upgrade and the store's calls all speak
the same collection layout, and splitting them would spread that layout over several files.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import numpy as np

from facesuite.errors import InputError
from facesuite.gallery.base import (
    BACKENDS,
    MAX_IDENTITY_LENGTH,
    SCHEMA_VERSION,
    GalleryStore,
    Match,
    check_identity,
    check_threshold,
    rows_to_add,
    unit_rows,
)

#: Collection used inside a Milvus Lite ``.db`` folder.
LITE_COLLECTION = "faces"
# Properties are namespaced so a facesuite gallery is recognisable among other collections.
_PREFIX = "facesuite."
# Milvus caps one search at 16,384 results.
_MAX_LIMIT = 16_384
# Faces fetched per probe in the first pass: enough for top-k distinct identities at once when
# identities hold a handful of faces; probes that come up short search again without the
# identities already found.
_FIRST_PASS_WIDTH = 64
# Milvus measures VARCHAR limits in bytes; identities are capped at 200 characters of UTF-8.
_IDENTITY_BYTES = 4 * MAX_IDENTITY_LENGTH
_SOURCE_BYTES = 65_535
_HASH_BYTES = 64  # a SHA-1 in hex is 40
# Hashes looked up per query: keeps the filter expression far below the server's request limit.
_HASHES_PER_QUERY = 1_000
# A collection being rewritten in the current schema, under its name with this suffix.
_UPGRADING = "__upgrading"
_CONNECT_TIMEOUT_S = 10.0


@BACKENDS.register("milvus")
class MilvusGallery(GalleryStore):
    """An open Milvus gallery. Create with :meth:`create` or :meth:`open`."""

    def __init__(self, uri: str, client: Any, collection: str, properties: dict[str, str]) -> None:
        # Private: the classmethods connect and validate the collection first.
        self.uri = uri
        self.path = uri  # named like FolderGallery.path, for messages
        self._client = client
        self._collection = collection
        self.embedder: str = properties[_PREFIX + "embedder"]
        self.dim: int = int(properties[_PREFIX + "dim"])
        self._threshold = float(properties[_PREFIX + "threshold"])
        self._written = False  # since opening, so close() knows to flush

    # ------------------------------------------------------------------ opening

    @classmethod
    def create(cls, uri: str, embedder: str, dim: int, threshold: float) -> MilvusGallery:
        """Create the gallery's collection if it is absent, then open it.

        As with :meth:`FolderGallery.create`, an existing gallery for the same embedder and dim is
        opened as is (keeping its threshold) and one for another embedder or dim is an error.
        """
        if not isinstance(embedder, str) or not embedder:
            raise ValueError("embedder name must be a non-empty string")
        if isinstance(dim, bool) or not isinstance(dim, int) or dim <= 0:
            raise ValueError(f"dim must be a positive int, got {dim!r}")
        threshold = check_threshold(threshold, uri)
        client, collection = _connect(uri, create=True)
        _finish_upgrade(client, collection)
        if not client.has_collection(collection):
            _create_collection(client, collection, embedder, dim, threshold)
        gallery = cls._validated(uri, client, collection)
        if (gallery.embedder, gallery.dim) != (embedder, dim):
            gallery.close()
            raise InputError(
                f"gallery already exists for embedder {gallery.embedder!r} (dim {gallery.dim}); "
                f"cannot use it with {embedder!r} (dim {dim})",
                uri,
            )
        return gallery

    @classmethod
    def open(cls, uri: str) -> MilvusGallery:
        """Open an existing gallery; :class:`InputError` ("no gallery here") if there is none."""
        client, collection = _connect(uri, create=False)
        _finish_upgrade(client, collection)
        if not client.has_collection(collection):
            client.close()
            raise InputError(f"no gallery here (no collection {collection!r})", uri)
        return cls._validated(uri, client, collection)

    @classmethod
    def _validated(cls, uri: str, client: Any, collection: str) -> MilvusGallery:
        properties = client.describe_collection(collection).get("properties", {})
        required = {_PREFIX + key for key in ("schema_version", "embedder", "dim", "threshold")}
        if not required <= properties.keys():
            client.close()
            raise InputError(f"no gallery here (collection {collection!r} is not a facesuite gallery)", uri)
        if int(properties[_PREFIX + "schema_version"]) > SCHEMA_VERSION:
            client.close()
            raise InputError(
                f"gallery schema version {properties[_PREFIX + 'schema_version']} is newer than this "
                f"facesuite supports ({SCHEMA_VERSION}); upgrade facesuite",
                uri,
            )
        if int(properties[_PREFIX + "schema_version"]) < SCHEMA_VERSION:
            _upgrade(client, collection, properties)
            properties = client.describe_collection(collection).get("properties", {})
        client.load_collection(collection)  # a no-op when loaded; needed after a server restart
        return cls(uri, client, collection, properties)

    # ------------------------------------------------------------------ settings

    def set_threshold(self, threshold: float) -> None:
        """Change the decision threshold and store it with the collection."""
        threshold = check_threshold(threshold, self.uri)
        self._client.alter_collection_properties(self._collection, properties={_PREFIX + "threshold": repr(threshold)})
        self._threshold = threshold

    # ------------------------------------------------------------------ writing

    def enroll(self, identity: str, vectors: np.ndarray, sources: Sequence[str],
               hashes: Sequence[str | None] | None = None) -> int:
        """Add faces of ``identity`` in one insert request; return how many were added. A face
        whose content hash (``hashes``, optional) the identity already holds, or that repeats an
        earlier one, is left out. Milvus has no transactions: two clients enrolling the same photo
        at the same moment may both add it."""
        check_identity(identity, self.uri)
        vectors = unit_rows(vectors, self.dim, self.embedder, "enrolled", self.uri)
        sources = [os.fspath(source) for source in sources]
        if len(sources) != len(vectors):
            raise ValueError(f"{len(vectors)} vectors but {len(sources)} sources")
        if len(vectors) == 0:
            raise InputError(f"no faces to enroll for {identity!r}", self.uri)
        hashes = [None] * len(vectors) if hashes is None else list(hashes)
        if len(hashes) != len(vectors):
            raise ValueError(f"{len(hashes)} hashes for {len(vectors)} faces")
        held = {h for h, owner in self.enrolled_as([h for h in hashes if h is not None]).items() if owner == identity}
        keep = rows_to_add(hashes, held)
        if not keep:
            return 0
        vectors = vectors.tolist()
        self._client.insert(self._collection, [{"identity": identity, "source": sources[i], "hash": hashes[i],
                                                "vector": vectors[i]} for i in keep])
        self._written = True
        return len(keep)

    def enrolled_as(self, hashes: Sequence[str]) -> dict[str, str]:
        """``{hash: identity}`` for those of ``hashes`` an enrolled image has."""
        wanted, found = sorted(set(hashes)), {}
        for start in range(0, len(wanted), _HASHES_PER_QUERY):
            part = wanted[start : start + _HASHES_PER_QUERY]
            found.update((row["hash"], row["identity"]) for row in self._client.query(
                self._collection, filter=f"hash in {json.dumps(part)}", output_fields=["hash", "identity"], limit=_MAX_LIMIT))
        return found

    def remove(self, identity: str) -> int:
        """Delete every face of ``identity``; return how many. :class:`InputError` if unknown."""
        where = f"identity == {_quote(identity)}"
        # Counted first: Milvus servers and Milvus Lite report deletions in different shapes.
        count = self._count(where)
        if count == 0:
            raise InputError(f"no identity {identity!r} in this gallery", self.uri)
        self._client.delete(self._collection, filter=where)
        self._written = True
        return count

    # ------------------------------------------------------------------ reading

    def identify(self, vectors: np.ndarray, top_k: int = 1) -> list[list[Match]]:
        """For each probe vector, the ``top_k`` nearest distinct identities, best first.

        Same contract as :meth:`~facesuite.gallery.faiss_sqlite.FolderGallery.identify`; :class:`InputError`
        if the gallery is empty.
        """
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {top_k}")
        probes = unit_rows(vectors, self.dim, self.embedder, "probe", self.uri)
        width = min(_MAX_LIMIT, max(top_k, _FIRST_PASS_WIDTH))
        results: list[list[Match]] = [[] for _ in range(len(probes))]
        first_pass = self._search(probes, width)
        if any(not hits for hits in first_pass):
            # A search returns nothing only when there is nothing to return.
            raise InputError("gallery is empty", self.uri)
        for row, hits in enumerate(first_pass):
            matches = _distinct(hits, top_k, [])
            # Fewer than `width` hits means every face was seen. Otherwise search again without
            # the identities found: the best remaining face is the next identity's best face, so
            # each round adds at least one identity, in order.
            while len(matches) < top_k and len(hits) == width:
                found = ", ".join(_quote(match.identity) for match in matches)
                (hits,) = self._search(probes[row][None, :], width, f"identity not in [{found}]")
                matches = _distinct(hits, top_k, matches)
            results[row] = matches
        return results

    def identities(self) -> list[tuple[str, int]]:
        """``(identity, number of faces)`` for every enrolled identity, sorted by name."""
        # Milvus has no GROUP BY: stream the identity column and count here.
        counts: Counter[str] = Counter()
        _quiet_lite_iterator_warning()
        iterator = self._client.query_iterator(self._collection, batch_size=10_000, output_fields=["identity"])
        try:
            while batch := iterator.next():
                counts.update(row["identity"] for row in batch)
        finally:
            iterator.close()
        return sorted(counts.items())

    def __len__(self) -> int:
        """Number of enrolled faces (all identities)."""
        return self._count("")

    # ------------------------------------------------------------------ closing

    def close(self) -> None:
        """Flush what this instance wrote, and close the connection.

        Writes are searchable at once either way; flushing seals them into segments, which Milvus
        Lite otherwise searches piece by piece (10k faces enrolled per identity: 680 ms per
        search before, 30-50 ms after). Once per session, not per enroll: each flush makes a
        segment, and a server rate-limits them. A Milvus Lite folder stays open until exit.
        """
        if self._client is None:
            return
        if self._written:
            self._client.flush(self._collection)
        self._client.close()
        self._client = None

    # ------------------------------------------------------------------ internals

    def _search(self, probes: np.ndarray, limit: int, where: str = "") -> list[list[dict]]:
        return self._client.search(
            self._collection, data=probes.tolist(), limit=limit, filter=where,
            output_fields=["identity", "source"], search_params={"metric_type": "IP"},
        )

    def _count(self, where: str) -> int:
        (row,) = self._client.query(self._collection, filter=where, output_fields=["count(*)"])
        return int(row["count(*)"])


def parse_uri(uri: str) -> tuple[str, str]:
    """``(Milvus client URI, collection)`` for a gallery URI; :class:`InputError` if malformed."""
    if not uri.startswith("milvus://"):
        return uri.rstrip("/"), LITE_COLLECTION
    parts = urlsplit(uri)
    collection = parts.path.strip("/")
    if not parts.hostname or not parts.port or not collection or "/" in collection:
        raise InputError("expected milvus://HOST:PORT/COLLECTION")
    return f"http://{parts.hostname}:{parts.port}", collection


def _connect(uri: str, create: bool) -> tuple[Any, str]:
    from pymilvus import MilvusClient, MilvusException

    address, collection = parse_uri(uri)
    token = ""
    if uri.startswith("milvus://"):
        parts = urlsplit(uri)
        if parts.username:
            token = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
    elif not create and not Path(address).exists():
        # Milvus Lite would create an empty folder; opening must not.
        raise InputError("no gallery here", uri)
    try:
        return MilvusClient(address, token=token, timeout=_CONNECT_TIMEOUT_S), collection
    except MilvusException as exc:
        raise InputError(f"cannot connect to Milvus ({exc.message})", uri) from None


def _create_collection(client: Any, collection: str, embedder: str, dim: int, threshold: float) -> None:
    from pymilvus import DataType, MilvusException

    schema = client.create_schema(auto_id=True, enable_dynamic_field=False, description="facesuite gallery")
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("identity", DataType.VARCHAR, max_length=_IDENTITY_BYTES)
    schema.add_field("source", DataType.VARCHAR, max_length=_SOURCE_BYTES)
    # Nullable: faces enrolled from stored embeddings (clusters) have no image to hash.
    schema.add_field("hash", DataType.VARCHAR, max_length=_HASH_BYTES, nullable=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
    index = client.prepare_index_params()
    index.add_index(field_name="vector", index_type="FLAT", metric_type="IP")
    properties = {
        _PREFIX + "schema_version": str(SCHEMA_VERSION), _PREFIX + "embedder": embedder,
        _PREFIX + "dim": str(dim), _PREFIX + "threshold": repr(threshold),
    }
    try:
        client.create_collection(
            collection, schema=schema, index_params=index, consistency_level="Strong", properties=properties
        )
    except MilvusException:
        # Another process created it between our check and now: validate theirs instead.
        if not client.has_collection(collection):
            raise


def _upgrade(client: Any, collection: str, properties: dict[str, str]) -> None:
    """Rewrite an older collection in the current schema. Schemas 2-3 lack the ``hash`` field and
    Milvus Lite cannot add a field to a collection, so the faces are copied into a new collection
    (``COLLECTION__upgrading``) with an empty hash each -- kept as they are, though their photos
    are not known by content (enrolling one again adds it once more, with its hash from then on)
    -- and that collection takes the old one's name. Schema 2's view rows (rendered views of
    each face, since removed) are not copied, so every row left is a face. The old collection is
    dropped only once the copy is whole; a run stopped after that finishes the rename when the
    gallery is next opened (:func:`_finish_upgrade`), and one stopped before starts again. Open
    an older gallery from one client first: a second client opening it during the copy would
    start the copy again under the first."""
    from pymilvus import MilvusException

    target = collection + _UPGRADING
    fields = {field["name"] for field in client.describe_collection(collection).get("fields", [])}
    if client.has_collection(target):
        client.drop_collection(target)  # an earlier upgrade stopped halfway: the old collection is whole
    _create_collection(client, target, properties[_PREFIX + "embedder"], int(properties[_PREFIX + "dim"]),
                       float(properties[_PREFIX + "threshold"]))
    client.load_collection(collection)
    _quiet_lite_iterator_warning()
    iterator = client.query_iterator(collection, batch_size=1_000, filter='view == ""' if "view" in fields else "",
                                     output_fields=["identity", "source", "vector"])
    try:
        while batch := iterator.next():
            client.insert(target, [{"identity": row["identity"], "source": row["source"], "hash": None,
                                    "vector": row["vector"]} for row in batch])
    finally:
        iterator.close()
    client.flush(target)
    try:
        client.drop_collection(collection)
    except MilvusException:
        if client.has_collection(collection):  # not another client upgrading it at the same time
            raise
    _finish_upgrade(client, collection)


def _finish_upgrade(client: Any, collection: str) -> None:
    """Give an upgraded copy its collection's name when the old one is gone (an upgrade stopped
    between dropping it and the rename, or another client's upgrade just now)."""
    from pymilvus import MilvusException

    target = collection + _UPGRADING
    if client.has_collection(collection) or not client.has_collection(target):
        return
    try:
        client.rename_collection(target, collection)
    except MilvusException:
        if not client.has_collection(collection):  # not another client renaming it at the same time
            raise


def _quiet_lite_iterator_warning() -> None:
    """Drop pymilvus's warning that the server (Milvus Lite) sent no snapshot timestamp.

    pymilvus then pages with the client's clock, which is fine for counting identities; the
    warning would otherwise print on every ``gallery list`` against Milvus Lite.
    """
    logger = logging.getLogger("pymilvus.client.iterator.query_iterator")
    if not any(isinstance(f, _LiteTimestampFilter) for f in logger.filters):
        logger.addFilter(_LiteTimestampFilter())


class _LiteTimestampFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "failed to get mvccTs" not in record.getMessage()


def _quote(text: str) -> str:
    """A Milvus filter string literal (identity names hold no control characters)."""
    return json.dumps(text, ensure_ascii=False)


def _distinct(hits: list[dict], top_k: int, matches: list[Match]) -> list[Match]:
    """``matches`` extended with the hits' identities not seen yet, best first, up to ``top_k``."""
    matches = list(matches)
    seen = {match.identity for match in matches}
    for hit in hits:
        identity = hit["entity"]["identity"]
        if identity in seen:
            continue
        seen.add(identity)
        # Rounding can push 1 - dot a hair below zero for identical vectors.
        matches.append(Match(identity, max(0.0, 1.0 - float(hit["distance"])), hit["entity"]["source"]))
        if len(matches) == top_k:
            break
    return matches
