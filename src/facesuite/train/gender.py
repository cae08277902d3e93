"""Training of the gender models on ``DIR/train/{male,female}`` (and optional ``DIR/val/``).

``cnn``: MobileNetV3-Small + SE head, in two stages (heads only, then the whole network at a lower
learning rate), AdamW with per-step cosine decay, class-weighted cross-entropy, augmentation,
early stopping on validation macro-F1, a checkpoint per epoch (``--resume`` continues from it).
With ``--teacher MODEL_DIR`` it is trained by distillation: soft labels from a trained gender model
plus the hard labels (:mod:`facesuite.train.gender_distill`).

``embedding`` and ``backbone``: logistic regression (scikit-learn) on dlib's 128-D embedding (and,
for ``backbone``, the same pass's hidden features), its C picked on validation, saved as plain
arrays for the NumPy head that scores them (:mod:`facesuite.classify.gender_head`).

All three tune the decision threshold on validation so male and female recall are balanced, and
write a model folder that :class:`facesuite.classify.gender.GenderModel` loads.

Long because both stages, the three kinds and the threshold rule share one training loop and one
saved-model contract.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score
from tqdm import tqdm

from facesuite.classify.gender import (
    LABELS,
    GenderConfig,
    GenderNet,
    chips_to_tensor,
    pick_device,
)
from facesuite.classify.gender_head import mirror_when_unsure
from facesuite.config import DEFAULT_GENDER_KIND
from facesuite.data import find_subfolder, read_gender_folders
from facesuite.detect.extract import FaceExtractor
from facesuite.embed import ChipSpec
from facesuite.errors import InputError, Skipped
from facesuite.evaluate.plots import plot_curves
from facesuite.train import seed_everything
from facesuite.train.gender_distill import distillation_loss, load_teacher, teacher_p_female

# Kinds trained here; ``finetune`` has its own trainer (facesuite.train.gender_finetune).
HEAD_KINDS = ("embedding", "backbone")
#: The backbone head averages a score this close to its threshold with the mirrored chip's
#: (``mirror_when_unsure``). Chosen out of fold on the training faces' identity folds
#: (``python benchmarks/gender_dev.py mirror-margin``): the smallest margin that gains what
#: mirroring every face gains.
BACKBONE_MIRROR_MARGIN = 0.2
KINDS = (*HEAD_KINDS, "cnn")


@dataclass
class TrainOptions:
    kind: str = DEFAULT_GENDER_KIND
    epochs: int = 12
    #: Heads-only epochs before the whole network trains; None: 0 from scratch (frozen random
    #: features teach the head nothing), 1 from a PATH init.
    head_epochs: int | None = None
    seed: int = 0
    init: str = "scratch"
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    chip_size: int = 112
    chip_padding: float = 0.25
    val_fraction: float = 0.15
    patience: int = 4
    resume: bool = False
    #: Lower the balanced threshold, if needed, until validation female recall reaches this:
    #: female is the minority class the seeds' models missed (0 keeps the balanced threshold).
    min_female_recall: float = 0.0
    #: cnn only: a trained gender model folder whose p_female on each training face is the soft
    #: label (distillation); None trains on the hard labels alone.
    teacher: str | None = None
    #: Weight of the hard-label term; the soft term gets 1 - alpha (see gender_distill).
    distill_alpha: float = 0.5
    #: Softening temperature of teacher and student distributions in the soft term.
    temperature: float = 2.0


@dataclass
class Split:
    chips: np.ndarray  # (N, H, W, 3) uint8
    labels: np.ndarray  # (N,) int: index into LABELS
    paths: list[Path]


def read_train_val(data_dir: Path, val_fraction: float, seed: int) -> tuple[list, list, str]:
    """Samples of DIR/train and DIR/val, or a stratified split of DIR/train when val/ is absent."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise InputError("no such folder", data_dir)
    train_dir = find_subfolder(data_dir, ("train", "training"))
    if train_dir is None:
        raise InputError("expected DIR/train/{male,female}/ (and optionally DIR/val/)", data_dir)
    train = read_gender_folders(train_dir)
    if (val_dir := find_subfolder(data_dir, ("val", "valid", "validation"))) is not None:
        return train, read_gender_folders(val_dir), f"{val_dir.name}/"
    from sklearn.model_selection import train_test_split

    labels = [label for _, label in train]
    if min(labels.count(label) for label in LABELS) < 2:
        raise InputError("each class needs at least 2 images to split off a validation set", train_dir)
    train, val = train_test_split(train, test_size=val_fraction, stratify=labels, random_state=seed)
    return train, val, f"stratified {val_fraction:.0%} of train/"


