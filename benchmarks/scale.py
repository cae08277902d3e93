"""Benchmark the scale-out paths: `batch embed` on the local and Ray engines, and gallery search
on FAISS and Milvus as the gallery grows.

1. ``batch embed`` of the same FACECOM images (default 1,000 clean images, detection cache off so
   both engines detect every face) with ``--engine local`` (one process per core) and
   ``--engine ray`` (a Ray instance started on this machine, one actor per CPU). Images/s are end
   to end: start-up and model loading included, as a user would time the command.
2. ``identify`` latency, one probe per call, at 10k and 100k enrolled faces (10 per identity,
   random 128-D unit vectors) for the embedded FAISS + SQLite gallery and for Milvus Lite (a
   ``.db`` folder; the same client code as a Milvus server).

Ray probes outside addresses when it starts; run the batch part in a loopback-only namespace
(as root). On a busy machine FAISS's idle OpenMP threads add milliseconds to single-probe
searches, so docs/scale-out.md's identify figures come from a separate run with one OpenMP thread:

    unshare --net --pid --fork --mount-proc sh -c \
        'ip link set lo up && .venv/bin/python benchmarks/scale.py --skip-gallery'
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/scale.py --skip-batch
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from facesuite.batch import JobSpec, run_job
from facesuite.config import data_root
from facesuite.gallery import create_gallery, open_gallery
from facesuite.io import iter_images

DIM = 128
FACES_PER_IDENTITY = 10
ENROLL_CHUNK = 1_000  # identities per progress line


def batch_figures(images: list[Path], workdir: Path) -> dict:
    listing = workdir / "images.txt"
    listing.write_text("".join(f"{path}\n" for path in images))
    spec = JobSpec("embed", use_cache=False)
    figures = {}
    for engine in ("local", "ray"):
        summary = run_job(spec, listing, workdir / f"out-{engine}", engine=engine)
        figures[engine] = {"images": summary.processed, "seconds": round(summary.seconds, 1),
                           "images_per_s": round(summary.images_per_second, 2), "errors": summary.errors}
        print(f"batch embed, {engine}: {summary.processed} images in {summary.seconds:.1f} s "
              f"= {summary.images_per_second:.2f} images/s", flush=True)
    return figures


def gallery_figures(uri: str, size: int, probes: int, rng: np.random.Generator) -> dict:
    identities = size // FACES_PER_IDENTITY
    vectors = rng.normal(size=(size, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    started = time.perf_counter()
    with create_gallery(uri, "bench", DIM, 0.4) as gallery:
        for i in range(identities):
            rows = slice(i * FACES_PER_IDENTITY, (i + 1) * FACES_PER_IDENTITY)
            gallery.enroll(f"person{i:06d}", vectors[rows], [f"img{j}.jpg" for j in range(rows.start, rows.stop)])
    enroll_s = time.perf_counter() - started
    # Probes are noisy copies of enrolled faces, as a new photo of a known person would be.
    picks = rng.choice(size, size=probes, replace=False)
    queries = vectors[picks] + 0.05 * rng.normal(size=(probes, DIM)).astype(np.float32) / np.sqrt(DIM)
    times, correct = [], 0
    with open_gallery(uri) as gallery:
        gallery.identify(queries[0])  # first call loads the index: not a steady-state figure
        for pick, query in zip(picks, queries):
            start = time.perf_counter()
            match = gallery.identify(query)[0][0]
            times.append((time.perf_counter() - start) * 1000)
            correct += match.identity == f"person{pick // FACES_PER_IDENTITY:06d}"
    p95 = statistics.quantiles(times, n=20)[18]
    return {"faces": size, "enroll_s": round(enroll_s, 1), "p50_ms": round(statistics.median(times), 2),
            "p95_ms": round(p95, 2), "top1": correct / probes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None, help="data root holding facecom/ (default $FACESUITE_DATA)")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--sizes", default="10000,100000", help="gallery sizes in faces")
    parser.add_argument("--probes", type=int, default=50)
    parser.add_argument("--skip-batch", action="store_true")
    parser.add_argument("--skip-gallery", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    results: dict = {"cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if not args.skip_batch:
            # Absolute: the list file handed to the job resolves relative paths against itself.
            root = ((args.data or data_root()) / "facecom" / "task_b" / "train").resolve()
            images = [p for p in iter_images(root) if "distortion" not in p.parts][: args.images]
            if len(images) < args.images:
                raise SystemExit(f"found only {len(images)} clean images under {root}")
            results["batch_embed"] = batch_figures(images, workdir)
        if not args.skip_gallery:
            rng = np.random.default_rng(0)
            results["identify"] = []
            for size in (int(s) for s in args.sizes.split(",")):
                for backend, uri in (("faiss", str(workdir / f"g{size}")), ("milvus-lite", str(workdir / f"g{size}.db"))):
                    figures = {"backend": backend, **gallery_figures(uri, size, args.probes, rng)}
                    results["identify"].append(figures)
                    print(f"identify, {backend}, {size} faces: p50 {figures['p50_ms']} ms, p95 {figures['p95_ms']} ms, "
                          f"top-1 {figures['top1']:.2f} (enroll {figures['enroll_s']} s)", flush=True)
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
