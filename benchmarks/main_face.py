"""Which face of a photo is its subject: how often each ranking picks a face away from the centre.

Run: ``python benchmarks/main_face.py [--data DIR] [--utk-stride 10]`` (about 1 minute on 2 cores).

Training photos only: the clean photos of the FACECOM identities outside the dev split, and every
k-th UTKFace file outside ``splits/utkface_dev.txt``. On the photos where MTCNN finds two or more
faces, it counts how often the face each ranking puts first does not contain the frame's centre
(in these LFW-style and UTKFace crops the subject is always in the middle):

- ``box_area``: the face with the largest MTCNN box (the earlier ranking);
- ``visible_area``: the largest box area inside the frame;
- ``prominence``: visible area less twice the squared distance from the centre (the shipped one,
  :func:`facesuite.detect.prominence`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tqdm import tqdm

from facesuite.config import data_root
from facesuite.data import read_identity_folders, read_split
from facesuite.detect import FaceDetector, prominence, visible_area
from facesuite.errors import InputError
from facesuite.io import iter_images, load_image


def _box_area(box: tuple[float, ...]) -> float:
    return (box[2] - box[0]) * (box[3] - box[1])


def training_photos(root: Path, utk_stride: int) -> list[Path]:
    facecom_dev = read_split(root / "splits/facecom_dev_identities.txt")
    photos = [path for path, identity in read_identity_folders(root / "facecom/task_b/train").clean
              if identity not in facecom_dev]
    utk_dev = read_split(root / "splits/utkface_dev.txt")
    photos += [path for path in sorted(iter_images(root / "utkface/images")) if path.name not in utk_dev][::utk_stride]
    return photos


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=data_root(), help="data root (default: FACESUITE_DATA)")
    parser.add_argument("--utk-stride", type=int, default=10, help="every k-th UTKFace training file (default 10)")
    args = parser.parse_args()
    try:
        photos = training_photos(args.data, args.utk_stride)
    except InputError as error:
        parser.exit(2, f"main_face: {error}\n")
    detector = FaceDetector()
    counts = {"photos": len(photos), "two_or_more_faces": 0, "box_area": 0, "visible_area": 0, "prominence": 0}
    for start in tqdm(range(0, len(photos), 64), desc="photos", unit="batch"):
        images = [load_image(path) for path in photos[start : start + 64]]
        for image, faces in zip(images, detector.detect(images)):
            if len(faces) < 2:
                continue
            height, width = image.shape[:2]
            counts["two_or_more_faces"] += 1
            rankings = {"box_area": _box_area,
                        "visible_area": lambda box: visible_area(box, width, height),
                        "prominence": lambda box: prominence(box, width, height)}
            for name, score in rankings.items():
                x1, y1, x2, y2 = max((face.box for face in faces), key=score)
                counts[name] += not (x1 <= width / 2 <= x2 and y1 <= height / 2 <= y2)
    print(json.dumps(counts, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
