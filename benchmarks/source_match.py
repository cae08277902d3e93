"""Fit and measure source-photo matching (``facesuite.gallery.source_match``) on the *train*
identities (never the dev split), and its cost at gallery scale.

1. Every clean train image is enrolled as a frame. Each distorted copy is searched twice: with
   its source enrolled (does the match fire, and name the source?) and with its source left
   out (the best agreement, as its lower bound, any other photo reaches: a match there would
   be a false one).
   Each clean image is also searched with itself left out (other photos of the same person and
   scene). Prints, per type, the share found and the largest agreement reached without the
   source: ``SOURCE_THRESHOLD`` must stay above every one of those.
2. ``--swaps N``: the face-region check (``face_replaced``), on N train identities. Each
   distorted copy whose source is found, and each clean photo with another train identity's face
   pasted over its face box (resized to it: as a rectangle, and blended in as a feathered oval
   over the box grown by 10%), is analysed as ``gallery identify`` analyses it;
   prints per kind the share whose match the check refuses, with and without the quality floor
   that exempts blown-out faces. Copies must keep their match; pasted faces must lose theirs.
3. ``--scale N``: N UTKFace images enrolled as frames; prints bytes stored per image, the time
   to load the index and the time of one search (median over 200 probes).

    python benchmarks/source_match.py            # fit on train identities
    python benchmarks/source_match.py --swaps 120
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


def swaps(root, split, identities: int, seed: int = 0) -> None:
    from facesuite import FaceAnalysis
    from facesuite.gallery.source_match import face_blocks, face_replaced

    dataset = read_identity_folders(root / "facecom/task_b/train")
    train = sorted(set(dataset.identities) - read_split(split))
    rng = np.random.default_rng(seed)
    dataset = dataset.subset(set(rng.permutation(train)[:identities].tolist()))
    images = {str(p): load_image(p) for p, _ in tqdm(dataset.clean, desc="gallery photos")}
    index = SourceIndex([frame_of(image) for image in images.values()], [i for _, i in dataset.clean], list(images))
    identity_of = dict(zip(images, index.identities))
    row_of = {source: row for row, source in enumerate(index.sources)}
    refused, exempt = defaultdict(list), defaultdict(list)
    with FaceAnalysis(gender=None, age=None) as app:
        floor = app.quality.floor

        def judge(kind: str, image: np.ndarray, source: str) -> None:
            frame = frame_of(image)
            match = index.match(frame)
            if match is None or match.source != source:
                return  # no source match to refuse
            (face,) = app.get(image)
            if face.no_face:
                return  # decided as no face, before any source match
            replaced = face_replaced(frame, index.frames[row_of[source]], face_blocks(face._crop.face.box, image.shape))
            refused[kind].append(replaced)
            exempt[kind].append(face.quality < floor)

        for probe in tqdm(dataset.distorted, desc="processed copies"):
            judge(probe.distortion, load_image(probe.path), str(probe.source))
        boxes = {path: app.get(image)[0] for path, image in tqdm(images.items(), desc="face boxes")}
        found = [path for path, face in boxes.items() if not face.fallback]
        for path in tqdm(found, desc="another face pasted"):
            other = found[int(rng.integers(len(found)))]
            while identity_of[other] == identity_of[path]:
                other = found[int(rng.integers(len(found)))]
            for blended in (False, True):
                judge("blended face" if blended else "pasted face",
                      _paste(images[path], boxes[path].box, images[other], boxes[other].box, blended), path)
    print(f"{identities} train identities; quality floor {floor:g}")
    for kind in sorted(refused):
        flags, low = np.array(refused[kind]), np.array(exempt[kind])
        print(f"{kind:12s} source matches {len(flags):5d}: refused {np.mean(flags & ~low):.3f} "
              f"(without the floor's exemption {np.mean(flags):.3f})")


def _paste(host: np.ndarray, host_box, donor: np.ndarray, donor_box, blended: bool) -> np.ndarray:
    """``host`` with ``donor``'s face resized over its face box: a rectangle, or (``blended``) a
    feathered oval over the box grown by 10% a side, as a face-swap edit blends one in."""
    import cv2

    def grown(box, image):
        pad = 0.1 if blended else 0.0
        x1, y1, x2, y2 = box
        w, h = x2 - x1, y2 - y1
        return (int(max(x1 - pad * w, 0)), int(max(y1 - pad * h, 0)),
                int(min(x2 + pad * w, image.shape[1])), int(min(y2 + pad * h, image.shape[0])))

    (x1, y1, x2, y2), (dx1, dy1, dx2, dy2) = grown(host_box, host), grown(donor_box, donor)
    patch = cv2.resize(donor[dy1:dy2, dx1:dx2], (x2 - x1, y2 - y1)).astype(np.float32)
    weight = np.ones((y2 - y1, x2 - x1, 1), np.float32)
    if blended:
        oval = np.zeros((y2 - y1, x2 - x1), np.float32)
        cv2.ellipse(oval, ((x2 - x1) // 2, int((y2 - y1) * 0.515)), (int((x2 - x1) * 0.38), int((y2 - y1) * 0.435)),
                    0, 0, 360, 1.0, -1)
        weight = cv2.GaussianBlur(oval, (0, 0), 4)[..., None]
    out = host.copy()
    out[y1:y2, x1:x2] = np.clip(weight * patch + (1 - weight) * host[y1:y2, x1:x2], 0, 255).astype(np.uint8)
    return out


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
    parser.add_argument("--swaps", type=int, default=0, help="measure the face-region check on this many train identities")
    parser.add_argument("--scale", type=int, default=0, help="measure storage and search time at this many gallery images")
    args = parser.parse_args()
    root = Path(args.data) if args.data else data_root()
    split = args.split or root / "splits/facecom_dev_identities.txt"
    if args.swaps:
        swaps(root, split, args.swaps)
    elif args.scale:
        scale(root, args.scale)
    else:
        fit(root, split)


if __name__ == "__main__":
    main()
