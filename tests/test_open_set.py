"""Open-set identification (1:N), the cross protocol, and per-route thresholds."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from facesuite.cli import main
from facesuite.data import read_identity_folders
from facesuite.evaluate.open_set import cross_protocol, open_set_metrics, search, threshold_at_fpir


def test_searches_and_rates_on_a_hand_made_matrix() -> None:
    # Gallery: ann twice, bob, cy. Probes: ann (right and close), bob (nearest is ann: wrong), cy (far).
    gallery = ["ann", "ann", "bob", "cy"]
    distances = np.array([
        [0.05, 0.30, 0.40, 0.50],   # ann: nearest ann 0.05; without ann: bob 0.40
        [0.08, 0.20, 0.12, 0.60],   # bob: nearest ann 0.08 (wrong); without bob: ann 0.08
        [0.70, 0.80, 0.90, 0.35],   # cy: nearest cy 0.35; without cy: ann 0.70
    ])
    found = search(distances, gallery, ["ann", "bob", "cy"])
    assert found.nearest.tolist() == ["ann", "ann", "cy"] and found.correct.tolist() == [True, False, True]
    np.testing.assert_allclose(found.distance, [0.05, 0.08, 0.35])
    np.testing.assert_allclose(found.non_mated, [0.40, 0.08, 0.70])
    rates = open_set_metrics(found, np.full(3, 0.10), np.ones(3, dtype=bool), np.zeros(3, dtype=bool), ["clean", "noisy", "clean"])
    overall = rates["overall"]
    # At 0.10: ann named right, bob named wrongly (ann at 0.08), cy unknown (0.35).
    assert overall["coverage"] == pytest.approx(2 / 3) and overall["wrong_identity_rate"] == pytest.approx(1 / 3)
    assert overall["correct_identity_rate"] == pytest.approx(1 / 3) and overall["fpir"] == pytest.approx(1 / 3)
    assert rates["per_distortion"]["noisy"]["wrong_identity_rate"] == 1.0
    assert rates["per_distortion"]["clean"]["wrong_identity_rate"] == 0.0
    assert threshold_at_fpir(np.array([0.1, 0.2, 0.3, 0.4]), 0.5) == pytest.approx(0.25)


def test_cross_protocol_never_enrolls_a_probes_own_photo(facecom_b: Path) -> None:
    dataset = read_identity_folders(facecom_b)
    people = {"Colin_Powell", "Hugo_Chavez", "001_frontal"} & set(dataset.identities)
    cross = cross_protocol(dataset.subset(people))
    enrolled = {str(path) for path, _ in cross.clean}
    assert cross.distorted and all(str(d.source) not in enrolled for d in cross.distorted)
    assert {i for _, i in cross.clean} == people  # single-image identities stay as distractors
    assert all(d.identity != "001_frontal" for d in cross.distorted)
    powell = sorted(p for p, i in dataset.clean if i == "Colin_Powell")
    assert {str(p) for p in powell[::2]} <= enrolled and not {str(p) for p in powell[1::2]} & enrolled


def _tree(root: Path, facecom: Path, people: list[str], per_person: int) -> Path:
    for person in people:
        (root / person / "distortion").mkdir(parents=True)
        for image in sorted((facecom / person).glob("*.jpg"))[:per_person]:
            (root / person / image.name).symlink_to(image.resolve())
            for copy in sorted((facecom / person / "distortion").glob(f"{image.stem}_*.jpg")):
                (root / person / "distortion" / copy.name).symlink_to(copy.resolve())
    return root


def test_eval_cross_protocol_and_per_route_thresholds(facecom_b: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("FACESUITE_HOME", str(tmp_path / "home"))  # this calibration stays in this test
    people = ["Colin_Powell", "Hugo_Chavez", "Tom_Ridge", "Kofi_Annan", "Tiger_Woods", "Gerhard_Schroeder"]
    data = _tree(tmp_path / "ids", facecom_b, people, per_person=4)
    assert main(["calibrate", str(data), "--per-route", "--far", "0.2", "--json"]) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    thresholds = record["route_thresholds"]
    assert thresholds and all(0 < t < 1 for t in thresholds.values()) and record["route_target_fpir"] == 0.2
    floor = record["quality"]["floor"]
    assert len(record["quality"]["coef"]) == 10 and 0 < floor < 1

    out = tmp_path / "eval"
    assert main(["eval", "recognition", str(data), "--protocol", "cross", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["protocol"] == "cross" and metrics["operating_point"]["route_thresholds"] == thresholds
    assert metrics["identification"]["source_excluded_probes"] == metrics["identification"]["probes"]
    overall = metrics["open_set"]["overall"]
    second_photos = sum(len(sorted((data / p).glob("*.jpg"))[1::2]) for p in people)  # the 2nd and 4th of each
    assert overall["probes"] == metrics["identification"]["probes"] == 7 * second_photos  # 7 copies each
    assert overall["correct_identity_rate"] + overall["wrong_identity_rate"] == pytest.approx(overall["coverage"])
    rows = list(csv.DictReader(open(out / "predictions.csv")))
    assert set(rows[0]) >= {"decision", "route", "match_kind"}
    # No probe's own photo is enrolled: source matching must never fire.
    assert metrics["source_match"]["enabled"] and metrics["source_match"]["fired"] == 0
    assert {row["match_kind"] for row in rows} == {"face"}
    strictest = min([metrics["verification"]["threshold"], *thresholds.values()])
    for row in rows:  # below the quality floor: unrecognisable; within every threshold: named; beyond the gallery's: unknown
        distance, quality = float(row["distance"]), float(row["quality"])
        assert 0 <= quality <= 1
        if quality < floor:
            assert row["decision"] == "unrecognisable"
            continue
        assert row["decision"] in (row["predicted_identity"], "unknown")
        if distance <= strictest:
            assert row["decision"] == row["predicted_identity"]
        if distance > metrics["verification"]["threshold"]:
            assert row["decision"] == "unknown"
    assert (out / "det.png").stat().st_size > 1000

    # The same thresholds decide identify: never looser than the gallery's, stricter where fitted.
    from facesuite.analysis import FaceAnalysis

    with FaceAnalysis(gender=None) as app, app.open_gallery(tmp_path / "g", create=True) as gallery:
        assert gallery.operating_point.route_thresholds == thresholds
        for kind, t in thresholds.items():
            assert gallery.operating_point.search_threshold(kind) == min(gallery.threshold, t)
        assert gallery.operating_point.search_threshold("no such type") == gallery.threshold
