"""Distortion detector on clean photos of other kinds, beside its FACECOM dev figures, in one run.

Run: ``python benchmarks/distortion_clean.py [--models DIR ...] [--data DIR] [--utkface N]``.
``--models`` defaults to the shipped model; give several folders (e.g. the previous model, kept
with ``git show``) to compare them on the same images. Everything is built from dev data only:

- FACECOM dev: type accuracy and per-type recall (the 198 dev identities, clean + 7 copies).
- Clean collections, share labelled ``clean`` (95% Wilson interval) and share routed plain (label
  ``clean``, or below the model's route floor): UTKFace dev crops (``splits/utkface_dev.txt``, 200
  px aligned); grayscale, phone-style (colour cast, tone curve, sharpening, JPEG 40-90), mildly
  shrunk (0.80-0.95) copies and tight crops (detected box plus 0-10% a side) of the FACECOM dev
  clean frames.
- The same variants of the FACECOM dev distorted copies, and synthetic distortions of UTKFace dev
  crops: type accuracy, so a model that calls everything ``clean`` cannot pass.
- Shrink sweep: FACECOM dev clean frames shrunk by 0.5-0.95; FACECOM's own ``resized`` copies are a
  0.5-0.7 down-and-up scale, so at those factors ``resized`` is the right answer as much as
  ``clean``.
"""

from __future__ import annotations

import argparse
import math
import random
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from facesuite.classify.distortion import DistortionDetector, Prediction
from facesuite.config import data_root
from facesuite.data import DISTORTIONS, read_identity_folders, read_split
from facesuite.detect import FaceDetector
from facesuite.distortion.synth import Synthesizer
from facesuite.distortion.variants import grayscale, sample_variant, shrink, tight_crop
from facesuite.io import load_image

DEV_CROP_MARGINS = (0.0, 0.10)  # the tight-crop benchmark's framing: face box plus 0-10% a side


