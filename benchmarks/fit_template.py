"""Fit the 5-point alignment template used by ``facesuite.detect.align``.

For clean FACECOM images the similarity transform of dlib's own aligned chip (5-point shape
predictor, 150 px, padding 0.25) is recovered, MTCNN's landmarks are mapped through it, and their
median is taken in dlib's unit face square.
The mean landmark position relative to MTCNN's box on the original images is printed too (the
fallback template). Run: ``python benchmarks/fit_template.py [--data DIR] [--n 300]``.
"""

from __future__ import annotations

import argparse
import random

import dlib
import face_recognition_models
import numpy as np
from tqdm import tqdm

from facesuite.config import data_root
from facesuite.detect import FaceDetector
from facesuite.io import iter_images, load_image

SIZE, PADDING = 150, 0.25


def _image_to_chip(shape_hw: tuple[int, ...], landmarks) -> np.ndarray:
    """The affine map dlib used for its chip, recovered by chipping a coordinate-encoded image.

    Red holds each pixel's x and green its y, so every chip pixel reads back where it came from
    (bilinear sampling of a linear ramp is exact); a least-squares fit inverts the mapping.
    """
    height, width = shape_hw[:2]
    ys, xs = np.mgrid[0:height, 0:width]
    coded = np.zeros((height, width, 3), dtype=np.uint8)
    coded[..., 0], coded[..., 1] = xs, ys
    chip = np.asarray(dlib.get_face_chip(coded, landmarks, size=SIZE, padding=PADDING)).astype(np.float64)
    rows, cols = np.mgrid[0:SIZE, 0:SIZE]
    source = np.column_stack([chip[..., 0].ravel(), chip[..., 1].ravel(), np.ones(SIZE * SIZE)])
    # Keep chip pixels that sampled inside the image (outside reads 0 and breaks the ramp).
    inside = (source[:, 0] > 0) & (source[:, 1] > 0) & (source[:, 0] < width - 1) & (source[:, 1] < height - 1)
    target = np.column_stack([cols.ravel(), rows.ravel()])[inside]
    solution, *_ = np.linalg.lstsq(source[inside], target, rcond=None)
    return solution.T


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=str(data_root() / "facecom/task_b/train"))
    parser.add_argument("--n", type=int, default=300)
    args = parser.parse_args()
    paths = [p for p in iter_images(args.data) if "distortion" not in p.parts]
    random.Random(0).shuffle(paths)
    predictor = dlib.shape_predictor(face_recognition_models.pose_predictor_five_point_model_location())
    detector = FaceDetector()
    in_chip, in_box = [], []
    for path in tqdm(paths[: args.n], desc="fitting"):
        image = load_image(path)
        faces = detector.detect([image])[0]
        if not faces:
            continue
        face = faces[0]
        x1, y1, x2, y2 = face.box
        in_box.append((face.landmarks - [x1, y1]) / [x2 - x1, y2 - y1])
        shape = predictor(image, dlib.rectangle(int(x1), int(y1), int(x2), int(y2)))
        to_chip = _image_to_chip(image.shape, shape)
        chip_points = face.landmarks @ to_chip[:, :2].T + to_chip[:, 2]
        in_chip.append(chip_points / SIZE * (1 + 2 * PADDING) - PADDING)
    np.set_printoptions(precision=4, suppress=True)
    print(f"unit-square template from {len(in_chip)} chips:\n{np.median(in_chip, axis=0)}")
    print(f"median abs deviation: {np.median(np.abs(np.asarray(in_chip) - np.median(in_chip, axis=0))):.4f}")
    print(f"box-relative template from {len(in_box)} faces:\n{np.median(in_box, axis=0)}")


if __name__ == "__main__":
    main()
