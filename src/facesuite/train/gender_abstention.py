"""`facesuite train gender-abstention`: when the gender head says ``uncertain``, chosen on training folds.

The faces are a gender training folder (``DIR/{male,female}``, as ``facesuite train gender``
reads it: FACECOM training identities and UTKFace training files). On k folds that keep an
identity (FACECOM) or a photo (UTKFace, by content) whole, the gender model's own recipe
(standardised logistic regression with its C on the plain, mirrored and distorted passes, then
its mirror rule) and the age model's recipe are refitted on k-1 folds and scored on the last: an
out-of-fold ``p_female`` and predicted age for every face, as the shipped models would give on
faces they never saw.

Two rules turn them into a confidence (:class:`~facesuite.classify.gender_head.Abstention`):
``age-blind`` (one logistic calibration of the margin) and ``by-age`` (one per predicted age
band, each band with its own floor). The age-blind floor is the lowest confidence at which the
answered faces of every group (race, true age band) are right at least a target share of the time
(one of :data:`TARGETS`); the by-age floors are those answering the most faces aged 13 and over
with every group still at the target (:func:`band_floors`). Each rule and target is judged
nested: its calibration and floors fitted on the other folds' faces and applied to the held-out
fold. The pair with the highest nested coverage of faces aged 13 and over, among those whose every
group with at least ``MIN_GROUP`` answered faces is right at least 0.95 of the time nested, is
written into the gender model's ``model.json``; the age-blind rule is kept beside it.
"""

from __future__ import annotations

import hashlib
import json
from itertools import combinations
from pathlib import Path

import numpy as np
from tqdm import tqdm

from facesuite.classify.age import AGE_BANDS, age_band
from facesuite.classify.gender_head import logit, mirror_when_unsure
from facesuite.data import facecom_identity, find_subfolder, read_gender_folders, utkface_attributes
from facesuite.errors import InputError
from facesuite.train.age import Candidate, companion_of, fit_head, folds_of, head_of_columns, training_rows
from facesuite.train.backbone_features import SCALE_FLOOR, standard_scaler

#: Accuracy on answered faces each group must reach on the calibration faces, tried in turn: at
#: or above the 0.95 asked, since a floor fitted on two folds must still hold on a third.
TARGETS = (0.95, 0.955, 0.96, 0.965)
TARGET = TARGETS[-1]
#: Groups smaller than this do not constrain the floor (their accuracy is mostly noise).
MIN_GROUP = 30
#: Predicted-age bands of the by-age rule (upper edges, years). 20-39 and 40-59 are apart: the
#: faces over 60 the age head calls younger mostly fall in the second, which can then answer less.
BAND_EDGES = (3.0, 13.0, 20.0, 40.0, 60.0)
#: The lowest floor: a face is answered only where its answer is at least this likely to be right
#: (calibrated), whatever its group's accuracy allows. A coin flip said as an answer (an adult at
#: p_female 0.53) is what abstention is for; out of fold it costs 13+ coverage 0.989 -> 0.970 and
#: removes a quarter of the wrong answers to faces aged 13+.
MIN_CONFIDENCE = 0.80
#: Floors tried; 1.0 never answers (a band where no floor can be shown to meet the target).
FLOORS = np.append(np.round(np.arange(MIN_CONFIDENCE, 0.9976, 0.0025), 4), 1.0)


def _margin(p_female: np.ndarray, threshold: float) -> np.ndarray:
    return np.abs(logit(p_female) - logit(np.full(1, threshold)))


def _platt(margin: np.ndarray, right: np.ndarray) -> tuple[float, float]:
    from sklearn.linear_model import LogisticRegression

    fit = LogisticRegression(C=1e4, max_iter=1000).fit(margin.reshape(-1, 1), right.astype(int))
    return float(fit.coef_[0, 0]), float(fit.intercept_[0])


def fit_rule(rule: str, margin: np.ndarray, right: np.ndarray, predicted_age: np.ndarray) -> dict:
    """Calibration of the margin: one pair for ``age-blind``, one per predicted band for ``by-age``."""
    slope, offset = _platt(margin, right)
    if rule == "age-blind":
        return {"slopes": [slope], "offsets": [offset], "band_edges": []}
    band = np.searchsorted(np.array(BAND_EDGES), predicted_age, side="right")
    slopes, offsets = [], []
    for row in range(len(BAND_EDGES) + 1):
        chosen = band == row
        pair = _platt(margin[chosen], right[chosen]) if chosen.sum() >= MIN_GROUP and 0 < right[chosen].mean() < 1 else (slope, offset)
        slopes.append(pair[0])
        offsets.append(pair[1])
    return {"slopes": slopes, "offsets": offsets, "band_edges": list(BAND_EDGES)}


