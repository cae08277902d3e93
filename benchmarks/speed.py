"""facesuite against face_recognition on the same images, in one run: whole processes, time to the
first result, steady state, where the time goes, and peak memory.

- **Whole process** (what a user times, disk warm: one untimed ``facesuite analyze`` first): ``facesuite batch embed LIST --workers 1`` and a
  face_recognition script (``load_image_file`` + ``face_locations`` (dlib HOG) + ``face_encodings``
  (dlib ResNet), one image at a time, as its README shows), each a fresh process, detection cache
  off, wall time and peak RSS from ``/usr/bin/time``; ``--rounds`` (default 3) runs of each,
  interleaved, the fastest counting for both tools alike.
- **Time to first result**: ``facesuite analyze ONE.jpg --no-cache`` (every model: detection,
  distortion, routes, embedder, gender) and the face_recognition script on the same image.
- **A user's first run**: both facesuite commands again with ``FACESUITE_CACHE`` a new, empty
  folder each round, in the same interleaved rounds: the networks ship as ONNX files, so nothing
  is converted or exported on a first run and the figures should match the warm ones.
- **Steady state**: in one process after a warm-up, detect + align + embed faces/s (facesuite:
  ``FaceAnalysis(routes=None, gender=None).embed``, batched; face_recognition: per image);
  ``--rounds`` passes of each, interleaved, the fastest counting for both.
- **Per stage** (steady state, ms per image on one core): facesuite's decode, detect (MTCNN), align, distortion
  detector, route (restoration), embed, gender head; face_recognition's decode, detect (HOG), and
  landmarks + align + embed (one call there).

Images: ``--n`` (default 300) clean and distorted FACECOM dev-split images, a fixed sample.
Run: ``python benchmarks/speed.py [--n 300]`` (about five minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from facesuite.config import data_root
from facesuite.data import read_identity_folders, read_split

FACE_RECOGNITION_SCRIPT = """
import sys, face_recognition
paths = open(sys.argv[1]).read().split()
found = 0
for path in paths:
    image = face_recognition.load_image_file(path)
    found += len(face_recognition.face_encodings(image, face_recognition.face_locations(image))) > 0
