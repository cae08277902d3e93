"""Verification thresholds calibrated on data, stored per embedder.

``facesuite calibrate DIR`` picks the cosine-distance threshold whose false-accept rate on
impostor pairs from ``DIR`` is the target (default 1%). Lookup order when a threshold is needed:
the user's calibration (``$FACESUITE_HOME/calibration/<embedder>.json``), then the calibration
shipped in the package (made by the same command on FACECOM training identities outside the dev
split), then the backend's default.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from facesuite.config import MODELS_DIR
from facesuite.integrity import verify_model_file


def user_home() -> Path:
    return Path(os.environ.get("FACESUITE_HOME", Path.home() / ".local/share/facesuite")).expanduser()


def _calibration_file(folder: Path, embedder: str) -> Path:
    return folder / "calibration" / f"{embedder}.json"


def threshold_at_far(genuine: np.ndarray, impostor: np.ndarray, far: float) -> float:
    """Largest distance threshold accepting at most ``far`` of impostor pairs (distance <= t)."""
    impostor = np.sort(np.asarray(impostor, dtype=np.float64))
    if impostor.size == 0:
        raise ValueError("no impostor pairs to calibrate on")
    allowed = int(np.floor(far * impostor.size))  # impostors we may accept
    if allowed == 0:
        return float(impostor[0] - 1e-6)
    return float((impostor[allowed - 1] + impostor[allowed]) / 2) if allowed < impostor.size else float(impostor[-1])


def save_calibration(embedder: str, record: dict, folder: Path | None = None) -> Path:
    path = _calibration_file(folder or user_home(), embedder)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2), encoding="utf-8")
    os.replace(tmp, path)
    return path


def load_threshold(embedder: str, default: float) -> tuple[float, str]:
    """The threshold to use and where it came from (a file path, or ``"default"``)."""
    for folder in (user_home(), MODELS_DIR):
        path = _calibration_file(folder, embedder)
        if path.is_file():
            verify_model_file(path)  # the shipped calibration; the user's own is their choice
            return float(json.loads(path.read_text(encoding="utf-8"))["threshold"]), str(path)
    return default, "default"
