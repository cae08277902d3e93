"""Learned restoration steps: a residual CNN per distortion type (trained by
``facesuite train restorer``, :mod:`facesuite.train.restorer`), shipped as ONNX files in
``facesuite/models/routing`` and run in ONNX Runtime on the aligned chip.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from facesuite.config import onnx_session
from facesuite.integrity import verify_model_file


class LearnedRestorer:
    """``chip -> restored chip`` (uint8 ``HxWx3`` RGB) through the network in ``path``, opened
    (and hash-checked) on first use: most runs never meet the type it restores."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.__name__ = path.stem
        self._session = None
        self._lock = threading.Lock()

    def __call__(self, chip: np.ndarray) -> np.ndarray:
        with self._lock:
            if self._session is None:
                verify_model_file(self.path)
                self._session = onnx_session(self.path)
        pixels = chip.astype(np.float32).transpose(2, 0, 1)[None] / 255
        (restored,) = self._session.run(None, {"chip": pixels})
        return (np.clip(restored[0], 0, 1) * 255 + 0.5).astype(np.uint8).transpose(1, 2, 0)
