"""The distortion detector's network in PyTorch (:class:`DistortionNet`), for training and for the one
ONNX export that :class:`~facesuite.classify.distortion.DistortionDetector` runs (so detecting a
distortion never imports PyTorch)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from facesuite.classify.distortion_input import InputSpec
from facesuite.distortion import LABELS


def to_tensor(batch: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float in [-0.5, 0.5]."""
    return torch.from_numpy(batch).permute(0, 3, 1, 2).float().div_(255.0).sub_(0.5)


def _conv(c_in: int, c_out: int, kernel: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2 if kernel % 2 else 0, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class _Branch(nn.Module):
    """A 4x4 stride-4 "patchify" stem, then 3x3 convs, then average + max pooling.

    The stem sees every pixel of each 4x4 patch, so pixel-level detail (sharpness, single noisy
    pixels) survives while later layers run at a quarter of the resolution: several times
    cheaper on CPU than a full-resolution first layer. The max pool keeps sparse cues (dots,
    streaks) that averaging would dilute.
    """

    def __init__(self, widths: Sequence[int], strides: Sequence[int]) -> None:
        super().__init__()
        layers = [_conv(3, widths[0], 4, 4)]
        layers += [_conv(c_in, c_out, 3, stride) for c_in, c_out, stride in zip(widths, widths[1:], strides)]
        self.body = nn.Sequential(*layers)
        self.out_dim = 2 * widths[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.body(x)
        return torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1)


class DistortionNet(nn.Module):
    """Crop branch (native-resolution detail) + frame branch (global appearance), linear head."""

    def __init__(self, spec: InputSpec, classes: int = len(LABELS)) -> None:
        super().__init__()
        self.crop = _Branch((32, 48, 64, 96), (2, 2, 1)) if spec.crop else None
        self.frame = _Branch((16, 32, 64), (2, 2)) if spec.frame else None
        features = sum(b.out_dim for b in (self.crop, self.frame) if b is not None)
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(features, classes))

    def forward(self, crop: torch.Tensor | None, frame: torch.Tensor | None) -> torch.Tensor:
        parts = []
        if self.crop is not None:
            parts.append(self.crop(crop))
        if self.frame is not None:
            parts.append(self.frame(frame))
        return self.head(torch.cat(parts, dim=1))

    def run(self, crops: np.ndarray | None, frames: np.ndarray | None) -> np.ndarray:
        """Logits for uint8 view batches (what :class:`~facesuite.classify.distortion.DistortionDetector` calls)."""
        with torch.inference_mode():
            return self(to_tensor(crops) if crops is not None else None, to_tensor(frames) if frames is not None else None).numpy()



def load_net(weights: Path, spec: InputSpec, classes: int) -> DistortionNet:
    """The network of ``spec`` with the state dict at ``weights``, in eval mode."""
    net = DistortionNet(spec, classes)
    net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return net.eval()


class _OnUint8Views(nn.Module):
    """``net`` on uint8 ``(N, H, W, 3)`` views, scaled inside, as ONNX runs it."""

    def __init__(self, net: DistortionNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, *views: torch.Tensor) -> torch.Tensor:
        scaled = iter(view.permute(0, 3, 1, 2).float() / 255.0 - 0.5 for view in views)
        return self.net(next(scaled) if self.net.crop is not None else None, next(scaled) if self.net.frame is not None else None)


def export_onnx(net: DistortionNet, spec: InputSpec, path: str | Path) -> Path:
    """Export ``net`` to ONNX: uint8 views ``crop`` (N, crop, crop, 3) and/or ``frame`` (N, frame,
    frame, 3) -> ``logits`` (N, classes), dynamic batch axis."""
    names = [name for name, side in (("crop", spec.crop), ("frame", spec.frame)) if side]
    examples = tuple(torch.zeros(2, side, side, 3, dtype=torch.uint8) for side in (spec.crop, spec.frame) if side)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on constant shapes
        torch.onnx.export(_OnUint8Views(net.eval()), examples, str(path), input_names=names, output_names=["logits"],
                          dynamic_axes={**{name: {0: "batch"} for name in names}, "logits": {0: "batch"}},
                          opset_version=17, dynamo=False)
    return Path(path)
