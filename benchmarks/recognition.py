"""Detect + align + embed throughput against face_recognition on the same FACECOM images.

facesuite: MTCNN (batched, cache off) + 5-point alignment + the chosen embedder, batched.
face_recognition: ``face_locations`` (dlib HOG) + ``face_encodings`` (dlib ResNet), one image at
a time, as its README shows. Both start from file paths and end with one vector per image.
Run: ``python benchmarks/recognition.py [--n 200] [--embedder dlib-torch]``.
"""

from __future__ import annotations

import argparse
import random
import time

import face_recognition
from tqdm import tqdm

from facesuite.analysis import FaceAnalysis
from facesuite.config import data_root
from facesuite.data import read_identity_folders


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=str(data_root() / "facecom/task_b/train"))
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--embedder", nargs="+", default=["dlib-torch", "dlib-onnx"])
    args = parser.parse_args()
    paths = [p for p, _ in read_identity_folders(args.data).clean]
    paths = random.Random(0).sample(paths, args.n)

    start = time.perf_counter()
    found = 0
    for path in tqdm(paths, desc="face_recognition"):
        image = face_recognition.load_image_file(path)
        found += len(face_recognition.face_encodings(image, face_recognition.face_locations(image))) > 0
    baseline = args.n / (time.perf_counter() - start)
    print(f"face_recognition (HOG + dlib ResNet): {baseline:.1f} faces/s, face found in {found}/{args.n}")

    for name in args.embedder:
        pipeline = FaceAnalysis(name, use_cache=False, gender=None)
        pipeline.embed(paths[:8])  # load models outside the timing
        start = time.perf_counter()
        vectors, crops, _ = pipeline.embed(paths, progress=name)
        rate = args.n / (time.perf_counter() - start)
        detected = sum(not c.face.fallback for c in crops)
        print(f"facesuite (MTCNN + align + {name}): {rate:.1f} faces/s, face found in {detected}/{args.n}; "
              f"ratio vs face_recognition {rate / baseline:.2f}x")


if __name__ == "__main__":
    main()