def wilson(hits: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion."""
    if total == 0:
        return (math.nan, math.nan)
    p = hits / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return (centre - half, centre + half)


def share(flags: Sequence[bool]) -> str:
    low, high = wilson(sum(flags), len(flags))
    return f"{sum(flags) / max(len(flags), 1):.3f} [{low:.3f}, {high:.3f}]"


def build_sets(data: Path, utk_count: int, seed: int) -> tuple[dict[str, list], dict[str, list], dict[str, list]]:
    """(clean collections, distorted collections, shrink sweep): name -> [(image, true label)]."""
    dataset = read_identity_folders(data / "facecom/task_b/train")
    dev = dataset.subset(read_split(data / "splits/facecom_dev_identities.txt"))
    clean_paths = sorted(path for path, _ in dev.clean)
    copies = {}
    for item in dev.distorted:
        copies.setdefault(item.source, []).append(item)
    rng = np.random.default_rng(seed)
    frames = {path: load_image(path) for path in tqdm(clean_paths, desc="FACECOM dev clean", leave=False)}
    boxes = {}
    detector = FaceDetector()
    for path, frame in tqdm(frames.items(), desc="face boxes", leave=False):
        face = detector.detect_one(frame)
        if not face.fallback:
            boxes[path] = face.box
    facecom = [(load_image(path), "clean") for path in clean_paths]
    facecom += [(load_image(d.path), d.distortion) for d in tqdm(dev.distorted, desc="FACECOM dev copies", leave=False)
                if d.distortion in DISTORTIONS]

    clean_sets: dict[str, list] = {"FACECOM dev (all types)": facecom}
    distorted_sets: dict[str, list] = {}
    utk_names = sorted(read_split(data / "splits/utkface_dev.txt"))
    utk_paths = [data / "utkface/images" / name for name in utk_names if (data / "utkface/images" / name).is_file()]
    if utk_count:
        utk_paths = sorted(random.Random(seed).sample(utk_paths, min(utk_count, len(utk_paths))))
    utk_images = [(path, load_image(path)) for path in tqdm(utk_paths, desc="UTKFace dev", leave=False)]
    clean_sets["UTKFace dev crops"] = [(image, "clean") for _, image in utk_images]
    synthesizer = Synthesizer(seed=seed)
    kinds = rng.permutation(len(utk_images)) % len(DISTORTIONS)
    distorted_sets["UTKFace dev, synthetic copy"] = [
        (synthesizer.apply(image, DISTORTIONS[k], key=path.name), DISTORTIONS[k]) for (path, image), k in zip(utk_images, kinds)]

    def variant(name: str, make: Callable[[Path], Callable[[np.ndarray], np.ndarray] | None]) -> None:
        clean_rows, copy_rows = [], []
        for path in clean_paths:
            transform = make(path)
            if transform is None:
                continue
            clean_rows.append((transform(frames[path]), "clean"))
            copy_rows += [(transform(load_image(d.path)), d.distortion) for d in copies.get(path, []) if d.distortion in DISTORTIONS]
        clean_sets[f"FACECOM dev clean, {name}"] = clean_rows
        distorted_sets[f"FACECOM dev copies, {name}"] = copy_rows

    variant("grayscale", lambda path: grayscale)
    variant("phone colour/JPEG", lambda path: sample_variant("phone", rng))
    variant("shrunk 0.80-0.95", lambda path: sample_variant("low_resolution", rng))
    variant("tight crop +0-10%", lambda path: sample_variant("tight_crop", rng, boxes[path], DEV_CROP_MARGINS)
            if path in boxes else None)
    sweep = {f"shrunk {scale:.2f}": [(shrink(frames[path], scale), "clean") for path in clean_paths]
             for scale in (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)}
    sweep["tight crop, box only"] = [(tight_crop(frames[path], boxes[path], 0.0), "clean") for path in clean_paths if path in boxes]
    return clean_sets, distorted_sets, sweep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(data_root()), help="shared data root (default $FACESUITE_DATA)")
    parser.add_argument("--models", nargs="+", default=[None], help="model folders (default: the shipped model)")
    parser.add_argument("--utkface", type=int, default=0, help="UTKFace dev crops to use, seeded sample (default 0: all)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    clean_sets, distorted_sets, sweep = build_sets(Path(args.data), args.utkface, args.seed)
    for folder in args.models:
        detector = DistortionDetector.load(folder)
        print(f"\n== model {folder or 'shipped'} (route floor {detector.route_floor:.3f})")

        def run(rows: list) -> tuple[list[str], list[Prediction]]:
            return [label for _, label in rows], detector.predict_photos([image for image, _ in rows])

        truth, predicted = run(clean_sets["FACECOM dev (all types)"])
        right = [p.label == t for p, t in zip(predicted, truth)]
        print(f"FACECOM dev type accuracy: {share(right)} ({len(truth)} images)")
        recall = "  ".join(f"{label} {np.mean([p.label == label for p, t in zip(predicted, truth) if t == label]):.3f}"
                           for label in detector.labels)
        print(f"  recall: {recall}")
        plain = [detector.route_label(p) == "clean" for p, t in zip(predicted, truth) if t != "clean"]
        print(f"  distorted copies routed plain by the floor or a clean label: {np.mean(plain):.3f}")
        print(f"{'clean collection':<40}{'n':>6}  {'labelled clean [95% CI]':<26}{'routed plain':>13}  most common other label")
        for name, rows in clean_sets.items():
            if name.startswith("FACECOM dev (all"):
                continue
            _, predicted = run(rows)
            clean = [p.label == "clean" for p in predicted]
            routed_plain = np.mean([detector.route_label(p) == "clean" for p in predicted])
            others = [p.label for p in predicted if p.label != "clean"]
            common = max(set(others), key=others.count) if others else "-"
            print(f"{name:<40}{len(rows):>6}  {share(clean):<26}{routed_plain:>13.3f}  {common} ({others.count(common) if others else 0})")
        print(f"{'distorted collection':<40}{'n':>6}  {'type accuracy [95% CI]':<26}{'called clean':>13}")
        for name, rows in distorted_sets.items():
            truth, predicted = run(rows)
            print(f"{name:<40}{len(rows):>6}  {share([p.label == t for p, t in zip(predicted, truth)]):<26}"
                  f"{np.mean([p.label == 'clean' for p in predicted]):>13.3f}")
        print("FACECOM dev clean frames, shrunk or cropped: share labelled clean / resized / blurred")
        for name, rows in sweep.items():
            _, predicted = run(rows)
            print(f"  {name:<22}" + "  ".join(f"{label} {np.mean([p.label == label for p in predicted]):.3f}"
                                              for label in ("clean", "resized", "blurred")))


if __name__ == "__main__":
    main()
