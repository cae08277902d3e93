"""The package as a user installs it: the shipped ONNX networks are what the export command builds
from their sources, a first run imports no PyTorch and exports nothing, and a command that needs
an extra that is not installed names it in one line, exit 2.

(.ci/wheel installs the built wheel alone in a new virtual environment and runs the quickstart.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facesuite.config import MODELS_DIR
from facesuite.train.export import main as export_main

SHIPPED_ONNX = ("mtcnn/pnet.onnx", "mtcnn/rnet.onnx", "mtcnn/onet.onnx", "dlib-float/model.onnx", "distortion/model.onnx")


def test_the_export_command_rebuilds_every_shipped_network_byte_for_byte(tmp_path: Path, capsys) -> None:
    """Fails when a source changed (say, a retrained weights.pt) without `python -m facesuite.train.export`."""
    assert export_main(["--out", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(SHIPPED_ONNX)  # one per network, and no manifest written for a copy
    for name in SHIPPED_ONNX:
        assert (tmp_path / name).read_bytes() == (MODELS_DIR / name).read_bytes(), name


def test_the_export_command_refuses_an_unknown_network(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        export_main(["resnet", "--out", "unused"])
    assert exit_.value.code == 2
    assert "unknown network resnet" in capsys.readouterr().err


def _run_cli(argv: list[str], blocked: tuple[str, ...], cache: Path) -> subprocess.CompletedProcess:
    """``facesuite ARGV`` in a fresh interpreter where the ``blocked`` modules cannot be imported (as
    if their extra were not installed), the model cache at ``cache``."""
    code = ("import sys\n"
            f"for name in {blocked!r}:\n    sys.modules[name] = None\n"
            "from facesuite.cli import main\n"
            f"sys.exit(main({argv!r}))")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "FACESUITE_CACHE": str(cache)})


@pytest.fixture()
def noise_photo(tmp_path: Path) -> Path:
    path = tmp_path / "photos" / "noise.jpg"
    path.parent.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (120, 100, 3), dtype=np.uint8)).save(path)
    return path


@pytest.mark.parametrize(("argv", "blocked", "extra"), [
    (["explain", "{photo}", "--out", "{tmp}/heat.png"], ("torch",), "train"),
    (["analyze", "{photo}", "--embedder", "dlib-torch"], ("torch",), "train"),
    (["train", "distortion", "{photos}", "--out", "{tmp}/model"], ("torch",), "train"),
    (["distort", "{photos}", "--out", "{tmp}/distorted"], ("albumentations",), "train"),
    (["batch", "embed", "{photos}", "--out", "{tmp}/rows", "--engine", "ray"], ("ray",), "scale"),
    (["gallery", "list", "--gallery", "milvus://127.0.0.1:1/faces"], ("pymilvus",), "scale"),
], ids=["explain", "dlib-torch", "train", "distort", "ray", "milvus"])
def test_a_command_needing_a_missing_extra_names_it_in_one_line(argv, blocked, extra, noise_photo: Path, tmp_path: Path) -> None:
    fill = {"photo": str(noise_photo), "photos": str(noise_photo.parent), "tmp": str(tmp_path)}
    done = _run_cli([arg.format(**fill) for arg in argv], blocked, tmp_path / "cache")
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("facesuite: error: ") and f"pip install 'facesuite[{extra}]'" in lines[0]
    assert f"{blocked[0]} is not installed" in lines[0]


def test_the_default_pipeline_runs_without_pytorch_and_exports_nothing_on_a_first_run(facecom_b: Path, tmp_path: Path) -> None:
    """analyze, with every default model (detector, distortion, routes, embedder, gender), on an
    empty model cache with PyTorch, facenet-pytorch and dlib unimportable."""
    photo = sorted((facecom_b / "Colin_Powell").glob("*.jpg"))[0]
    blocked = ("torch", "torchvision", "facenet_pytorch", "dlib", "face_recognition_models", "onnx")
    cache = tmp_path / "cache"
    done = _run_cli(["analyze", str(photo), "--json"], blocked, cache)
    assert done.returncode == 0, done.stderr
    assert '"gender"' in done.stdout and '"distortion"' in done.stdout
    assert not list(cache.rglob("*.onnx")) and not list(cache.rglob("*.pt"))
