"""Kind ``finetune``: a gender branch fine-tuned on dlib's face ResNet, selected by k-fold CV.

The trunk below the branch (every stage but the last) stays frozen and shared with the identity
embedder, so its outputs are computed once per training chip and variant -- the chip, its mirror
image and one synthesised distortion (``facesuite.distortion.synth``) -- and cached in float16
under ``OUT/cache``. Both stages then train on cached tensors:

1. heads only: a linear head on the pooled trunk stages and the (still frozen) last stage;
2. the gender branch: a trainable copy of the last residual stage, with the head, AdamW and
   per-step cosine decay.

The loss weighs each face by the inverse frequency of its race x gender x age band group
(FACECOM faces, which carry no race or age, form one group per gender), so small groups count
as much as large ones. Learning rate, epochs and the decision threshold are chosen by
identity-disjoint k-fold cross-validation on the training folder only (FACECOM by identity,
UTKFace by file content, so its duplicate photos stay on one side); the final model is then
trained on every training face. A logistic regression on the frozen 128-D embedding is fitted on
the same data as the anchor (``OUT/anchor``), so a benchmark measures both in one run.

Every run checkpoints each epoch under ``OUT/runs``; ``--resume`` continues where it stopped.

Long because the cache, the runs, the fold selection and the anchor share one set of cached
tensors and one saved-model contract.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from facesuite.classify.gender import LABELS, FinetuneGenderNet, GenderConfig, chips_to_tensor
from facesuite.data import age_band, facecom_identity, find_subfolder, read_gender_folders, utkface_attributes
from facesuite.detect.extract import FaceExtractor
from facesuite.embed import ChipSpec
from facesuite.errors import InputError

EMBEDDER = "dlib-torch"
CHIP = ChipSpec(150, 0.25)
VARIANTS = ("plain", "mirrored", "distorted")
# Learning rates of the branch tried in cross-validation (the head trains at 10x).
BRANCH_LRS = (1e-4, 3e-4)
_CACHE_FORMAT = 1


@dataclass
class FinetuneOptions:
    epochs: int = 8  # most epochs of each run; cross-validation picks how many the final run takes
    head_epochs: int = 2
    folds: int = 3
    batch_size: int = 128
    weight_decay: float = 1e-2
    weighting: str = "group"  # "group": race x gender x age band; "class": gender only
    seed: int = 0
    min_female_recall: float = 0.0
    device: str = "cpu"
    resume: bool = False


@dataclass
class Faces:
    """Training faces with what the file names say about them."""

    paths: list[str]
    labels: np.ndarray  # index into LABELS
    identities: list[str]
    races: list[str]  # "" where unknown (FACECOM)
    bands: list[str]  # age band, "" where unknown

    def groups(self) -> list[str]:
        return [f"{r or 'facecom'}/{LABELS[y]}/{b}" for r, y, b in zip(self.races, self.labels, self.bands)]


def describe_faces(samples: list[tuple[Path, str]]) -> Faces:
    paths, labels, identities, races, bands = [], [], [], [], []
    for path, label in samples:
        parsed = utkface_attributes(path.name)
        if parsed is not None:
            # UTKFace has no identities; one photo can exist under two names, so its bytes name it.
            identity = "utk:" + hashlib.sha1(path.read_bytes()).hexdigest()
            races.append(parsed[2])
            bands.append(age_band(parsed[0]))
        else:
            identity = "facecom:" + facecom_identity(path.stem.removeprefix("facecom_"))
            races.append("")
            bands.append("")
        paths.append(str(path))
        labels.append(LABELS.index(label))
        identities.append(identity)
    return Faces(paths, np.array(labels), identities, races, bands)


# --------------------------------------------------------------------------------------------
# Trunk cache
# --------------------------------------------------------------------------------------------


def _variant_chips(chips: np.ndarray, variant: str, paths: list[str], seed: int) -> np.ndarray:
    if variant == "plain":
        return chips
    if variant == "mirrored":
        return chips[:, :, ::-1].copy()
    from facesuite.distortion.synth import one_type_each

    return one_type_each(chips, paths, seed)


def trunk_features(backbone, chips: np.ndarray, device: torch.device, desc: str, batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(pooled trunk stages (N, 384), last-stage input maps (N, 256, 4, 4)), float16."""
    pooled, maps = [], []
    with torch.inference_mode():
        for start in tqdm(range(0, len(chips), batch), desc=desc, unit="batch", leave=False):
            last_input, trunk_pooled = backbone.trunk(chips_to_tensor(chips[start : start + batch]).to(device))
            pooled.append(trunk_pooled.half().cpu().numpy())
            maps.append(last_input.half().cpu().numpy())
    return np.concatenate(pooled), np.concatenate(maps)


