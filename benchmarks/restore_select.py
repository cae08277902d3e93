"""Choose a type's restoration step on the *train* identities, then report it on the dev split.

Gallery = clean images of one side of the split, probes = their distorted copies of TYPE, each
restored before embedding; top-1 per candidate on both sides. Selecting on train keeps the dev
figures honest (``routing_dev.py`` selects on dev).

    python benchmarks/restore_select.py rainy --restorers median5 open5 open5+median5
    python benchmarks/restore_select.py noisy --restorers median5 median7

``--protocol cross`` measures on the cross protocol instead (alternate clean photos enrolled, the
distorted copies of the others searched: new photos of enrolled people), and ``--mirror`` embeds
each probe with its mirror image as a mirrored route does:

    python benchmarks/restore_select.py blurred --restorers none unsharp --protocol cross --mirror
"""

from __future__ import annotations

import argparse

import numpy as np

from facesuite.analysis import FaceAnalysis
from facesuite.config import data_root
from facesuite.data import DISTORTIONS, read_identity_folders, read_split
from facesuite.embed import l2_normalise
from facesuite.evaluate.open_set import PROTOCOLS, cross_protocol
from facesuite.route.restore import RESTORERS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=DISTORTIONS)
    parser.add_argument("--restorers", nargs="+", default=["none", "median5"], choices=list(RESTORERS))
    parser.add_argument("--data", default=str(data_root() / "facecom/task_b/train"))
    parser.add_argument("--split", default=str(data_root() / "splits/facecom_dev_identities.txt"))
    parser.add_argument("--protocol", choices=PROTOCOLS, default="facecom")
    parser.add_argument("--mirror", action="store_true", help="average each probe's embedding with its mirror image's")
    args = parser.parse_args()
    dataset = read_identity_folders(args.data)
    dev_ids = read_split(args.split) & set(dataset.identities)
    pipeline = FaceAnalysis(routes=None, gender=None)
    sides = {}
    for side, ids in (("train", set(dataset.identities) - dev_ids), ("dev", dev_ids)):
        part = dataset.subset(ids)
        if args.protocol == "cross":
            part = cross_protocol(part)
        clean, _ = pipeline.crops([p for p, _ in part.clean], progress=f"{side} clean")
        probes = [d for d in part.distorted if d.distortion == args.kind]
        probe_crops, _ = pipeline.crops([d.path for d in probes], progress=f"{side} {args.kind}")
        identity = {str(d.path): d.identity for d in probes} | {str(p): i for p, i in part.clean}
        sides[side] = (
            pipeline.embedder.embed([c.chip for c in clean]),
            np.asarray([identity[str(c.path)] for c in clean]),
            probe_crops,
            np.asarray([identity[str(c.path)] for c in probe_crops]),
        )
    for name in args.restorers:
        scores = []
        for gallery, gallery_ids, probe_crops, truth in sides.values():
            restored = [RESTORERS[name](c.chip) for c in probe_crops]
            vectors = pipeline.embedder.embed(restored)
            if args.mirror:
                vectors = l2_normalise(vectors + pipeline.embedder.embed([np.ascontiguousarray(r[:, ::-1]) for r in restored]))
            scores.append(float((gallery_ids[(vectors @ gallery.T).argmax(1)] == truth).mean()))
        print(f"{args.kind} {name:16s} train top-1 {scores[0]:.3f}   dev top-1 {scores[1]:.3f}", flush=True)


if __name__ == "__main__":
    main()
