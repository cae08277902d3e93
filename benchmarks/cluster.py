"""Clustering faces by person: facesuite against what face_recognition users assemble, in one run.

Run: ``python benchmarks/cluster.py [--data DIR] [--cache /tmp/facesuite-cluster-bench]``
(embeddings are cached under --cache: the first run embeds about 11k photos, reruns take seconds).

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

Scale: time and peak memory of :func:`facesuite.cluster.cluster_embeddings` on 10k and 100k
synthetic 128-D unit vectors (people as tight clouds of varying size, like real embeddings).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from facesuite.config import data_root
from facesuite.data import read_identity_folders, read_split

TRAIN_DISTORTED_IDENTITIES = 120


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


def facesuite_faces(photos: list[Path], cache: Path) -> dict[str, np.ndarray]:
    """Main face of each photo through the default FaceAnalysis (no gender): embedding, quality,
    whether it is the centre-box fallback; a photo that cannot be read has no row (none here)."""
    if cache.is_file():
        return dict(np.load(cache))
    from facesuite.analysis import FaceAnalysis

    analysis = FaceAnalysis(gender=None)
    embeddings, quality, fallback, paths, distortion = [], [], [], [], []
    for start in tqdm(range(0, len(photos), 256), desc=f"facesuite {cache.stem}", unit="batch"):
        faces, _ = analysis.faces(photos[start : start + 256])
        for face in faces:
            embeddings.append(face.embedding)
            quality.append(face.quality)
            fallback.append(face.fallback)
            paths.append(face.source)
            distortion.append(face.distortion)
    arrays = {"embedding": np.asarray(embeddings, np.float32), "quality": np.asarray(quality, np.float64),
              "fallback": np.asarray(fallback, bool), "path": np.asarray(paths), "distortion": np.asarray(distortion),
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
        facesuite_faces([p for p, _ in sets[name]], cache / f"facesuite-{name}.npz")
    face_recognition_encodings([p for p, _ in sets["dev_clean"]], cache / "face_recognition-dev_clean.npz")
    facesuite_faces([p for p, _ in sets["dev_distorted"]], cache / "facesuite-dev_distorted.npz")
    face_recognition_encodings([p for p, _ in sets["dev_distorted"]], cache / "face_recognition-dev_distorted.npz")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=data_root(), help="data root (default: FACESUITE_DATA)")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/facesuite-cluster-bench"), help="embedding cache folder")
    parser.add_argument("--embed-only", action="store_true", help="fill the embedding cache and stop")
    args = parser.parse_args()
    embed_all(args.data, args.cache)
    return 0


if __name__ == "__main__":
    sys.exit(main())
