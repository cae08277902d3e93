"""Gender models on the shared dev split: FACECOM task_a dev identities and UTKFace dev files.

    python benchmarks/gender_dev.py folders /tmp/gender_data [--utk-train N] [--utk-dev-stride K]
        Build symlink folders (never copies): train/{male,female} from FACECOM task_a minus dev
        identities plus UTKFace minus dev files (minus train files whose bytes equal a dev file),
        and dev/facecom/{male,female}, dev/utkface/{male,female}.
    python benchmarks/gender_dev.py measure /tmp/gender_data MODEL_DIR [MODEL_DIR ...] [--json OUT]
        Accuracy, macro-F1 and female recall on each dev set, and UTKFace accuracy per race group
        and age band (<13 / 13+).

Data root: ``$FACESUITE_DATA`` (default ../shared/data).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import time
from pathlib import Path

from facesuite.config import data_root
from facesuite.data import facecom_identity, parse_utkface_name, read_split

def _digest(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def build_folders(out: Path, utk_train: int | None, utk_dev_stride: int = 1, seed: int = 0) -> dict:
    root = data_root()
    dev_ids = read_split(root / "splits/facecom_dev_identities.txt")
    utk_dev = read_split(root / "splits/utkface_dev.txt")
    links: list[tuple[Path, Path]] = []
    counts: dict[str, int] = {}
    for label in ("male", "female"):
        for path in sorted((root / "facecom/task_a/train" / label).glob("*.jpg")):
            side = "dev/facecom" if facecom_identity(path.stem) in dev_ids else "train"
            links.append((path, out / side / label / f"facecom_{path.name}"))
    train_utk, dev_hashes = [], set()
    for path in sorted((root / "utkface/images").glob("*.jpg")):
        parsed = parse_utkface_name(path.name)
        if parsed is None:
            counts["utk_unparsed"] = counts.get("utk_unparsed", 0) + 1
            continue
        if path.name in utk_dev:
            dev_hashes.add(_digest(path))
            links.append((path, out / "dev/utkface" / parsed[1] / path.name))
        else:
            train_utk.append((path, parsed[1]))
    # Duplicates under another name would leak dev faces into training: drop train copies.
    clean = [(p, g) for p, g in train_utk if _digest(p) not in dev_hashes]
    counts["utk_train_duplicates_of_dev"] = len(train_utk) - len(clean)
    # Every k-th UTKFace dev file (sorted by class folder, then name) when time is short.
    utk_dev_links = sorted((t, p) for p, t in links if t.parent.parent.name == "utkface")[::utk_dev_stride]
    links = [(p, t) for p, t in links if t.parent.parent.name != "utkface"] + [(p, t) for t, p in utk_dev_links]
    # A seeded shuffle, so --utk-train N always takes the first N of the same order.
    random.Random(seed).shuffle(clean)
    clean = clean[:utk_train]
    links += [(p, out / "train" / g / f"utk_{p.name}") for p, g in clean]
    for source, target in links:
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            target.symlink_to(source.resolve())
        key = str(target.parent.relative_to(out))
        counts[key] = counts.get(key, 0) + 1
    return counts


def measure(folders: Path, model_dirs: list[str], min_face_size: int | None = None) -> list[dict]:
    from dataclasses import replace

    from facesuite.analysis import FaceAnalysis
    from facesuite.classify.gender_eval import evaluate_gender
    from facesuite.detect import DetectorSettings

    settings = DetectorSettings()
    if min_face_size is not None:  # to reuse detections cached under an earlier default
        settings = replace(settings, min_face_size=min_face_size)

    results = []
    for model_dir in model_dirs:
        analysis = FaceAnalysis(detector=settings, routes=None, gender=model_dir)
        model = analysis.gender
        record: dict = {"model": model_dir, "kind": model.config.kind}
        for name in ("facecom", "utkface"):
            out = Path("/tmp/gender_dev_reports") / Path(model_dir).name / name
            started = time.perf_counter()
            metrics, _ = evaluate_gender(folders / "dev" / name, analysis, out, gradcam_samples=8)
            record[name] = {
                "images": sum(m["support"] for m in metrics["per_class"].values()),
                "accuracy": round(metrics["accuracy"], 4), "macro_f1": round(metrics["macro_f1"], 4),
                "female_recall": round(metrics["per_class"]["female"]["recall"], 4),
                "male_recall": round(metrics["per_class"]["male"]["recall"], 4),
                "seconds": round(time.perf_counter() - started, 1), "report": str(out / "report.html"),
            }
            if name == "utkface":
                record[name]["groups"] = _utk_groups(out / "predictions.csv")
        results.append(record)
    return results


def _utk_groups(predictions_csv: Path) -> dict:
    import csv

    groups: dict[str, list[bool]] = {}
    with open(predictions_csv, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            age, _, race = parse_utkface_name(Path(row["path"]).name)
            right = row["true"] == row["predicted"]
            for key in (f"race={race}", "age<13" if age < 13 else "age>=13"):
                groups.setdefault(key, []).append(right)
    return {key: {"n": len(v), "accuracy": round(sum(v) / len(v), 4)} for key, v in sorted(groups.items())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("folders")
    build.add_argument("out", type=Path)
    build.add_argument("--utk-train", type=int, default=None, help="random subset of UTKFace train files (default: all)")
    build.add_argument("--utk-dev-stride", type=int, default=1, help="keep every k-th UTKFace dev file (default: all)")
    run = sub.add_parser("measure")
    run.add_argument("folders", type=Path)
    run.add_argument("models", nargs="+")
    run.add_argument("--json", type=Path, default=None)
    run.add_argument("--min-face-size", type=int, default=None, help="detector setting (default: the detector's)")
    args = parser.parse_args()
    if args.command == "folders":
        print(json.dumps(build_folders(args.out, args.utk_train, args.utk_dev_stride), indent=2))
        return 0
    results = measure(args.folders, args.models, args.min_face_size)
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
