"""Detection rate per FACECOM distortion type, time per image, and the cache speed-up.

Run: ``python benchmarks/detection.py [--data DIR] [--split FILE] [--limit N]`` (default: the FACECOM
dev identities; ``--split ''`` for every identity). The first pass uses a fresh
cache folder (cold), the second reads it back (warm); both go through ``FaceExtractor``, the
same path as ``facesuite detect``. Compared with dlib's HOG detector (what ``face_recognition``
uses) on the same images.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from collections import Counter

import dlib
from tqdm import tqdm

from facesuite.config import data_root
from facesuite.data import read_identity_folders, read_split
from facesuite.detect.extract import Crop, FaceExtractor
from facesuite.io import load_image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=str(data_root() / "facecom/task_b/train"))
    parser.add_argument("--split", default=str(data_root() / "splits/facecom_dev_identities.txt"),
                        help="identities to measure on, one per line ('' for all)")
    parser.add_argument("--limit", type=int, default=0, help="sample this many images per type (0 = all)")
    parser.add_argument("--hog-sample", type=int, default=100, help="images per type for the dlib HOG comparison")
    args = parser.parse_args()
    dataset = read_identity_folders(args.data)
    if args.split:
        dataset = dataset.subset(read_split(args.split))
    by_type: dict[str, list] = {"clean": [p for p, _ in dataset.clean]}
    for item in dataset.distorted:
        by_type.setdefault(item.distortion, []).append(item.path)
    rng = random.Random(0)
    if args.limit:
        by_type = {k: rng.sample(v, min(args.limit, len(v))) for k, v in by_type.items()}
    paths = [p for v in by_type.values() for p in v]
    kind = {p: k for k, v in by_type.items() for p in v}

    with tempfile.TemporaryDirectory() as cache:
        timings = []
        for label in ("cold", "warm"):
            extractor = FaceExtractor(cache_folder=cache)
            start = time.perf_counter()
            found, total = Counter(), Counter()
            for item in extractor.iter_crops(paths, progress=f"detect ({label} cache)"):
                total[kind[item.path]] += 1
                found[kind[item.path]] += isinstance(item, Crop) and not item.face.fallback
            timings.append(time.perf_counter() - start)
    hog = dlib.get_frontal_face_detector()
    hog_found = Counter()
    hog_paths = {k: rng.sample(v, min(args.hog_sample, len(v))) for k, v in by_type.items()}
    for k, sample in tqdm(hog_paths.items(), desc="dlib HOG"):
        hog_found[k] = sum(len(hog(load_image(p), 1)) > 0 for p in sample)
    print(f"{'type':10s} {'images':>7s} {'MTCNN rate':>10s} {'HOG rate':>9s}")
    for k in by_type:
        print(f"{k:10s} {total[k]:7d} {found[k] / total[k]:10.3f} {hog_found[k] / len(hog_paths[k]):9.3f}")
    all_found = sum(found.values())
    print(f"{'all':10s} {len(paths):7d} {all_found / len(paths):10.3f}")
    cold, warm = timings
    print(f"cold: {1000 * cold / len(paths):.1f} ms/image; warm (cached): {1000 * warm / len(paths):.1f} ms/image; "
          f"speed-up {cold / warm:.1f}x")


if __name__ == "__main__":
    main()