def extract_split(samples: Sequence[tuple[Path, str]], spec: ChipSpec, extractor: FaceExtractor, name: str) -> tuple[Split, list[Skipped]]:
    crops, skipped = extractor.crops([p for p, _ in samples], spec, progress=f"faces ({name})")
    label_of = {Path(p): label for p, label in samples}
    if not crops:
        raise InputError(f"no readable images in the {name} set")
    split = Split(
        np.stack([c.chip for c in crops]),
        np.array([LABELS.index(label_of[c.path]) for c in crops]),
        [c.path for c in crops],
    )
    missing = [label for i, label in enumerate(LABELS) if not np.any(split.labels == i)]
    if missing:
        raise InputError(f"the {name} set has no readable {'/'.join(missing)} images")
    return split, skipped


def balanced_threshold(labels: np.ndarray, p_female: np.ndarray) -> float:
    """Threshold on p_female maximising the smaller of the two recalls (ties: closest to 0.5)."""
    candidates = np.unique(np.concatenate([[0.5], p_female]))
    female = labels == 1
    # Recall of each class if everything >= t is called female, for every candidate t at once.
    recall_f = (p_female[female][None, :] >= candidates[:, None]).mean(axis=1)
    recall_m = (p_female[~female][None, :] < candidates[:, None]).mean(axis=1)
    worst = np.minimum(recall_f, recall_m)
    best = np.flatnonzero(worst == worst.max())
    return float(candidates[best[np.argmin(np.abs(candidates[best] - 0.5))]])


def threshold_with_female_recall(labels: np.ndarray, p_female: np.ndarray, floor: float) -> float:
    """The balanced threshold, lowered just enough that at least ``floor`` of the female
    validation faces score at or above it."""
    threshold = balanced_threshold(labels, p_female)
    female = np.sort(p_female[labels == 1])
    if floor <= 0 or not len(female) or (female >= threshold).mean() >= floor:
        return threshold
    return float(female[int(np.floor(len(female) * (1 - floor)))])


def macro_f1(labels: np.ndarray, predicted: np.ndarray) -> float:
    return float(f1_score(labels, predicted, average="macro", labels=[0, 1], zero_division=0))


