"""Gender kind ``cnn`` trained by distillation (``--teacher``): on real faces, with the shipped model
as teacher, and the student loaded through FaceAnalysis and the CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from facesuite.classify.gender import GenderModel, default_model_dir
from facesuite.cli import main
from facesuite.config import data_root
from facesuite.data import facecom_identity, read_split
from facesuite.train.gender_distill import distillation_loss

TASK_A = data_root() / "facecom" / "task_a" / "train"
SPLITS = data_root() / "splits"

pytestmark = [pytest.mark.data, pytest.mark.skipif(
    not (TASK_A.is_dir() and (SPLITS / "facecom_dev_identities.txt").is_file()),
    reason=f"FACECOM task_a or the dev split is absent under {data_root()} (set FACESUITE_DATA)",
)]


def _data(root: Path, per_class: int = 6) -> Path:
    """train/ and val/ of FACECOM training identities (never dev ones), evenly spaced picks."""
    dev_ids = read_split(SPLITS / "facecom_dev_identities.txt")
    for label in ("male", "female"):
        files = sorted(p for p in (TASK_A / label).glob("*.jpg") if facecom_identity(p.stem) not in dev_ids)
        picked = [files[int(i)] for i in np.linspace(0, len(files) - 1, per_class)]
        for i, path in enumerate(picked):
            folder = root / ("val" if i % 3 == 0 else "train") / label
            folder.mkdir(parents=True, exist_ok=True)
            (folder / path.name).symlink_to(path.resolve())
    return root


@pytest.fixture(scope="module")
def distilled(tmp_path_factory) -> tuple[Path, Path]:
    if not (default_model_dir() / "model.json").is_file():
        pytest.skip("no shipped gender model to act as teacher")
    data = _data(tmp_path_factory.mktemp("data"))
    model = tmp_path_factory.mktemp("student")
    args = ["train", "gender", str(data), "--out", str(model), "--kind", "cnn", "--teacher", str(default_model_dir()),
            "--chip-size", "48", "--batch-size", "4", "--epochs", "1", "--seed", "1"]
    assert main(args) == 0
    return data, model


def test_teacher_soft_labels_are_the_teachers_own_scores(distilled):
    from facesuite.detect.extract import FaceExtractor

    data, model_dir = distilled
    with np.load(model_dir / "teacher.npz", allow_pickle=False) as cache:
        cached = dict(zip(cache["paths"].tolist(), cache["p_female"].tolist()))
    train = sorted((data / "train").glob("*/*.jpg"))
    assert sorted(cached) == sorted(str(p) for p in train)  # training faces only, never val/
    teacher = GenderModel.load(default_model_dir())
    crops, _ = FaceExtractor().crops(train, teacher.chip_spec)
    alone = teacher.p_female([c.chip for c in crops])
    assert [cached[str(c.path)] for c in crops] == pytest.approx(alone.tolist(), abs=1e-4)
    config = json.loads((model_dir / "model.json").read_text())
    assert config["kind"] == "cnn" and config["chip_size"] == 48
    assert config["metrics"]["teacher"] == str(default_model_dir())
    assert (config["metrics"]["distill_alpha"], config["metrics"]["temperature"]) == (0.5, 2.0)


def test_student_predicts_through_analysis_and_the_cli(distilled, tmp_path):
    from facesuite.analysis import FaceAnalysis
    from facesuite.detect.extract import FaceExtractor

    data, model_dir = distilled
    student = GenderModel.load(model_dir)
    images = sorted((data / "val").glob("*/*.jpg"))
    crops, _ = FaceExtractor().crops(images, student.chip_spec)
    alone = student.p_female([c.chip for c in crops]).tolist()
    faces = FaceAnalysis(routes=None, gender=model_dir).faces(images)
    assert [face.p_female for image in faces for face in image] == pytest.approx(alone, abs=1e-4)
    out = tmp_path / "gender.csv"
    assert main(["predict", "gender", str(data / "val"), "--csv", str(out), "--model", str(model_dir)]) == 0
    with open(out, newline="") as handle:
        rows = {row["path"]: float(row["p_female"]) for row in csv.DictReader(handle)}
    assert [rows[str(p)] for p in images] == pytest.approx(alone, abs=1e-4)


def test_distillation_loss_reduces_to_its_parts():
    torch.manual_seed(0)
    logits = torch.randn(6, 2)
    labels = torch.tensor([0, 1, 1, 0, 1, 0])
    weight = torch.tensor([0.8, 1.3])
    teacher = torch.rand(6)
    hard = distillation_loss(logits, labels, teacher, weight, alpha=1.0, temperature=2.0)
    assert hard.item() == pytest.approx(F.cross_entropy(logits, labels, weight=weight).item(), rel=1e-5)
    # A student that already matches the softened teacher has no soft loss left.
    matching = torch.stack([torch.zeros(6), torch.log(teacher) - torch.log1p(-teacher)], dim=1)
    assert distillation_loss(matching, labels, teacher, weight, alpha=0.0, temperature=3.0).item() == pytest.approx(0.0, abs=1e-5)
    assert distillation_loss(logits, labels, teacher, weight, alpha=0.0, temperature=3.0).item() > 0.01


def test_bad_teacher_exits_2_with_one_line(tmp_path, capsys):
    data = _data(tmp_path / "data", per_class=3)
    not_a_model = tmp_path / "empty"
    not_a_model.mkdir()
    base = ["train", "gender", str(data), "--out", str(tmp_path / "m"), "--kind", "cnn", "--epochs", "1"]
    for teacher, extra, says in ((tmp_path / "missing", [], "no such teacher folder"),
                                 (not_a_model, [], "not a gender model folder"),
                                 (default_model_dir(), ["--kind", "backbone"], "use it with --kind cnn")):
        capsys.readouterr()
        assert main(base + ["--teacher", str(teacher), *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert says in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "m" / "teacher.npz").exists()
