"""The deletion test of a Grad-CAM map: does masking the pixels it calls hottest change the
decision more than masking as many random pixels?

Used by ``gender_dev.py`` (which layer to explain) and by ``tests/test_gender_finetune.py``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def deletion_drops(network: nn.Module, layer: nn.Module, chips: list[np.ndarray], fraction: float = 0.1,
                   seed: int = 0, batch: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Deletion test of Grad-CAM: per chip, the drop in p(predicted class) when the hottest
    ``fraction`` of its pixels are replaced, and when a random ``fraction`` are.

    Deleted pixels take the values of a strongly blurred copy of the chip (as in RISE's deletion
    metric), not a flat colour: scattered grey pixels would add salt-and-pepper noise, which
    this network reacts to whatever the pixels showed. A map that shows what the decision rests
    on makes the first drop the larger one.
    """
    import cv2

    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    rng = np.random.default_rng(seed)
    device = next(network.parameters()).device
    network.eval()
    hot_drops, random_drops = [], []
    with GradCAM(model=network, target_layers=[layer]) as cam:
        for start in range(0, len(chips), batch):
            part = chips[start : start + batch]
            pixels = torch.from_numpy(np.stack(part).astype(np.float32).transpose(0, 3, 1, 2)).to(device)
            blurred = np.stack([cv2.GaussianBlur(chip, (0, 0), sigmaX=10) for chip in part])
            fill = torch.from_numpy(blurred.astype(np.float32).transpose(0, 3, 1, 2)).to(device)
            with torch.no_grad():
                probs = torch.softmax(network(pixels), dim=1)
            targets = probs.argmax(1)
            heat = cam(input_tensor=pixels, targets=[ClassifierOutputTarget(int(t)) for t in targets])
            n, _, height, width = pixels.shape
            k = int(round(fraction * height * width))
            # Tiny noise breaks ties (flat regions of the upsampled map) at random.
            order = np.argsort(-(heat.reshape(n, -1) + rng.uniform(0, 1e-6, size=(n, height * width))), axis=1)
            hot = torch.zeros(n, height * width, dtype=torch.bool)
            hot[torch.arange(n)[:, None], torch.from_numpy(order[:, :k])] = True
            chance = torch.zeros(n, height * width, dtype=torch.bool)
            chance[torch.arange(n)[:, None], torch.from_numpy(rng.random((n, height * width)).argsort(axis=1)[:, :k])] = True
            for mask, drops in ((hot, hot_drops), (chance, random_drops)):
                masked = torch.where(mask.view(n, 1, height, width).to(device), fill, pixels)
                with torch.no_grad():
                    after = torch.softmax(network(masked), dim=1)
                drops.append((probs - after).gather(1, targets[:, None])[:, 0].cpu().numpy())
    return np.concatenate(hot_drops), np.concatenate(random_drops)