def confidence(calibration: dict, margin: np.ndarray, predicted_age: np.ndarray) -> np.ndarray:
    row = np.minimum(np.searchsorted(np.array(calibration["band_edges"]), predicted_age, side="right"),
                     len(calibration["slopes"]) - 1)
    z = np.array(calibration["slopes"])[row] * margin + np.array(calibration["offsets"])[row]
    return 1.0 / (1.0 + np.exp(-z))


def group_masks(races: np.ndarray, true_age: np.ndarray, facecom: np.ndarray) -> dict[str, np.ndarray]:
    """The groups reported: every race and true age band (UTKFace), and FACECOM. FACECOM does not
    constrain a floor (:func:`constraints`)."""
    groups = {f"race {r}": races == r for r in sorted(set(races) - {""})}
    bands = np.array([age_band(a) if a >= 0 else "" for a in true_age])
    groups.update({f"age {name}": bands == name for name, _, _ in AGE_BANDS})
    groups["facecom"] = facecom
    return {name: mask for name, mask in groups.items() if mask.sum() >= MIN_GROUP}


def constraints(groups: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The groups a floor must serve: UTKFace's races and age bands. FACECOM's gender folders are
    wrong for about 3% of its faces (gender model card), so its answered faces cannot be held to
    the target; it is reported beside them."""
    return {name: mask for name, mask in groups.items() if name != "facecom"}


def lowest_floor(conf: np.ndarray, right: np.ndarray, groups: dict[str, np.ndarray], target: float = TARGET) -> float:
    """The lowest floor at which every group's answered faces are right ``target`` of the time
    (:func:`_failing`)."""
    for floor in FLOORS:
        if not _failing(conf >= floor, right, groups, target):
            return float(floor)
    return 1.0


def _failing(answered: np.ndarray, right: np.ndarray, groups: dict[str, np.ndarray], target: float) -> list[np.ndarray]:
    """The groups whose answered faces miss the target. A group with fewer than ``MIN_GROUP``
    answered faces does not count: the children the age head takes for adults (a few dozen of
    13,489 training faces) would otherwise hold every adult to a floor that answers half of them."""
    return [mask for mask in groups.values()
            if np.sum(answered & mask) >= MIN_GROUP and right[answered & mask].mean() < target]


def band_floors(conf: np.ndarray, right: np.ndarray, groups: dict[str, np.ndarray], band: np.ndarray, bands: int,
                adult: np.ndarray, target: float = TARGET) -> list[float]:
    """The age-conditioned rule's floor per predicted band, maximising the answered faces aged 13+
    while every group (race, true age band) meets the target over all bands.

    Each band starts at the lowest floor at which at least ``MIN_GROUP`` of its own answered faces,
    and each race's within it, meet the target; a band where no floor shows that (too few answered
    to judge, or failing at every floor: the under-3 band, whose answered babies are right 0.76-0.90
    of the time at every floor that keeps 30 of them) never answers. While a group misses the target over all bands,
    the band holding most of its wrong answers raises its floor one step (an old face the age head
    calls 45 is held to the old faces' target through the band it falls in). From there
    :func:`_ascend` searches the answering bands' floors together."""
    races = {n: m for n, m in groups.items() if n.startswith("race ")}
    never = len(FLOORS) - 1
    steps = []
    for b in range(bands):
        own = band == b
        floor = lowest_floor(conf[own], right[own], {"band": np.ones(int(own.sum()), bool),
                                                     **{n: m[own] for n, m in races.items()}}, target)
        shown = np.sum(conf[own] >= floor) >= MIN_GROUP
        steps.append(int(np.searchsorted(FLOORS, floor)) if shown else never)
    while True:
        answered = conf >= FLOORS[steps][np.minimum(band, bands - 1)]
        failing = _failing(answered, right, groups, target)
        if not failing:
            break
        wrong = answered & ~right & failing[0]
        counts = [np.sum(wrong & (band == b)) if steps[b] < never else -1 for b in range(bands)]
        worst = int(np.argmax(counts))
        if counts[worst] < 0:
            break
        steps[worst] += 1
    if not failing:
        steps = _ascend(steps, conf, right, groups, band, adult, target)
    return [float(FLOORS[i]) for i in steps]


def _ascend(steps: list[int], conf: np.ndarray, right: np.ndarray, groups: dict[str, np.ndarray], band: np.ndarray,
            adult: np.ndarray, target: float) -> list[int]:
    """Coordinate ascent over the floors of the bands that answer (a band that never answers stays
    so), two bands at a time over every pair of their floors: the pair that answers the most faces
    aged 13+ while every group still meets the target (:func:`_failing`'s rule) is taken, until no
    pair adds one. Moving two floors at once lets one band answer more where another answers less,
    which the greedy raise never undoes."""

    columns = np.column_stack([*groups.values(), adult]).astype(np.int64)
    # answered[b, i, g]: faces of group g in band b answered at FLOORS[i]; right_answered likewise.
    answered = np.zeros((len(steps), len(FLOORS), columns.shape[1]), np.int64)
    right_answered = np.zeros_like(answered)
    for b in range(len(steps)):
        own = band == b
        at = (conf[own][:, None] >= FLOORS[None, :]).astype(np.int64).T
        answered[b], right_answered[b] = at @ columns[own], at @ (columns[own] * right[own][:, None])

    def met(counted: np.ndarray, correct: np.ndarray) -> np.ndarray:
        counted, correct = counted[..., :-1], correct[..., :-1]
        return np.all((counted < MIN_GROUP) | (correct >= target * counted), axis=-1)

    steps = list(steps)
    best = sum(answered[b, steps[b], -1] for b in range(len(steps)))
    never = len(FLOORS) - 1
    free = [b for b in range(len(steps)) if steps[b] < never]
    improved = True
    while improved:
        improved = False
        for first, second in combinations(free, 2):
            rest = [b for b in range(len(steps)) if b not in (first, second)]
            counted = sum((answered[b, steps[b]] for b in rest), np.zeros(columns.shape[1], np.int64))
            correct = sum((right_answered[b, steps[b]] for b in rest), np.zeros(columns.shape[1], np.int64))
            counted = counted + answered[first][:, None] + answered[second][None, :]
            correct = correct + right_answered[first][:, None] + right_answered[second][None, :]
            adults = np.where(met(counted, correct), counted[..., -1], -1)
            i, j = np.unravel_index(int(np.argmax(adults)), adults.shape)
            if adults[i, j] > best:
                best, steps[first], steps[second], improved = adults[i, j], int(i), int(j), True
    return steps


def floors_for(rule: str, calibration: dict, margin: np.ndarray, right: np.ndarray, predicted_age: np.ndarray,
               groups: dict[str, np.ndarray], adult: np.ndarray, target: float = TARGET) -> list[float]:
    """One floor (age-blind) or one per predicted band (by-age, answering the most of the
    ``adult`` faces), fitted on these faces."""
    conf = confidence(calibration, margin, predicted_age)
    if rule == "age-blind":
        return [lowest_floor(conf, right, groups, target)]
    band = np.searchsorted(np.array(calibration["band_edges"]), predicted_age, side="right")
    return band_floors(conf, right, groups, band, len(calibration["slopes"]), adult, target)


def answers(calibration: dict, floors: list[float], margin: np.ndarray, predicted_age: np.ndarray) -> np.ndarray:
    band = np.minimum(np.searchsorted(np.array(calibration["band_edges"]), predicted_age, side="right"), len(floors) - 1)
    return confidence(calibration, margin, predicted_age) >= np.array(floors)[band]


def summarise(answered: np.ndarray, right: np.ndarray, groups: dict[str, np.ndarray], adult: np.ndarray) -> dict:
    def one(mask: np.ndarray) -> dict:
        a = answered & mask
        return {"faces": int(mask.sum()), "answered": int(a.sum()), "coverage": round(float(a.sum() / max(mask.sum(), 1)), 4),
                "answered_accuracy": round(float(right[a].mean()), 4) if a.any() else None,
                "all_accuracy": round(float(right[mask].mean()), 4)}

    return {"all": one(np.ones_like(answered)), "13+": one(adult), **{name: one(mask) for name, mask in groups.items()}}


def out_of_fold_p_female(features, female: np.ndarray, fold_of: np.ndarray, c: float, mirror_margin: float, seed: int,
                         cache: Path | None = None) -> np.ndarray:
    """Each face's ``p_female`` from the gender recipe (standardised logistic regression with C
    ``c``, class-balanced, on the plain, mirrored and distorted passes; the mirror rule) fitted on
    the other folds. Kept in ``cache`` when given."""
    from sklearn.linear_model import LogisticRegression

    key = hashlib.sha1(repr((c, mirror_margin, seed, fold_of.tolist(), features.digest, SCALE_FLOOR)).encode("utf-8")).hexdigest()[:16]
    stored = cache / f"oof-gender-{key}.npy" if cache is not None else None
    if stored is not None and stored.is_file():
        return np.load(stored)
    p_female = np.zeros(len(female))
    variants = len(features.features)
    for fold in tqdm(np.unique(fold_of), desc="folds (gender head refitted)", unit="fold"):
        train, held = np.flatnonzero(fold_of != fold), np.flatnonzero(fold_of == fold)
        x = training_rows(features, train)
        scaler = standard_scaler(x)
        head = LogisticRegression(C=c, class_weight="balanced", max_iter=5000, random_state=seed)
        head.fit(scaler.transform(x), np.tile(female[train], variants).astype(int))
        del x
        score = head.predict_proba(scaler.transform(features.of("plain", held)))[:, 1]
        mirrored = head.predict_proba(scaler.transform(features.of("mirrored", held)))[:, 1]
        p_female[held] = mirror_when_unsure(score, mirror_margin, lambda rows: mirrored[rows])
    if stored is not None:
        np.save(stored, p_female)
    return p_female


def worst_group(summary: dict) -> float:
    """The lowest answered accuracy of a group with at least ``MIN_GROUP`` answered faces in one
    nested summary (as on the fitting folds, fewer cannot be judged: about ten of the 920 training
    babies are answered, those the age head takes for adults)."""
    return min((v["answered_accuracy"] for k, v in summary.items()
                if k not in ("all", "13+") and v["answered"] >= MIN_GROUP), default=1.0)


def choose(nested: dict[tuple[str, float], dict]) -> tuple[str, float]:
    """The (rule, target) to ship: of those keeping every judged group at 0.95 nested, the one
    answering the most faces aged 13+; when none does, the one coming closest (highest worst
    group), not the one answering most."""
    meets = [choice for choice in nested if worst_group(nested[choice]) >= 0.95]
    if meets:
        return max(meets, key=lambda choice: (nested[choice]["13+"]["coverage"], worst_group(nested[choice])))
    return max(nested, key=lambda choice: (worst_group(nested[choice]), nested[choice]["13+"]["coverage"]))


def train_abstention(folder: str | Path, gender_model: str | Path, age_model: str | Path, cache: str | Path | None = None,
                     folds: int = 3, seed: int = 0, extractor=None, write: bool = True) -> dict:
    """Select the abstention rule and floor for ``gender_model`` and (``write``) record it in its
    ``model.json``; returns the nested out-of-fold figures of both rules."""
    from facesuite.detect.extract import FaceExtractor
    from facesuite.embed import get_embedder
    from facesuite.train.backbone_features import pass_features

    folder, gender_model, age_model = Path(folder), Path(gender_model), Path(age_model)
    root = find_subfolder(folder, ("train", "training")) or folder
    samples = read_gender_folders(root)
    record = _read_json(gender_model / "model.json")
    age_record = _read_json(age_model / "model.json")
    if record.get("kind") != "backbone" or "C" not in record.get("metrics", {}):
        raise InputError("the abstention is fitted for a backbone gender head (its model.json names its C)", gender_model)
    embedder = get_embedder()
    if record.get("embedder") != embedder.space or age_record.get("embedder") != embedder.space:
        raise InputError(f"the gender and age models must read the {embedder.space} pass", gender_model)
    features, _ = pass_features([p for p, _ in samples], extractor or FaceExtractor(), embedder,
                                Path(cache) if cache else None, seed)
    label_of = {str(p): label for p, label in samples}
    paths = [Path(p) for p in features.paths]
    female = np.array([label_of[str(p)] == "female" for p in paths])
    parsed = [utkface_attributes(p.name) for p in paths]
    true_age = np.array([a[0] if a else -1 for a in parsed], dtype=np.float64)
    races = np.array([a[2] if a else "" for a in parsed])
    facecom = np.array([a is None for a in parsed])
    groups_of = [facecom_identity(p.stem.removeprefix("facecom_")) if a is None else hashlib.sha1(p.read_bytes()).hexdigest()
                 for p, a in zip(paths, parsed)]
    fold_of = folds_of(groups_of, folds, seed)
    from facesuite.classify.age import AgeHead, stack_log_age

    shipped_age = AgeHead.load(age_model)
    metrics = age_record["metrics"]
    age_candidate = Candidate(metrics["candidate"], age_record["inputs"], float(metrics["alpha"]),
                              tuple(metrics["hidden_units"]), metrics["components"])
    threshold, margin_rule, c = float(record.get("threshold", 0.5)), float(record.get("mirror_margin", 0.0)), float(record["metrics"]["C"])
    p_female = out_of_fold_p_female(features, female, fold_of, c, margin_rule, seed, Path(cache) if cache else None)
    predicted_age = np.zeros(len(paths))
    variants = len(features.features)
    # A stacked age model's companion is refitted on the same folds and blended as the shipped
    # model blends it, so the floors are chosen on the ages the analyzer gives.
    companion = companion_of(age_candidate) if shipped_age.blend is not None else None
    key = hashlib.sha1(repr((age_candidate, seed, fold_of.tolist(), features.digest, SCALE_FLOOR, shipped_age.calibration is None or
                             shipped_age.calibration[1].tolist(), companion,
                             None if companion is None else shipped_age.blend[1].tolist())).encode("utf-8")).hexdigest()[:16]
    stored = Path(cache) / f"oof-age-{key}.npy" if cache else None
    for fold in tqdm(range(folds) if stored is None or not stored.is_file() else (), desc="folds (age head refitted)", unit="fold"):
        train, held = np.flatnonzero(fold_of != fold), np.flatnonzero(fold_of == fold)
        aged = train[true_age[train] >= 0]
        rows, targets = training_rows(features, aged), np.tile(np.log1p(true_age[aged]), variants)
        age_head = fit_head(age_candidate, rows, targets, seed)
        z = head_of_columns(age_head, features.of("plain", held), age_candidate.inputs)
        # Through the shipped model's calibration map, as the analyzer's ages are.
        z = z if shipped_age.calibration is None else np.interp(z, *shipped_age.calibration)
        if companion is not None:
            years = head_of_columns(fit_head(companion, rows, targets, seed), features.of("plain", held), companion.inputs)
            z = stack_log_age(z, years, *shipped_age.blend)
        predicted_age[held] = np.clip(np.expm1(z), 0, None)
    if stored is not None:
        if stored.is_file():
            predicted_age = np.load(stored)
        else:
            np.save(stored, predicted_age)
    right = (p_female >= threshold) == female
    margin = _margin(p_female, threshold)
    groups = group_masks(races, true_age, facecom)
    adult = (true_age >= 13) | facecom
    nested: dict[tuple[str, float], dict] = {}
    for rule in ("age-blind", "by-age"):
        for target in TARGETS:
            answered = np.zeros(len(paths), bool)
            for fold in range(folds):
                fit_rows, held = fold_of != fold, fold_of == fold
                calibration = fit_rule(rule, margin[fit_rows], right[fit_rows], predicted_age[fit_rows])
                floors = floors_for(rule, calibration, margin[fit_rows], right[fit_rows], predicted_age[fit_rows],
                                    {n: m[fit_rows] for n, m in constraints(groups).items()}, adult[fit_rows], target)
                answered[held] = answers(calibration, floors, margin[held], predicted_age[held])
            nested[rule, target] = summarise(answered, right, groups, adult)

    chosen, target = choose(nested)
    final = {}
    for rule in ("age-blind", "by-age"):
        calibration = fit_rule(rule, margin, right, predicted_age)
        final[rule] = {**calibration, "floors": floors_for(rule, calibration, margin, right, predicted_age, constraints(groups),
                                                          adult, target)}
    blind = final["age-blind"]
    abstention = {"floor": blind["floors"][0], "slope": blind["slopes"][0], "offset": blind["offsets"][0], "target": target,
                  "rule": chosen, "selected_on": f"{folds} training folds, {len(paths)} faces (nested out of fold)"}
    if chosen == "by-age":
        by_age = final["by-age"]
        abstention["by_age"] = {"floors": by_age["floors"], "band_edges": by_age["band_edges"],
                                "slopes": by_age["slopes"], "offsets": by_age["offsets"]}
    if write:
        record["abstention"] = abstention
        (gender_model / "model.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return {"faces": len(paths), "chosen": chosen, "abstention": abstention,
            "nested": {f"{rule} {target}": figures for (rule, target), figures in nested.items()},
            "oof_age_mae_utkface": round(float(np.abs(predicted_age - true_age)[true_age >= 0].mean()), 3)}


def _read_json(path: Path) -> dict:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise InputError(f"unreadable model.json ({type(error).__name__})", path) from None
    if not isinstance(record, dict):
        raise InputError("unreadable model.json", path)
    return record
