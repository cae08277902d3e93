"""MTCNN's P-, R- and O-Net in PyTorch, with facenet-pytorch's weights: the source of the ONNX files
:mod:`facesuite.detect.mtcnn` runs, exported by ``python -m facesuite.train.export`` (the cascade
itself never runs these, so detecting never imports PyTorch)."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from facesuite.errors import InputError
from facesuite.integrity import package_file, verify_model_file

# facenet-pytorch's converted weights (MIT licence), read from its installed package folder without
# importing it (it imports torchvision); recorded in the model manifest.
WEIGHTS = {"pnet": "facenet_pytorch/data/pnet.pt", "rnet": "facenet_pytorch/data/rnet.pt",
           "onet": "facenet_pytorch/data/onet.pt"}


def weights_file(name: str) -> Path:
    """The installed ``.pt`` of ``pnet``, ``rnet`` or ``onet``, hash-checked."""
    path = package_file(WEIGHTS[name])
    if path is None or not path.is_file():
        raise InputError(f"MTCNN weights {WEIGHTS[name]} not found: pip install --no-deps facenet-pytorch==2.6.0")
    verify_model_file(path)
    return path


def _prelu(x: torch.Tensor, prelu: nn.PReLU) -> torch.Tensor:
    """``prelu(x)`` written as ``relu(x) + slope * min(x, 0)``: the same numbers bit for bit, but
    exported as operators ONNX Runtime runs fast; its own PRelu took half of R-Net's time."""
    slope = prelu.weight.view(1, -1, *([1] * (x.dim() - 2)))
    return torch.relu(x) + slope * torch.clamp(x, max=0)


def _pooled_prelu(x: torch.Tensor, prelu: nn.PReLU, pool: nn.MaxPool2d) -> torch.Tensor:
    """``pool(prelu(x))`` computed on the pooled map, a quarter of the size: a window's largest
    PReLU value is the PReLU of its largest or of its smallest input (PReLU is increasing, or
    V-shaped where a channel's slope is negative), so this is exact, bit for bit."""
    return torch.maximum(_prelu(pool(x), prelu), _prelu(-pool(-x), prelu))


class PNet(nn.Module):
    """Proposal network: fully convolutional, a face probability and box offsets per 12 px window."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
        self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, 1)  # face / not face
        self.conv4_2 = nn.Conv2d(32, 4, 1)  # box offsets

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = _pooled_prelu(self.conv1(x), self.prelu1, self.pool1)
        x = _prelu(self.conv3(_prelu(self.conv2(x), self.prelu2)), self.prelu3)
        return torch.softmax(self.conv4_1(x), dim=1)[:, 1], self.conv4_2(x)


class RNet(nn.Module):
    """Refinement network on 24 px crops: face probability and box offsets."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = _pooled_prelu(self.conv1(x), self.prelu1, self.pool1)
        x = _pooled_prelu(self.conv2(x), self.prelu2, self.pool2)
        x = _prelu(self.conv3(x), self.prelu3)
        # The converted Caffe weights expect the feature map flattened as (width, height, channel).
        x = _prelu(self.dense4(x.permute(0, 3, 2, 1).flatten(1)), self.prelu4)
        return torch.softmax(self.dense5_1(x), dim=1)[:, 1], self.dense5_2(x)


class ONet(nn.Module):
    """Output network on 48 px crops: face probability, box offsets and five landmarks."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)  # landmarks: five x, then five y, as box fractions

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = _pooled_prelu(self.conv1(x), self.prelu1, self.pool1)
        x = _pooled_prelu(self.conv2(x), self.prelu2, self.pool2)
        x = _pooled_prelu(self.conv3(x), self.prelu3, self.pool3)
        x = _prelu(self.conv4(x), self.prelu4)
        x = _prelu(self.dense5(x.permute(0, 3, 2, 1).flatten(1)), self.prelu5)
        return torch.softmax(self.dense6_1(x), dim=1)[:, 1], self.dense6_2(x), self.dense6_3(x)


NETWORKS = {"pnet": PNet, "rnet": RNet, "onet": ONet}


def load_network(name: str) -> nn.Module:
    """One of ``pnet``, ``rnet``, ``onet`` in PyTorch with its shipped weights, in eval mode."""
    network = NETWORKS[name]()
    network.load_state_dict(torch.load(weights_file(name), map_location="cpu", weights_only=True))
    return network.eval()


def export(network: nn.Module, path: str) -> None:
    """Write ``network`` to ONNX at ``path``."""
    # Batch and (for P-Net) both image sides vary; the traced graph is otherwise static.
    axes = {"pixels": {0: "batch", 2: "height", 3: "width"} if isinstance(network, PNet) else {0: "batch"}}
    side = 24 if isinstance(network, RNet) else 48
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on constant shapes
        torch.onnx.export(network, (torch.zeros(2, 3, side, side),), path, input_names=["pixels"],
                          output_names=["probability", "offsets", "landmarks"][: 3 if isinstance(network, ONet) else 2],
                          dynamic_axes=axes, dynamo=False, opset_version=17)
