"""Synthesise FACECOM's seven distortion types from clean images (albumentations).

Parameters were set by comparing FACECOM's real copies with their clean sources (224 px frames,
median over LFW-style identities): ``lowlight`` keeps ~30% of the brightness; ``sunny`` doubles
it and saturates ~40% of the pixels around the face; ``noisy`` flips ~8% of the pixels to
salt-and-pepper extremes, often per colour channel; ``resized`` matches a 0.5x down-and-up scale
(0.75x on the studio ``*_frontal`` shots); ``blurred`` a Gaussian of sigma ~2; ``foggy`` adds
patchy haze that lifts the mean by ~1.5x; ``rainy`` draws thin slanted light streaks.

    synth = Synthesizer(seed=0)
    copies = synth.all_types(image)            # {"blurred": array, ..., "sunny": array}
    write_distorted(root, out, types, seed)    # a whole identity-folder tree
"""

from __future__ import annotations

import os
import shutil
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
from tqdm import tqdm

from facesuite.data import DISTORTIONS, read_identity_folders
from facesuite.errors import InputError, Skipped
from facesuite.io import readable_images, write_image


def _pipelines() -> dict[str, A.Compose]:
    """One always-applied albumentations pipeline per distortion type."""
    # Sun flare centred where the face is: FACECOM's "sunny" glow sits on the face, not the sky.
    centre = (0.4, 0.35, 0.6, 0.6)
    return {
        "blurred": A.Compose([A.OneOf([
            A.GaussianBlur(blur_limit=0, sigma_limit=(1.5, 3.0), p=0.75),
            A.MotionBlur(blur_limit=(7, 13), p=0.25),
        ], p=1)]),
        "foggy": A.Compose([
            A.RandomFog(alpha_coef=0.12, fog_coef_range=(0.5, 0.9), p=1),
            A.RandomBrightnessContrast(brightness_limit=(0.05, 0.2), contrast_limit=(-0.4, -0.2), p=1),
        ]),
        "lowlight": A.Compose([
            # multiplicative, like an exposure cut; then gamma deepens the shadows a little
            A.MultiplicativeNoise(multiplier=(0.22, 0.4), per_channel=False, elementwise=False, p=1),
            A.RandomGamma(gamma_limit=(100, 140), p=1),
        ]),
        "noisy": A.Compose([A.OneOf([
            A.SaltAndPepper(amount=(0.04, 0.14), salt_vs_pepper=(0.4, 0.6), p=0.75),
            A.GaussNoise(std_range=(0.08, 0.2), per_channel=True, p=0.25),
        ], p=1)]),
        "rainy": A.Compose([
            A.RandomRain(slant_range=(-12, 12), drop_length=None, drop_width=1, drop_color=(210, 210, 210),
                         blur_value=3, brightness_coefficient=0.9, rain_type="default", p=1),
        ]),
        "resized": A.Compose([
            A.Downscale(scale_range=(0.4, 0.75),
                        interpolation_pair={"downscale": cv2.INTER_AREA, "upscale": cv2.INTER_LINEAR}, p=1),
        ]),
        "sunny": A.Compose([
            A.RandomSunFlare(flare_roi=centre, src_radius=160, src_color=(255, 255, 245), angle_range=(0, 1),
                             num_flare_circles_range=(1, 3), method="overlay", p=1),
            A.RandomBrightnessContrast(brightness_limit=(0.25, 0.5), contrast_limit=(-0.3, 0.0), p=1),
        ]),
    }


class Synthesizer:
    """Applies distortion types to RGB uint8 images; reproducible for a given ``seed``.

    Each (image key, type) pair gets its own random stream derived from ``seed``, so the copy of
    one image does not change when other images are added or the order changes.
    """

    def __init__(self, seed: int = 0, types: Sequence[str] = DISTORTIONS) -> None:
        unknown = [t for t in types if t not in DISTORTIONS]
        if unknown:
            raise InputError(f"unknown distortion type(s) {', '.join(unknown)}; choose from {', '.join(DISTORTIONS)}")
        self.seed = seed
        self.types = tuple(types)
        self._pipelines = _pipelines()
        self._count = 0

    def apply(self, image: np.ndarray, kind: str, key: str | None = None) -> np.ndarray:
        """``image`` with distortion ``kind``; ``key`` (e.g. the file name) fixes its randomness."""
        if key is None:
            key = str(self._count)
            self._count += 1
        pipeline = self._pipelines[kind]
        pipeline.set_random_seed(zlib.crc32(f"{self.seed}/{key}/{kind}".encode()))
        return pipeline(image=image)["image"]

    def all_types(self, image: np.ndarray, key: str | None = None) -> dict[str, np.ndarray]:
        """Every configured type applied to ``image``."""
        if key is None:
            key = str(self._count)
            self._count += 1
        return {kind: self.apply(image, kind, key) for kind in self.types}


@dataclass
class DistortSummary:
    clean: int
    written: int
    skipped: list[Skipped]


def one_type_each(chips: np.ndarray, keys: Sequence[str], seed: int = 0) -> np.ndarray:
    """Each chip with one distortion type, the seven spread evenly over the chips in a seeded
    order (training augmentation: every type equally often, each chip's copy reproducible)."""
    synthesizer = Synthesizer(seed=seed)
    kinds = np.random.default_rng(seed).permutation(len(chips)) % len(DISTORTIONS)
    return np.stack([synthesizer.apply(chip, DISTORTIONS[k], key=key) for chip, k, key in zip(chips, kinds, keys)])


def _place_clean(source: Path, target: Path) -> None:
    """A hard link where possible (no extra disk), else a copy."""
    if target.exists():
        return
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def write_distorted(
    root: str | Path, out: str | Path, types: Sequence[str] = DISTORTIONS, seed: int = 0, quality: int = 95
) -> DistortSummary:
    """For every clean image under ``root/<identity>/``, write ``out/<identity>/<image>`` and
    ``out/<identity>/distortion/<stem>_<type>.jpg`` for each type (FACECOM's layout)."""
    dataset = read_identity_folders(root)
    if not dataset.clean:
        raise InputError("no clean images in the identity folders", root)
    out = Path(out)
    synthesizer = Synthesizer(seed, types)
    written, skipped = 0, []
    identity_of = dict(dataset.clean)
    for path, image in readable_images(tqdm(identity_of, desc="distort", unit="img", leave=False), skipped):
        identity = identity_of[path]
        folder = out / identity
        (folder / "distortion").mkdir(parents=True, exist_ok=True)
        _place_clean(path, folder / path.name)
        for kind, copy in synthesizer.all_types(image, key=f"{identity}/{path.name}").items():
            target = folder / "distortion" / f"{path.stem}_{kind}.jpg"
            write_image(target, copy, jpeg_quality=quality)
            written += 1
    return DistortSummary(len(dataset.clean), written, skipped)