def train_gender(data_dir: str | Path, out: str | Path, options: TrainOptions, extractor: FaceExtractor | None = None) -> dict:
    """Train a gender model from ``data_dir`` into the folder ``out``; returns a summary dict."""
    if options.kind not in KINDS:
        raise InputError(f"unknown kind {options.kind!r} here; choose one of {', '.join(KINDS)} "
                         "(finetune: facesuite.train.gender_finetune.train_finetune)")
    if options.epochs < 1:
        raise InputError("--epochs must be at least 1")
    if not 0.0 <= options.min_female_recall <= 1.0:
        raise InputError("--min-female-recall must be between 0 and 1")
    teacher = None
    if options.teacher is not None:
        if options.kind != "cnn":
            raise InputError("--teacher trains the cnn kind by distillation; use it with --kind cnn")
        if not 0.0 <= options.distill_alpha <= 1.0 or options.temperature <= 0:
            raise InputError("--distill-alpha must be between 0 and 1 and --temperature above 0")
        teacher = load_teacher(options.teacher)  # bad input is reported before any extraction
    out = Path(out)
    seed_everything(options.seed)
    train_samples, val_samples, val_source = read_train_val(Path(data_dir), options.val_fraction, options.seed)
    extractor = extractor or FaceExtractor()
    spec = ChipSpec(options.chip_size, options.chip_padding)
    if options.kind in HEAD_KINDS:
        from facesuite.embed import get_embedder

        # The pass analyze runs by default: its head then reads that same pass (one pass, two answers).
        embedder = get_embedder()
        spec = embedder.chip_spec
    train, skipped = extract_split(train_samples, spec, extractor, "train")
    val, val_skipped = extract_split(val_samples, spec, extractor, "val")
    out.mkdir(parents=True, exist_ok=True)
    if options.kind in HEAD_KINDS:
        result = _fit_embedding(train, val, embedder, out, options)
    else:
        soft = None
        if teacher is not None:
            soft = teacher_p_female(teacher, options.teacher, train.paths, extractor, out / "teacher.npz")
            del teacher  # its network is not needed while the student trains
        result = _fit_cnn(train, val, out, options, soft)
    result.update(
        train_images=len(train.labels), val_images=len(val.labels), val_source=val_source,
        skipped=[s.reason for s in skipped + val_skipped],
    )
    return result


