"""Clustering faces by person: facesuite against what face_recognition users assemble, in one run.

Run: ``python benchmarks/cluster.py [--data DIR] [--cache /tmp/facesuite-cluster-bench]``
(embeddings are cached under --cache: the first run embeds 7,043 photos with facesuite and 3,768
with face_recognition, about 45 minutes on a busy 2-core machine; a rerun takes about 5 minutes,
nearly all of it the scale runs).

Quality, on the FACECOM dev identities (``splits/facecom_dev_identities.txt``, 198 people), once on
their clean photos and once on their distorted copies (``distortion/``), the main face of each
photo (the photos are labelled per photo, so bystanders have no label):

- facesuite: :func:`facesuite.cluster.cluster_embeddings` on the routed embeddings and quality of
  ``FaceAnalysis`` (the default pipeline, no gender);
- dlib's ``chinese_whispers_clustering`` at its usual 0.5 on face_recognition 1.3.0 encodings
  (HOG detector, largest face; a photo where it finds none stays alone);
- scikit-learn ``DBSCAN(eps=0.5, min_samples=1)`` on the same encodings (Euclidean).

Every photo counts in every metric; a face left unclustered (no face found, unrecognisable, or
no encoding for the anchors) is its own singleton there. ``impurity`` is the share of clustered
faces that are not of their cluster's most common person.

``--select`` compares the candidate graph algorithms and edge thresholds on the *training*
identities (clean photos, and the distorted copies of 120 identities drawn with seed 0) and
prints the table the shipped choice was made from; the dev split is not used for it.

Scale: time and peak memory of everything after embedding (:func:`facesuite.cluster.group_faces`:
the k-NN graph, Chinese whispers, ids and distances to the centres) on 10k and 100k synthetic 128-D
unit vectors (people as tight clouds of varying size, spread like real embeddings), against the
two anchors at 10k only (dlib's compares every pair: at 100k, a hundred times the pairs).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm import tqdm

import facesuite
from facesuite.cluster import EDGE_SCALE, NEIGHBOURS, cluster_embeddings, group_faces, unclustered_reason
from facesuite.config import data_root
from facesuite.data import read_identity_folders, read_split
from facesuite.decide import OperatingPoint
from facesuite.evaluate.clustering import clustering_metrics

TRAIN_DISTORTED_IDENTITIES = 120
# Selection: random draws of as many training identities as the dev split has.
DRAWS, DRAW_SIZE = 5, 198
SCALES = (0.45, 0.5, 0.55, 0.6, 0.65, 0.7)
# The goal is impurity <= 1%; a draw of 198 people can reach twice the mean, so every draw must
# also stay under 1.5%.
MAX_IMPURITY, MAX_IMPURITY_ANY_DRAW = 0.01, 0.015


# ------------------------------------------------------------------------------ photos and embeddings

def photo_sets(data: Path) -> dict[str, list[tuple[Path, str]]]:
    """(photo, identity) lists: training and dev identities, clean photos and distorted copies."""
    dataset = read_identity_folders(data / "facecom/task_b/train")
    dev = read_split(data / "splits/facecom_dev_identities.txt")
    train_ids = sorted(set(dataset.identities) - dev)
    distorted_ids = set(random.Random(0).sample(train_ids, TRAIN_DISTORTED_IDENTITIES))
    return {
        "train_clean": [(p, i) for p, i in dataset.clean if i not in dev],
        "train_distorted": [(d.path, d.identity) for d in dataset.distorted if d.identity in distorted_ids],
        "dev_clean": [(p, i) for p, i in dataset.clean if i in dev],
        "dev_distorted": [(d.path, d.identity) for d in dataset.distorted if d.identity in dev],
    }


def facesuite_cache(cache: Path, name: str) -> Path:
    """The cache file of one photo set, keyed by the shipped models (their SHA256SUMS): a file left
    by other models (or by the pipeline before a model changed) is never read as this one's."""
    sums = Path(facesuite.__file__).parent / "models" / "SHA256SUMS"
    return cache / f"facesuite-{name}-{hashlib.sha256(sums.read_bytes()).hexdigest()[:12]}.npz"


