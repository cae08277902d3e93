"""Gender models on the shared dev split: FACECOM task_a dev identities and UTKFace dev files.

    python benchmarks/gender_dev.py folders /tmp/gender_data [--utk-train N] [--utk-dev-stride K]
        Build symlink folders (never copies): train/{male,female} from FACECOM task_a minus dev
        identities plus UTKFace minus dev files (minus train files whose bytes equal a dev file),
        and dev/facecom/{male,female}, dev/utkface/{male,female}. ``--facecom-task-b`` adds the
        task_b photos of the FACECOM training identities (their other clean photos and real
        distorted copies, 6,986; tried, not in the shipped model's data).
    python benchmarks/gender_dev.py measure /tmp/gender_data MODEL_DIR [MODEL_DIR ...] [--json OUT]
        Accuracy, macro-F1 and female recall on each dev set, and UTKFace accuracy per race,
        gender and age band (<13 / 13-60 / >60), each with a bootstrap 95% interval. Give the
        fine-tuned model and its OUT/anchor (logistic regression on the frozen embedding, same
        training data) to print both in one run.
    python benchmarks/gender_dev.py distorted /tmp/gender_data MODEL_DIR [...] [--utk-stride K]
        Accuracy on dev chips with each synthesised distortion type.
    python benchmarks/gender_dev.py cost MODEL_DIR
        Per-face cost of the gender branch on the identity pass vs a second network.
    python benchmarks/gender_dev.py speed MODEL_DIR [MODEL_DIR ...] [--faces N]
        Size (parameters, weight-file MB) and milliseconds per face at batch 1 and batch 64 of each
        model alone, and what each adds to ``analyze``'s identity pass (a head on that pass, or a
        second network), all in one run so the ratios hold on a busy machine.
    python benchmarks/gender_dev.py deletion /tmp/gender_data MODEL_DIR [--faces N]
        Grad-CAM deletion test: hottest 10% of pixels masked vs a random 10%.
    python benchmarks/gender_dev.py mirror-margin /tmp/gender_data [--cache DIR]
        Selects the backbone head's ``mirror_margin`` on training folds only: out of fold on 3
        identity-disjoint folds of train/, the shipped recipe (logistic regression, C 0.001, on
        the plain, mirrored and distorted passes) scored on each held-out face alone and averaged
        with its mirror image's score when within each margin of 0.5; balanced threshold.

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

import numpy as np

from facesuite.config import data_root
from facesuite.data import age_band, facecom_identity, read_split, utkface_attributes


def _digest(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def task_b_links(task_a_train: list[tuple[Path, Path]], out: Path) -> list[tuple[Path, Path]]:
    """Links under ``out/{male,female}`` to the FACECOM task_b photos of the task_a training faces'
    identities: their other clean photos and every distorted copy (real blur, fog, rain, low light,
    noise, overexposure and low resolution), labelled by the task_a photo (``../shared/README.md``:
    task_a's photos are task_b's clean photos, re-encoded). The clean photo task_a already holds
    is left out. Each link is named ``facecom_<identity>_9<NNN>.jpg``, so the trainer's identity
    folds keep it with its identity; ``task_b.json`` in ``out`` maps each name to its source."""
    task_b = data_root() / "facecom/task_b/train"
    known = {source.stem for source, _ in task_a_train}
    labels = {facecom_identity(source.stem): target.parent.name for source, target in task_a_train}
    links, manifest = [], {}
    for identity, label in sorted(labels.items()):
        folder = task_b / identity
        photos = [p for p in sorted(folder.glob("*.jpg")) if p.stem not in known]
        photos += sorted((folder / "distortion").glob("*.jpg"))
        for number, photo in enumerate(photos):
            target = out / label / f"facecom_{identity}_9{number:03d}.jpg"
            links.append((photo, target))
            manifest[target.name] = str(photo.relative_to(task_b))
    out.mkdir(parents=True, exist_ok=True)
    (out / "task_b.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return links


def build_folders(out: Path, utk_train: int | None, utk_dev_stride: int = 1, seed: int = 0,
                  facecom_task_b: bool = False) -> dict:
    root = data_root()
    dev_ids = read_split(root / "splits/facecom_dev_identities.txt")
    utk_dev = read_split(root / "splits/utkface_dev.txt")
    links: list[tuple[Path, Path]] = []
    counts: dict[str, int] = {}
    for label in ("male", "female"):
        for path in sorted((root / "facecom/task_a/train" / label).glob("*.jpg")):
            side = "dev/facecom" if facecom_identity(path.stem) in dev_ids else "train"
            links.append((path, out / side / label / f"facecom_{path.name}"))
    if facecom_task_b:
        links += task_b_links([(p, t) for p, t in links if t.parent.parent.name == "train"], out / "train")
    train_utk, dev_hashes = [], set()
    for path in sorted((root / "utkface/images").glob("*.jpg")):
        parsed = utkface_attributes(path.name)
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
        analysis = FaceAnalysis(detector=settings, gender=model_dir)  # the pass `analyze` and `eval gender` run
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


def bootstrap_interval(right: np.ndarray, rounds: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% percentile-bootstrap interval of an accuracy (mean of 0/1 outcomes)."""
    rng = np.random.default_rng(seed)
    means = right[rng.integers(0, len(right), size=(rounds, len(right)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def _utk_groups(predictions_csv: Path) -> dict:
    """Accuracy per race, gender and age band, each with a bootstrap 95% interval."""
    import csv

    groups: dict[str, list[bool]] = {}
    with open(predictions_csv, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            age, gender, race = utkface_attributes(Path(row["path"]).name)
            right = row["true"] == row["predicted"]
            for key in (f"race={race}", f"gender={gender}", f"age={age_band(age)}"):
                groups.setdefault(key, []).append(right)
    result = {}
    for key, values in sorted(groups.items()):
        right = np.array(values, dtype=float)
        low, high = bootstrap_interval(right)
        result[key] = {"n": len(right), "accuracy": round(float(right.mean()), 4), "ci95": [round(low, 4), round(high, 4)]}
    return result


def _dev_chips(folders: Path, utk_stride: int) -> tuple[list[np.ndarray], np.ndarray, list[str], list[str]]:
    """Aligned 150 px chips of the dev faces: FACECOM's all, every k-th UTKFace file."""
    from facesuite.data import read_gender_folders
    from facesuite.detect.extract import FaceExtractor
    from facesuite.embed import ChipSpec

    samples = read_gender_folders(folders / "dev" / "facecom")
    sets = ["facecom"] * len(samples)
    utk = sorted(read_gender_folders(folders / "dev" / "utkface"))[::utk_stride]
    samples += utk
    sets += ["utkface"] * len(utk)
    label_of = {str(p): label for p, label in samples}
    set_of = {str(p): name for (p, _), name in zip(samples, sets)}
    crops, _ = FaceExtractor().crops([p for p, _ in samples], ChipSpec(150, 0.25), progress="dev faces")
    labels = np.array([label_of[str(c.path)] == "female" for c in crops], dtype=int)
    return [c.chip for c in crops], labels, [set_of[str(c.path)] for c in crops], [str(c.path) for c in crops]


def distorted(folders: Path, model_dirs: list[str], utk_stride: int) -> list[dict]:
    """Accuracy on dev chips with each synthesised distortion type (facesuite distort's seven)."""
    from facesuite.classify.gender import GenderModel
    from facesuite.data import DISTORTIONS
    from facesuite.distortion.synth import Synthesizer

    chips, labels, sets, paths = _dev_chips(folders, utk_stride)
    synth = Synthesizer(seed=1)
    variants = {"clean": chips}
    for kind in DISTORTIONS:
        variants[kind] = [synth.apply(chip, kind, key=path) for chip, path in zip(chips, paths)]
    sets = np.array(sets)
    results = []
    for model_dir in model_dirs:
        model = GenderModel.load(model_dir)
        record = {"model": model_dir, "kind": model.config.kind, "faces": {n: int((sets == n).sum()) for n in ("facecom", "utkface")}}
        for kind, variant in variants.items():
            right = (np.array([p >= model.threshold for p in model.p_female(variant)], dtype=int) == labels)
            record[kind] = {name: round(float(right[sets == name].mean()), 4) for name in ("facecom", "utkface")}
        results.append(record)
    return results


def branch_cost(model_dir: str, faces: int = 64, repeats: int = 5) -> dict:
    """Per-face milliseconds of the identity pass alone, of the same pass feeding the gender branch
    (one trunk run), and of the identity pass plus a second, standalone gender network."""
    import torch

    from facesuite.classify.gender import GenderModel
    from facesuite.embed import get_embedder

    embedder = get_embedder("dlib-torch")
    model = GenderModel.load(model_dir)
    chips = list(np.random.default_rng(0).integers(0, 256, size=(faces, 150, 150, 3), dtype=np.uint8))

    def per_face(work) -> float:
        work()  # warm-up
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            work()
            times.append(time.perf_counter() - started)
        return round(1000 * float(np.median(times)) / faces, 2)

    head, maps = _head_on_pass(model, Path(model_dir))

    def shared() -> None:
        head(*embedder.describe(chips, maps=maps))

    identity = per_face(lambda: embedder.describe(chips))
    with_branch = per_face(shared)
    second = per_face(lambda: (embedder.describe(chips), model.p_female(chips)))
    return {"faces": faces, "threads": torch.get_num_threads(), "identity_pass_ms": identity,
            "identity_pass_plus_branch_ms": with_branch, "identity_pass_plus_second_network_ms": second,
            "branch_ms": round(with_branch - identity, 2), "second_network_ms": round(second - identity, 2)}


def _head_on_pass(model, model_dir: Path):
    """(what the analyzer runs on the identity pass's embedding and hidden features for this model:
    the NumPy head of the linear kinds, the fine-tuned branch of the ``finetune`` kind; whether
    that pass must carry the last stage's input map)."""
    import torch

    from facesuite.classify.gender_head import LINEAR_KINDS, LinearGenderHead

    if model.config.kind in LINEAR_KINDS:
        head = LinearGenderHead.load(model_dir)
        return head.p_female, head.reads_maps

    def branch(plain: np.ndarray, hidden: np.ndarray) -> None:
        with torch.inference_mode():
            model.network.head(torch.from_numpy(plain), torch.from_numpy(hidden))

    return branch, True


def _per_face(work, faces: int, repeats: int) -> float:
    """Median milliseconds per face of ``work`` (one call covers ``faces`` faces), after a warm-up."""
    work()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return round(1000 * float(np.median(times)) / faces, 2)


def _stored_values(model_dir: Path) -> int:
    """Numbers in a model folder's weights file (state_dict tensors or npz arrays)."""
    import torch

    if (model_dir / "weights.npz").is_file():
        with np.load(model_dir / "weights.npz", allow_pickle=False) as arrays:
            return int(sum(arrays[k].size for k in arrays.files))
    state = torch.load(model_dir / "weights.pt", map_location="cpu", weights_only=True)
    return int(sum(v.numel() for v in state.values()))


def speed(model_dirs: list[str], faces: int = 64, repeats: int = 3) -> dict:
    """Size and per-face cost of each gender model, beside the identity pass, in one run."""
    import torch

    from facesuite.classify.gender import HEAD_KINDS, GenderModel
    from facesuite.embed import get_embedder

    embedder = get_embedder("dlib-torch")
    rng = np.random.default_rng(0)

    def random_chips(size: int) -> list[np.ndarray]:
        return list(rng.integers(0, 256, size=(faces, size, size, 3), dtype=np.uint8))

    def both_batches(run, chips: list[np.ndarray]) -> dict:
        """``run`` on all chips at once (batch 64) and one call per chip (batch 1)."""
        return {"batch64_ms": _per_face(lambda: run(chips), faces, repeats),
                "batch1_ms": _per_face(lambda: [run(chips[i : i + 1]) for i in range(faces)], faces, repeats)}

    identity_chips = random_chips(150)
    identity = both_batches(lambda c: embedder.describe(c, batch_size=64), identity_chips)
    result = {"faces": faces, "threads": torch.get_num_threads(), "identity_pass": identity, "models": []}
    for model_dir in model_dirs:
        model = GenderModel.load(model_dir)
        kind = model.config.kind
        record = {
            "model": model_dir, "kind": kind, "chip_size": model.config.chip_size,
            "parameters_run": sum(p.numel() for p in model.network.parameters()),
            "stored_values": _stored_values(Path(model_dir)),
            "weights_mb": round(sum(f.stat().st_size for f in Path(model_dir).glob("weights.*")) / 2**20, 2),
            "alone": both_batches(lambda c: model.p_female(c, batch_size=64), random_chips(model.config.chip_size)),
        }
        if kind in HEAD_KINDS:
            head, maps = _head_on_pass(model, Path(model_dir))

            def on_pass(c: list[np.ndarray], head=head, maps: bool = maps) -> None:
                head(*embedder.describe(c, batch_size=64, maps=maps))

            with_head = both_batches(on_pass, identity_chips)  # the head reads the identity pass itself
            record["added_to_identity_pass"] = {k: round(with_head[k] - identity[k], 2) for k in identity}
        else:
            record["added_to_identity_pass"] = record["alone"]  # a second network on its own chips
        result["models"].append(record)
    return result


def deletion(folders: Path, model_dir: str, faces: int, layer: str = "model", fraction: float = 0.1) -> dict:
    """Grad-CAM deletion test on dev faces: mask the hottest ``fraction`` of pixels vs a random
    ``fraction`` and compare the drop in p(predicted class). ``layer``: the model's own
    ``cam_layer()``, or (fine-tuned kind) ``branch-output``, the fine-tuned stage's 2x2 output."""
    from facesuite.classify.gender import GenderModel
    from gradcam_deletion import deletion_drops

    chips, _, _, _ = _dev_chips(folders, 1)
    picked = np.random.default_rng(0).permutation(len(chips))[:faces]
    model = GenderModel.load(model_dir)
    target = model.network.cam_layer() if layer == "model" else model.network.branch[-1]
    hot, random_ = deletion_drops(model.network, target, [chips[i] for i in picked], fraction)
    return {"model": model_dir, "layer": layer, "faces": len(picked), "fraction": fraction,
            "mean_drop_hottest": round(float(hot.mean()), 4), "mean_drop_random": round(float(random_.mean()), 4),
            "faces_where_hottest_drops_more": round(float((hot > random_).mean()), 4)}


def mirror_margin(folders: Path, cache: Path, margins: tuple[float, ...] = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 1.0)) -> list[dict]:
    import torch
    import torch.nn.functional as F
    from sklearn.linear_model import LogisticRegression

    from facesuite.classify.gender_head import mirror_when_unsure
    from facesuite.data import read_gender_folders
    from facesuite.detect.extract import FaceExtractor
    from facesuite.embed.dlib.network import load_dlib_resnet
    from facesuite.train import gender_finetune as gf
    from facesuite.train.backbone_features import standard_scaler
    from facesuite.train.gender import balanced_threshold

    faces, trunk = gf.build_cache(gf.describe_faces(read_gender_folders(folders / "train")), FaceExtractor(), cache,
                                  torch.device("cpu"), 0)
    network = load_dlib_resnet()
    features = {}  # the backbone head's inputs (pooled stages, last-stage map, unit embedding) per variant
    with torch.inference_mode():
        for variant in ("plain", "mirrored", "distorted"):
            maps = torch.from_numpy(trunk[variant]["maps"]).float()
            last = network.stages[-1](maps).mean(dim=(2, 3))
            unit = F.normalize(network.fc(last), dim=1)
            features[variant] = torch.cat([torch.from_numpy(trunk[variant]["pooled"]).float(), last,
                                           maps.flatten(1), unit], 1).numpy()
    p_plain, p_mirrored = np.zeros(len(faces.labels)), np.zeros(len(faces.labels))
    for held in gf.identity_folds(faces, 3, 0):
        kept = np.setdiff1d(np.arange(len(faces.labels)), held)
        x = np.concatenate([features[v][kept] for v in ("plain", "mirrored", "distorted")])
        scaler = standard_scaler(x)
        head = LogisticRegression(C=0.001, class_weight="balanced", max_iter=5000, random_state=0)
        head.fit(scaler.transform(x), np.concatenate([faces.labels[kept]] * 3))
        p_plain[held] = head.predict_proba(scaler.transform(features["plain"][held]))[:, 1]
        p_mirrored[held] = head.predict_proba(scaler.transform(features["mirrored"][held]))[:, 1]
    facecom = np.array([Path(path).name.startswith("facecom_") for path in faces.paths])
    rows = []
    for margin in margins:
        p_female = mirror_when_unsure(p_plain, margin, lambda rows: p_mirrored[rows])
        predicted = (p_female >= balanced_threshold(faces.labels, p_female)).astype(int)
        right = predicted == faces.labels
        rows.append({"margin": margin, "mirrored_share": round(float((p_female != p_plain).mean()), 4),
                     "accuracy": round(float(right.mean()), 4),
                     "facecom": round(float(right[facecom].mean()), 4),
                     "facecom_female_recall": round(float(right[facecom & (faces.labels == 1)].mean()), 4),
                     "utkface": round(float(right[~facecom].mean()), 4)})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("folders")
    build.add_argument("out", type=Path)
    build.add_argument("--utk-train", type=int, default=None, help="random subset of UTKFace train files (default: all)")
    build.add_argument("--utk-dev-stride", type=int, default=1, help="keep every k-th UTKFace dev file (default: all)")
    build.add_argument("--facecom-task-b", action="store_true",
                       help="also the task_b photos (other clean photos, real distorted copies) of the training identities")
    run = sub.add_parser("measure")
    run.add_argument("folders", type=Path)
    run.add_argument("models", nargs="+")
    run.add_argument("--json", type=Path, default=None)
    run.add_argument("--min-face-size", type=int, default=None, help="detector setting (default: the detector's)")
    distort = sub.add_parser("distorted")
    distort.add_argument("folders", type=Path)
    distort.add_argument("models", nargs="+")
    distort.add_argument("--utk-stride", type=int, default=5, help="every k-th UTKFace dev file (default 5)")
    cost = sub.add_parser("cost")
    cost.add_argument("model")
    fast = sub.add_parser("speed")
    fast.add_argument("models", nargs="+")
    fast.add_argument("--faces", type=int, default=64)
    cam = sub.add_parser("deletion")
    cam.add_argument("folders", type=Path)
    cam.add_argument("model")
    cam.add_argument("--faces", type=int, default=300)
    cam.add_argument("--layer", choices=("model", "branch-output"), default="model")
    margin = sub.add_parser("mirror-margin")
    margin.add_argument("folders", type=Path)
    margin.add_argument("--cache", type=Path, default=Path("/tmp/facesuite-gender-trunk"), help="trunk features cache")
    args = parser.parse_args()
    if args.command == "mirror-margin":
        for row in mirror_margin(args.folders, args.cache):
            print(json.dumps(row))
        return 0
    if args.command == "folders":
        print(json.dumps(build_folders(args.out, args.utk_train, args.utk_dev_stride, facecom_task_b=args.facecom_task_b), indent=2))
        return 0
    if args.command == "distorted":
        print(json.dumps(distorted(args.folders, args.models, args.utk_stride), indent=2))
        return 0
    if args.command == "cost":
        print(json.dumps(branch_cost(args.model), indent=2))
        return 0
    if args.command == "speed":
        print(json.dumps(speed(args.models, args.faces), indent=2))
        return 0
    if args.command == "deletion":
        print(json.dumps(deletion(args.folders, args.model, args.faces, args.layer), indent=2))
        return 0
    results = measure(args.folders, args.models, args.min_face_size)
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