def held_out_answers(labels: np.ndarray, p_female: np.ndarray, floor: float) -> np.ndarray:
    """Each validation face's answer (1: female) at the threshold tuned on the other half of the
    validation faces (halves drawn within each class). The threshold is fitted on these faces, so
    scored on the faces it was fitted on it flatters the model (1.0 on 24 separable faces)."""
    rng = np.random.default_rng(0)
    halves: list[list[int]] = [[], []]
    for label in (0, 1):
        members = rng.permutation(np.flatnonzero(labels == label))
        if len(members) < 2:  # too few to hold any out: the threshold of all of them
            return (p_female >= threshold_with_female_recall(labels, p_female, floor)).astype(int)
        halves[0] += members[: len(members) // 2].tolist()
        halves[1] += members[len(members) // 2 :].tolist()
    answers = np.empty(len(labels), dtype=int)
    for scored, fitted in (halves, halves[::-1]):
        threshold = threshold_with_female_recall(labels[fitted], p_female[fitted], floor)
        answers[scored] = p_female[scored] >= threshold
    return answers


def _save_config(out: Path, kind: str, spec: ChipSpec, val: Split, p_female: np.ndarray, extra: dict,
                 min_female_recall: float = 0.0, mirror_margin: float = 0.0, space: str | None = None) -> dict:
    threshold = threshold_with_female_recall(val.labels, p_female, min_female_recall)
    # The saved threshold is tuned on every validation face; the figures are of faces each scored
    # at a threshold tuned without it.
    predicted = held_out_answers(val.labels, p_female, min_female_recall)
    metrics = {
        "val_macro_f1": round(macro_f1(val.labels, predicted), 4),
        "val_accuracy": round(float((predicted == val.labels).mean()), 4),
        "val_female_recall": round(float((predicted[val.labels == 1] == 1).mean()), 4),
        "val_male_recall": round(float((predicted[val.labels == 0] == 0).mean()), 4),
    }
    # Full precision: the tuned threshold is one validation face's exact score, and rounding it up
    # would flip that face to the other class.
    config = GenderConfig(kind, spec.size, spec.padding, float(threshold), list(LABELS), embedder=space,
                          metrics={**metrics, **extra}, mirror_margin=mirror_margin)
    config.save(out)
    return {"threshold": config.threshold, **metrics}


# --------------------------------------------------------------------------------------------
# Embedding + logistic regression
# --------------------------------------------------------------------------------------------


def _fit_embedding(train: Split, val: Split, embedder, out: Path, options: TrainOptions) -> dict:
    from sklearn.linear_model import LogisticRegression

    from facesuite.train.backbone_features import standard_scaler

    def features(chips: np.ndarray, name: str, step: int = 256) -> np.ndarray:
        rows = []
        for start in tqdm(range(0, len(chips), step), desc=f"backbone pass ({name})", unit="batch", leave=False):
            batch = list(chips[start : start + step])
            if options.kind == "embedding":
                rows.append(embedder.embed(batch))
            else:
                # Pooled stages and the last stage's input map: the map keeps where on the face each
                # channel fired, which pooling throws away (out of fold 0.906 -> 0.915, model card).
                unit, hidden = embedder.describe(batch, maps=True)
                rows.append(np.hstack([hidden, unit]))  # the order LinearGenderHead reads them
        return np.concatenate(rows)

    # Mirrored faces are equally valid examples: embedding both doubles the training set for
    # the price of one extra pass. The backbone kind also sees each face once with one of the seven
    # synthesised distortions: out of fold, accuracy on distorted faces 0.863 -> 0.880, clean
    # faces unchanged (model card).
    variants = [features(train.chips, "train"), features(train.chips[:, :, ::-1].copy(), "train, mirrored")]
    if options.kind == "backbone":
        from facesuite.distortion.synth import one_type_each

        distorted = one_type_each(train.chips, [str(path) for path in train.paths], options.seed)
        variants.append(features(distorted, "train, distorted"))
    train_x = np.concatenate(variants)
    train_y = np.concatenate([train.labels] * len(variants))
    val_x = features(val.chips, "val")
    scaler = standard_scaler(train_x)
    sweep = []
    best = None
    for c in (0.0003, 0.001, 0.003, 0.01, 0.03) if options.kind == "backbone" else (0.01, 0.03, 0.1, 0.3, 1.0):
        classifier = LogisticRegression(C=c, class_weight="balanced", max_iter=5000, random_state=options.seed)
        classifier.fit(scaler.transform(train_x), train_y)
        p = classifier.predict_proba(scaler.transform(val_x))[:, 1]
        score = macro_f1(val.labels, (p >= 0.5).astype(int))
        sweep.append({"C": c, "val_macro_f1": round(score, 4), "train_accuracy": round(float(classifier.score(scaler.transform(train_x), train_y)), 4)})
        if best is None or score > best[0]:
            best = (score, c, classifier, p)
    _, c, classifier, p_val = best
    mirror_margin = BACKBONE_MIRROR_MARGIN if options.kind == "backbone" else 0.0
    # The threshold is tuned on the scores the model will give: unsure faces averaged with their mirror.
    p_val = mirror_when_unsure(p_val, mirror_margin, lambda rows: classifier.predict_proba(
        scaler.transform(features(val.chips[rows][:, :, ::-1].copy(), "val, mirrored")))[:, 1])
    np.savez(
        out / "weights.npz", mean=scaler.mean_.astype(np.float32), scale=scaler.scale_.astype(np.float32),
        coef=classifier.coef_.reshape(-1).astype(np.float32), intercept=np.float32(classifier.intercept_[0]),
    )
    # The options this kind reads (the CNN's epochs, chip size and learning rate are not among them).
    used = {"kind": options.kind, "seed": options.seed, "val_fraction": options.val_fraction,
            "min_female_recall": options.min_female_recall, "chip_size": embedder.chip_spec.size,
            "chip_padding": embedder.chip_spec.padding}
    (out / "history.json").write_text(json.dumps({"options": used, "C_sweep": sweep, "chosen_C": c}, indent=2) + "\n")
    return _save_config(out, options.kind, embedder.chip_spec, val, p_val, {"C": c}, options.min_female_recall, mirror_margin,
                        embedder.space)


# --------------------------------------------------------------------------------------------
# CNN
# --------------------------------------------------------------------------------------------


def _augmentation(seed: int):
    import albumentations as A

    # Mild geometry (alignment is already done) and photometric changes like those between
    # cameras; grayscale so colour casts are not a gender cue.
    return A.Compose(
        [
            A.HorizontalFlip(p=0.5),
            A.Affine(scale=(0.9, 1.1), translate_percent=(-0.05, 0.05), rotate=(-10, 10), p=0.7),
            A.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.03, p=0.7),
            A.ToGray(p=0.1),
            A.GaussianBlur(blur_limit=(3, 5), p=0.1),
        ],
        seed=seed,
    )


def _batches(split: Split, order: np.ndarray, batch_size: int, augment=None):
    """(pixels, labels, row indices) per batch of ``order``."""
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        chips = [split.chips[i] for i in index]
        if augment is not None:
            chips = [augment(image=chip)["image"] for chip in chips]
        yield chips_to_tensor(chips), torch.from_numpy(split.labels[index]), index


def _predict(network: GenderNet, split: Split, device: torch.device, batch_size: int) -> tuple[np.ndarray, float]:
    """p_female per image and the mean (unweighted) loss."""
    network.eval()
    probs, losses = [], []
    with torch.inference_mode():
        for x, y, _ in _batches(split, np.arange(len(split.labels)), batch_size):
            logits = network(x.to(device)).float()
            losses.append(F.cross_entropy(logits, y.to(device), reduction="sum").item())
            probs.append(torch.softmax(logits, dim=1)[:, 1].cpu().numpy())
    return np.concatenate(probs), sum(losses) / len(split.labels)


def _stage_of(epoch: int, head_epochs: int) -> int:
    return 1 if epoch < head_epochs else 2


def _optimizer(network: GenderNet, stage: int, options: TrainOptions, steps: int, pretrained: bool):
    for parameter in network.features.parameters():
        parameter.requires_grad = stage == 2
    params = network.head_parameters() if stage == 1 else list(network.parameters())
    # Stage 2 fine-tunes learned features at a tenth of the rate; from scratch there is
    # nothing to preserve, so the full rate is used.
    lr = options.lr if stage == 1 or not pretrained else options.lr / 10
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=options.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(steps, 1))
    return optimizer, scheduler


