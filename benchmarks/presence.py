"""Face presence on dev data: faces the pipeline must keep, and images with no face it must refuse.

Run: ``python benchmarks/presence.py [--data DIR] [--non-faces 500]``. Faces: the FACECOM dev
identities' overexposed (sunny) copies, read in the centre box where MTCNN finds nothing or its box
is vetoed (the centre box must be judged a face) or in MTCNN's box, their clean photos, and UTKFace dev crops given as crops (``--assume-cropped``). Non-faces:
images made here with a seed the training never used. Prints the share judged a face per group,
with a 95% Wilson interval.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from facesuite import FaceAnalysis
from facesuite.config import data_root
from facesuite.data import read_split, utkface_attributes
from facesuite.detect import DetectorSettings
from facesuite.train.presence import non_face_images


def wilson(hits: int, total: int) -> tuple[float, float]:
    if not total:
        return float("nan"), float("nan")
    p, z = hits / total, 1.96
    centre, half = p + z * z / (2 * total), z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total))
    return (centre - half) / (1 + z * z / total), (centre + half) / (1 + z * z / total)


def report(name: str, faces: list) -> None:
    judged = sum(not face.no_face for face in faces)
    low, high = wilson(judged, len(faces))
    print(f"{name:44s} {len(faces):5d}  judged a face {judged / max(len(faces), 1):.3f} (95% {low:.3f}-{high:.3f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(data_root()))
    parser.add_argument("--non-faces", type=int, default=500)
    args = parser.parse_args()
    root = Path(args.data)
    dev = sorted(read_split(root / "splits/facecom_dev_identities.txt"))
    people = root / "facecom/task_b/train"
    app = FaceAnalysis(gender=None)
    sunny, _ = app.faces([p for identity in dev for p in (people / identity / "distortion").glob("*_sunny.jpg")])
    report("FACECOM dev sunny, centre box", [f for f in sunny if f.fallback])
    report("FACECOM dev sunny, detector's box", [f for f in sunny if not f.fallback])
    clean, _ = app.faces([p for identity in dev for p in (people / identity).glob("*.jpg")])
    report("FACECOM dev clean", clean)
    utk_dev = sorted(read_split(root / "splits/utkface_dev.txt"))[::5]
    utk = [root / "utkface/images" / name for name in utk_dev if utkface_attributes(name)]
    report("UTKFace dev crops", app.faces(utk)[0])
    cropped = FaceAnalysis(detector=DetectorSettings(assume_cropped=True), gender=None)
    report("UTKFace dev crops, --assume-cropped", cropped.faces(utk)[0])
    made = non_face_images(1000, args.non_faces)
    report("non-faces made here (unseen seed)", app.faces(made)[0])
    report("non-faces made here, --assume-cropped", cropped.faces(made)[0])


if __name__ == "__main__":
    main()
