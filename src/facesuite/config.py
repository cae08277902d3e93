"""Locations facesuite reads and writes: the data root, the detection cache and its own home (calibrations, logs),
and how a cache file is written."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
MODELS_DIR = PACKAGE_DIR / "models"


def data_root() -> Path:
    """Root of the shared face data: ``$FACESUITE_DATA``, else ``../shared/data`` from the cwd."""
    return Path(os.environ.get("FACESUITE_DATA", "../shared/data")).expanduser()


def cache_dir() -> Path:
    """Where detection crops are cached: ``$FACESUITE_CACHE``, else ``~/.cache/facesuite``."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "facesuite"
    return Path(os.environ.get("FACESUITE_CACHE", default)).expanduser()


def user_home() -> Path:
    """facesuite's own files (calibrations, the dashboard's gallery, fault logs):
    ``$FACESUITE_HOME``, else ``~/.local/share/facesuite``."""
    return Path(os.environ.get("FACESUITE_HOME", Path.home() / ".local/share/facesuite")).expanduser()


def write_atomically(path: Path, write: Callable[[str], object]) -> None:
    """Write through a temporary file and rename, so a concurrent reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, suffix=path.suffix)
    os.close(handle)
    try:
        write(temp)
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.remove(temp)