def facesuite_faces(photos: list[Path], cache: Path) -> dict[str, np.ndarray]:
    """Main face of each photo through the default FaceAnalysis (no gender): embedding, quality,
    whether it holds no face; a photo that cannot be read has no row (none here)."""
    if cache.is_file():
        return dict(np.load(cache))
    from facesuite.analysis import FaceAnalysis

    analysis = FaceAnalysis(gender=None)
    embeddings, quality, no_face, paths, distortion = [], [], [], [], []
    for start in tqdm(range(0, len(photos), 256), desc=f"facesuite {cache.stem}", unit="batch"):
        faces, _ = analysis.faces(photos[start : start + 256])
        for face in faces:
            embeddings.append(face.embedding)
            quality.append(np.nan if face.quality is None else face.quality)  # None: no face
            no_face.append(face.no_face)
            paths.append(face.source)
            distortion.append(face.distortion)
    arrays = {"embedding": np.asarray(embeddings, np.float32), "quality": np.asarray(quality, np.float64),
              "no_face": np.asarray(no_face, bool), "path": np.asarray(paths), "distortion": np.asarray(distortion),
              "floor": np.float64(analysis.quality.floor),
              "threshold": np.float64(analysis.threshold)}
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **arrays)
    return arrays


def face_recognition_encodings(photos: list[Path], cache: Path) -> dict[str, np.ndarray]:
    """What a face_recognition user gets: HOG boxes (upsample 1), the largest one's 128-D encoding;
    ``found`` is False (and the encoding zeros) where no face is found."""
    if cache.is_file():
        return dict(np.load(cache))
    import face_recognition

    encodings = np.zeros((len(photos), 128), np.float64)
    found = np.zeros(len(photos), bool)
    for row, path in enumerate(tqdm(photos, desc=f"face_recognition {cache.stem}", unit="photo")):
        image = face_recognition.load_image_file(str(path))
        boxes = face_recognition.face_locations(image)
        if boxes:
            largest = max(boxes, key=lambda b: (b[2] - b[0]) * (b[1] - b[3]))
            encodings[row] = face_recognition.face_encodings(image, [largest])[0]
            found[row] = True
    arrays = {"encoding": encodings, "found": found, "path": np.asarray([str(p) for p in photos])}
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **arrays)
    return arrays


def embed_all(data: Path, cache: Path) -> None:
    """Fill the cache: the cheap sets first, so a partial run is already useful."""
    sets = photo_sets(data)
    for name in ("train_clean", "dev_clean", "train_distorted"):
        facesuite_faces([p for p, _ in sets[name]], facesuite_cache(cache, name))
    face_recognition_encodings([p for p, _ in sets["dev_clean"]], cache / "face_recognition-dev_clean.npz")
    facesuite_faces([p for p, _ in sets["dev_distorted"]], facesuite_cache(cache, "dev_distorted"))
    face_recognition_encodings([p for p, _ in sets["dev_distorted"]], cache / "face_recognition-dev_distorted.npz")


# ------------------------------------------------------------------------------ clustering rules

def facesuite_labels(faces: dict[str, np.ndarray], scale: float = EDGE_SCALE,
                     algorithm: Callable[[np.ndarray, float], np.ndarray] = cluster_embeddings) -> list[int | None]:
    """The library's rule: faces with no face or below the quality floor unclustered, the others
    grouped at ``scale`` times the calibrated threshold."""
    point = OperatingPoint(float(faces["threshold"]), quality_floor=float(faces["floor"]))
    eligible = np.asarray([unclustered_reason(point, bool(f), None if np.isnan(q) else float(q)) is None
                           for f, q in zip(faces["no_face"], faces["quality"])])
    labels: list[int | None] = [None] * len(eligible)
    rows = np.flatnonzero(eligible)
    for row, label in zip(rows, algorithm(faces["embedding"][rows], scale * float(faces["threshold"]))):
        labels[row] = int(label)
    return labels


