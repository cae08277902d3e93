"""`facesuite eval gender`: predictions.csv, the classification report kit and Grad-CAM figures."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facesuite.classify.gender import LABELS, GenderModel
from facesuite.classify.presence import NO_FACE
from facesuite.data import GenderData, read_gender_data
from facesuite.errors import InputError, Skipped
from facesuite.text import open_csv

ERROR_GRID = 12  # wrong predictions shown with their Grad-CAM in the report (each Grad-CAM costs a backward pass)


@dataclass
class GenderPrediction:
    """A face's gender decision, and its chip cut the way the gender model sees faces."""

    face: object  # facesuite.analysis.Face
    model: GenderModel

    @property
    def path(self) -> str:
        return self.face.source

    @property
    def label(self) -> str:
        """The gender, or ``no face`` where the image holds none (nothing decided)."""
        return NO_FACE if self.face.no_face else self.face.gender

    @property
    def p_female(self) -> float | None:
        return self.face.p_female

    @property
    def fallback(self) -> bool:
        return self.face.fallback

    @property
    def chip(self) -> np.ndarray:
        spec = self.model.chip_spec
        return self.face.chip(spec.size, spec.padding)


def predict_gender(analysis, images: Sequence, progress: str | None = None) -> tuple[list[GenderPrediction], list[Skipped]]:
    """The gender of the main face of each image, from a :class:`~facesuite.analysis.FaceAnalysis`
    holding a gender model; ``(predictions, skipped)``."""
    if analysis.gender is None:
        raise ValueError("this FaceAnalysis has no gender model")
    faces, skipped = analysis.faces(images, progress=progress)
    return [GenderPrediction(face, analysis.gender) for face in faces], skipped


def evaluate_gender(data: GenderData | str | Path, analysis, out: str | Path, gradcam_samples: int = 8) -> tuple[dict, list]:
    """Evaluate the gender model of ``analysis`` on a gender data set, read or where to read it
    (:func:`~facesuite.data.read_gender_data`: ``male/`` and ``female/`` folders, UTKFace files
    or a label CSV); returns ``(metrics, skipped)``."""
    from facesuite.evaluate.classification import group_accuracy, plot_group_accuracy, write_classification_report

    out = Path(out)
    model = analysis.gender
    if not isinstance(data, GenderData):
        data = read_gender_data(data)
    samples = data.samples
    truth = {str(path): label for path, label in samples}
    predictions, skipped = predict_gender(analysis, [p for p, _ in samples], progress="gender")
    if not predictions:
        raise InputError("no readable images to evaluate", data.source)
    out.mkdir(parents=True, exist_ok=True)
    with open_csv(out / "predictions.csv") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "true", "predicted", "p_female"])
        for p in predictions:
            # Full precision: the label is p_female >= threshold, and a rounded value can sit on the
            # threshold's other side from the one it was decided on.
            writer.writerow([str(p.path), truth[p.path], p.label, "" if p.p_female is None else repr(float(p.p_female))])
    y_true = [truth[p.path] for p in predictions]
    y_pred = [p.label for p in predictions]
    extra = {
        "model_kind": model.config.kind, "threshold": model.threshold, "skipped": len(skipped),
        "fallback_faces": int(sum(p.fallback for p in predictions)),
    }
    groups = group_accuracy(_groups(predictions, truth, {str(path): tags for path, tags in data.groups.items()}))
    extra["groups"] = groups
    images = [("Accuracy per group", plot_group_accuracy(groups, out / "groups.png"))]
    cams = GradcamCache(model)  # the error grid and the figure share their faces' Grad-CAMs
    # A face not judged a face counts as wrong above; it has no gender to explain.
    decided = [p for p in predictions if p.label != NO_FACE]
    extra["no_face"] = len(predictions) - len(decided)
    pictures = [("Errors: the face, its Grad-CAM and p(female), most confident first", _error_grid(cams, decided, truth))]
    if gradcam_samples > 0:
        figure = _gradcam_figure(cams, decided, truth, gradcam_samples, out / "gradcam.png")
        images.append(("Grad-CAM for the predicted class: top row right, bottom row wrong predictions", figure))
    metrics = write_classification_report(out, y_true, y_pred, LABELS, f"Gender: {model.config.kind} model", extra, images, pictures)
    return metrics, skipped


def _groups(predictions: list[GenderPrediction], truth: dict, tags: dict[str, tuple[str, ...]]) -> dict[str, tuple[int, int]]:
    """(right, total) per true class, for faces found vs. analysed in the centre box, and per
    group the data set names (race, age: from UTKFace names or a label list's columns)."""
    groups: dict[str, tuple[int, int]] = {}
    for p in predictions:
        for group in (f"true {truth[p.path]}", "no face (centre box)" if p.fallback else "face found", *tags.get(p.path, ())):
            right, total = groups.get(group, (0, 0))
            groups[group] = (right + (p.label == truth[p.path]), total + 1)
    first = [f"true {label}" for label in LABELS] + ["face found", "no face (centre box)"]
    return {name: groups[name] for name in first + sorted(set(groups) - set(first)) if name in groups}


class GradcamCache:
    """Each face's chip and Grad-CAM overlay of its predicted class, computed once."""

    def __init__(self, model: GenderModel) -> None:
        self.model = model
        self._done: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def __call__(self, prediction: GenderPrediction) -> tuple[np.ndarray, np.ndarray]:
        from facesuite.explain import gradcam, overlay

        if prediction.path not in self._done:
            chip = prediction.chip
            heat, _ = gradcam(self.model.network, self.model.network.cam_layer(), chip, LABELS.index(prediction.label))
            self._done[prediction.path] = chip, overlay(chip, heat)
        return self._done[prediction.path]


def _error_grid(cams: GradcamCache, predictions: list[GenderPrediction], truth: dict, count: int = ERROR_GRID) -> str:
    """The ``count`` most confident wrong predictions as face cards: chip, Grad-CAM of the
    predicted class, p(female)."""
    from facesuite.report.faces import Card, cards_html

    wrong = sorted((p for p in predictions if p.label != truth[p.path]), key=lambda p: -abs(p.p_female - 0.5))[:count]
    if not wrong:
        return '<p class="muted">no errors</p>'
    chips, overlays, cards = {}, {}, []
    for p in wrong:
        chips[p.path], overlays[f"cam:{p.path}"] = cams(p)
        cards.append(Card([("probe", p.path), ("cam", p.path)],
                          [f"true {truth[p.path]}, said {p.label}", f"p(female) {p.p_female:.2f}", Path(p.path).name[:28]], "wrong"))
    return cards_html(cards, chips, overlays)


def _gradcam_figure(cams: GradcamCache, predictions: list[GenderPrediction], truth: dict, count: int, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    per_row = max(count // 2, 1)
    # Evenly spaced picks, so the sample is fixed for a given data set (no randomness).
    right = [p for p in predictions if p.label == truth[p.path]]
    wrong = [p for p in predictions if p.label != truth[p.path]]
    rows = [[group[int(i)] for i in np.linspace(0, len(group) - 1, min(per_row, len(group)))] if group else [] for group in (right, wrong)]
    fig, axes = plt.subplots(2, per_row, figsize=(2.2 * per_row, 5), squeeze=False)
    for r, row in enumerate(rows):
        for c in range(per_row):
            ax = axes[r][c]
            ax.axis("off")
            if c >= len(row):
                continue
            p = row[c]
            ax.imshow(cams(p)[1])
            ax.set_title(f"{truth[p.path]}→{p.label}\np_f={p.p_female:.2f}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=60)  # small: the report embeds it
    plt.close(fig)
    return path
