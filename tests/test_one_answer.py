"""One input, one answer: `eval recognition`, `gallery identify`, `FaceAnalysis`, the demo and the
dashboard's evaluation job decide the same folder by the same rule (facesuite.decide), so they
give the same decision per probe and the same FPIR and coverage."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from facesuite import FaceAnalysis
from facesuite.cli import main

PEOPLE = ("Colin_Powell", "Hugo_Chavez", "Tom_Ridge")
STRANGER = "Naomi_Watts"  # distorted copies only: no photo of her is enrolled
CLEAN_PER_PERSON = 2


@pytest.fixture(scope="module")
def folder(facecom_b: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """FACECOM-style identity folders: two clean photos of each of PEOPLE with their distorted
    copies, one copy replaced by a blank frame (a probe with no face), and a stranger's copies."""
    root = tmp_path_factory.mktemp("one-answer") / "data"
    for person in (*PEOPLE, STRANGER):
        (root / person / "distortion").mkdir(parents=True)
        for photo in sorted((facecom_b / person).glob("*.jpg"))[:CLEAN_PER_PERSON]:
            if person != STRANGER:
                (root / person / photo.name).symlink_to(photo)
            for copy in (facecom_b / person / "distortion").glob(f"{photo.stem}_*.jpg"):
                (root / person / "distortion" / copy.name).symlink_to(copy)
    blank = sorted((root / PEOPLE[0] / "distortion").glob("*_sunny.jpg"))[0]
    blank.unlink()
    Image.new("RGB", (250, 250), (236, 236, 236)).save(blank)
    return root


@pytest.fixture(scope="module")
def evaluated(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict[str, dict]]:
    """`facesuite eval recognition` on the folder: (metrics, prediction row per probe file name)."""
    out = tmp_path_factory.mktemp("eval")
    assert main(["eval", "recognition", str(folder), "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    return metrics, _rows(out / "predictions.csv")


def _rows(path: Path) -> dict[str, dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return {Path(row["path"]).name: row for row in csv.DictReader(handle)}


def _probes(folder: Path) -> list[Path]:
    return sorted(folder.glob("*/distortion/*.jpg"))


def test_eval_identify_and_the_api_decide_alike(folder: Path, evaluated, tmp_path: Path) -> None:
    _, predicted = evaluated
    probes = _probes(folder)
    assert sorted(predicted) == sorted(p.name for p in probes)
    decisions = {row["decision"] for row in predicted.values()}
    # The folder exercises the rule: names, a box with no face, strangers unknown or unrecognisable.
    assert {"no face", "unknown", "unrecognisable", *PEOPLE} <= decisions and STRANGER not in decisions, decisions

    gallery = tmp_path / "gallery"
    assert main(["gallery", "enroll", str(folder), "--gallery", str(gallery)]) == 0
    out = tmp_path / "who.csv"
    assert main(["gallery", "identify", *map(str, probes), "--gallery", str(gallery), "--csv", str(out)]) == 0
    identified = _rows(out)
    with FaceAnalysis(gender=None, age=None, gallery=gallery) as app:
        faces, skipped = app.faces(probes)
    assert not skipped
    for face in faces:
        name = Path(face.source).name
        row, expected = identified[name], predicted[name]
        assert face.identity == row["identity"] == expected["decision"], (name, face.identity, row, expected)
        assert row["held_to"] == expected["held_to"] == face.held_to
        if expected["threshold"]:
            assert float(row["threshold"]) == pytest.approx(float(expected["threshold"]), abs=1e-6)


def test_demo_and_dashboard_job_give_eval_figures(folder: Path, facecom_a: Path, tmp_path: Path) -> None:
    from facesuite.demo import run_demo
    from facesuite.serve import create_app

    # The demo evaluates the people it enrols (no stranger): the same folder without her.
    people = tmp_path / "people"
    people.mkdir()
    for person in PEOPLE:
        (people / person).symlink_to(folder / person)
    assert main(["eval", "recognition", str(people), "--out", str(tmp_path / "eval")]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    predicted = _rows(tmp_path / "eval" / "predictions.csv")
    # The demo, on a data root whose task_b is that folder: every clean photo enrolled, every copy searched.
    root = tmp_path / "root"
    (root / "facecom" / "task_b").mkdir(parents=True)
    (root / "facecom" / "task_b" / "train").symlink_to(people)
    (root / "facecom" / "task_a").mkdir()
    (root / "facecom" / "task_a" / "train").symlink_to(facecom_a)
    run_demo(root, tmp_path / "demo", identities=len(PEOPLE), clean_per_identity=CLEAN_PER_PERSON, gender_per_class=3,
             log=lambda line: None)
    demo = json.loads((tmp_path / "demo" / "recognition" / "metrics.json").read_text())
    assert {name: row["decision"] for name, row in _rows(tmp_path / "demo" / "recognition" / "predictions.csv").items()} == \
           {name: row["decision"] for name, row in predicted.items()}

    work = tmp_path / "serve"
    with TestClient(create_app(gallery=work / "gallery", work_dir=work, eval_roots=[tmp_path])) as client:
        job = client.post("/jobs/recognition", json={"folder": str(people)}).json()
        deadline = time.monotonic() + 300
        while (status := client.get(f"/jobs/{job['id']}").json())["state"] not in ("done", "failed"):
            assert time.monotonic() < deadline, status
            time.sleep(0.2)
    assert status["state"] == "done", status["message"]
    job_metrics = json.loads((work / "jobs" / job["id"] / "metrics.json").read_text())

    expected = metrics["open_set"]["overall"]
    for figures in (demo["open_set"]["overall"], job_metrics["open_set"]["overall"]):
        for key in ("fpir", "coverage", "wrong_identity_rate", "unrecognisable_rate", "no_face_rate", "top1"):
            assert figures[key] == pytest.approx(expected[key], abs=1e-9), key
    # The job's page shows the figures of its own metrics.json.
    assert status["metrics"]["coverage"] == pytest.approx(expected["coverage"], abs=1e-4)
    assert status["metrics"]["fpir"] == pytest.approx(expected["fpir"], abs=1e-4)
    # Coverage with source matching is the share of probes answered with a name, as the decisions say.
    named = np.mean([row["decision"] in PEOPLE for row in predicted.values()])
    assert metrics["open_set_with_source"]["overall"]["coverage"] == pytest.approx(named, abs=1e-9)