def build_cache(faces: Faces, extractor: FaceExtractor, cache: Path, device: torch.device, seed: int) -> tuple[Faces, dict]:
    """Detect and align every face once, then cache the trunk's outputs of each variant.

    Returns the faces that were found (unreadable files are skipped and counted) and per variant
    ``{"pooled": (N, 384), "maps": (N, 256, 4, 4)}``.
    """
    from facesuite.embed.dlib.network import load_dlib_resnet

    cache.mkdir(parents=True, exist_ok=True)
    crops, skipped = extractor.crops(faces.paths, CHIP, progress="faces")
    if not crops:
        raise InputError("no readable face images in the training folder")
    keep = {str(c.path): i for i, c in enumerate(crops)}
    rows = [i for i, p in enumerate(faces.paths) if p in keep]
    found = Faces([faces.paths[i] for i in rows], faces.labels[rows], [faces.identities[i] for i in rows],
                  [faces.races[i] for i in rows], [faces.bands[i] for i in rows])
    chips = np.stack([crops[keep[p]].chip for p in found.paths])
    fingerprint = hashlib.sha1(f"{_CACHE_FORMAT}/{seed}/".encode() + "\n".join(found.paths).encode()).hexdigest()[:16]
    backbone = load_dlib_resnet().to(device)
    features = {}
    for variant in VARIANTS:
        path = cache / f"{variant}-{fingerprint}.npz"
        if path.is_file():
            with np.load(path) as stored:
                features[variant] = {"pooled": stored["pooled"], "maps": stored["maps"]}
            continue
        pooled, maps = trunk_features(backbone, _variant_chips(chips, variant, found.paths, seed), device, f"trunk ({variant})")
        np.savez(path, pooled=pooled, maps=maps)
        features[variant] = {"pooled": pooled, "maps": maps}
    return found, {**features, "skipped": len(skipped)}


# --------------------------------------------------------------------------------------------
# One training run on cached tensors
# --------------------------------------------------------------------------------------------


def sample_weights(faces: Faces, weighting: str) -> np.ndarray:
    """Inverse group frequency, normalised to mean 1: each group contributes equally."""
    keys = faces.groups() if weighting == "group" else [LABELS[y] for y in faces.labels]
    counts = Counter(keys)
    weights = np.array([1.0 / counts[k] for k in keys])
    return weights / weights.mean()


def identity_folds(faces: Faces, k: int, seed: int) -> list[np.ndarray]:
    """Validation indices of ``k`` folds, identity-disjoint and stratified by gender."""
    from sklearn.model_selection import StratifiedGroupKFold

    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    return [val for _, val in splitter.split(np.zeros(len(faces.labels)), faces.labels, faces.identities)]


