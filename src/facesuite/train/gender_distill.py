"""Distillation of a trained gender model (the teacher) into the small ``cnn`` kind (the student).

The teacher is any gender model folder (``GenderModel.load``): typically the fine-tuned branch
(kind ``finetune``), which reads 150 px chips through dlib's ResNet. Its ``p_female`` for every
training face is computed once, on chips cut with the teacher's own geometry, and cached in
``OUT/teacher.npz`` (keyed by the teacher's files, so a changed teacher is recomputed and a
resumed run reuses the pass).

The student then learns from both labels (Hinton et al.'s recipe)::

    loss = alpha * CE(hard label) + (1 - alpha) * T^2 * KL(teacher_T || student_T)

where ``teacher_T`` is the teacher's two-class distribution softened by temperature ``T``
(its logit ``log(p / (1 - p))`` divided by ``T``) and ``T^2`` keeps the soft term's gradients on
the hard term's scale. Both terms weigh each face by its class weight, like the plain trainer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from facesuite.classify.gender import GenderModel
from facesuite.detect.extract import FaceExtractor
from facesuite.errors import InputError

# Teacher probabilities are clipped away from 0 and 1 before taking their logit.
_EPS = 1e-6
_WEIGHT_FILES = ("model.json", "weights.pt", "weights.npz")


def load_teacher(folder: str | Path) -> GenderModel:
    """The teacher model; a missing folder or one that is not a gender model is bad input."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("no such teacher folder (--teacher)", folder)
    if not (folder / "model.json").is_file():
        raise InputError("--teacher is not a gender model folder (no model.json)", folder)
    return GenderModel.load(folder)


def teacher_key(folder: str | Path) -> str:
    """Digest of the teacher's model files: the cache is valid only for the same teacher."""
    digest = hashlib.sha1()
    for name in _WEIGHT_FILES:
        path = Path(folder) / name
        if path.is_file():
            digest.update(name.encode() + path.read_bytes())
    return digest.hexdigest()


def teacher_p_female(teacher: GenderModel, teacher_dir: str | Path, paths: Sequence[Path], extractor: FaceExtractor,
                     cache: Path, chunk: int = 512) -> np.ndarray:
    """The teacher's ``p_female`` for each image in ``paths`` (same order), computed once per image
    and teacher and cached in ``cache`` after every chunk, so an interrupted pass resumes."""
    key = teacher_key(teacher_dir)
    known: dict[str, float] = {}
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as stored:
            if str(stored["teacher"]) == key:
                known = dict(zip(stored["paths"].tolist(), stored["p_female"].tolist()))
    todo = [p for p in paths if str(p) not in known]
    bar = tqdm(total=len(paths), initial=len(paths) - len(todo), desc="teacher p(female)", unit="face")
    for start in range(0, len(todo), chunk):
        crops, _ = extractor.crops(todo[start : start + chunk], teacher.chip_spec)
        p = teacher.p_female([c.chip for c in crops])
        known.update({str(c.path): float(v) for c, v in zip(crops, p)})
        np.savez(cache, teacher=np.array(key), paths=np.array(list(known)), p_female=np.array(list(known.values()), dtype=np.float32))
        bar.update(len(todo[start : start + chunk]))
    bar.close()
    missing = [p for p in paths if str(p) not in known]
    if missing:
        raise InputError("the teacher could not read this training image", missing[0])
    return np.array([known[str(p)] for p in paths], dtype=np.float32)


def distillation_loss(logits: torch.Tensor, labels: torch.Tensor, teacher_p: torch.Tensor, class_weight: torch.Tensor,
                      alpha: float, temperature: float) -> torch.Tensor:
    """``alpha`` x class-weighted CE on the hard labels + ``(1 - alpha)`` x ``T^2`` x class-weighted
    KL(teacher || student), both distributions softened by ``T``."""
    weight = class_weight[labels]
    hard = F.cross_entropy(logits, labels, reduction="none")
    p = teacher_p.clamp(_EPS, 1 - _EPS)
    teacher_logit = torch.log(p) - torch.log1p(-p)
    soft_teacher = torch.sigmoid(teacher_logit / temperature)
    target = torch.stack([1 - soft_teacher, soft_teacher], dim=1)
    log_student = F.log_softmax(logits / temperature, dim=1)
    kl = (target * (torch.log(target.clamp_min(_EPS)) - log_student)).sum(dim=1)
    per_face = alpha * hard + (1 - alpha) * temperature**2 * kl
    return (weight * per_face).sum() / weight.sum()
