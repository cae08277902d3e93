"""Mirror test-time augmentation on the cross protocol: choose on the *train* identities.

Cross protocol (``facesuite.evaluate.open_set.cross_protocol``): alternate clean photos of each
identity with two or more are enrolled, the distorted copies of the others are the probes, and
single-image identities stay in the gallery as distractors. Each probe takes its route (the
distortion detector's type, its restoration step), and so does each gallery image, as at
enrolment (a clean photo the detector calls distorted takes that route). Printed per true type:
face-match top-1 with the shipped routes as they are, with every route mirrored but the clean and
sunny ones (sunny faces are always below the quality floor), with none mirrored, and with every
gallery image mirrored as well.
Also the clean source photos of the probes searched the same way (plain route): the embedder's
own ceiling on this protocol. And the time per probe face for restoration and embedding through each set of routes (best of
three runs over 256 probes; compare within one run, the machine is shared).

    python benchmarks/cross_tta.py            # train identities (the selection)
    python benchmarks/cross_tta.py --dev      # the dev split, once, after choosing
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np

from facesuite.analysis import FaceAnalysis
from facesuite.config import data_root
from facesuite.data import read_identity_folders, read_split
from facesuite.evaluate.open_set import cross_protocol, search

NOT_MIRRORED = ("clean", "sunny")


def _timed(work) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(data_root() / "facecom/task_b/train"))
    parser.add_argument("--split", default=str(data_root() / "splits/facecom_dev_identities.txt"))
    parser.add_argument("--dev", action="store_true", help="measure on the dev identities instead of train")
    args = parser.parse_args()
    dataset = read_identity_folders(args.data)
    dev = read_split(args.split) & set(dataset.identities)
    cross = cross_protocol(dataset.subset(dev if args.dev else set(dataset.identities) - dev))
    analysis = FaceAnalysis(gender=None, source_match=False)
    g_crops, _ = analysis.crops([p for p, _ in cross.clean], progress="gallery")
    p_crops, _ = analysis.crops([d.path for d in cross.distorted], progress="probes")
    identity_of = {str(p): i for p, i in cross.clean}
    identity_of_source = {str(d.source): d.identity for d in cross.distorted}
    info = {str(d.path): d for d in cross.distorted}
    gallery_ids = [identity_of[str(c.path)] for c in g_crops]
    probe_ids = [info[str(c.path)].identity for c in p_crops]
    types = np.asarray([info[str(c.path)].distortion for c in p_crops])
    labels = [k.label for k in analysis.distortion.predict_faces([c.pixels() for c in p_crops], [c.face for c in p_crops])]
    chips = [c.chip for c in p_crops]
    g_labels = [k.label for k in analysis.distortion.predict_faces([c.pixels() for c in g_crops], [c.face for c in g_crops])]
    g_chips = [c.chip for c in g_crops]

    router = analysis.router
    shipped = dict(router.routes)
    results, seconds = {}, {}
    for name, mirror in (("routes as shipped", None), ("probes mirrored", True), ("probes unmirrored", False)):
        if mirror is not None:
            router.routes = {kind: replace(route, mirror=mirror and kind not in NOT_MIRRORED) for kind, route in shipped.items()}
        gallery = router.embed(g_chips, g_labels)[0]
        probes = router.embed(chips, labels)[0]
        # Timed again on a slice, best of three: the machine is shared, so only the fastest run
        # says what the work costs.
        sample = slice(0, min(256, len(chips)))
        seconds[name] = min(_timed(lambda: router.embed(chips[sample], labels[sample])) for _ in range(3)) / len(chips[sample])
        results[name] = search(1.0 - probes @ gallery.T, gallery_ids, probe_ids).correct
        if mirror:
            router.routes = {kind: replace(route, mirror=True) for kind, route in shipped.items()}
            every = router.embed(g_chips, ["clean"] * len(g_chips))[0]
            results["probes and every gallery image mirrored"] = search(1.0 - probes @ every.T, gallery_ids, probe_ids).correct
    router.routes = shipped
    gallery = router.embed(g_chips, g_labels)[0]
    s_crops, _ = analysis.crops(sorted({str(d.source) for d in cross.distorted}), progress="probe sources")
    ceiling = search(1.0 - analysis.embedder.embed([c.chip for c in s_crops]) @ gallery.T, gallery_ids,
                     [identity_of_source[str(c.path)] for c in s_crops]).correct
    kinds = sorted(set(types.tolist()))
    print(f"{'cross, ' + ('dev' if args.dev else 'train'):32s} " + " ".join(f"{k:>8s}" for k in kinds) + "  without sunny")
    for name, correct in results.items():
        print(f"{name:32s} " + " ".join(f"{correct[types == k].mean():8.3f}" for k in kinds)
              + f"  {correct[types != 'sunny'].mean():.3f} ({len(correct)} probes)")
    print(f"{'clean source photos (ceiling)':32s} {ceiling.mean():.3f} ({len(ceiling)} photos)")
    print("embedding time per probe face (routes, all types): " + ", ".join(f"{k} {1000 * v:.1f} ms" for k, v in seconds.items()))


if __name__ == "__main__":
    main()