class _Run:
    """A network trained on cached rows, checkpointed every epoch under ``folder``."""

    def __init__(self, folder: Path, stacked: tuple[torch.Tensor, torch.Tensor], faces: Faces, train_rows: np.ndarray,
                 val_rows: np.ndarray | None, branch_lr: float, epochs: int, options: FinetuneOptions,
                 device: torch.device) -> None:
        self.folder, self.faces = folder, faces
        # Every variant's rows one after another: variant v of face i is row v * len(faces) + i.
        self.pooled, self.maps = stacked
        self.train_rows, self.val_rows = train_rows, val_rows
        self.branch_lr, self.epochs, self.options, self.device = branch_lr, epochs, options, device
        folder.mkdir(parents=True, exist_ok=True)

    def _tensors(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.from_numpy(rows)
        return self.pooled[index].to(self.device).float(), self.maps[index].to(self.device).float()

    def _logits(self, network: FinetuneGenderNet, rows: np.ndarray, batch: int = 512) -> torch.Tensor:
        return torch.cat([network.logits(*self._tensors(rows[s : s + batch])) for s in range(0, len(rows), batch)])

    def _network(self) -> FinetuneGenderNet:
        torch.manual_seed(self.options.seed)  # the head's initial weights: the same for every run
        network = FinetuneGenderNet().to(self.device)
        with torch.no_grad():  # standardise the head's input with the training rows' statistics
            x = torch.cat([network.features(*self._tensors(self.train_rows[s : s + 1024]))
                           for s in range(0, len(self.train_rows), 1024)])
            network.mean.copy_(x.mean(0))
            network.scale.copy_(x.std(0).clamp_min(1e-6))
        return network

    def _optimizer(self, network: FinetuneGenderNet, stage: int, steps: int):
        network.branch.requires_grad_(stage == 2)
        groups = [{"params": list(network.classifier.parameters()), "lr": self.branch_lr * 10}]
        if stage == 2:
            groups.append({"params": list(network.branch.parameters()), "lr": self.branch_lr})
        optimizer = torch.optim.AdamW(groups, weight_decay=self.options.weight_decay)
        return optimizer, torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(steps, 1))

    def run(self) -> tuple[FinetuneGenderNet, list[dict], list[np.ndarray]]:
        """Train (or resume); returns the network, per-epoch records and per-epoch val p_female."""
        options = self.options
        done, checkpoint = self.folder / "done.pt", self.folder / "checkpoint.pt"
        network = self._network()
        weights = torch.from_numpy(np.tile(sample_weights(self.faces, options.weighting), len(VARIANTS))).float()
        labels = torch.from_numpy(np.tile(self.faces.labels, len(VARIANTS)))
        n_faces, n_train = len(self.faces.labels), len(self.train_rows)
        steps = math.ceil(n_train / options.batch_size)
        head_epochs = min(options.head_epochs, self.epochs)

        def stage_steps(stage: int) -> int:
            return steps * (head_epochs if stage == 1 else self.epochs - head_epochs)

        stage = 1 if head_epochs else 2
        optimizer, scheduler = self._optimizer(network, stage, stage_steps(stage))
        history, p_vals, start = [], [], 0
        for path in (done, checkpoint):
            if options.resume and path.is_file():
                state = torch.load(path, map_location=self.device, weights_only=True)
                network.load_state_dict(state["network"])
                history, p_vals, start = state["history"], [p.numpy() for p in state["p_vals"]], state["epoch"]
                stage = 1 if start < head_epochs else 2
                optimizer, scheduler = self._optimizer(network, stage, stage_steps(stage))
                if "optimizer" in state and start not in (0, head_epochs):
                    optimizer.load_state_dict(state["optimizer"])
                    scheduler.load_state_dict(state["scheduler"])
                tqdm.write(f"{self.folder.name}: resuming after epoch {start}")
                break
        for epoch in range(start, self.epochs):
            if epoch == head_epochs and stage == 1:
                stage = 2
                optimizer, scheduler = self._optimizer(network, stage, stage_steps(stage))
            torch.manual_seed(options.seed * 1000 + epoch)  # dropout: a resumed run repeats it exactly
            # Each epoch shows every training face once, as one of its variants picked at random.
            generator = np.random.default_rng(options.seed * 1000 + epoch)
            rows_all = generator.integers(0, len(VARIANTS), n_train) * n_faces + self.train_rows[generator.permutation(n_train)]
            network.train()
            total = seen = 0.0
            bar = tqdm(range(steps), desc=f"{self.folder.name} epoch {epoch + 1}/{self.epochs} (stage {stage})",
                       unit="batch", leave=False)
            for step in bar:
                rows = rows_all[step * options.batch_size : (step + 1) * options.batch_size]
                index = torch.from_numpy(rows)
                logits = network.logits(*self._tensors(rows))
                loss = (F.cross_entropy(logits, labels[index].to(self.device), reduction="none")
                        * weights[index].to(self.device)).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                total += loss.item() * len(rows)
                seen += len(rows)
                bar.set_postfix(loss=f"{total / seen:.3f}")
            record = {"epoch": epoch + 1, "stage": stage, "train_loss": round(total / seen, 4)}
            if self.val_rows is not None:
                network.eval()
                with torch.no_grad():
                    p = torch.softmax(self._logits(network, self.val_rows), dim=1)[:, 1].cpu().numpy()
                p_vals.append(p)
                record.update(_fold_metrics(self.faces, self.val_rows, p, 0.5))
            record["seconds"] = round(bar.format_dict["elapsed"], 1)
            history.append(record)
            tqdm.write(f"{self.folder.name} epoch {epoch + 1}/{self.epochs} (stage {stage}): "
                       + ", ".join(f"{k} {v}" for k, v in record.items() if k not in ("epoch", "stage")))
            torch.save({"network": network.state_dict(), "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(), "history": history, "p_vals": [torch.from_numpy(p) for p in p_vals],
                        "epoch": epoch + 1},
                       checkpoint)
        torch.save({"network": network.state_dict(), "history": history, "p_vals": [torch.from_numpy(p) for p in p_vals],
                    "epoch": self.epochs}, done)
        checkpoint.unlink(missing_ok=True)
        network.eval()
        return network, history, p_vals


