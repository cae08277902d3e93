"""Fit and measure source-photo matching (``facesuite.gallery.source_match``) on the *train*
identities (never the dev split), and its cost at gallery scale.

1. Every clean train image is enrolled as a frame. Each distorted copy is searched twice: with
   its source enrolled (does the match fire, and name the source?) and with its source left
   out (the best agreement, as its lower bound, any other photo reaches: a match there would
   be a false one).
   Each clean image is also searched with itself left out (other photos of the same person and
   scene). Prints, per type, the share found and the largest agreement reached without the
   source: ``SOURCE_THRESHOLD`` must stay above every one of those.
2. ``--scale N``: N UTKFace images enrolled as frames; prints bytes stored per image, the time
   to load the index and the time of one search (median over 200 probes).

    python benchmarks/source_match.py            # fit on train identities
    python benchmarks/source_match.py --scale 10000
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from collections import defaultdict

import numpy as np
from tqdm import tqdm

from facesuite.config import data_root
from facesuite.data import read_identity_folders, read_split
from facesuite.gallery.source_match import FRAME_BYTES, SourceIndex, frame_of
from facesuite.io import load_image


def fit(root, split) -> None:
    dataset = read_identity_folders(root / "facecom/task_b/train")
    dataset = dataset.subset(set(dataset.identities) - read_split(split))
    paths = [p for p, _ in dataset.clean]
    index = SourceIndex([frame_of(load_image(p)) for p in tqdm(paths, desc="gallery frames")],
                        [i for _, i in dataset.clean], [str(p) for p in paths])
    row_of = {str(p): row for row, p in enumerate(paths)}
    found, without = defaultdict(list), defaultdict(list)
    for probe in tqdm(dataset.distorted, desc="probes"):
        frame, source = frame_of(load_image(probe.path)), row_of[str(probe.source)]
        match = index.match(frame)
        found[probe.distortion].append(match is not None and match.source == str(probe.source))
        without[probe.distortion].append(index.best(frame, exclude={source})[1])  # its lower bound
    for row, path in enumerate(tqdm(paths, desc="clean vs other clean")):
        without["clean"].append(index.best(index.frames[row], exclude={row})[1])
    print(f"threshold {index.threshold}; {len(paths)} enrolled photos, {len(dataset.identities)} identities")
    for kind in sorted(without):
        share = f"{np.mean(found[kind]):.3f}" if kind in found else "   - "
        print(f"{kind:9s} source found {share}   best agreement (lower bound) without the source: max {max(without[kind]):.3f}, "
              f"99.9th percentile {np.percentile(without[kind], 99.9):.3f} ({len(without[kind])} searches)")


def scale(root, n: int) -> None:
    images = sorted((root / "utkface/images").glob("*.jpg"))[:n]
    frames = [frame_of(load_image(p)) for p in tqdm(images, desc="frames")]
    start = time.perf_counter()
    index = SourceIndex(frames, [p.name for p in images], [str(p) for p in images])
    loaded = time.perf_counter() - start
    probes = [frame_of(load_image(p)) for p in images[:: max(1, len(images) // 200)][:200]]
    times = []
    for frame in probes:
        start = time.perf_counter()
        index.match(frame)
        times.append(time.perf_counter() - start)
    print(f"{len(index)} frames: {FRAME_BYTES} bytes stored per image ({FRAME_BYTES * len(index) / 2**20:.0f} MiB), "
          f"index built in {loaded:.2f} s, one search {1000 * np.median(times):.2f} ms median "
          f"({1000 * np.percentile(times, 95):.2f} ms 95th percentile)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="data root (default $FACESUITE_DATA)")
    parser.add_argument("--split", default=None, help="dev identities to leave out (default splits/facecom_dev_identities.txt)")
    parser.add_argument("--scale", type=int, default=0, help="measure storage and search time at this many gallery images")
    args = parser.parse_args()
    root = Path(args.data) if args.data else data_root()
    split = args.split or root / "splits/facecom_dev_identities.txt"
    if args.scale:
        scale(root, args.scale)
    else:
        fit(root, split)


if __name__ == "__main__":
    main()
