"""Who is in a photo collection: every face of every photo grouped by person, no gallery needed.

    from facesuite import FaceAnalysis

    clusters = FaceAnalysis(gender=None).cluster(["holiday/", "party.jpg"])
    for cluster in clusters.ids():          # largest first
        print(cluster, clusters.size(cluster), clusters.photos(cluster))

How: a FAISS k-NN graph over the faces' unit embeddings (each face linked to its
:data:`NEIGHBOURS` nearest, never an all-pairs matrix) keeps the edges no longer than
:data:`EDGE_SCALE` times the calibrated verification threshold, and dlib's Chinese whispers groups
the graph. Chinese whispers lets each face take the label its neighbours hold most strongly, so
one stray edge between two people does not merge them as connected components would. The scale
and the algorithm were chosen on the FACECOM training identities (``benchmarks/cluster.py
--select``): the verification threshold is fitted on one pair at a time, and a collection holds
many people, so the nearest stranger of a face is often inside it.

A box with no face (:mod:`facesuite.classify.presence`) or a face below the quality floor
(:mod:`facesuite.classify.quality`) is left unclustered with its reason, never forced into a group.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from facesuite.classify.presence import NO_FACE
from facesuite.classify.quality import UNRECOGNISABLE
from facesuite.decide import UNKNOWN, OperatingPoint
from facesuite.errors import InputError, Skipped

#: Edges are kept up to this share of the calibrated verification threshold (chosen on training).
EDGE_SCALE = 0.55
#: Nearest neighbours searched per face: more than a person usually has faces in one query.
NEIGHBOURS = 30
#: Photos analysed per step: their faces' crops are let go of before the next step.
STEP = 256
THUMBNAIL = 80
STORE = "clusters.npz"


@dataclass
class ClusterFace:
    """One face of the collection and where it went. ``box`` is in the photo's own pixels."""

    path: str
    index: int  # which face of its photo (0: the main face)
    box: tuple[float, float, float, float]
    quality: float | None
    cluster: int | None  # None: unclustered, and ``reason`` says why
    distance: float | None = None  # cosine distance to its cluster's centre
    reason: str | None = None
    identity: str | None = None  # with a gallery: what the gallery decided for this face
    distortion: str | None = None  # the distortion type named for it (its identification threshold)

    @property
    def no_face(self) -> bool:
        """Whether the box holds no face (what the gallery's decision reads, as of a :class:`Face`)."""
        return self.reason == NO_FACE