def components(embeddings: np.ndarray, threshold: float) -> np.ndarray:
    """Selection candidate: connected components of the same k-NN graph (single linkage)."""
    import faiss
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    index = faiss.IndexFlatIP(embeddings.shape[1])
    index.add(embeddings)
    similarity, nearest = index.search(embeddings, min(NEIGHBOURS + 1, len(embeddings)))
    rows = np.repeat(np.arange(len(embeddings)), nearest.shape[1])
    keep = (nearest.ravel() >= 0) & (1 - similarity.ravel() <= threshold)
    graph = coo_matrix((np.ones(keep.sum()), (rows[keep], nearest.ravel()[keep])), shape=(len(embeddings),) * 2)
    return connected_components(graph, directed=False)[1]


def average_linkage(embeddings: np.ndarray, threshold: float) -> np.ndarray:
    """Selection candidate: average-linkage agglomeration along the k-NN graph."""
    import faiss
    from scipy.sparse import csr_matrix
    from sklearn.cluster import AgglomerativeClustering

    index = faiss.IndexFlatIP(embeddings.shape[1])
    index.add(embeddings)
    _, nearest = index.search(embeddings, min(NEIGHBOURS + 1, len(embeddings)))
    rows = np.repeat(np.arange(len(embeddings)), nearest.shape[1])
    graph = csr_matrix((np.ones(rows.size), (rows, nearest.ravel())), shape=(len(embeddings),) * 2)
    return AgglomerativeClustering(n_clusters=None, distance_threshold=threshold, metric="cosine", linkage="average",
                                   connectivity=graph).fit_predict(embeddings)


def chinese_whispers_anchor(encodings: dict[str, np.ndarray]) -> list[int | None]:
    """face_recognition users' recipe: dlib.chinese_whispers_clustering(descriptors, 0.5)."""
    import dlib

    rows = np.flatnonzero(encodings["found"])
    labels: list[int | None] = [None] * len(encodings["found"])
    found = dlib.chinese_whispers_clustering([dlib.vector(v.tolist()) for v in encodings["encoding"][rows]], 0.5)
    for row, label in zip(rows, found):
        labels[row] = int(label)
    return labels


def dbscan_anchor(encodings: dict[str, np.ndarray]) -> list[int | None]:
    """scikit-learn DBSCAN(eps=0.5, min_samples=1) on the encodings (Euclidean), as users post it."""
    from sklearn.cluster import DBSCAN

    rows = np.flatnonzero(encodings["found"])
    labels: list[int | None] = [None] * len(encodings["found"])
    for row, label in zip(rows, DBSCAN(eps=0.5, min_samples=1).fit_predict(encodings["encoding"][rows])):
        labels[row] = int(label)
    return labels


def _people(paths: np.ndarray, person: dict[str, str]) -> list[str]:
    return [person[str(p)] for p in paths]


# ------------------------------------------------------------------------------ selection (training)

