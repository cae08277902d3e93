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

from facesuite.config import MODELS_DIR, user_home
from facesuite.integrity import verify_model_file


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


def load_route_calibration(embedder: str) -> tuple[dict[str, float], dict | None]:
    """Per distortion type the identification threshold fitted at the target FPIR, and the face
    quality model (``facesuite calibrate --per-route``), from the file :func:`load_threshold` reads."""
    for folder in (user_home(), MODELS_DIR):
        path = _calibration_file(folder, embedder)
        if path.is_file():
            record = json.loads(path.read_text(encoding="utf-8"))
            return {kind: float(t) for kind, t in record.get("route_thresholds", {}).items()}, record.get("quality")
    return {}, None


#: The false-accept rates whose thresholds ``facesuite calibrate`` records as ``far_marks``, for
#: drawing a distance on the calibrated scale (the dashboard's pair page).
FAR_MARKS = (0.01, 0.001)


def far_marks(genuine: np.ndarray, impostor: np.ndarray) -> dict[str, float]:
    """The threshold at each of :data:`FAR_MARKS` the pairs can show (:func:`supports_far`), keyed
    by the rate as text (JSON keys)."""
    return {f"{far:g}": threshold_at_far(genuine, impostor, far) for far in FAR_MARKS if supports_far(len(impostor), far)}


def supports_far(impostor_pairs: int, far: float) -> bool:
    """Whether ``impostor_pairs`` different-person pairs (or non-mated searches) can show a
    false-accept (false-positive identification) rate of ``far``: at least one must fall within it."""
    return far * impostor_pairs >= 1


def load_far_marks(embedder: str) -> dict[float, float]:
    """``{far: threshold}`` from the calibration :func:`load_threshold` reads (empty when it
    records none)."""
    for folder in (user_home(), MODELS_DIR):
        path = _calibration_file(folder, embedder)
        if path.is_file():
            record = json.loads(path.read_text(encoding="utf-8"))
            return {float(far): float(t) for far, t in record.get("far_marks", {}).items()}
    return {}


def load_threshold(embedder: str, default: float) -> tuple[float, str]:
    """The threshold to use and what it is, in words an answer may carry to any client (never a
    file path): ``"user calibration, FAR 5%"``, ``"shipped calibration, FAR 1%"`` or
    ``"embedder default"``."""
    for folder, kind in ((user_home(), "user"), (MODELS_DIR, "shipped")):
        path = _calibration_file(folder, embedder)
        if path.is_file():
            if kind == "shipped":
                verify_model_file(path)  # the user's own calibration is their choice
            record = json.loads(path.read_text(encoding="utf-8"))
            far = record.get("target_far")
            return float(record["threshold"]), f"{kind} calibration" + (f", FAR {far:.2%}".replace(".00%", "%") if far else "")
    return default, "embedder default"