@dataclass
class Clusters:
    """Faces grouped by person: what :meth:`FaceAnalysis.cluster` returns and ``facesuite cluster`` writes.

    Cluster ids are 0, 1, ... by size when made; ``--update`` keeps them and numbers new clusters
    after them. ``embeddings`` holds one unit row per face, in the order of :attr:`faces`.
    """

    faces: list[ClusterFace]
    embeddings: np.ndarray
    threshold: float  # the edge threshold used (cosine distance)
    embedder: str
    thumbnails: list[bytes] = field(repr=False, default_factory=list)  # a JPEG of each face's chip
    names: dict[int, str] = field(default_factory=dict)  # clusters named by the gallery
    skipped: list[Skipped] = field(default_factory=list)
    # Rows of each cluster, nearest the centre first: built on first use (faces are not changed after).
    _groups: dict[int, list[int]] | None = field(default=None, init=False, repr=False, compare=False)

    def _grouped(self) -> dict[int, list[int]]:
        if self._groups is None:
            groups: dict[int, list[int]] = {}
            for row, face in enumerate(self.faces):
                if face.cluster is not None:
                    groups.setdefault(face.cluster, []).append(row)
            self._groups = {c: sorted(rows, key=lambda i: (self.faces[i].distance, i)) for c, rows in groups.items()}
        return self._groups

    def ids(self) -> list[int]:
        """Cluster ids, largest cluster first (ties: lower id first)."""
        groups = self._grouped()
        return sorted(groups, key=lambda c: (-len(groups[c]), c))

    def members(self, cluster: int) -> list[int]:
        """Rows of :attr:`faces` in ``cluster``, nearest the centre first."""
        return self._grouped().get(cluster, [])

    def size(self, cluster: int) -> int:
        return len(self.members(cluster))

    def photos(self, cluster: int) -> list[str]:
        return sorted({self.faces[i].path for i in self.members(cluster)})

    def representative(self, cluster: int) -> int:
        """The row of the face nearest the cluster's centre."""
        return self.members(cluster)[0]

    def unclustered(self) -> list[int]:
        return [i for i, face in enumerate(self.faces) if face.cluster is None]

    def to_dict(self) -> dict:
        """The JSON record ``facesuite cluster`` writes (clusters.json)."""
        def where(row: int) -> dict:
            face = self.faces[row]
            return {"path": face.path, "face": face.index, "box": [round(v, 1) for v in face.box]}

        return {
            "embedder": self.embedder, "edge_threshold": round(self.threshold, 6),
            "photos": len({face.path for face in self.faces}), "faces": len(self.faces), "clusters": [
                {"id": c, "name": self.names.get(c), "size": self.size(c), "representative": where(self.representative(c)),
                 "photos": self.photos(c)} for c in self.ids()],
            "unclustered": [where(row) | {"reason": self.faces[row].reason} for row in self.unclustered()],
            "skipped": [{"path": str(s.path), "reason": s.error.message} for s in self.skipped],
        }

    def save(self, folder: Path) -> Path:
        """Everything ``--update`` needs to add photos without embedding these again."""
        offsets = np.cumsum([0] + [len(t) for t in self.thumbnails])
        path = folder / STORE
        with open(path, "wb") as handle:
            np.savez(handle, embeddings=self.embeddings.astype(np.float32),
                     path=np.asarray([f.path for f in self.faces], dtype=str),
                     index=np.asarray([f.index for f in self.faces], np.int64),
                     box=np.asarray([f.box for f in self.faces], np.float64).reshape(-1, 4),
                     quality=np.asarray([np.nan if f.quality is None else f.quality for f in self.faces]),
                     cluster=np.asarray([-1 if f.cluster is None else f.cluster for f in self.faces], np.int64),
                     distance=np.asarray([np.nan if f.distance is None else f.distance for f in self.faces]),
                     reason=np.asarray([f.reason or "" for f in self.faces], dtype=str),
                     identity=np.asarray([f.identity or "" for f in self.faces], dtype=str),
                     distortion=np.asarray([f.distortion or "" for f in self.faces], dtype=str),
                     thumbnails=np.frombuffer(b"".join(self.thumbnails), np.uint8), offsets=offsets,
                     threshold=np.float64(self.threshold), embedder=np.asarray(self.embedder))
        return path

    @classmethod
    def load(cls, folder: str | Path) -> Clusters:
        """The clusters ``facesuite cluster --out FOLDER`` saved; :class:`InputError` if none."""
        path = Path(folder) / STORE
        if not path.is_file():
            raise InputError(f"no {STORE} here (not the output folder of facesuite cluster)", folder)
        try:
            with np.load(path, allow_pickle=False) as data:
                stored = {key: data[key] for key in data.files}
        except (OSError, ValueError, KeyError) as error:
            raise InputError(f"cannot read {STORE} ({error})", folder) from None

        def optional(value: float) -> float | None:
            return None if np.isnan(value) else float(value)

        faces = [ClusterFace(str(p), int(i), tuple(float(v) for v in b), optional(q), None if c < 0 else int(c),
                             optional(d), r or None, n or None, k or None)
                 for p, i, b, q, c, d, r, n, k in zip(stored["path"], stored["index"], stored["box"], stored["quality"],
                                                       stored["cluster"], stored["distance"], stored["reason"],
                                                       stored["identity"], stored["distortion"])]
        buffer, offsets = stored["thumbnails"].tobytes(), stored["offsets"]
        thumbnails = [buffer[a:b] for a, b in zip(offsets[:-1], offsets[1:])]
        return cls(faces, stored["embeddings"], float(stored["threshold"]), str(stored["embedder"]), thumbnails)


def cluster_embeddings(embeddings: np.ndarray, threshold: float, neighbours: int = NEIGHBOURS) -> np.ndarray:
    """A cluster label per unit row of ``embeddings``: Chinese whispers on the FAISS k-NN graph
    whose edges are no longer than ``threshold`` (cosine distance). Labels are 0, 1, ... by
    cluster size, largest first; a face with no neighbour that close is a cluster of its own."""
    import dlib
    import faiss

    count = len(embeddings)
    if count == 0:
        return np.zeros(0, np.int64)
    vectors = np.ascontiguousarray(embeddings, dtype=np.float32)
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    similarity, nearest = index.search(vectors, min(neighbours + 1, count))
    rows = np.repeat(np.arange(count), nearest.shape[1])
    cols, distance = nearest.ravel(), 1.0 - similarity.ravel()
    keep = (cols >= 0) & (cols != rows) & (distance <= threshold)
    rows, cols, distance = rows[keep], cols[keep], distance[keep]
    # Each undirected edge once (a k-NN list need not be symmetric), weighted by similarity.
    first, second = np.minimum(rows, cols), np.maximum(rows, cols)
    _, unique = np.unique(first * count + second, return_index=True)
    edges = list(zip(first[unique].tolist(), second[unique].tolist(), (1.0 - distance[unique]).tolist()))
    # A face with no edge gets a label of its own (dlib labels only the vertices its edges name).
    labels = np.arange(count) + count
    if edges:
        found = np.asarray(dlib.chinese_whispers(edges), np.int64)
        linked = np.zeros(count, bool)
        linked[first[unique]] = linked[second[unique]] = True
        labels[: len(found)] = np.where(linked[: len(found)], found, labels[: len(found)])
    _, inverse, sizes = np.unique(labels, return_inverse=True, return_counts=True)
    # Relabel by size, largest first; ties by the first face of each cluster.
    first_row = np.full(len(sizes), count)
    np.minimum.at(first_row, inverse, np.arange(count))
    order = np.lexsort((first_row, -sizes))
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank[inverse]


