"""Fit the sunny gallery view on the *train* identities (never the dev split).

1. Glow profile: for 200 train pairs (FACECOM sunny copy, clean source), regress sunny on clean
   pixels ring by ring around the image centre (distance in face widths, unclipped pixels only);
   prints the median slope and intercept per ring. The intercepts are the table in
   ``facesuite/route/views.py``.
2. Distance scale: sunny probes sit much closer to everyone in the rendered gallery (white blobs
   look alike) than in the clean gallery. The view should change which gallery face is nearest,
   not how close a sunny face is to a stranger, so its distances are mapped onto the impostor
   distribution sunny probes have against the clean gallery; prints both (mean, std), the
   constants of ``gallery_view_scale`` in ``routes.json``.

    python benchmarks/sunny_view.py
"""

from __future__ import annotations

import argparse

import numpy as np

from facesuite.analysis import FaceAnalysis
from facesuite.config import data_root
from facesuite.data import read_identity_folders, read_split
from facesuite.io import load_image


def glow_profile(pipeline: FaceAnalysis, probes: list, rings: np.ndarray) -> None:
    crops, _ = pipeline.crops([d.source for d in probes])
    slopes, offsets = [], []
    for probe, crop in zip(probes, crops):
        sunny, clean = load_image(probe.path).astype(float), load_image(probe.source).astype(float)
        height, width = sunny.shape[:2]
        ys, xs = np.mgrid[:height, :width]
        distance = np.hypot(xs - width / 2, ys - height / 2) / (crop.face.box[2] - crop.face.box[0])
        row_slopes, row_offsets = [], []
        for low, high in zip(rings[:-1], rings[1:]):
            mask = (sunny < 235) & ((distance >= low) & (distance < high))[..., None]
            if mask.sum() > 200 and np.ptp(clean[mask]) > 60:
                slope, offset = np.polyfit(clean[mask], sunny[mask], 1)
            else:
                slope = offset = np.nan
            row_slopes.append(slope)
            row_offsets.append(offset)
        slopes.append(row_slopes)
        offsets.append(row_offsets)
    slopes, offsets = np.asarray(slopes), np.asarray(offsets)
    for k, low in enumerate(rings[:-1]):
        count = int((~np.isnan(slopes[:, k])).sum())
        if count > 10:
            print(f"distance {low:.1f}-{rings[k + 1]:.1f} face widths: {count:3d} images, "
                  f"slope {np.nanmedian(slopes[:, k]):.2f}, added {np.nanmedian(offsets[:, k]):5.1f}")


def impostor_stats(distances: np.ndarray, rows: np.ndarray, columns: np.ndarray) -> tuple[float, float]:
    impostor = distances[rows[:, None] != columns[None, :]]
    return float(impostor.mean()), float(impostor.std())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(data_root() / "facecom/task_b/train"))
    parser.add_argument("--split", default=str(data_root() / "splits/facecom_dev_identities.txt"))
    args = parser.parse_args()
    dataset = read_identity_folders(args.data)
    train = dataset.subset(set(dataset.identities) - read_split(args.split))
    pipeline = FaceAnalysis("dlib-torch", gender=None)
    probes = [d for d in train.distorted if d.distortion == "sunny"]
    picked = np.random.default_rng(1).choice(len(probes), min(200, len(probes)), replace=False)
    glow_profile(pipeline, [probes[i] for i in picked], np.round(np.arange(0, 2.01, 0.1), 1))

    gallery_crops, _ = pipeline.crops([path for path, _ in train.clean], progress="train gallery")
    gallery_ids = np.asarray([identity for _, identity in train.clean])
    gallery = pipeline.embedder.embed([crop.chip for crop in gallery_crops])
    view = pipeline.view_embeddings(gallery_crops, {"sunny"}, progress=True)["sunny"]
    probe_crops, _ = pipeline.crops([d.path for d in probes], progress="train sunny probes")
    sunny = pipeline.embedder.embed([crop.chip for crop in probe_crops])
    sunny_ids = np.asarray([d.identity for d in probes])
    clean_mean, clean_std = impostor_stats(1 - sunny @ gallery.T, sunny_ids, gallery_ids)
    view_mean, view_std = impostor_stats(1 - sunny @ view.T, sunny_ids, gallery_ids)
    print(f"impostor distances of sunny probes: against the clean gallery {clean_mean:.4f} +- {clean_std:.4f}, "
          f"against the sunny view {view_mean:.4f} +- {view_std:.4f}")
    print(f'"gallery_view_scale": [{view_mean:.4f}, {view_std:.4f}, {clean_mean:.4f}, {clean_std:.4f}]')


if __name__ == "__main__":
    main()
