"""Gender: training, evaluation, prediction, Grad-CAM and errors, on real FACECOM images."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

from facesuite.classify.gender import GenderModel, default_model_dir
from facesuite.cli import main
from facesuite.config import data_root

TASK_A = data_root() / "facecom" / "task_a" / "train"
DEV_IDS = data_root() / "splits" / "facecom_dev_identities.txt"

pytestmark = pytest.mark.skipif(
    not (TASK_A.is_dir() and DEV_IDS.is_file()),
    reason=f"FACECOM task_a or the dev split is absent under {data_root()} (set FACESUITE_DATA)",
)


def _identity(path: Path) -> str:
    head, _, tail = path.stem.rpartition("_")
    return head if head and tail.isdigit() else path.stem


def _pick(dev: bool, per_class: int) -> dict[str, list[Path]]:
    dev_ids = {line.strip() for line in DEV_IDS.read_text().splitlines() if line.strip()}
    picked = {}
    for label in ("male", "female"):
        files = sorted(p for p in (TASK_A / label).glob("*.jpg") if (_identity(p) in dev_ids) == dev)
        # Evenly spaced picks: a fixed, varied sample rather than the alphabetically first names.
        picked[label] = [files[int(i)] for i in np.linspace(0, len(files) - 1, per_class)]
    return picked


def _link_folder(root: Path, picked: dict[str, list[Path]]) -> Path:
    for label, files in picked.items():
        (root / label).mkdir(parents=True)
        for path in files:
            (root / label / path.name).symlink_to(path.resolve())
    return root


@pytest.fixture(scope="module")
def dev_folder(tmp_path_factory) -> Path:
    return _link_folder(tmp_path_factory.mktemp("dev"), _pick(dev=True, per_class=20))


@pytest.fixture(scope="module")
def shipped_eval(dev_folder, tmp_path_factory) -> Path:
    if not (default_model_dir() / "model.json").is_file():
        pytest.skip("no shipped gender model in the package")
    out = tmp_path_factory.mktemp("eval")
    assert main(["eval", "gender", str(dev_folder), "--out", str(out), "--gradcam", "2"]) == 0
    return out


def test_training_runs_end_to_end_and_resumes(tmp_path):
    data = _link_folder(tmp_path / "data" / "train", _pick(dev=False, per_class=8)).parent
    model = tmp_path / "model"
    base = ["train", "gender", str(data), "--out", str(model), "--kind", "cnn", "--chip-size", "48", "--batch-size", "8", "--seed", "1"]
    assert main(base + ["--epochs", "1"]) == 0
    for name in ("weights.pt", "model.json", "history.json", "curves.png", "checkpoint.pt"):
        assert (model / name).is_file(), name
    assert main(base + ["--epochs", "2", "--resume"]) == 0
    history = json.loads((model / "history.json").read_text())
    assert [r["epoch"] for r in history["epochs"]] == [1, 2]
    loaded = GenderModel.load(model)
    assert loaded.config.kind == "cnn" and loaded.chip_spec.size == 48
    assert 0.0 <= loaded.threshold <= 1.0


def test_backbone_head_trains_and_reuses_the_recognition_pass(tmp_path):
    from facesuite.classify.gender import predict_files
    from facesuite.pipeline import UnifiedFaceAnalyzer

    data = _link_folder(tmp_path / "data" / "train", _pick(dev=False, per_class=8)).parent
    model_dir = tmp_path / "model"
    assert main(["train", "gender", str(data), "--out", str(model_dir), "--kind", "backbone"]) == 0
    model = GenderModel.load(model_dir)
    assert model.config.kind == "backbone"
    images = sorted((data / "train" / "female").iterdir())[:3] + sorted((data / "train" / "male").iterdir())[:3]
    alone = [p.p_female for p in predict_files(model, images)[0]]
    # The analyzer takes gender from its own embedding pass: same numbers, no second network run.
    analyzer = UnifiedFaceAnalyzer(routes=None, gender_model=model_dir)
    assert analyzer._gender_shares_backbone()
    shared = [a.p_female for a in analyzer.analyze(images)[0]]
    assert shared == pytest.approx(alone, abs=1e-4)
    # Fitted on these faces, the head must tell them apart.
    assert [p >= model.threshold for p in shared] == [True] * 3 + [False] * 3
    # Asking for full female recall lowers the threshold until every validation female is caught.
    strict_dir = tmp_path / "strict"
    assert main(["train", "gender", str(data), "--out", str(strict_dir), "--kind", "backbone", "--min-female-recall", "1"]) == 0
    strict = GenderModel.load(strict_dir)
    assert strict.config.metrics["val_female_recall"] == 1.0
    assert strict.threshold <= model.threshold


def test_evaluation_numbers_equal_sklearn(shipped_eval):
    metrics = json.loads((shipped_eval / "metrics.json").read_text())
    with open(shipped_eval / "predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["path", "true", "predicted", "p_female"]
    y_true = [r["true"] for r in rows]
    y_pred = [r["predicted"] for r in rows]
    assert metrics["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
    assert metrics["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    _, recall, _, _ = precision_recall_fscore_support(y_true, y_pred, labels=["female"])
    assert metrics["per_class"]["female"]["recall"] == pytest.approx(recall[0])
    # The predicted label is p_female against the model's own threshold.
    threshold = GenderModel.load().threshold
    assert all((float(r["p_female"]) >= threshold) == (r["predicted"] == "female") for r in rows)
    assert (shipped_eval / "report.html").is_file() and (shipped_eval / "gradcam.png").is_file()


def test_shipped_model_predicts_unseen_faces(shipped_eval):
    metrics = json.loads((shipped_eval / "metrics.json").read_text())
    assert metrics["accuracy"] > 0.85, metrics


def test_predict_folder_skips_corrupt_file(dev_folder, tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    good = dev_folder / "female" / next(iter(sorted(p.name for p in (dev_folder / "female").iterdir())))
    (folder / "good.jpg").symlink_to(good.resolve())
    (folder / "nested").mkdir()
    (folder / "nested" / "broken.jpg").write_bytes(b"not a jpeg at all")
    out = tmp_path / "pred.csv"
    assert main(["predict", "gender", str(folder), "--csv", str(out)]) == 0
    rows = list(csv.DictReader(open(out, newline="")))
    assert [Path(r["path"]).name for r in rows] == ["good.jpg"]
    assert set(rows[0]) == {"path", "gender", "p_female", "fallback"}
    err = capsys.readouterr().err
    assert "broken.jpg" in err and "1 skipped" in err


def test_missing_paths_and_bad_layouts_exit_2(tmp_path, capsys):
    assert main(["predict", "gender", str(tmp_path / "nope.jpg"), "--csv", str(tmp_path / "p.csv")]) == 2
    assert "nope.jpg" in capsys.readouterr().err
    assert main(["eval", "gender", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert "missing" in capsys.readouterr().err
    empty = tmp_path / "data"
    (empty / "train" / "male").mkdir(parents=True)
    (empty / "train" / "female").mkdir()
    (empty / "train" / "male" / "a.jpg").symlink_to(next(TASK_A.glob("male/*.jpg")).resolve())
    assert main(["train", "gender", str(empty), "--out", str(tmp_path / "m")]) == 2
    assert "class folder has no images" in capsys.readouterr().err
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff garbage")
    assert main(["explain", str(corrupt), "--task", "gender", "--out", str(tmp_path / "h.png")]) == 2
    assert "corrupt.jpg" in capsys.readouterr().err


def test_gradcam_has_chip_size_and_is_not_constant(dev_folder, tmp_path):
    if not (default_model_dir() / "model.json").is_file():
        pytest.skip("no shipped gender model in the package")
    from facesuite.classify.gender import predict_files
    from facesuite.explain import gradcam

    image = sorted((dev_folder / "male").iterdir())[0]
    out = tmp_path / "heat.png"
    assert main(["explain", str(image), "--task", "gender", "--out", str(out)]) == 0
    model = GenderModel.load()
    heat_png = np.asarray(Image.open(out))
    assert heat_png.shape == (model.chip_spec.size, model.chip_spec.size, 3)
    assert heat_png.std() > 1.0
    prediction = predict_files(model, [image])[0][0]
    heat, _ = gradcam(model.network, model.network.cam_layer(), prediction.chip)
    assert heat.shape == prediction.chip.shape[:2]
    assert heat.max() - heat.min() > 0.1