print(found)
"""


def sample(n: int) -> list[str]:
    dataset = read_identity_folders(data_root() / "facecom/task_b/train")
    dataset = dataset.subset(read_split(data_root() / "splits/facecom_dev_identities.txt"))
    # Absolute: a list file's relative entries are relative to the list file.
    paths = [str(p.resolve()) for p, _ in dataset.clean] + [str(d.path.resolve()) for d in dataset.distorted]
    return sorted(random.Random(0).sample(paths, min(n, len(paths))))


def timed(command: list[str], env: dict) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one fresh process."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as report:
        subprocess.run(["/usr/bin/time", "-o", report.name, "-f", "%e %M", *command], env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wall, kilobytes = report.read().split()[-2:]
    return float(wall), int(kilobytes) / 1024


def whole_processes(paths: list[str], work: Path, env: dict, rounds: int) -> dict:
    """Each command ``rounds`` times, the rounds interleaved (the machine's speed drifts): the
    fastest wall time of each, and its largest peak RSS."""
    listing, one = work / "images.txt", work / "one.txt"
    listing.write_text("\n".join(paths) + "\n")
    one.write_text(paths[0] + "\n")
    bin_dir = Path(sys.executable).parent
    script = [sys.executable, "-c", FACE_RECOGNITION_SCRIPT]

    def batch(run: int, name: str) -> list[str]:
        # A fresh output folder each round: batch resumes into an existing one.
        return [str(bin_dir / "facesuite"), "batch", "embed", str(listing), "--out", str(work / f"{name}{run}"), "--workers", "1", "--no-cache"]

    def empty_cache(run: int, name: str) -> dict:
        return {**env, "FACESUITE_CACHE": str(work / f"{name}-cache{run}")}  # not there yet: a first run

    analyze_one = [str(bin_dir / "facesuite"), "analyze", paths[0], "--no-cache", "--json"]
    commands = {  # name -> (command, environment) of round ``run``
        "facesuite": lambda run: (batch(run, "out"), env),
        "face_recognition": lambda run: ([*script, str(listing)], env),
        "facesuite_first": lambda run: (analyze_one, env),
        "face_recognition_first": lambda run: ([*script, str(one)], env),
        "facesuite_empty_cache": lambda run: (batch(run, "empty"), empty_cache(run, "batch")),
        "facesuite_first_empty_cache": lambda run: (analyze_one, empty_cache(run, "analyze")),
    }
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    for run in range(rounds):
        for name, command in commands.items():
            runs[name].append(timed(*command(run)))
    return {name: (min(wall for wall, _ in timings), max(rss for _, rss in timings)) for name, timings in runs.items()}


def steady_state(paths: list[str], rounds: int) -> dict:
    """Faces/s of each tool in this process after a warm-up: ``rounds`` passes over ``paths``,
    the two tools' passes interleaved (the machine's speed drifts), the fastest pass of each."""
    import face_recognition

    from facesuite.analysis import FaceAnalysis

    face_recognition.face_encodings(face_recognition.load_image_file(paths[0]))  # warm-up
    analysis = FaceAnalysis(use_cache=False, routes=None, gender=None)
    analysis.embed(paths[:8])  # warm-up
    best = {"facesuite": 0.0, "face_recognition": 0.0}
    stage_clock: dict[str, float] = {}
    for _ in range(rounds):
        clock = {"decode": 0.0, "detect": 0.0, "landmarks + align + embed": 0.0}
        for path in paths:
            start = time.perf_counter()
            image = face_recognition.load_image_file(path)
            decoded = time.perf_counter()
            boxes = face_recognition.face_locations(image)
            detected = time.perf_counter()
            face_recognition.face_encodings(image, boxes)
            clock["decode"] += decoded - start
            clock["detect"] += detected - decoded
            clock["landmarks + align + embed"] += time.perf_counter() - detected
        if len(paths) / sum(clock.values()) > best["face_recognition"]:
            best["face_recognition"], stage_clock = len(paths) / sum(clock.values()), clock
        start = time.perf_counter()
        analysis.embed(paths)
        best["facesuite"] = max(best["facesuite"], len(paths) / (time.perf_counter() - start))
    return {**best, "face_recognition_stages": {k: 1000 * v / len(paths) for k, v in stage_clock.items()}}


def stages(paths: list[str]) -> dict[str, float]:
    """Milliseconds per image of each stage of the routed analysis, run stage by stage on one
    core (facesuite.parallel runs batches inline with one inference thread): each figure is that
    stage's own cost, not its share of two cores."""
    from facesuite.analysis import FaceAnalysis
    from facesuite.route.restore import RESTORERS

    os.environ["OMP_NUM_THREADS"] = "1"

    analysis = FaceAnalysis(use_cache=False)
    analysis.get(paths[0])  # every model loaded and warm
    spec, detector, clock = analysis.embedder.chip_spec, analysis.extractor.detector, {}

    def lap(name: str, work):
        start = time.perf_counter()
        result = work()
        clock[name] = 1000 * (time.perf_counter() - start) / len(paths)
        return result

    from facesuite.io import decode

    decoded = lap("decode", lambda: [decode(p) for p in paths])
    faces = lap("detect", lambda: [f for i in range(0, len(decoded), 16)
                                   for f in detector.detect_main([d.pixels for d in decoded[i:i + 16]])])
    chips = lap("align", lambda: [f.chip(d.pixels, spec.size, spec.padding) for f, d in zip(faces, decoded)])
    kinds = lap("distortion", lambda: analysis.distortion.predict_faces([d.pixels for d in decoded], faces))
    routes = [analysis.router.route(k.label) for k in kinds]
    restored = lap("route", lambda: [RESTORERS[r.restore](c) for r, c in zip(routes, chips)])

    def embed():
        # The pass analyze runs (with the last stage's map when gender reads it); the mirrored
        # routes embed their chip a second time, mirrored.
        described = analysis.embedder.describe(restored, maps=analysis.gender_stage.reads_maps)
        analysis.embedder.embed([np.ascontiguousarray(c[:, ::-1]) for c, r in zip(restored, routes) if r.mirror])
        return described
    plain, pooled = lap("embed", embed)
    lap("gender", lambda: analysis.gender_stage.head.p_female(plain, pooled))  # the NumPy head analyze runs
    return clock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3,
                        help="runs of each whole process and passes of each steady state (the fastest counts)")
    args = parser.parse_args()
    paths = sample(args.n)
    # Warm disk: the package's files read once, as after any first use; every timed command below
    # runs with the detection cache off.
    env = dict(os.environ)
    subprocess.run([str(Path(sys.executable).parent / "facesuite"), "analyze", paths[0], "--no-cache", "--json"],
                   env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with tempfile.TemporaryDirectory() as work:
        whole = whole_processes(paths, Path(work), env, args.rounds)
        from facesuite.batch import read_output

        rows = read_output(Path(work) / "out0")
        assert rows.num_rows == len(paths) and rows.column("error").null_count == len(paths), "batch embed failed on some images"
    steady = steady_state(paths, args.rounds)
    split = stages(paths)

    n = len(paths)
    ours, theirs = whole["facesuite"], whole["face_recognition"]
    print(f"{n} FACECOM dev images (224 px), detection cache off, {os.cpu_count()} cores")
    print(f"{'':34s} {'facesuite':>12s} {'face_recognition':>17s} {'ratio':>7s}")
    print(f"{'whole process, images/s':34s} {n / ours[0]:12.1f} {n / theirs[0]:17.1f} {theirs[0] / ours[0]:6.1f}x")
    print(f"{'whole process, seconds':34s} {ours[0]:12.1f} {theirs[0]:17.1f}")
    empty = whole["facesuite_empty_cache"]
    print(f"{'  empty model cache, images/s':34s} {n / empty[0]:12.1f} {n / theirs[0]:17.1f} {theirs[0] / empty[0]:6.1f}x")
    print(f"{'peak RSS, MB':34s} {ours[1]:12.0f} {theirs[1]:17.0f}")
    first, base_first = whole["facesuite_first"], whole["face_recognition_first"]
    print(f"{'time to first result, s':34s} {first[0]:12.2f} {base_first[0]:17.2f}")
    print(f"{'  empty model cache, s':34s} {whole['facesuite_first_empty_cache'][0]:12.2f} {base_first[0]:17.2f}")
    print(f"{'steady state, faces/s':34s} {steady['facesuite']:12.1f} {steady['face_recognition']:17.1f} "
          f"{steady['facesuite'] / steady['face_recognition']:6.1f}x")
    print("per stage, ms per image (steady state): " + ", ".join(f"{k} {v:.1f}" for k, v in split.items())
          + f"; total {sum(split.values()):.1f}")
    theirs_split = steady["face_recognition_stages"]
    print("face_recognition per stage, ms per image: " + ", ".join(f"{k} {v:.1f}" for k, v in theirs_split.items())
          + f"; total {sum(theirs_split.values()):.1f}")


if __name__ == "__main__":
    main()
