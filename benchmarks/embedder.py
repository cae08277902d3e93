"""Embedding throughput: dlib itself vs our PyTorch and ONNX Runtime ports of its face ResNet, and
the int8 network (``dlib-int8``, the default).

Run: ``python benchmarks/embedder.py [--data DIR] [--n 200]``. The same N chips, aligned by dlib
(HOG detector, 5-point landmarks, 150 px, padding 0.25) from clean FACECOM photos, go through
dlib one chip at a time, dlib's batch API (a list of chips), and the ``dlib-torch``,
``dlib-onnx`` and ``dlib-int8`` embedders at batch size 32. Each engine embeds one batch first so one-off start-up
costs (weight loading, ONNX export, allocator warm-up) stay out of the timing. Ratios are against
dlib one chip at a time, the way the ``dlib`` backend calls it.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import dlib
import face_recognition_models
import numpy as np
from tqdm import tqdm

from facesuite.config import data_root
from facesuite.embed import get_embedder, l2_normalise

BATCH_SIZE = 32


def aligned_chips(folder: Path, count: int) -> list[np.ndarray]:
    """dlib-aligned chips of the largest face in clean photos, in a fixed shuffled order."""
    photos = sorted(folder.glob("*/*.jpg"))  # top level of each identity: distorted copies excluded
    random.Random(0).shuffle(photos)
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(face_recognition_models.pose_predictor_five_point_model_location())
    chips: list[np.ndarray] = []
    with tqdm(total=count, desc="aligning chips", unit="chip") as progress:
        for photo in photos:
            image = dlib.load_rgb_image(str(photo))
            faces = detector(image, 1)
            if faces:
                face = max(faces, key=lambda rect: rect.area())
                chips.append(dlib.get_face_chip(image, predictor(image, face), size=150, padding=0.25))
                progress.update()
                if len(chips) == count:
                    break
    if len(chips) < count:
        raise SystemExit(f"only {len(chips)} faces found under {folder}, wanted {count}")
    return chips


Engine = Callable[[Sequence[np.ndarray]], np.ndarray]


def faces_per_second(embed: Engine, chips: list[np.ndarray]) -> tuple[float, np.ndarray]:
    """Throughput of ``embed`` on ``chips`` and its output as unit vectors."""
    embed(chips[:BATCH_SIZE])  # warm-up, untimed
    start = time.perf_counter()
    vectors = embed(chips)
    return len(chips) / (time.perf_counter() - start), l2_normalise(vectors)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=data_root() / "facecom/task_b/train")
    parser.add_argument("--n", type=int, default=200, help="number of chips")
    args = parser.parse_args()
    chips = aligned_chips(args.data, args.n)

    native = dlib.face_recognition_model_v1(face_recognition_models.face_recognition_model_location())
    torch_embedder = get_embedder("dlib-torch")
    onnx_embedder = get_embedder("dlib-onnx")
    int8_embedder = get_embedder("dlib-int8")
    engines: dict[str, Engine] = {
        "dlib (one chip at a time)": lambda batch: np.array(
            [np.array(native.compute_face_descriptor(chip)) for chip in batch]
        ),
        "dlib (batch API)": lambda batch: np.array(
            [np.array(vector) for vector in native.compute_face_descriptor(list(batch))]
        ),
        f"torch (batch {BATCH_SIZE})": lambda batch: torch_embedder.embed(batch, batch_size=BATCH_SIZE),
        f"onnxruntime (batch {BATCH_SIZE})": lambda batch: onnx_embedder.embed(batch, batch_size=BATCH_SIZE),
        f"onnxruntime int8 (batch {BATCH_SIZE})": lambda batch: int8_embedder.embed(batch, batch_size=BATCH_SIZE),
    }
    results = {name: faces_per_second(embed, chips) for name, embed in engines.items()}

    baseline_speed, reference = results["dlib (one chip at a time)"]
    print(f"\n{len(chips)} chips, {torch_embedder.model.stem_conv.weight.device} for torch")
    for name, (speed, vectors) in results.items():
        print(
            f"{name:28s} {speed:8.1f} faces/s   ratio vs dlib {speed / baseline_speed:5.1f}x   "
            f"max |diff| vs dlib (unit vectors) {np.abs(vectors - reference).max():.1e}   "
            f"min cosine {np.sum(vectors * reference, axis=1).min():.4f}"
        )


if __name__ == "__main__":
    main()