def group_faces(embeddings: np.ndarray, eligible: np.ndarray, threshold: float,
                fixed: dict[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Everything after embedding: per face its cluster id (-1 where not ``eligible``) and its
    cosine distance to its cluster's centre (NaN there). ``fixed``: faces (by row) whose cluster
    id must not change (kept from an earlier run); a new group takes the id most of its fixed faces
    hold, or a new one after every kept id, larger groups first."""
    fixed = fixed or {}
    ids = np.full(len(embeddings), -1, np.int64)
    rows = np.flatnonzero(eligible)
    labels = cluster_embeddings(embeddings[rows], threshold)
    label_of = dict(zip(rows.tolist(), labels.tolist()))
    votes: dict[int, Counter] = {}
    for row, cluster in fixed.items():
        if row in label_of:
            votes.setdefault(label_of[row], Counter())[cluster] += 1
    next_id = max(fixed.values(), default=-1) + 1
    target = np.empty(labels.max() + 1 if len(labels) else 0, np.int64)
    for label in range(len(target)):  # labels run from the largest group down
        if label in votes:
            target[label] = votes[label].most_common(1)[0][0]
        else:
            target[label], next_id = next_id, next_id + 1
    ids[rows] = target[labels]
    for row, cluster in fixed.items():
        ids[row] = cluster
    distance = np.full(len(embeddings), np.nan)
    clustered = np.flatnonzero(ids >= 0)
    if len(clustered):
        _, inverse = np.unique(ids[clustered], return_inverse=True)
        centres = np.zeros((inverse.max() + 1, embeddings.shape[1]))
        np.add.at(centres, inverse, embeddings[clustered])
        centres /= np.maximum(np.linalg.norm(centres, axis=1, keepdims=True), 1e-12)
        similarity = np.einsum("ij,ij->i", embeddings[clustered], centres[inverse])
        distance[clustered] = np.maximum(1.0 - similarity, 0.0)
    return ids, distance


def unclustered_reason(point: OperatingPoint, no_face: bool, quality: float | None) -> str | None:
    """Why a face is left out of every cluster, or None: it is compared with no one by the one
    rule (facesuite.decide): no face (its vector is of no one), or a quality below the floor (it
    cannot be told who it is)."""
    undecided = point.undecided(quality, no_face)
    if undecided is None:
        return None
    return NO_FACE if undecided.answer == NO_FACE else f"{UNRECOGNISABLE} ({undecided.held_to})"


def _name_clusters(clusters: Clusters) -> None:
    """A cluster takes a gallery identity when most of its identified faces (neither unknown nor
    unrecognisable) were given that identity by the gallery's own decision."""
    clusters.names = {}
    for cluster in clusters.ids():
        named = Counter(clusters.faces[row].identity for row in clusters.members(cluster)
                        if clusters.faces[row].identity not in (None, UNKNOWN, UNRECOGNISABLE, NO_FACE))
        if named:
            identity, votes = named.most_common(1)[0]
            if votes * 2 > sum(named.values()):
                clusters.names[cluster] = identity


def _thumbnail(chip: np.ndarray) -> bytes:
    from PIL import Image

    picture = Image.fromarray(chip)
    picture.thumbnail((THUMBNAIL, THUMBNAIL), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def cluster_faces(analysis, images: Sequence, progress: str | None = None, previous: Clusters | None = None) -> Clusters:
    """:meth:`facesuite.analysis.FaceAnalysis.cluster`: every face of ``images`` (all faces of each)
    clustered by person. ``previous``: clusters of an earlier run; its faces are not embedded
    again and keep their cluster ids, the new faces join them or form new clusters. Photos
    already in ``previous`` (by path) are not read again."""
    if previous is not None and previous.embedder != analysis.embedder.name:
        raise InputError(f"these clusters were made with embedder {previous.embedder!r}, not {analysis.embedder.name!r}")
    known = {face.path for face in previous.faces} if previous is not None else set()
    images = [image for image in images if not isinstance(image, (str, Path)) or str(image) not in known]
    faces = [replace(face) for face in previous.faces] if previous is not None else []
    vectors = [previous.embeddings] if previous is not None else []
    thumbnails = list(previous.thumbnails) if previous is not None else []
    skipped: list[Skipped] = []
    bar = tqdm(total=len(images), desc=progress, disable=progress is None, unit="photo")
    for start in range(0, len(images), STEP):
        for result in analysis.get_batch(images[start : start + STEP], max_faces=None):
            if isinstance(result, Skipped):
                skipped.append(result)
                continue
            for face in result:
                reason = unclustered_reason(analysis.operating_point, face.no_face, face.quality)
                faces.append(ClusterFace(face.source, face.index, face.box, face.quality, None, None, reason,
                                         face.identity, face.distortion))
                vectors.append(face.embedding[None, :].astype(np.float32))
                thumbnails.append(_thumbnail(face.chip(THUMBNAIL)))
        bar.update(len(images[start : start + STEP]))
    bar.close()
    embeddings = np.concatenate(vectors) if vectors else np.zeros((0, analysis.embedder.dim), np.float32)
    fixed = {row: face.cluster for row, face in enumerate(faces) if face.cluster is not None}  # the earlier run's
    ids, distances = group_faces(embeddings, np.asarray([face.reason is None for face in faces], bool),
                                 EDGE_SCALE * analysis.threshold, fixed)
    for face, cluster, distance in zip(faces, ids.tolist(), distances.tolist()):
        face.cluster, face.distance = (None, None) if cluster < 0 else (cluster, distance)
    clusters = Clusters(faces, embeddings, EDGE_SCALE * analysis.threshold, analysis.embedder.name, thumbnails,
                        skipped=skipped)
    if analysis.gallery is not None:
        if previous is not None and previous.faces and len(analysis.gallery):
            # The earlier faces, decided again from their stored embeddings: the gallery may have
            # grown since (by the gallery's own rule, which reads a face's quality and distortion).
            matches = analysis.gallery.store.identify(previous.embeddings)
            point = analysis.gallery.operating_point
            for face, found in zip(faces, matches):
                face.identity = point.search(found[0].identity, found[0].distance, face.distortion, face.quality,
                                             face.no_face).answer
        _name_clusters(clusters)
    return clusters


CSV_COLUMNS = ("path", "face", "x1", "y1", "x2", "y2", "cluster", "name", "distance", "quality", "reason")


def write_clusters(clusters: Clusters, out: Path, title: str = "Who is in these photos") -> None:
    """``out/clusters.csv`` (one row per face), ``clusters.json``, ``report.html`` (a strip of
    faces per cluster) and ``clusters.npz`` (what ``--update`` reads)."""

    from facesuite.report.clusters import write_clusters_report
    from facesuite.report.html import write_json
    from facesuite.text import csv_writer, open_csv

    out.mkdir(parents=True, exist_ok=True)
    with open_csv(out / "clusters.csv") as handle:
        writer = csv_writer(handle)
        writer.writerow(CSV_COLUMNS)
        for face in clusters.faces:
            writer.writerow([face.path, face.index, *(round(v, 1) for v in face.box),
                             "" if face.cluster is None else face.cluster, clusters.names.get(face.cluster, ""),
                             "" if face.distance is None else round(face.distance, 6),
                             "" if face.quality is None else round(face.quality, 4), face.reason or ""])
    write_json(out / "clusters.json", clusters.to_dict())
    write_clusters_report(clusters, out / "report.html", title)
    clusters.save(out)


def parse_cluster_names(pairs: Sequence[str], clusters: Clusters) -> dict[int, str]:
    """``CLUSTER=NAME`` arguments as ``{cluster id: name}``; :class:`InputError` naming a bad one."""
    names: dict[int, str] = {}
    known = set(clusters.ids())
    for pair in pairs:
        cluster, sep, name = pair.partition("=")
        if not sep or not cluster.strip().isdigit() or not name.strip():
            raise InputError(f"expected CLUSTER=NAME (a cluster id from clusters.json and a name), got {pair!r}")
        if int(cluster) not in known:
            raise InputError(f"no cluster {int(cluster)} in these clusters (ids 0 to {max(known, default=-1)})")
        names[int(cluster)] = name.strip()
    return names


def enroll_clusters(gallery, clusters: Clusters, names: dict[int, str]) -> dict[str, int]:
    """Enrol each named cluster's faces under its name (``gallery``: a
    :class:`facesuite.gallery.images.Gallery`), from the stored embeddings: no photo is read again.
    Returns the faces added per name."""
    if clusters.embedder != gallery.analysis.embedder.name:
        raise InputError(f"the clusters were made with embedder {clusters.embedder!r}: pass --embedder {clusters.embedder}")
    added = {}
    for cluster, name in names.items():
        rows = clusters.members(cluster)
        added[name] = added.get(name, 0) + gallery.store.enroll(name, clusters.embeddings[rows],
                                                                [clusters.faces[row].path for row in rows])
    return added
