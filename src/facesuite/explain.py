"""Grad-CAM heatmaps: which part of the aligned face drove a classifier's decision.

Uses pytorch-grad-cam on the models of :mod:`facesuite.classify`, whose networks take plain
``[0, 255]`` pixels and expose the spatial layer to explain as ``cam_layer()``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn


def gradcam(network: nn.Module, layer: nn.Module, chip: np.ndarray, target: int | None = None) -> tuple[np.ndarray, int]:
    """Grad-CAM of ``chip`` (HxWx3 uint8) for class ``target`` (default: the predicted class).

    Returns ``(heat, target)``: heat is an HxW float map in [0, 1], the chip's size.
    """
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    device = next(network.parameters()).device
    pixels = torch.from_numpy(chip.astype(np.float32).transpose(2, 0, 1)[None]).to(device)
    network.eval()
    if target is None:
        with torch.no_grad():
            target = int(network(pixels).argmax(1).item())
    with GradCAM(model=network, target_layers=[layer]) as cam:
        heat = cam(input_tensor=pixels, targets=[ClassifierOutputTarget(target)])[0]
    return heat, target


def overlay(chip: np.ndarray, heat: np.ndarray, weight: float = 0.45) -> np.ndarray:
    """The heatmap (jet colours) blended over the chip; same size as the chip, uint8 RGB."""
    from pytorch_grad_cam.utils.image import show_cam_on_image

    return show_cam_on_image(chip.astype(np.float32) / 255.0, heat, use_rgb=True, image_weight=1.0 - weight)


def save_rgb(image: np.ndarray, path: str | Path) -> Path:
    from PIL import Image

    from facesuite.text import open_output

    path = Path(path)
    with open_output(path, binary=True) as handle:
        Image.fromarray(image).save(handle, format=Image.registered_extensions().get(path.suffix.lower(), "PNG"))
    return path
