"""Where the int8 embedder's (``dlib-int8``, an option) dev figures differ from the float
network's (``dlib-onnx``, the default): the vectors, or the noise of what is measured.

Run: ``python benchmarks/int8_fidelity.py [--data DIR] [--json]`` (about 6 minutes on 2 cores).

1. **Training identities**, the data ``facesuite calibrate --per-route`` fits on (cross protocol,
   alternate clean photos searched too): each route's threshold at FPIR 1% for both embedders, and
   the bootstrap standard deviation of that threshold over the route's non-mated searches.
2. **Dev, cross protocol**: coverage at the operating point (wrong identities beside it) for each
   embedder's vectors under each embedder's shipped thresholds, to tell the vectors' share of a
   difference from the refitted thresholds'.
3. **Dev, facecom protocol**: TAR at FAR 0.1% for both, how many impostor pairs that FAR is, and a
   paired bootstrap 95% interval (resampling probes) of the difference.

Nothing here chooses anything: the thresholds are the shipped calibration files, the pairs and
protocols those of ``facesuite eval recognition``.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from facesuite.analysis import FaceAnalysis
from facesuite.config import data_root
from facesuite.data import IdentityDataset, read_identity_folders, read_split
from facesuite.embed.calibration import load_route_calibration, load_threshold
from facesuite.errors import InputError
from facesuite.evaluate.open_set import protocol_dataset, route_calibration_protocol, search, threshold_at_fpir
from facesuite.evaluate.recognition import embed_dataset, recognition_metrics, verification_pairs
from facesuite.evaluate.verification import tar_at_far

EMBEDDERS = ("dlib-onnx", "dlib-int8")
FPIR = 0.01
ROUNDS = 1000


def training_thresholds(analyses: dict[str, FaceAnalysis], dataset: IdentityDataset, rng: np.random.Generator) -> dict:
    """Per route, both embedders' thresholds at FPIR 1% and the int8 threshold's bootstrap sd."""
    searched = route_calibration_protocol(dataset)
    non_mated = {}
    for name, analysis in analyses.items():
        data, _, _ = embed_dataset(analysis, searched, source_match=False)
        found = search(data.distances(), data.gallery_ids, data.probe_ids)
        labels = np.asarray(data.probe_labels)
        non_mated[name] = {kind: found.non_mated[labels == kind] for kind in sorted(set(labels.tolist()))}
    routes = {}
    for kind, distances in non_mated["dlib-int8"].items():
        boot = [threshold_at_fpir(rng.choice(distances, distances.size), FPIR) for _ in range(ROUNDS)]
        routes[kind] = {"searches": int(distances.size),
                        **{name: round(threshold_at_fpir(non_mated[name][kind], FPIR), 5) for name in EMBEDDERS},
                        "int8_bootstrap_sd": round(float(np.std(boot)), 5)}
    return routes


def dev_coverage(analyses: dict[str, FaceAnalysis], dataset: IdentityDataset, source: Path) -> tuple[dict, dict]:
    """Cross-protocol coverage and wrong-identity rate, each embedder's vectors x each calibration;
    and the facecom protocol's embedded sets, for TAR."""
    cross, _ = protocol_dataset(dataset, source, "cross")
    table = {}
    for vectors, analysis in analyses.items():
        data, _, _ = embed_dataset(analysis, cross)
        for thresholds in EMBEDDERS:
            point = replace(analysis.operating_point, threshold=load_threshold(thresholds, 0.0)[0],
                            route_thresholds=load_route_calibration(thresholds)[0])
            overall = recognition_metrics(data, point)["open_set"]["overall"]
            table[f"{vectors} vectors, {thresholds} thresholds"] = {
                "coverage": round(overall["coverage"], 4), "wrong_identity_rate": round(overall["wrong_identity_rate"], 4)}
    facecom, _ = protocol_dataset(dataset, source, "facecom")
    sets = {name: embed_dataset(analysis, facecom)[0] for name, analysis in analyses.items()}
    return table, sets


def tar_difference(sets: dict, rng: np.random.Generator) -> dict:
    (float_d, labels), (int8_d, int8_labels) = (verification_pairs(sets[name]) for name in EMBEDDERS)
    assert np.array_equal(labels, int8_labels), "the pairs follow the data, not the vectors"
    probes = labels.size // 2  # one genuine and one impostor pair per probe, in that order
    diffs = []
    for _ in range(ROUNDS):
        picked = rng.integers(0, probes, probes)
        rows = np.concatenate([2 * picked, 2 * picked + 1])
        diffs.append(tar_at_far(int8_d[rows], labels[rows], 0.001) - tar_at_far(float_d[rows], labels[rows], 0.001))
    low, high = np.percentile(diffs, [2.5, 97.5])
    return {"impostor_pairs": int((labels == 0).sum()), "impostor_pairs_within_far": round(0.001 * (labels == 0).sum(), 1),
            "dlib-onnx": round(tar_at_far(float_d, labels, 0.001), 4), "dlib-int8": round(tar_at_far(int8_d, labels, 0.001), 4),
            "difference": round(tar_at_far(int8_d, labels, 0.001) - tar_at_far(float_d, labels, 0.001), 4),
            "bootstrap_95": [round(float(low), 4), round(float(high), 4)], "bootstrap_sd": round(float(np.std(diffs)), 4)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="data root (default: FACESUITE_DATA)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    root = args.data or data_root()
    source = root / "facecom" / "task_b" / "train"
    try:
        everyone = read_identity_folders(source)
        dev = read_split(root / "splits" / "facecom_dev_identities.txt") & set(everyone.identities)
    except InputError as error:  # a wrong data root: one line, not a traceback
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    rng = np.random.default_rng(0)
    analyses = {name: FaceAnalysis(name, gender=None) for name in EMBEDDERS}
    result = {"training_route_thresholds": training_thresholds(analyses, everyone.subset(set(everyone.identities) - dev), rng)}
    result["dev_cross_coverage"], facecom_sets = dev_coverage(analyses, everyone.subset(dev), source)
    result["dev_facecom_tar_at_far_0.1pct"] = tar_difference(facecom_sets, rng)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"training identities, threshold at FPIR {FPIR:.0%} per route (float / int8, int8 bootstrap sd):")
    for kind, row in result["training_route_thresholds"].items():
        print(f"  {kind:9s} {row['dlib-onnx']:.4f} / {row['dlib-int8']:.4f}  shift {row['dlib-int8'] - row['dlib-onnx']:+.4f}"
              f"  sd {row['int8_bootstrap_sd']:.4f}  ({row['searches']} searches)")
    print("dev, cross protocol, coverage (wrong identity):")
    for name, row in result["dev_cross_coverage"].items():
        print(f"  {name:40s} {row['coverage']:.4f} ({row['wrong_identity_rate']:.4f})")
    tar = result["dev_facecom_tar_at_far_0.1pct"]
    print(f"dev, facecom protocol, TAR at FAR 0.1% ({tar['impostor_pairs_within_far']} of {tar['impostor_pairs']} impostor pairs): "
          f"float {tar['dlib-onnx']:.4f}, int8 {tar['dlib-int8']:.4f}, difference {tar['difference']:+.4f}, "
          f"paired bootstrap 95% {tar['bootstrap_95'][0]:+.4f} to {tar['bootstrap_95'][1]:+.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
