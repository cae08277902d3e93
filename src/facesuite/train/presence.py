"""Training of the face-presence head (:mod:`facesuite.classify.presence`).

Faces: the training identities' FACECOM photos of every distortion type (sunny ones, where MTCNN
mostly finds nothing, are the centre-box faces the head must keep), grayscale copies and tight
crops of them, and UTKFace training crops, both as detected and as given crops. Non-faces: images
made here (flat colours, noise, gradients, shapes, text, patterns, each also grayscale, blurred
or noised) and the background corners of FACECOM frames (those where MTCNN finds a bystander's
face left out). Every image goes through the pipeline a
user's image goes through (:meth:`FaceAnalysis.route_crops`, hidden features on), so the head
reads what it will read at run time.

The regularisation and both thresholds are chosen out of fold on these training images only
(five folds): a guessed box is a face from the probability at which at most
:data:`NON_FACE_RATE` of the non-faces pass; a detected face is vetoed below the probability
that at most :data:`VETO_RATE` of the detected real faces fall under.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from facesuite.data import DISTORTIONS, read_identity_folders, read_split
from facesuite.detect import DetectorSettings
from facesuite.embed.dlib.reader import POOLED_WIDTH
from facesuite.errors import InputError
from facesuite.io import load_image

NON_FACE_RATE = 0.002
VETO_RATE = 0.001
C_GRID = (0.01, 0.1, 1.0)
NON_FACE_KINDS = ("flat", "noise", "smooth noise", "gradient", "radial", "shapes", "text", "checker", "lines", "stripes")


def non_face_images(seed: int, count: int) -> list[np.ndarray]:
    """``count`` RGB images with no face, of :data:`NON_FACE_KINDS` in turn, 64-400 px a side;
    a third of them grayscale, blurred or noised afterwards."""
    rng = np.random.default_rng(seed)
    images = []
    for index in range(count):
        height, width = (int(v) for v in rng.integers(64, 401, 2))
        image = _non_face(NON_FACE_KINDS[index % len(NON_FACE_KINDS)], height, width, rng)
        after = rng.integers(0, 6)
        if after == 0:
            image = np.repeat(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
        elif after == 1:
            image = cv2.GaussianBlur(image, (0, 0), float(rng.uniform(1, 4)))
        elif after == 2:
            image = np.clip(image + rng.normal(0, 20, image.shape), 0, 255).astype(np.uint8)
        images.append(np.ascontiguousarray(image))
    return images


def _non_face(kind: str, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    def colour() -> tuple[int, int, int]:
        return tuple(int(v) for v in rng.integers(0, 256, 3))  # type: ignore[return-value]

    canvas = np.full((height, width, 3), colour(), np.uint8)
    rows, cols = np.mgrid[:height, :width]
    if kind == "noise":
        return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    if kind == "smooth noise":
        noise = cv2.GaussianBlur(rng.random((height, width, 3)).astype(np.float32), (0, 0), float(rng.uniform(2, 15)))
        return cv2.normalize(noise, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    if kind in ("gradient", "radial"):
        if kind == "gradient":
            t = (cols / width) if rng.random() < 0.5 else (rows / height)
        else:
            t = np.clip(np.hypot(cols - rng.uniform(0, width), rows - rng.uniform(0, height)) / max(height, width), 0, 1)
        start, end = np.array(colour(), np.float32), np.array(colour(), np.float32)
        return (start + (end - start) * t[..., None]).astype(np.uint8)
    if kind == "shapes":
        for _ in range(int(rng.integers(1, 7))):
            x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
            fill = -1 if rng.random() < 0.7 else int(rng.integers(1, 6))
            if rng.random() < 0.5:
                cv2.rectangle(canvas, (x, y), (int(rng.integers(0, width)), int(rng.integers(0, height))), colour(), fill)
            else:
                cv2.circle(canvas, (x, y), int(rng.integers(5, max(6, min(height, width) // 2))), colour(), fill)
    elif kind == "text":
        for line in range(int(rng.integers(1, 8))):
            text = "".join(chr(int(c)) for c in rng.integers(48, 123, int(rng.integers(3, 12))))
            cv2.putText(canvas, text, (int(rng.integers(0, width // 3)), 20 + line * int(rng.integers(18, 40))),
                        cv2.FONT_HERSHEY_SIMPLEX, float(rng.uniform(0.4, 1.5)), colour(), int(rng.integers(1, 4)))
    elif kind == "checker":
        side = int(rng.integers(4, 60))
        canvas[((rows // side + cols // side) % 2).astype(bool)] = colour()
    elif kind == "lines":
        for _ in range(int(rng.integers(3, 25))):
            ends = [int(v) for v in (rng.integers(0, width), rng.integers(0, height), rng.integers(0, width), rng.integers(0, height))]
            cv2.line(canvas, tuple(ends[:2]), tuple(ends[2:]), colour(), int(rng.integers(1, 6)))
    elif kind == "stripes":
        side = int(rng.integers(3, 40))
        canvas[((cols // side) % 2).astype(bool)] = colour()
    return canvas


def tight_crop(image: np.ndarray, box: Sequence[float], margin: float) -> np.ndarray:
    """The part of ``image`` inside ``box`` grown by ``margin`` of its size on each side."""
    x1, y1, x2, y2 = box
    grow_x, grow_y = margin * (x2 - x1), margin * (y2 - y1)
    left, top = int(max(0, x1 - grow_x)), int(max(0, y1 - grow_y))
    right, bottom = int(min(image.shape[1], x2 + grow_x)), int(min(image.shape[0], y2 + grow_y))
    return np.ascontiguousarray(image[top:bottom, left:right])


def _features(analysis, images: list, progress: str) -> tuple[np.ndarray, np.ndarray]:
    """(pooled hidden features, detected flags) of each image's main face, as analysed."""
    pooled, detected = [], []
    for start in tqdm(range(0, len(images), 64), desc=progress, unit="batch"):
        crops, skipped = analysis.crops(images[start : start + 64])
        if skipped:
            raise InputError(f"{len(skipped)} training images could not be read", str(skipped[0].path))
        _, _, _, hidden = analysis.route_crops(crops, [crop.pixels() for crop in crops], hidden=True)
        pooled.append(hidden[:, :POOLED_WIDTH])
        detected += [crop.face.detected for crop in crops]
    return np.concatenate(pooled), np.asarray(detected)