def _fold_metrics(faces: Faces, rows: np.ndarray, p_female: np.ndarray, threshold: float) -> dict:
    """Accuracy, female recall and per-race accuracy (UTKFace rows) at ``threshold``."""
    right = (p_female >= threshold).astype(int) == faces.labels[rows]
    female = faces.labels[rows] == 1
    metrics = {"val_accuracy": round(float(right.mean()), 4), "val_female_recall": round(float(right[female].mean()), 4)}
    races = np.array([faces.races[i] for i in rows])
    per_race = {race: float(right[races == race].mean()) for race in sorted(set(races) - {""})}
    if per_race:
        metrics["val_worst_race"] = round(min(per_race.values()), 4)
    return metrics


# --------------------------------------------------------------------------------------------
# Cross-validation, the final run and the anchor
# --------------------------------------------------------------------------------------------


def train_finetune(data_dir: str | Path, out: str | Path, options: FinetuneOptions,
                   extractor: FaceExtractor | None = None) -> dict:
    """Select by k-fold CV on ``data_dir/train``, train the final branch, write the model folder ``out``."""
    from facesuite.train.gender import threshold_with_female_recall

    if options.epochs < 1 or options.folds < 2:
        raise InputError("--epochs must be at least 1 and --folds at least 2")
    if options.device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA device here")
    device = torch.device(options.device)
    train_dir = find_subfolder(Path(data_dir), ("train", "training"))
    if train_dir is None:
        raise InputError("expected DIR/train/{male,female}/", data_dir)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(options.seed)
    faces, features = build_cache(describe_faces(read_gender_folders(train_dir)), extractor or FaceExtractor(),
                                  out / "cache", device, options.seed)
    stacked = (torch.from_numpy(np.concatenate([features[v]["pooled"] for v in VARIANTS])),
               torch.from_numpy(np.concatenate([features[v]["maps"] for v in VARIANTS])))
    everyone = np.arange(len(faces.labels))
    folds = identity_folds(faces, options.folds, options.seed)
    table, histories = [], {}
    for lr in BRANCH_LRS:
        out_of_fold = np.zeros((options.epochs, len(everyone)))
        for k, val in enumerate(folds):
            name = f"lr{lr:g}-fold{k + 1}"
            _, history, p_vals = _Run(out / "runs" / name, stacked, faces, np.setdiff1d(everyone, val), val, lr,
                                      options.epochs, options, device).run()
            histories[name] = history
            for epoch, p in enumerate(p_vals):
                out_of_fold[epoch, val] = p
        for epoch, p in enumerate(out_of_fold):
            threshold = threshold_with_female_recall(faces.labels, p, options.min_female_recall)
            metrics = _fold_metrics(faces, everyone, p, threshold)
            # Fairness-aware selection: overall accuracy and the worst race group count equally.
            score = (metrics["val_accuracy"] + metrics.get("val_worst_race", metrics["val_accuracy"])) / 2
            table.append({"branch_lr": lr, "epochs": epoch + 1, "threshold": threshold, **metrics, "score": round(score, 4)})
    best = max(table, key=lambda row: row["score"])
    tqdm.write(f"chosen on {options.folds} folds: {json.dumps(best)}")
    final = FinetuneOptions(**{**asdict(options), "epochs": best["epochs"]})
    network, final_history, _ = _Run(out / "runs" / "final", stacked, faces, everyone, None, best["branch_lr"],
                                     best["epochs"], final, device).run()
    _save_model(network.cpu(), out, best, options, len(faces.labels), folds, faces)
    anchor = fit_anchor(faces, features, folds, out / "anchor", options)
    (out / "history.json").write_text(json.dumps({
        "options": asdict(options), "faces": len(faces.labels), "skipped": features["skipped"],
        "groups": dict(sorted(Counter(faces.groups()).items())), "selection": table, "chosen": best,
        "runs": histories, "final": final_history, "anchor": anchor,
    }, indent=2) + "\n")
    plot_selection(table, out / "curves.png")
    return {"chosen": best, "anchor_out_of_fold": anchor["chosen"], "faces": len(faces.labels),
            "skipped": features["skipped"], "model": str(out)}


