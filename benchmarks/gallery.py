"""Benchmark the on-disk gallery against a face_recognition-style linear scan.

Enrolls 1,000 identities x 10 random 128-D unit vectors, then times, one probe at a time:
  * FolderGallery.identify (FAISS flat inner-product index, generation check included);
  * the face_recognition way: ``np.linalg.norm(known - probe, axis=1)`` (what
    face_recognition.face_distance computes) followed by an argmin, on float64 encodings,
    once with the encodings pre-stacked into an array and once passed as the usual Python list;
and the time to open a 10k-face gallery from its index file and with a rebuild from SQLite.

Run: PYTHONPATH=src .venv/bin/python benchmarks/gallery.py
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np

from facesuite.gallery import INDEX_NAME, FolderGallery

IDENTITIES = 1_000
FACES_PER_IDENTITY = 10
DIM = 128
PROBES = 200
OPEN_REPEATS = 5


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    vectors = rng.normal(size=(n, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def per_call_ms(function: Callable[[np.ndarray], str], probes: np.ndarray) -> tuple[list[float], list[str]]:
    function(probes[0])  # warm caches and lazy initialisation outside the timed loop
    times, answers = [], []
    for probe in probes:
        start = time.perf_counter()
        answers.append(function(probe))
        times.append((time.perf_counter() - start) * 1000)
    return times, answers


def percentiles(times: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(times, n=20)
    return statistics.median(times), cuts[18]


def median_ms(action: Callable[[], None], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    rng = np.random.default_rng(0)
    vectors = unit(rng, IDENTITIES * FACES_PER_IDENTITY)
    names = [f"person{i:04d}" for i in range(IDENTITIES) for _ in range(FACES_PER_IDENTITY)]
    # Probes are noisy copies of enrolled faces, as a new photo of a known person would be.
    picks = rng.choice(len(vectors), size=PROBES, replace=False)
    probes = vectors[picks] + 0.05 * unit(rng, PROBES)
    probes /= np.linalg.norm(probes, axis=1, keepdims=True)

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "gallery"
        start = time.perf_counter()
        with FolderGallery.create(folder, "bench", DIM, 0.4) as gallery:
            for i in range(IDENTITIES):
                rows = slice(i * FACES_PER_IDENTITY, (i + 1) * FACES_PER_IDENTITY)
                sources = [f"img{j}.jpg" for j in range(rows.start, rows.stop)]
                gallery.enroll(names[rows.start], vectors[rows], sources)
        enroll_s = time.perf_counter() - start
        print(f"enroll: {IDENTITIES} identities x {FACES_PER_IDENTITY} faces in {enroll_s:.2f} s "
              f"({enroll_s / IDENTITIES * 1000:.2f} ms per identity, one transaction each)")

        open_ms = median_ms(lambda: FolderGallery.open(folder).close(), OPEN_REPEATS)

        def open_with_rebuild() -> None:
            (folder / INDEX_NAME).unlink()
            FolderGallery.open(folder).close()

        rebuild_ms = median_ms(open_with_rebuild, OPEN_REPEATS)
        print(f"open 10k-face gallery: {open_ms:.1f} ms from index file, "
              f"{rebuild_ms:.1f} ms with rebuild from SQLite")

        with FolderGallery.open(folder) as gallery:
            gallery_times, gallery_answers = per_call_ms(lambda p: gallery.identify(p)[0][0].identity, probes)

    known_array = vectors.astype(np.float64)  # face_recognition encodings are float64
    known_list = list(known_array)

    def scan_array(probe: np.ndarray) -> str:
        return names[int(np.argmin(np.linalg.norm(known_array - probe, axis=1)))]

    def scan_list(probe: np.ndarray) -> str:
        return names[int(np.argmin(np.linalg.norm(known_list - probe.astype(np.float64), axis=1)))]

    array_times, array_answers = per_call_ms(scan_array, probes.astype(np.float64))
    list_times, list_answers = per_call_ms(scan_list, probes)
    # Euclidean and cosine distance rank unit vectors identically, so answers must agree.
    assert gallery_answers == array_answers == list_answers, "gallery and linear scan disagree"
    assert gallery_answers == [names[i] for i in picks], "a probe was not matched to its identity"

    g50, g95 = percentiles(gallery_times)
    a50, a95 = percentiles(array_times)
    l50, l95 = percentiles(list_times)
    print(f"FolderGallery.identify (10k faces): p50 {g50:.3f} / p95 {g95:.3f} ms per probe")
    print(f"numpy norm scan, stacked array: p50 {a50:.3f} / p95 {a95:.3f} ms per probe")
    print(f"numpy norm scan, list of encodings (face_distance as usually called): "
          f"p50 {l50:.3f} / p95 {l95:.3f} ms per probe")
    # Single-probe FAISS latency is sensitive to other load on the machine (OpenMP threads).
    print(f"(faiss OpenMP threads: {faiss.omp_get_max_threads()}, load average: {os.getloadavg()[0]:.1f})")
    print(f"speed-up at p50: {a50 / g50:.1f}x vs stacked array, {l50 / g50:.1f}x vs list")


if __name__ == "__main__":
    main()