def build_training_set(facecom: Path, utkface: Path | None, exclude: Path | None, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per group of images, (pooled features, detected flags); faces in groups ``face:*``,
    non-faces in ``non-face:*``. ``exclude``: a list of identities (the dev split) left out."""
    from facesuite import FaceAnalysis

    rng = random.Random(seed)
    dataset = read_identity_folders(facecom)
    if exclude is not None:
        dataset = dataset.subset(set(dataset.identities) - read_split(exclude))
    clean = [path for path, _ in dataset.clean]
    rng.shuffle(clean)
    by_type = {kind: [d.path for d in dataset.distorted if d.distortion == kind] for kind in DISTORTIONS}
    analysis = FaceAnalysis(gender=None)
    cropped = FaceAnalysis(detector=DetectorSettings(assume_cropped=True), gender=None)
    groups: dict[str, tuple[list, object]] = {
        "face:facecom clean": (clean[:400], analysis),
        **{f"face:facecom {kind}": (rng.sample(paths, min(400 if kind == "sunny" else 120, len(paths))), analysis)
           for kind, paths in by_type.items()},
    }
    faces = analysis.faces(clean[400:600])[0]
    groups["face:grayscale"] = ([np.repeat(cv2.cvtColor(load_image(p), cv2.COLOR_RGB2GRAY)[..., None], 3, 2) for p in clean[600:800]], analysis)
    groups["face:tight crop"] = ([tight_crop(load_image(face.source), face.box, rng.uniform(0, 0.1)) for face in faces], analysis)
    if utkface is not None:
        from facesuite.data import utkface_attributes

        held_out = read_split(exclude.parent / "utkface_dev.txt") if exclude is not None and (exclude.parent / "utkface_dev.txt").is_file() else set()
        chips = sorted(p for p in utkface.iterdir() if utkface_attributes(p.name) and p.name not in held_out)
        rng.shuffle(chips)
        groups["face:utkface"] = (chips[:600], analysis)
        groups["face:utkface as crop"] = (chips[600:900], cropped)
    corners = []
    for path in clean[800:1100]:
        image = load_image(path)
        side = min(image.shape[:2]) // 3
        top, left = rng.choice([(0, 0), (0, image.shape[1] - side)])
        corners.append(cv2.resize(np.ascontiguousarray(image[top : top + side, left : left + side]), (224, 224)))
    groups["non-face:made"] = (non_face_images(seed, 1500), analysis)
    groups["non-face:made as crop"] = (non_face_images(seed + 1, 300), cropped)
    groups["non-face:frame corners"] = (corners, analysis)
    features = {name: _features(model, images, name) for name, (images, model) in groups.items()}
    # A frame's corner now and then holds a bystander's face: those MTCNN finds are no non-faces.
    pooled, detected = features["non-face:frame corners"]
    features["non-face:frame corners"] = (pooled[~detected], detected[~detected])
    return features


def fit_presence(groups: dict[str, tuple[np.ndarray, np.ndarray]], seed: int = 0) -> tuple[dict, dict]:
    """(arrays for ``weights.npz``, the ``model.json`` record with out-of-fold figures)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    names = list(groups)
    x = np.concatenate([groups[n][0] for n in names]).astype(np.float64)
    detected = np.concatenate([groups[n][1] for n in names])
    is_face = np.concatenate([np.full(len(groups[n][0]), n.startswith("face:")) for n in names])
    group = np.concatenate([np.full(len(groups[n][0]), i) for i, n in enumerate(names)])
    mean, scale = x.mean(0), x.std(0) + 1e-6
    z = (x - mean) / scale

    def model(c: float) -> LogisticRegression:
        return LogisticRegression(C=c, max_iter=5000, class_weight="balanced")

    folds = list(StratifiedKFold(5, shuffle=True, random_state=seed).split(z, group))
    out_of_fold = {}
    for c in C_GRID:
        p = np.zeros(len(z))
        for train, test in folds:
            p[test] = model(c).fit(z[train], is_face[train]).predict_proba(z[test])[:, 1]
        out_of_fold[c] = p
    loss = {c: -np.mean(np.where(is_face, np.log(p + 1e-9), np.log(1 - p + 1e-9))) for c, p in out_of_fold.items()}
    best = min(loss, key=loss.get)
    p = out_of_fold[best]
    threshold = max(0.5, float(np.quantile(p[~is_face], 1 - NON_FACE_RATE)))
    veto = min(0.5, float(np.quantile(p[is_face & detected], VETO_RATE)))
    fitted = model(best).fit(z, is_face)
    guessed = np.where(detected, p >= veto, p >= threshold)
    per_group = {n: {"images": int((group == i).sum()), "detected": int(detected[group == i].sum()),
                     "judged_face": round(float(guessed[group == i].mean()), 4)} for i, n in enumerate(names)}
    record = {"kind": "presence", "features": f"pooled hidden stages ({POOLED_WIDTH})", "C": best,
              "threshold": round(threshold, 6), "veto": round(veto, 6), "out_of_fold": per_group}
    arrays = {"mean": mean, "scale": scale, "coef": fitted.coef_[0], "intercept": np.asarray(fitted.intercept_[0])}
    return arrays, record


def train_presence(facecom: Path, utkface: Path | None, exclude: Path | None, out: Path, seed: int = 0) -> dict:
    """Build the training set, fit, and write ``weights.npz`` and ``model.json`` to ``out``."""
    from facesuite.embed import get_embedder

    groups = build_training_set(facecom, utkface, exclude, seed)
    arrays, record = fit_presence(groups, seed)
    record["embedder"] = get_embedder("default").space
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "weights.npz", **arrays)
    (out / "model.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record
