"""Gender kind ``finetune``: CV training on real faces, resume after an interruption, one pass."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from facesuite.classify.gender import GenderModel, default_model_dir
from facesuite.cli import main
from facesuite.config import data_root
from facesuite.data import utkface_attributes, read_split
from facesuite.train.gender_finetune import BRANCH_LRS

TASK_A = data_root() / "facecom" / "task_a" / "train"
UTK = data_root() / "utkface" / "images"
SPLITS = data_root() / "splits"

pytestmark = [pytest.mark.data, pytest.mark.skipif(
    not (TASK_A.is_dir() and UTK.is_dir() and (SPLITS / "utkface_dev.txt").is_file()),
    reason=f"FACECOM task_a, UTKFace or the dev splits are absent under {data_root()} (set FACESUITE_DATA)",
)]


def _train_folder(root: Path, per_class: int = 10) -> Path:
    """FACECOM task_a and UTKFace training faces (never dev ones), evenly spaced picks."""
    from facesuite.data import facecom_identity

    dev_ids = read_split(SPLITS / "facecom_dev_identities.txt")
    utk_dev = read_split(SPLITS / "utkface_dev.txt")
    utk = sorted(p for p in UTK.glob("*.jpg") if p.name not in utk_dev and utkface_attributes(p.name))
    for label in ("male", "female"):
        folder = root / "train" / label
        folder.mkdir(parents=True)
        facecom = sorted(p for p in (TASK_A / label).glob("*.jpg") if facecom_identity(p.stem) not in dev_ids)
        ours = [p for p in utk if utkface_attributes(p.name)[1] == label]
        for source, prefix in ((facecom, "facecom_"), (ours, "utk_")):
            for i in np.linspace(0, len(source) - 1, per_class):
                path = source[int(i)]
                (folder / f"{prefix}{path.name}").symlink_to(path.resolve())
    return root


ARGS = ["--kind", "finetune", "--epochs", "3", "--head-epochs", "1", "--folds", "2", "--batch-size", "16"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    data = _train_folder(tmp_path_factory.mktemp("data"))
    model = tmp_path_factory.mktemp("model")
    assert main(["train", "gender", str(data), "--out", str(model), *ARGS]) == 0
    return data, model


def test_finetune_writes_a_model_chosen_on_folds(trained):
    _, model_dir = trained
    for name in ("weights.pt", "model.json", "history.json", "curves.png", "anchor/model.json", "anchor/weights.npz"):
        assert (model_dir / name).is_file(), name
    history = json.loads((model_dir / "history.json").read_text())
    # Every learning rate x epoch was scored out of fold; the chosen row is the best score.
    assert len(history["selection"]) == len(BRANCH_LRS) * 3
    assert history["chosen"]["score"] == max(row["score"] for row in history["selection"])
    model = GenderModel.load(model_dir)
    assert model.config.kind == "finetune"
    assert model.threshold == pytest.approx(history["chosen"]["threshold"])
    assert model.config.metrics["epochs"] == history["chosen"]["epochs"]
    # FACECOM identities and UTKFace photos never straddle two folds.
    assert model.config.metrics["folds"] == 2 and sum(model.config.metrics["fold_sizes"]) == 40
    # Only the branch and head are stored: the trunk is dlib's own.
    state = torch.load(model_dir / "weights.pt", weights_only=True)
    assert not any(k.startswith("backbone.") for k in state) and any(k.startswith("branch.") for k in state)


def test_interrupted_training_resumes_to_the_same_model(trained, tmp_path, monkeypatch):
    from facesuite.train import gender_finetune

    data, model_dir = trained
    other = tmp_path / "model"

    def interrupt_in_stage_two(line: str) -> None:
        # Ctrl-C in a run's last epoch: mid-run, with stage-2 optimizer and scheduler state to restore.
        if line.startswith("lr0.0003-fold1 epoch 3/"):
            raise KeyboardInterrupt

    monkeypatch.setattr(gender_finetune.tqdm, "write", interrupt_in_stage_two)
    assert main(["train", "gender", str(data), "--out", str(other), *ARGS]) != 0
    assert (other / "runs" / "lr0.0003-fold1" / "checkpoint.pt").is_file() and not (other / "weights.pt").exists()
    monkeypatch.undo()
    assert main(["train", "gender", str(data), "--out", str(other), *ARGS, "--resume"]) == 0
    # Same seeds per epoch, so the resumed run retraces the uninterrupted one; only the last float
    # bits may differ (CPU kernels are not bit-exact from one process to the next).
    history = {name: json.loads((folder / "history.json").read_text()) for name, folder in (("first", model_dir), ("second", other))}
    resumed = [r["train_loss"] for r in history["second"]["runs"]["lr0.0003-fold1"]]
    assert len(resumed) == 3 and resumed == pytest.approx([r["train_loss"] for r in history["first"]["runs"]["lr0.0003-fold1"]], abs=1e-3)
    assert history["second"]["chosen"]["epochs"] == history["first"]["chosen"]["epochs"]
    first = torch.load(model_dir / "weights.pt", weights_only=True)
    second = torch.load(other / "weights.pt", weights_only=True)
    assert first.keys() == second.keys()
    assert all(torch.allclose(first[k].float(), second[k].float(), atol=1e-3) for k in first)


def _faces_and_chips(model_dir: Path, images: list[Path], embedder: str = "default"):
    from facesuite.analysis import FaceAnalysis

    analysis = FaceAnalysis(embedder, routes=None, gender=model_dir)
    faces, skipped = analysis.faces(images)
    assert not skipped
    return analysis, faces


def test_analysis_runs_the_trunk_once_and_agrees_with_the_standalone_model(trained):
    data, model_dir = trained
    images = sorted((data / "train" / "female").iterdir())[:4] + sorted((data / "train" / "male").iterdir())[:4]
    # The branch was fine-tuned on the float trunk: the float runtimes' pass feeds it (the default
    # int8 embedder's does not, and the branch then runs its own trunk).
    analysis, faces = _faces_and_chips(model_dir, images, "dlib-onnx")
    assert analysis.gender_stage.reads_hidden
    alone = analysis.gender.p_female([face.chip() for face in faces])  # its own trunk, on the same chips
    assert [face.p_female for face in faces] == pytest.approx(alone.tolist(), abs=1e-4)
    assert [face.gender for face in faces] == analysis.gender.labels_for(alone)


def test_describe_maps_are_the_trunk_output():
    from facesuite.embed.dlib.network import load_dlib_resnet

    network = load_dlib_resnet()
    pixels = torch.rand(2, 3, 150, 150) * 255
    with torch.no_grad():
        descriptor, hidden = network.describe(pixels)
        same_descriptor, with_maps = network.describe(pixels, maps=True)
        last_input, pooled = network.trunk(pixels)
    assert hidden.shape == (2, 640) and with_maps.shape == (2, 640 + 256 * 4 * 4)
    assert torch.equal(descriptor, same_descriptor) and torch.equal(with_maps[:, :640], hidden)
    assert torch.equal(with_maps[:, 640:], last_input.flatten(1)) and torch.equal(hidden[:, :384], pooled)


def test_shipped_model_gender_in_analyze_equals_the_standalone_model():
    config = json.loads((default_model_dir() / "model.json").read_text())
    dev_ids = read_split(SPLITS / "facecom_dev_identities.txt")
    from facesuite.data import facecom_identity

    images = [p for label in ("female", "male") for p in sorted((TASK_A / label).glob("*.jpg"))
              if facecom_identity(p.stem) in dev_ids][::20]
    analysis, faces = _faces_and_chips(default_model_dir(), images)
    assert analysis.gender_stage.reads_hidden == (config["kind"] in ("backbone", "finetune"))
    alone = analysis.gender.p_female([face.chip() for face in faces])
    assert [face.p_female for face in faces] == pytest.approx(alone.tolist(), abs=1e-4)


def test_deletion_drops_compare_hottest_and_random_pixels_on_real_faces():
    from facesuite.detect.extract import FaceExtractor
    from gradcam_deletion import deletion_drops

    model = GenderModel.load()
    images = sorted((TASK_A / "female").glob("*.jpg"))[:3] + sorted((TASK_A / "male").glob("*.jpg"))[:3]
    crops, _ = FaceExtractor().crops(images, model.chip_spec)
    chips = [crop.chip for crop in crops]
    hot, chance = deletion_drops(model.network, model.network.cam_layer(), chips, fraction=0.1)
    assert hot.shape == chance.shape == (len(chips),)
    # A drop is a difference of two probabilities; masking 10% of a face changes something.
    assert np.all(np.abs(hot) <= 1) and np.all(np.abs(chance) <= 1)
    assert np.any(hot != 0) and np.any(chance != 0) and not np.array_equal(hot, chance)