def _save_model(network: FinetuneGenderNet, out: Path, best: dict, options: FinetuneOptions, n_faces: int,
                folds: list[np.ndarray], faces: Faces) -> None:
    # The branch in float16 keeps the file at ~2.5 MB; the head and statistics stay float32.
    state = {k: (v.half() if k.startswith("branch.") else v) for k, v in network.saved_state().items()}
    torch.save(state, out / "weights.pt")
    metrics = {f"cv_{k.removeprefix('val_')}": v for k, v in best.items() if k.startswith("val_")}
    config = GenderConfig("finetune", CHIP.size, CHIP.padding, float(best["threshold"]), list(LABELS), embedder=EMBEDDER,
                          metrics={**metrics, "branch_lr": best["branch_lr"], "epochs": best["epochs"], "folds": options.folds,
                                   "fold_sizes": [len(f) for f in folds], "train_faces": n_faces,
                                   "weighting": options.weighting})
    config.save(out)


def fit_anchor(faces: Faces, features: dict, folds: list[np.ndarray], out: Path, options: FinetuneOptions) -> dict:
    """Logistic regression on the frozen unit 128-D embedding (plain and mirrored faces), C and
    threshold chosen on the same folds: the baseline the branch must beat."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from facesuite.embed.dlib.network import load_dlib_resnet
    from facesuite.train.gender import threshold_with_female_recall

    backbone = load_dlib_resnet()
    embedded = {}
    with torch.inference_mode():
        for variant in ("plain", "mirrored"):
            maps = features[variant]["maps"]
            rows = [backbone.fc(backbone.stages[-1](torch.from_numpy(maps[s : s + 1024]).float()).mean(dim=(2, 3)))
                    for s in range(0, len(maps), 1024)]
            embedded[variant] = F.normalize(torch.cat(rows), dim=1).numpy()
    everyone = np.arange(len(faces.labels))

    def fit(rows: np.ndarray, c: float):
        x = np.concatenate([embedded["plain"][rows], embedded["mirrored"][rows]])
        y = np.concatenate([faces.labels[rows]] * 2)
        scaler = StandardScaler().fit(x)
        model = LogisticRegression(C=c, class_weight="balanced", max_iter=5000).fit(scaler.transform(x), y)
        return scaler, model

    sweep = []
    for c in (0.01, 0.1, 1.0):
        p = np.zeros(len(everyone))
        for val in folds:
            scaler, model = fit(np.setdiff1d(everyone, val), c)
            p[val] = model.predict_proba(scaler.transform(embedded["plain"][val]))[:, 1]
        threshold = threshold_with_female_recall(faces.labels, p, options.min_female_recall)
        sweep.append({"C": c, "threshold": threshold, **_fold_metrics(faces, everyone, p, threshold)})
    chosen = max(sweep, key=lambda row: row["val_accuracy"])
    scaler, model = fit(everyone, chosen["C"])
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "weights.npz", mean=scaler.mean_.astype(np.float32), scale=scaler.scale_.astype(np.float32),
             coef=model.coef_.reshape(-1).astype(np.float32), intercept=np.float32(model.intercept_[0]))
    GenderConfig("embedding", CHIP.size, CHIP.padding, float(chosen["threshold"]), list(LABELS), embedder=EMBEDDER,
                 metrics={f"cv_{k.removeprefix('val_')}": v for k, v in chosen.items() if k.startswith("val_")}).save(out)
    return {"sweep": sweep, "chosen": chosen}


def plot_selection(table: list[dict], path: Path) -> None:
    """Out-of-fold accuracy and worst race group per epoch, one line per learning rate."""
    from facesuite.evaluate.plots import plt, save_figure

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, key in zip(axes, ("val_accuracy", "val_worst_race")):
        for lr in sorted({row["branch_lr"] for row in table}):
            rows = [row for row in table if row["branch_lr"] == lr and key in row]
            ax.plot([r["epochs"] for r in rows], [r[key] for r in rows], "o-", label=f"branch lr {lr:g}")
        ax.set_xlabel("epochs")
        ax.set_title(key.replace("val_", "out-of-fold "))
        ax.legend()
    save_figure(fig, path, dpi=100)