def select(data: Path, cache: Path) -> None:
    sets = photo_sets(data)
    clean, distorted = (facesuite_faces([p for p, _ in sets[name]], facesuite_cache(cache, name))
                        for name in ("train_clean", "train_distorted"))
    person = {str(p): i for name in ("train_clean", "train_distorted") for p, i in sets[name]}
    ids = sorted({i for _, i in sets["train_clean"]})
    truth_clean = np.asarray(_people(clean["path"], person))
    evaluations = {"distorted (120 ids)": (distorted, _people(distorted["path"], person))}
    for draw in range(DRAWS):
        keep = set(random.Random(draw).sample(ids, DRAW_SIZE))
        rows = np.flatnonzero([t in keep for t in truth_clean])
        evaluations[f"clean draw {draw}"] = ({k: (v[rows] if v.ndim else v) for k, v in clean.items()}, list(truth_clean[rows]))
    candidates = {"chinese whispers": cluster_embeddings, "components": components, "average linkage": average_linkage}
    print(f"Selection on training identities: {DRAWS} draws of {DRAW_SIZE} identities' clean photos and the distorted "
          f"copies of {TRAIN_DISTORTED_IDENTITIES}; mean BCubed F, mean and max impurity")
    print("| algorithm | scale | threshold | BCubed F clean | BCubed F distorted | impurity mean | impurity max |")
    print("|---|---|---|---|---|---|---|")
    best = None
    for name, algorithm in candidates.items():
        for scale in SCALES:
            scores = {label: clustering_metrics(truth, facesuite_labels(faces, scale, algorithm))
                      for label, (faces, truth) in evaluations.items()}
            f_clean = np.mean([m["bcubed"]["f"] for label, m in scores.items() if label.startswith("clean")])
            f_distorted = scores["distorted (120 ids)"]["bcubed"]["f"]
            impurity = [m["impurity"] for m in scores.values()]
            print(f"| {name} | {scale:.2f} | {scale * float(clean['threshold']):.4f} | {f_clean:.4f} | {f_distorted:.4f} | "
                  f"{np.mean(impurity):.4f} | {max(impurity):.4f} |")
            if np.mean(impurity) <= MAX_IMPURITY and max(impurity) <= MAX_IMPURITY_ANY_DRAW and (best is None or f_clean + f_distorted > best[0]):
                best = (f_clean + f_distorted, name, scale)
    print(f"chosen (highest BCubed F, clean + distorted, at impurity <= {MAX_IMPURITY:.0%} in the mean and "
          f"<= {MAX_IMPURITY_ANY_DRAW:.1%} in every evaluation): {best[1]} at scale {best[2]}")


# ------------------------------------------------------------------------------ quality (dev)

def quality(data: Path, cache: Path) -> list[dict]:
    sets = photo_sets(data)
    results = []
    for name in ("dev_clean", "dev_distorted"):
        photos = [p for p, _ in sets[name]]
        person = {str(p): i for p, i in sets[name]}
        faces = facesuite_faces(photos, facesuite_cache(cache, name))
        encodings = face_recognition_encodings(photos, cache / f"face_recognition-{name}.npz")
        # Both sides score the same photos, in the same order.
        order = {str(p): row for row, p in enumerate(faces["path"])}
        rows = np.asarray([order[str(p)] for p in encodings["path"]])
        faces = {k: (v[rows] if v.ndim else v) for k, v in faces.items()}
        truth = _people(encodings["path"], person)
        for method, labels in (("facesuite", facesuite_labels(faces)),
                               ("dlib chinese_whispers_clustering 0.5", chinese_whispers_anchor(encodings)),
                               ("sklearn DBSCAN eps 0.5", dbscan_anchor(encodings))):
            results.append({"set": name, "method": method} | clustering_metrics(truth, labels))
    print("| photos | method | BCubed F | BCubed P | BCubed R | pairwise F1 | pairwise P | pairwise R | clusters / people | impurity | unclustered |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['set']} ({r['faces']}) | {r['method']} | {r['bcubed']['f']:.4f} | {r['bcubed']['precision']:.4f} | "
              f"{r['bcubed']['recall']:.4f} | {r['pairwise']['f1']:.4f} | {r['pairwise']['precision']:.4f} | "
              f"{r['pairwise']['recall']:.4f} | {r['clusters']} / {r['people']} | {r['impurity']:.4f} | {r['unclustered_share']:.3f} |")
    return results


# ------------------------------------------------------------------------------ scale (synthetic)

def synthetic(count: int, seed: int = 0) -> np.ndarray:
    """``count`` unit 128-D vectors of people with 1 to 40 faces each, spread like dlib embeddings
    of FACECOM: about 0.04 cosine distance between faces of one person, about 0.17 between people."""
    rng = np.random.default_rng(seed)
    dim = 128
    mean = rng.normal(size=dim)
    mean /= np.linalg.norm(mean)
    sizes = []
    while sum(sizes) < count:
        sizes.append(int(min(40, rng.geometric(0.25))))
    centres = 2.21 * mean + rng.normal(size=(len(sizes), dim)) / np.sqrt(dim)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    owner = np.repeat(np.arange(len(sizes)), sizes)[:count]
    vectors = centres[owner] + 0.204 * rng.normal(size=(count, dim)) / np.sqrt(dim)
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def _status_mb(field: str) -> float:
    """A memory line of /proc/self/status (Linux): VmRSS now, VmHWM the peak since the last reset."""
    with open("/proc/self/status") as handle:
        line = next(line for line in handle if line.startswith(field + ":"))
    return int(line.split()[1]) / 1024


