"""Every pluggable family sits behind one registry helper: the documented names are there, an
unknown name is a one-line InputError listing the choices, and a name cannot be taken twice.
Backends register into a registry that imports none of them, through one loader module that a
failed import leaves retryable; questions about a gallery URI load no backend."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from facesuite.classify.gender import GENDER_KINDS
from facesuite.embed import EMBEDDERS
from facesuite.errors import InputError
from facesuite.gallery.backends import BACKENDS
from facesuite.registry import Registry
from facesuite.route.restore import RESTORERS


def test_each_family_lists_what_the_readme_documents() -> None:
    assert sorted(EMBEDDERS.list()) == ["dlib", "dlib-int8", "dlib-onnx", "dlib-torch"]
    assert sorted(GENDER_KINDS.list()) == ["backbone", "cnn", "embedding", "finetune"]
    assert {"none", "median5+median5", "switch10-open5", "unsharp", "exposure"} <= set(RESTORERS.list())  # the shipped routes' steps
    assert sorted(BACKENDS.list()) == ["folder", "milvus"]


def test_unknown_names_are_input_errors_listing_the_choices() -> None:
    with pytest.raises(InputError, match=r"unknown embedder 'dlib-x'; choose from .*dlib-torch"):
        EMBEDDERS.create("dlib-x")
    assert "sharpen9" not in RESTORERS and "median7" in RESTORERS


def test_a_name_is_registered_once() -> None:
    registry: Registry = Registry("thing")
    registry.register("a")(lambda: 1)
    with pytest.raises(ValueError, match="already registered"):
        registry.register("a")(lambda: 2)
    assert registry.create("a") == 1 and registry.list() == ["a"] and len(registry) == 1


def test_a_loader_that_failed_once_loads_when_imported_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A backend whose import fails the first time (a dependency not there yet) leaves no
    half-filled registry behind: importing the loader again registers every backend, each once."""
    package = tmp_path / "plugins"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "base.py").write_text("from facesuite.registry import Registry\n\nTHINGS = Registry('thing')\n")
    (package / "steady.py").write_text("from plugins.base import THINGS\n\nTHINGS.register('steady')(str)\n")
    (package / "flaky.py").write_text(
        "from pathlib import Path\n\n"
        "if not (Path(__file__).parent / 'ready').exists():\n    raise ImportError('not ready yet')\n\n"
        "from plugins.base import THINGS\n\nTHINGS.register('flaky')(str)\n")
    (package / "loader.py").write_text("import plugins.steady\nimport plugins.flaky\nfrom plugins.base import THINGS\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        with pytest.raises(ImportError, match="not ready yet"):
            importlib.import_module("plugins.loader")
        (package / "ready").touch()
        assert importlib.import_module("plugins.loader").THINGS.list() == ["steady", "flaky"]
    finally:
        for name in [name for name in sys.modules if name.partition(".")[0] == "plugins"]:
            del sys.modules[name]


def test_questions_about_a_gallery_uri_load_no_backend(tmp_path: Path) -> None:
    from facesuite.gallery import FolderGallery

    with FolderGallery.create(tmp_path / "people", "test", 4, 0.4) as gallery:
        gallery.enroll("alice", np.eye(4, dtype=np.float32)[:1], ["alice.jpg"])
    question = (
        "import json, sys\n"
        "from facesuite.gallery import display_uri, gallery_exists, is_milvus_uri\n"
        f"answers = [gallery_exists({str(tmp_path / 'people')!r}), gallery_exists({str(tmp_path)!r}),\n"
        "           is_milvus_uri('faces.db'), display_uri('milvus://me:secret@host:19530/faces')]\n"
        "loaded = sorted(m for m in sys.modules if m in ('faiss', 'pymilvus') or m.startswith('facesuite.gallery.'))\n"
        "print(json.dumps([answers, loaded]))\n"
    )
    answers, loaded = json.loads(subprocess.run([sys.executable, "-c", question], capture_output=True, text=True,
                                                check=True).stdout)
    assert answers == [True, False, True, "milvus://host:19530/faces"]
    assert loaded == ["facesuite.gallery.base"]


def test_cli_choices_come_from_the_registries_with_one_default(capsys: pytest.CaptureFixture[str]) -> None:
    """``train gender --kind`` offers the gender kinds registry's names (an unknown one is exit 2
    naming each), and a run without ``--kind`` trains the kind the trainer itself defaults to."""
    from facesuite.cli import build_parser, main
    from facesuite.train.gender import TrainOptions

    with pytest.raises(SystemExit) as exit_info:
        main(["train", "gender", "photos", "--out", "model", "--kind", "resnet"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "invalid choice: 'resnet'" in error and all(f"'{kind}'" in error for kind in GENDER_KINDS)
    assert build_parser().parse_args(["train", "gender", "photos", "--out", "model"]).kind == TrainOptions().kind
    with pytest.raises(SystemExit):
        main(["eval", "recognition", "faces", "--out", "report", "--protocol", "closed"])
    assert "invalid choice: 'closed' (choose from 'facecom', 'cross')" in capsys.readouterr().err
