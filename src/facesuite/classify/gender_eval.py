"""`facesuite eval gender`: predictions.csv, the classification report kit and Grad-CAM figures."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facesuite.classify.gender import LABELS, GenderModel
from facesuite.classify.presence import NO_FACE
from facesuite.classify.gender_head import UNCERTAIN
from facesuite.data import GenderData, read_gender_data
from facesuite.errors import InputError, Skipped
from facesuite.text import csv_writer, open_csv

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
    def forced(self) -> str:
        """The answer with no abstention: male or female (``no face`` where there is none)."""
        if self.face.no_face:
            return NO_FACE
        return LABELS[1] if self.p_female >= self.model.threshold else LABELS[0]

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


def explain_gender(image, analysis) -> tuple[np.ndarray, dict]:
    """Grad-CAM overlay on the aligned face of ``image`` for the gender decision of ``analysis``
    (a :class:`~facesuite.analysis.FaceAnalysis` holding a gender model)."""
    from facesuite.explain import gradcam, overlay

    model = analysis.gender
    predictions, skipped = predict_gender(analysis, [image])
    if skipped:
        raise skipped[0].error
    prediction = predictions[0]
    if prediction.face.no_face:
        raise InputError("no face found: there is no gender decision to explain", prediction.path)
    heat, target = gradcam(model.network, model.network.cam_layer(), prediction.chip, LABELS.index(prediction.forced))
    info = {"path": prediction.path, "gender": prediction.label, "p_female": round(prediction.p_female, 4),
            "fallback": prediction.fallback, "explained_class": LABELS[target]}
    return overlay(prediction.chip, heat), info


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
        writer = csv_writer(handle)
        writer.writerow(["path", "true", "predicted", "p_female", "answer"])
        for p in predictions:
            # Full precision: the label is p_female >= threshold, and a rounded value can sit on the
            # threshold's other side from the one it was decided on.
            writer.writerow([str(p.path), truth[p.path], p.forced, "" if p.p_female is None else repr(float(p.p_female)), p.label])
    # The classification figures are the answer-everything ones (every face male or female), the
    # figures earlier models are compared by; the abstention's are beside them.
    y_true = [truth[p.path] for p in predictions]
    y_pred = [p.forced for p in predictions]
    extra = {
        "model_kind": model.config.kind, "threshold": model.threshold, "skipped": len(skipped),
        "fallback_faces": int(sum(p.fallback for p in predictions)),
    }
    tags = {str(path): tags for path, tags in data.groups.items()}
    groups = group_accuracy(_groups(predictions, truth, tags))
    extra["groups"] = groups
    images = [("Accuracy per group, every face answered", plot_group_accuracy(groups, out / "groups.png"))]
    abstaining = any(p.label == UNCERTAIN for p in predictions) or (analysis.abstain and model.config.abstention)
    if abstaining:
        extra["abstention"] = abstention_figures(predictions, truth, tags)
        answered = {name: g["answered"] for name, g in extra["abstention"].items() if g["answered"]}
        images.append(("Accuracy on answered faces per group (coverage in the table)",
                       plot_group_accuracy(answered, out / "answered.png")))
    # A face not judged a face counts as wrong above; it has no gender to explain.
    decided = [p for p in predictions if p.label != NO_FACE]
    extra["no_face"] = len(predictions) - len(decided)
    errors = _most_confident_errors(decided, truth)
    rows = _figure_rows(decided, truth, gradcam_samples) if gradcam_samples > 0 else []
    # The error grid and the figure share their faces' Grad-CAMs, computed once under one bar.
    cams = GradcamCache(model, [*errors, *(p for row in rows for p in row)])
    pictures = [("Errors: the face, its Grad-CAM and p(female), most confident first", _error_grid(cams, errors, truth))]
    if rows:
        figure = _gradcam_figure(cams, rows, truth, out / "gradcam.png")
        images.append(("Grad-CAM of the answer every face gets without abstention: top row right, bottom row wrong "
                       "(\"uncertain\": below the confidence floor)", figure))
    if abstaining:
        from facesuite.report.html import table_html

        rows = [[name, g["faces"], f"{g['coverage']:.3f}", "-" if not g["answered"] else
                 f"{g['answered']['accuracy']:.3f} ({g['answered']['ci95'][0]:.3f}-{g['answered']['ci95'][1]:.3f})",
                 f"{g['all_accuracy']:.3f}"] for name, g in extra["abstention"].items()]
        pictures.append(("Abstention: coverage and accuracy on answered faces (uncertain faces left out)",
                         table_html(["group", "faces", "coverage", "accuracy answered (95%)", "accuracy, every face answered"], rows)))
    metrics = write_classification_report(out, y_true, y_pred, LABELS, f"Gender: {model.config.kind} model", extra, images, pictures)
    return metrics, skipped


def abstention_figures(predictions: list[GenderPrediction], truth: dict, tags: dict[str, tuple[str, ...]]) -> dict[str, dict]:
    """Per group (all faces, the data set's groups, and the age bands of UTKFace names): faces,
    coverage (the share answered male or female), accuracy on the answered faces with its 95%
    Wilson interval, and the answer-everything accuracy."""
    from facesuite.classify.age import age_band
    from facesuite.data import utkface_attributes
    from facesuite.evaluate.classification import group_accuracy

    counts: dict[str, list[int]] = {}
    for p in predictions:
        parsed = utkface_attributes(Path(p.path).name)
        bands = (f"age {age_band(parsed[0])}", *(("age 13+",) if parsed[0] >= 13 else ())) if parsed else ()
        for group in ("all", f"true {truth[p.path]}", *tags.get(p.path, ()), *bands):
            c = counts.setdefault(group, [0, 0, 0, 0])  # faces, answered, right answered, right forced
            c[0] += 1
            c[1] += p.label in LABELS
            c[2] += p.label == truth[p.path]
            c[3] += p.forced == truth[p.path]
    answered = group_accuracy({name: (c[2], c[1]) for name, c in counts.items()})
    return {name: {"faces": c[0], "coverage": c[1] / c[0], "answered": answered.get(name), "all_accuracy": c[3] / c[0]}
            for name, c in sorted(counts.items(), key=lambda item: (item[0] != "all", item[0]))}


def _groups(predictions: list[GenderPrediction], truth: dict, tags: dict[str, tuple[str, ...]]) -> dict[str, tuple[int, int]]:
    """(right, total) per true class, for faces found vs. analysed in the centre box, and per
    group the data set names (race, age: from UTKFace names or a label list's columns)."""
    groups: dict[str, tuple[int, int]] = {}
    for p in predictions:
        for group in (f"true {truth[p.path]}", "no face (centre box)" if p.fallback else "face found", *tags.get(p.path, ())):
            right, total = groups.get(group, (0, 0))
            groups[group] = (right + (p.forced == truth[p.path]), total + 1)
    first = [f"true {label}" for label in LABELS] + ["face found", "no face (centre box)"]
    return {name: groups[name] for name in first + sorted(set(groups) - set(first)) if name in groups}


class GradcamCache:
    """Each face's chip and Grad-CAM overlay of its predicted class, computed once, all of them
    up front with a progress bar (each is a backward pass of the network)."""

    def __init__(self, model: GenderModel, predictions: Sequence[GenderPrediction]) -> None:
        from tqdm import tqdm

        from facesuite.explain import gradcam, overlay

        self._done: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        unique = list({p.path: p for p in predictions}.values())
        for prediction in tqdm(unique, desc="Grad-CAM for the report", unit="face", leave=False, disable=not unique):
            chip = prediction.chip
            heat, _ = gradcam(model.network, model.network.cam_layer(), chip, LABELS.index(prediction.forced))
            self._done[prediction.path] = chip, overlay(chip, heat)

    def __call__(self, prediction: GenderPrediction) -> tuple[np.ndarray, np.ndarray]:
        return self._done[prediction.path]


def _most_confident_errors(predictions: list[GenderPrediction], truth: dict, count: int = ERROR_GRID) -> list[GenderPrediction]:
    """The ``count`` wrong answers (every face answered) farthest from p(female) 0.5."""
    return sorted((p for p in predictions if p.forced != truth[p.path]), key=lambda p: -abs(p.p_female - 0.5))[:count]


def _error_grid(cams: GradcamCache, wrong: list[GenderPrediction], truth: dict) -> str:
    """The wrong predictions as face cards: chip, Grad-CAM of the predicted class, p(female)."""
    from facesuite.report.faces import Card, cards_html

    if not wrong:
        return '<p class="muted">no errors</p>'
    chips, overlays, cards = {}, {}, []
    for p in wrong:
        chips[p.path], overlays[f"cam:{p.path}"] = cams(p)
        cards.append(Card([("probe", p.path), ("cam", p.path)],
                          [f"true {truth[p.path]}, said {p.label}", f"p(female) {p.p_female:.2f}", Path(p.path).name[:28]], "wrong"))
    return cards_html(cards, chips, overlays)


def _figure_rows(predictions: list[GenderPrediction], truth: dict, count: int) -> list[list[GenderPrediction]]:
    """``count // 2`` right and as many wrong answers (every face answered), evenly spaced, so the
    sample is fixed for a given data set (no randomness)."""
    per_row = max(count // 2, 1)
    right = [p for p in predictions if p.forced == truth[p.path]]
    wrong = [p for p in predictions if p.forced != truth[p.path]]
    return [[group[int(i)] for i in np.linspace(0, len(group) - 1, min(per_row, len(group)))] if group else [] for group in (right, wrong)]


def _gradcam_figure(cams: GradcamCache, rows: list[list[GenderPrediction]], truth: dict, path: Path) -> Path:
    from facesuite.evaluate.plots import plt, save_figure

    per_row = max(max(len(row) for row in rows), 1)
    fig, axes = plt.subplots(2, per_row, figsize=(2.2 * per_row, 5), squeeze=False)
    for r, row in enumerate(rows):
        for c in range(per_row):
            ax = axes[r][c]
            ax.axis("off")
            if c >= len(row):
                continue
            p = row[c]
            ax.imshow(cams(p)[1])
            said = p.forced + (" (uncertain)" if p.label == UNCERTAIN else "")
            ax.set_title(f"{truth[p.path]}→{said}\np_f={p.p_female:.2f}", fontsize=8)
    return save_figure(fig, path, dpi=60)  # small: the report embeds it