def _reset_peak() -> None:
    """Start the peak (VmHWM) again from the memory in use now: imports peaked higher."""
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")


def scale_one(method: str, vectors_file: Path, threshold: float) -> dict:
    """Time and peak resident memory of one clustering run, in this (fresh) process, on vectors
    made by the parent (so their making is not counted)."""
    vectors = np.load(vectors_file)
    _reset_peak()
    before = _status_mb("VmRSS")
    start = time.perf_counter()
    if method == "facesuite":
        group_faces(vectors, np.ones(len(vectors), bool), EDGE_SCALE * threshold)
    elif method == "dlib chinese_whispers_clustering":
        import dlib

        dlib.chinese_whispers_clustering([dlib.vector(v.tolist()) for v in vectors], 0.5)
    else:
        from sklearn.cluster import DBSCAN

        DBSCAN(eps=0.5, min_samples=1).fit_predict(vectors)
    seconds = time.perf_counter() - start
    peak = _status_mb("VmHWM")
    return {"method": method, "faces": len(vectors), "seconds": round(seconds, 2), "peak_rss_mb": round(peak, 1),
            "added_rss_mb": round(max(peak - before, 0.0), 1)}


def scale(threshold: float, sizes: tuple[int, ...], anchors_up_to: int, cache: Path) -> list[dict]:
    results = []
    for count in sizes:
        vectors_file = cache / f"synthetic-{count}.npy"
        vectors_file.parent.mkdir(parents=True, exist_ok=True)
        np.save(vectors_file, synthetic(count))
        for method in ("facesuite", "dlib chinese_whispers_clustering", "sklearn DBSCAN"):
            if method != "facesuite" and count > anchors_up_to:
                continue
            out = subprocess.run([sys.executable, __file__, "--scale-one", method, str(vectors_file), str(threshold)],
                                 capture_output=True, text=True, check=True)
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print("| faces (synthetic) | method | seconds | peak RSS MB | added while clustering MB |")
    print("|---|---|---|---|---|")
    for r in results:
        print(f"| {r['faces']} | {r['method']} | {r['seconds']} | {r['peak_rss_mb']} | {r['added_rss_mb']} |")
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=data_root(), help="data root (default: FACESUITE_DATA)")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/facesuite-cluster-bench"), help="embedding cache folder")
    parser.add_argument("--embed-only", action="store_true", help="fill the embedding cache and stop")
    parser.add_argument("--select", action="store_true", help="print the selection table on training identities and stop")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000], help="synthetic sizes to time")
    parser.add_argument("--anchors-up-to", type=int, default=10_000,
                        help="time the anchors up to this size (dlib's compares every pair)")
    parser.add_argument("--json", type=Path, help="also write every figure here")
    parser.add_argument("--scale-one", nargs=3, metavar=("METHOD", "VECTORS", "THRESHOLD"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.scale_one:
        method, vectors_file, threshold = args.scale_one
        print(json.dumps(scale_one(method, Path(vectors_file), float(threshold))))
        return 0
    if args.embed_only:
        embed_all(args.data, args.cache)
        return 0
    if args.select:
        select(args.data, args.cache)
        return 0
    results = quality(args.data, args.cache)
    threshold = float(facesuite_faces([], facesuite_cache(args.cache, "dev_clean"))["threshold"])
    timings = scale(threshold, tuple(args.sizes), args.anchors_up_to, args.cache)
    if args.json:
        args.json.write_text(json.dumps({"quality": results, "scale": timings}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
