"""Distortion detector on the FACECOM dev identities: per-class metrics and CPU speed.

Run: ``python benchmarks/distortion_dev.py [--model DIR] [--out REPORT_DIR] [--data DIR]``.
``--model`` defaults to the shipped model; pass a model trained with ``--synthetic`` to measure
how well synthetic distortions stand in for FACECOM's real ones. Speed is the network alone
(views + forward pass) on preloaded 224 px frames, batches of 64, with the threads torch picks.
"""

from __future__ import annotations

import argparse
import time

from facesuite.classify.distortion import DistortionDetector
from facesuite.config import data_root
from facesuite.data import read_identity_folders, read_split
from facesuite.evaluate.classification import (
    classification_metrics,
    write_classification_report,
)
from facesuite.io import load_image
from facesuite.train.distortion import distortion_samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(data_root()), help="shared data root (default $FACESUITE_DATA)")
    parser.add_argument("--model", help="model folder (default: shipped)")
    parser.add_argument("--out", help="also write the report kit here")
    args = parser.parse_args()

    root = read_identity_folders(f"{args.data}/facecom/task_b/train")
    dev = root.subset(read_split(f"{args.data}/splits/facecom_dev_identities.txt"))
    samples = distortion_samples(dev)
    detector = DistortionDetector.load(args.model)
    done, skipped = detector.predict_paths([path for path, _ in samples])
    truth = dict(samples)
    y_true = [truth[path] for path, _ in done]
    y_pred = [prediction.label for _, prediction in done]
    if args.out:
        metrics = write_classification_report(args.out, y_true, y_pred, detector.labels, "Distortion detector, FACECOM dev")
    else:
        metrics = classification_metrics(y_true, y_pred, detector.labels)
    print(f"{len(done)} dev images ({len(skipped)} skipped), accuracy {metrics['accuracy']:.4f}, macro F1 {metrics['macro_f1']:.4f}")
    print(f"{'class':<10}{'precision':>10}{'recall':>8}{'f1':>8}{'support':>9}")
    for label, m in metrics["per_class"].items():
        print(f"{label:<10}{m['precision']:>10.3f}{m['recall']:>8.3f}{m['f1']:>8.3f}{m['support']:>9d}")

    images = [load_image(path) for path, _ in samples[:256]]
    detector.predict(images[:64])  # warm-up: first call allocates
    started = time.perf_counter()
    detector.predict(images)
    print(f"speed: {1000 * (time.perf_counter() - started) / len(images):.2f} ms/image (batch {detector.batch_size}, CPU)")


if __name__ == "__main__":
    main()
