"""Restoration steps applied to an aligned face chip before embedding, one per distortion type.

Most are classic, cheap image operations (OpenCV) aimed at what the distortion destroys: a median
filter removes salt-and-pepper dots, a grey-level opening removes thin bright rain streaks, a gamma
that pulls the mean to mid-grey plus local contrast equalisation (CLAHE) brings back washed-out or
dark faces, an unsharp mask counters blur. The ``cnn-<type>`` steps are small networks trained on
pixel-aligned pairs (:mod:`facesuite.route.learned`); they replaced the filters for noisy, rainy and
blurred faces. Which step each route uses is measured, not assumed, on the train identities
(``benchmarks/restore_select.py``; routing model card).
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from facesuite.config import MODELS_DIR
from facesuite.registry import Registry
from facesuite.route.learned import LearnedRestorer

Restorer = Callable[[np.ndarray], np.ndarray]


def identity(chip: np.ndarray) -> np.ndarray:
    return chip


def opening(size: int) -> Restorer:
    """Grey-level opening (erode, then dilate) with a ``size`` square: removes bright structures
    thinner than the square -- rain streaks, white noise dots -- and keeps larger face shapes."""
    kernel = np.ones((size, size), np.uint8)

    def restore(chip: np.ndarray) -> np.ndarray:
        return cv2.morphologyEx(chip, cv2.MORPH_OPEN, kernel)

    restore.__name__ = f"open{size}"
    return restore


def chain(*steps: Restorer) -> Restorer:
    """The steps one after another, named ``a+b``."""

    def restore(chip: np.ndarray) -> np.ndarray:
        for step in steps:
            chip = step(chip)
        return chip

    restore.__name__ = "+".join(step.__name__ for step in steps)
    return restore


def median(size: int) -> Restorer:
    def restore(chip: np.ndarray) -> np.ndarray:
        return cv2.medianBlur(chip, size)

    restore.__name__ = f"median{size}"
    return restore


def switching(step: Restorer, threshold: int) -> Restorer:
    """``step`` applied only where it changes a pixel's grey level by more than ``threshold``:
    impulse noise and rain streaks hit a fraction of the pixels, so the rest keep their detail
    instead of being smoothed with them."""

    def restore(chip: np.ndarray) -> np.ndarray:
        filtered = step(chip)
        change = np.abs(chip.astype(np.int16) - filtered.astype(np.int16)).mean(axis=2)
        return np.where((change > threshold)[..., None], filtered, chip)

    restore.__name__ = f"switch{threshold}-{step.__name__}"
    return restore


def exposure(chip: np.ndarray, target_mean: float = 0.45, clip_limit: float = 2.0) -> np.ndarray:
    """Gamma that maps the mean intensity to ``target_mean``, then CLAHE on lightness."""
    scaled = chip.astype(np.float32) / 255.0
    gamma = np.log(target_mean) / np.log(float(np.clip(scaled.mean(), 0.02, 0.98)))
    corrected = (np.clip(scaled**gamma, 0, 1) * 255).astype(np.uint8)
    lab = cv2.cvtColor(corrected, cv2.COLOR_RGB2LAB)
    lab[..., 0] = cv2.createCLAHE(clipLimit=clip_limit, tileGridSize=(4, 4)).apply(lab[..., 0])
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)


def contrast_stretch(chip: np.ndarray) -> np.ndarray:
    """Stretch the 1st-99th percentile of each channel to the full range (haze lifts contrast)."""
    low, high = np.percentile(chip, (1, 99), axis=(0, 1))
    stretched = (chip.astype(np.float32) - low) / np.maximum(high - low, 1.0)
    return (np.clip(stretched, 0, 1) * 255).astype(np.uint8)


def unsharp(chip: np.ndarray, amount: float = 1.0) -> np.ndarray:
    blurred = cv2.GaussianBlur(chip, (0, 0), 2.0)
    return cv2.addWeighted(chip, 1 + amount, blurred, -amount, 0)


def median_then_exposure(chip: np.ndarray) -> np.ndarray:
    return exposure(cv2.medianBlur(chip, 3))


#: Candidate restorations, by name (the routing benchmark evaluates each on each type).
RESTORERS: Registry[Restorer] = Registry("restorer")
RESTORERS.register("none")(identity)
RESTORERS.register("median3")(median(3))
RESTORERS.register("median5")(median(5))
RESTORERS.register("median7")(median(7))
RESTORERS.register("open5")(opening(5))
RESTORERS.register("open5+median5")(chain(opening(5), median(5)))
RESTORERS.register("exposure")(exposure)
RESTORERS.register("contrast")(contrast_stretch)
RESTORERS.register("unsharp")(unsharp)
RESTORERS.register("median3+exposure")(median_then_exposure)
# Candidates measured for noisy and rainy faces on the train cross protocol (routing model card).
RESTORERS.register("median5+median5")(chain(median(5), median(5)))
RESTORERS.register("median7+median5")(chain(median(7), median(5)))
RESTORERS.register("switch10-median7")(switching(median(7), 10))
RESTORERS.register("switch20-median7")(switching(median(7), 20))
RESTORERS.register("open7")(opening(7))
RESTORERS.register("switch10-open5")(switching(opening(5), 10))
RESTORERS.register("switch20-open5")(switching(opening(5), 20))
# Learned: a residual CNN per type, trained on the train identities' pixel-aligned pairs by
# `facesuite train restorer` (routing model card), for each type whose network is shipped.
for _network in sorted((MODELS_DIR / "routing").glob("*.onnx")):
    RESTORERS.register(f"cnn-{_network.stem}")(LearnedRestorer(_network))