def _fit_cnn(train: Split, val: Split, out: Path, options: TrainOptions, soft: np.ndarray | None = None) -> dict:
    """Train GenderNet; ``soft``: the teacher's p_female per training face (distillation)."""
    device = pick_device()
    network = GenderNet()
    pretrained = options.init != "scratch"
    if options.init == "imagenet-v2":
        raise InputError("no licence-clear ImageNet weights are bundled; use --init scratch or --init PATH to a state_dict")
    if pretrained:
        left_random = network.load_init(options.init)
        tqdm.write(f"init from {options.init}: {len(left_random)} tensors left at random")
    network.to(device)
    head_epochs = options.head_epochs if options.head_epochs is not None else (1 if pretrained else 0)
    head_epochs = min(head_epochs, options.epochs)
    counts = np.bincount(train.labels, minlength=len(LABELS))
    # Inverse-frequency weights: each class contributes equally to the loss.
    class_weight = torch.tensor(len(train.labels) / (len(LABELS) * np.maximum(counts, 1)), dtype=torch.float32, device=device)
    steps_per_epoch = (len(train.labels) + options.batch_size - 1) // options.batch_size
    augment = _augmentation(options.seed)

    checkpoint_path = out / "checkpoint.pt"
    history: list[dict] = []
    best_f1, best_epoch, start_epoch = -1.0, -1, 0
    stage = _stage_of(0, head_epochs)
    optimizer, scheduler = _optimizer(network, stage, options, _stage_steps(stage, head_epochs, options.epochs, steps_per_epoch), pretrained)
    if options.resume and checkpoint_path.is_file():
        state = torch.load(checkpoint_path, map_location=device, weights_only=True)
        network.load_state_dict(state["model"])
        start_epoch, history = state["epoch"] + 1, state["history"]
        best_f1, best_epoch = state["best_f1"], state["best_epoch"]
        stage = _stage_of(state["epoch"], head_epochs)
        optimizer, scheduler = _optimizer(network, stage, options, _stage_steps(stage, head_epochs, options.epochs, steps_per_epoch), pretrained)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        tqdm.write(f"resuming after epoch {start_epoch} (best val macro-F1 {best_f1:.4f})")

    for epoch in range(start_epoch, options.epochs):
        if epoch - best_epoch > options.patience and best_epoch >= 0:
            tqdm.write(f"early stop: no val macro-F1 gain for {options.patience} epochs")
            break
        if _stage_of(epoch, head_epochs) != stage:
            stage = 2
            optimizer, scheduler = _optimizer(network, stage, options, _stage_steps(stage, head_epochs, options.epochs, steps_per_epoch), pretrained)
        # Per-epoch seeds make a resumed run see the same shuffles and augmentations.
        rng = np.random.default_rng(options.seed * 1000 + epoch)
        augment.set_random_seed(options.seed * 1000 + epoch)
        torch.manual_seed(options.seed * 1000 + epoch)
        network.train()
        if stage == 1:
            network.features.eval()  # frozen: keep its batch-norm statistics too
        total_loss = correct = seen = 0
        bar = tqdm(_batches(train, rng.permutation(len(train.labels)), options.batch_size, augment),
                   total=steps_per_epoch, desc=f"epoch {epoch + 1}/{options.epochs} (stage {stage})", unit="batch", leave=False)
        for x, y, index in bar:
            x, y = x.to(device), y.to(device)
            logits = network(x)
            if soft is None:
                loss = F.cross_entropy(logits, y, weight=class_weight)
            else:
                loss = distillation_loss(logits, y, torch.from_numpy(soft[index]).to(device), class_weight,
                                         options.distill_alpha, options.temperature)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total_loss += loss.item() * len(y)
            correct += (logits.argmax(1) == y).sum().item()
            seen += len(y)
            bar.set_postfix(loss=f"{total_loss / seen:.3f}")
        p_val, val_loss = _predict(network, val, device, options.batch_size)
        predicted = (p_val >= 0.5).astype(int)
        record = {
            "epoch": epoch + 1, "stage": stage, "train_loss": total_loss / seen, "train_accuracy": correct / seen,
            "val_loss": val_loss, "val_accuracy": float((predicted == val.labels).mean()),
            "val_macro_f1": macro_f1(val.labels, predicted), "seconds": bar.format_dict["elapsed"],
        }
        history.append(record)
        tqdm.write(f"epoch {epoch + 1}: train loss {record['train_loss']:.4f} acc {record['train_accuracy']:.4f} | "
                   f"val loss {val_loss:.4f} acc {record['val_accuracy']:.4f} macro-F1 {record['val_macro_f1']:.4f} "
                   f"| {record['seconds'] / 60:.1f} min")
        if record["val_macro_f1"] > best_f1:
            best_f1, best_epoch = record["val_macro_f1"], epoch
            torch.save(network.state_dict(), out / "weights.pt")
        torch.save({"model": network.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "epoch": epoch, "history": history, "best_f1": best_f1, "best_epoch": best_epoch}, checkpoint_path)

    network.load_state_dict(torch.load(out / "weights.pt", map_location=device, weights_only=True))
    p_val, _ = _predict(network, val, device, options.batch_size)
    (out / "history.json").write_text(json.dumps({"options": asdict(options), "epochs": history, "best_epoch": best_epoch + 1}, indent=2) + "\n")
    plot_curves(history, out / "curves.png")
    minutes = [r["seconds"] / 60 for r in history]
    extra = {"best_epoch": best_epoch + 1, "minutes_per_epoch": round(float(np.mean(minutes)), 2) if minutes else None}
    if soft is not None:
        extra.update(teacher=str(options.teacher), distill_alpha=options.distill_alpha, temperature=options.temperature)
    return _save_config(out, "cnn", ChipSpec(options.chip_size, options.chip_padding), val, p_val, extra, options.min_female_recall)


def _stage_steps(stage: int, head_epochs: int, epochs: int, steps_per_epoch: int) -> int:
    return steps_per_epoch * (head_epochs if stage == 1 else epochs - head_epochs)
