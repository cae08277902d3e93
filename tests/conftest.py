"""Shared fixtures: the real FACECOM data (skipped with a reason when absent) and bad files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from facesuite.config import data_root


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    # Tests must not read detections cached by earlier runs on this machine.
    os.environ["FACESUITE_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    os.environ["FACESUITE_HOME"] = str(tmp_path_factory.mktemp("home"))


@pytest.fixture(scope="session")
def facecom_b() -> Path:
    root = data_root() / "facecom" / "task_b" / "train"
    if not root.is_dir():
        pytest.skip(f"FACECOM task_b not found at {root} (set FACESUITE_DATA)")
    return root


@pytest.fixture(scope="session")
def facecom_a() -> Path:
    root = data_root() / "facecom" / "task_a" / "train"
    if not root.is_dir():
        pytest.skip(f"FACECOM task_a not found at {root} (set FACESUITE_DATA)")
    return root


@pytest.fixture()
def bad_files(tmp_path: Path, facecom_b: Path) -> dict[str, Path]:
    """A zero-byte file, a text file named .jpg, and a truncated JPEG."""
    good = next(iter(sorted((facecom_b / "Colin_Powell").glob("*.jpg"))))
    files = {
        "empty": tmp_path / "empty.jpg",
        "text": tmp_path / "notes.jpg",
        "truncated": tmp_path / "truncated.jpg",
    }
    files["empty"].write_bytes(b"")
    files["text"].write_text("this is not an image\n")
    files["truncated"].write_bytes(good.read_bytes()[:600])
    return files
