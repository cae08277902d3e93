"""Gender classifiers on aligned face chips, and the saved-model format they share.

Four kinds, behind one interface (:class:`GenderModel`):

``cnn``
    MobileNetV3-Small (torchvision's architecture) with a Squeeze-and-Excitation block on its
    576-channel head, trained on gender alone.
``embedding``
    Logistic regression on dlib's 128-D face embedding, so one backbone pass gives both the
    identity vector and the gender; it runs in NumPy (:class:`~facesuite.classify.gender_head.LinearGenderHead`).
``backbone``
    Logistic regression on the same pass's 128-D embedding plus the 640 pooled channels of its
    last three hidden stages (``DlibResNet.describe``): the identity embedding was trained to
    ignore attributes such as gender, its hidden stages were not. Still one backbone pass, and
    the same NumPy head.
``finetune``
    A gender branch: a fine-tuned copy of the ResNet's last stage on the shared, frozen trunk,
    plus a linear head on the pooled trunk stages and the branch's output
    (:mod:`facesuite.train.gender_finetune`). The analyzer runs the trunk once for both the
    identity embedding and the branch.

Every network here maps float pixels ``(N, 3, H, W)`` in ``[0, 255]`` to two logits
``(male, female)``; normalisation happens inside, so Grad-CAM and the CLI feed plain chips.

A model folder holds ``model.json`` (kind, chip geometry, labels, decision threshold on
``p_female``) and weights: ``weights.pt`` (a state_dict, loaded with ``weights_only=True``) for the
CNN and the fine-tuned branch, ``weights.npz`` (plain arrays, loaded without pickle) for the
logistic-regression heads.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facesuite.classify.gender_head import LINEAR_KINDS, Abstention, LinearGenderHead, gender_labels, mirror_when_unsure
from facesuite.config import MODELS_DIR
from facesuite.embed import ChipSpec, Embedder
from facesuite.embed.dlib.reader import POOLED_WIDTH
from facesuite.errors import InputError
from facesuite.integrity import verify_model_folder
from facesuite.registry import Registry

LABELS = ("male", "female")
# Kinds whose head reads the recognition backbone, so the analyzer can reuse its pass.
HEAD_KINDS = ("embedding", "backbone", "finetune")
# ImageNet statistics: MobileNetV3's batch-norm layers expect inputs on this scale, and a PATH
# init taken from an ImageNet-trained backbone keeps working.
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


def default_model_dir() -> Path:
    """The gender model shipped inside the package."""
    return MODELS_DIR / "gender"


@dataclass
class GenderConfig:
    """Contents of ``model.json``."""

    kind: str
    chip_size: int
    chip_padding: float
    threshold: float = 0.5
    labels: list[str] = field(default_factory=lambda: list(LABELS))
    embedder: str | None = None
    metrics: dict = field(default_factory=dict)
    #: Scores this close to 0.5 are averaged with the mirrored chip's score (0: never;
    #: :func:`~facesuite.classify.gender_head.mirror_when_unsure`).
    mirror_margin: float = 0.0
    #: When the model says ``uncertain`` (:class:`~facesuite.classify.gender_head.Abstention`;
    #: empty: it always answers).
    abstention: dict = field(default_factory=dict)

    @property
    def chip_spec(self) -> ChipSpec:
        return ChipSpec(self.chip_size, self.chip_padding)

    def save(self, folder: Path) -> None:
        (folder / "model.json").write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> GenderConfig:
        path = folder / "model.json"
        if not path.is_file():
            raise InputError("not a gender model folder (no model.json)", folder)
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(record, dict) and "interval" in record and "labels" not in record:
                raise InputError("holds an age model, not a gender model (give it as the age model)", folder)
            config = cls(**record)
        except (json.JSONDecodeError, TypeError) as error:
            raise InputError(f"unreadable model.json ({error})", path) from None
        if config.kind not in GENDER_KINDS:
            raise InputError(f"unknown model kind {config.kind!r}", path)
        return config


# --------------------------------------------------------------------------------------------
# Networks
# --------------------------------------------------------------------------------------------


class SqueezeExcite(nn.Module):
    """Channel attention: reweight feature maps by a gate computed from their global average."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, channels // reduction, 1)
        self.expand = nn.Conv2d(channels // reduction, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.expand(F.relu(self.reduce(x.mean(dim=(2, 3), keepdim=True))))
        return x * torch.sigmoid(gate)


class GenderNet(nn.Module):
    """MobileNetV3-Small features -> SE block -> pooled 576-D -> MLP head -> (male, female) logits."""

    def __init__(self, dropout: float = 0.2) -> None:
        super().__init__()
        from torchvision.models import mobilenet_v3_small

        self.features = mobilenet_v3_small(weights=None).features
        for module in self.features.modules():
            if isinstance(module, nn.BatchNorm2d):
                # torchvision's 0.01 suits ImageNet-length runs; in a few hundred steps from
                # scratch the running statistics stay far from the batch ones and eval-mode
                # outputs collapse to a constant.
                module.momentum = 0.1
        channels = 576
        self.se = SqueezeExcite(channels)
        self.head = nn.Sequential(
            nn.Linear(channels, 256), nn.Hardswish(), nn.Dropout(dropout), nn.Linear(256, len(LABELS))
        )
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1) * 255.0)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.se(self.features((pixels - self.mean) / self.std))
        return self.head(x.mean(dim=(2, 3)))

    def head_parameters(self) -> list[nn.Parameter]:
        return list(self.se.parameters()) + list(self.head.parameters())

    def cam_layer(self) -> nn.Module:
        # The SE output is the last spatial map and already carries the head's channel weighting.
        return self.se

    def load_init(self, path: str | Path) -> list[str]:
        """Start from a saved state_dict: a whole GenderNet, or a torchvision MobileNetV3-Small
        (only its ``features.*`` are used). Returns the names of the parameters left at random."""
        path = Path(path)
        if not path.is_file():
            raise InputError("no such weights file for --init", path)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # torch raises many types for a bad file
            raise InputError(f"cannot load weights ({type(error).__name__})", path) from None
        if not isinstance(state, dict):
            raise InputError("expected a state_dict", path)
        own = self.state_dict()
        usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
        if not any(k.startswith("features.") for k in usable):
            raise InputError("no MobileNetV3-Small feature weights in this file", path)
        self.load_state_dict(usable, strict=False)
        return sorted(set(own) - set(usable))


class EmbeddingGenderNet(nn.Module):
    """dlib's ResNet under a linear head (the ``embedding`` and ``backbone`` kinds), in PyTorch for
    Grad-CAM only: the gradients need the whole path in one framework. The answers are the NumPy
    head's (:class:`~facesuite.classify.gender_head.LinearGenderHead`), whose weights this network
    takes as they are (:meth:`~facesuite.classify.gender_head.LinearGenderHead.folded`).
    """

    def __init__(self, head: LinearGenderHead) -> None:
        super().__init__()
        from facesuite.embed.dlib.network import load_dlib_resnet

        self.backbone = load_dlib_resnet()
        self.hidden_columns, self.reads_maps = head.hidden_columns, head.reads_maps
        weights, bias = head.folded()
        self.linear = nn.Linear(len(weights), 1)
        with torch.no_grad():
            self.linear.weight.copy_(torch.as_tensor(weights, dtype=torch.float32)[None])
            self.linear.bias.fill_(bias)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        descriptor, hidden = self.backbone.describe(pixels, maps=self.reads_maps)
        z = self.linear(torch.cat([hidden[:, : self.hidden_columns], F.normalize(descriptor, dim=1)], dim=1))[:, 0]
        # Two logits whose softmax is (1 - sigmoid(z), sigmoid(z)): same contract as the CNN.
        return torch.stack([-z / 2, z / 2], dim=1)

    def cam_layer(self) -> nn.Module:
        # 8x8 stage: the 2x2 last stage is too coarse to say which part of the face mattered.
        return self.backbone.stages[2]


class FinetuneGenderNet(nn.Module):
    """dlib's trunk (shared, frozen) -> gender branch (a fine-tuned copy of the last stage) -> head.

    The head is linear on ``[pooled trunk stages (384), pooled branch output (256)]``, standardised
    with the training set's statistics. Only the branch, the head and the statistics are saved; the
    trunk is dlib's, so the identity embedder's pass can feed the branch (:meth:`head`).
    """

    #: Pooled trunk channels (``DlibResNet.trunk``) and the width of the hidden features that
    #: ``DlibResNet.describe(..., maps=True)`` puts before the flattened 256x4x4 map.
    TRUNK_POOLED = 384
    DESCRIBED_POOLED = POOLED_WIDTH

    def __init__(self, dropout: float = 0.2) -> None:
        super().__init__()
        import copy

        from facesuite.embed.dlib.network import load_dlib_resnet

        # The trunk is never trained here (training reads its cached outputs), but keeps gradients
        # enabled so Grad-CAM can explain any of its stages through the fine-tuned branch.
        self.backbone = load_dlib_resnet()
        # The branch is the trainable part (and Grad-CAM needs gradients at its output).
        self.branch = copy.deepcopy(self.backbone.stages[-1]).requires_grad_(True)
        width = self.TRUNK_POOLED + self.backbone.fc.in_features
        self.register_buffer("mean", torch.zeros(width))
        self.register_buffer("scale", torch.ones(width))
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(width, len(LABELS))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        last_input, pooled = self.backbone.trunk(pixels)
        return self.logits(pooled, last_input)

    def features(self, trunk_pooled: torch.Tensor, last_input: torch.Tensor) -> torch.Tensor:
        """The standardised head input for a trunk's pooled stages and last-stage input map."""
        x = torch.cat([trunk_pooled, self.branch(last_input).mean(dim=(2, 3))], dim=1)
        return (x - self.mean) / self.scale

    def logits(self, trunk_pooled: torch.Tensor, last_input: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.features(trunk_pooled, last_input)))

    def head(self, embedding: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """Logits from the identity pass's hidden features (``describe(..., maps=True)``)."""
        last_input = hidden[:, self.DESCRIBED_POOLED :].reshape(-1, self.backbone.fc.in_features, 4, 4)
        return self.logits(hidden[:, : self.TRUNK_POOLED], last_input)

    def saved_state(self) -> dict[str, torch.Tensor]:
        """What a model folder stores: everything but the shared trunk (dlib's own weights)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("backbone.")}

    def cam_layer(self) -> nn.Module:
        # The branch's input map (4x4), with gradients through the fine-tuned branch. The branch's
        # own last convolution is 1x1 (dlib's unpadded stride-2 conv on 4x4) and its output 2x2:
        # on 300 dev faces, masking the hottest 10% of that map's pixels lowered p(predicted) by
        # 0.005 vs 0.007 for a random 10%; on the input map by 0.024 vs 0.007.
        return self.backbone.stages[-2]


def chips_to_tensor(chips: Sequence[np.ndarray]) -> torch.Tensor:
    """Stack uint8 ``HxWx3`` RGB chips into a float ``(N, 3, H, W)`` tensor of values in [0, 255]."""
    return torch.from_numpy(np.stack(chips).astype(np.float32).transpose(0, 3, 1, 2))


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# --------------------------------------------------------------------------------------------
# Loaded model
# --------------------------------------------------------------------------------------------


class GenderModel:
    """A saved gender model ready to predict: ``p_female`` per chip and a tuned threshold."""

    def __init__(self, config: GenderConfig, network: nn.Module, device: torch.device | None = None,
                 linear_head: tuple[LinearGenderHead, Embedder] | None = None) -> None:
        self.config = config
        self.device = device or pick_device()
        self.network = network.to(self.device).eval()
        # The linear kinds' head and a pass of its embedder space: their only scoring path.
        self._linear_head = linear_head

    @property
    def chip_spec(self) -> ChipSpec:
        return self.config.chip_spec

    @property
    def threshold(self) -> float:
        return self.config.threshold

    @classmethod
    def load(cls, folder: str | Path | None = None) -> GenderModel:
        folder = Path(folder) if folder is not None else default_model_dir()
        if not folder.is_dir():
            raise InputError("no such model folder", folder)
        verify_model_folder(folder)
        config = GenderConfig.load(folder)
        network = load_network(config, folder)
        if config.kind not in LINEAR_KINDS:
            return cls(config, network)
        # Chips are scored as the analyzer scores them: the NumPy head on a pass of its space (for a
        # head of the int8 network's space, that network; the PyTorch network here, its float
        # twin, serves Grad-CAM).
        from facesuite.embed import get_embedder

        head = LinearGenderHead.load(folder)
        return cls(config, network, linear_head=(head, get_embedder(head.space)))

    def p_female(self, chips: Sequence[np.ndarray], batch_size: int = 64) -> np.ndarray:
        """Probability of ``female`` for each chip (chips must have the model's chip size)."""
        size = self.config.chip_size
        for chip in chips:
            if chip.shape != (size, size, 3):
                raise ValueError(f"expected {size}x{size}x3 chips, got {chip.shape}")
        p_female = self._network_p_female(chips, batch_size)
        return mirror_when_unsure(p_female, self.config.mirror_margin,
                                  lambda rows: self._network_p_female([chips[i][:, ::-1] for i in rows], batch_size))

    def _network_p_female(self, chips: Sequence[np.ndarray], batch_size: int) -> np.ndarray:
        if self._linear_head is not None:
            head, embedder = self._linear_head
            return head.p_female_of_chips(embedder, chips)
        out: list[np.ndarray] = []
        with torch.inference_mode():
            for start in range(0, len(chips), batch_size):
                logits = self.network(chips_to_tensor(chips[start : start + batch_size]).to(self.device))
                out.append(torch.softmax(logits.float(), dim=1)[:, 1].cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)

    def labels_for(self, p_female: np.ndarray, abstain: bool = True, ages: np.ndarray | None = None) -> list[str]:
        """The answers for scores ``p_female``; ``abstain=False``: male or female for every face."""
        abstention = Abstention.from_dict(self.config.abstention) if abstain else None
        return gender_labels(p_female, self.threshold, LABELS, abstention, ages)


#: How each kind's network is built from its model folder (``facesuite.registry``).
GENDER_KINDS: Registry[Callable[[GenderConfig, Path], nn.Module]] = Registry("gender kind")


def _weights(folder: Path, name: str) -> Path:
    """The weights file ``name`` of a model folder; a folder without it is bad input."""
    path = folder / name
    if not path.is_file():
        raise InputError(f"model folder has no {name}", folder)
    return path


@GENDER_KINDS.register("cnn")
def _load_cnn(config: GenderConfig, folder: Path) -> nn.Module:
    network = GenderNet()
    network.load_state_dict(torch.load(_weights(folder, "weights.pt"), map_location="cpu", weights_only=True))
    return network


@GENDER_KINDS.register("embedding")
@GENDER_KINDS.register("backbone")
def _load_head(config: GenderConfig, folder: Path) -> nn.Module:
    _weights(folder, "weights.npz")
    return EmbeddingGenderNet(LinearGenderHead.load(folder))


@GENDER_KINDS.register("finetune")
def _load_finetune(config: GenderConfig, folder: Path) -> nn.Module:
    network = FinetuneGenderNet()
    state = torch.load(_weights(folder, "weights.pt"), map_location="cpu", weights_only=True)
    # The branch is stored in float16 to keep the shipped file small; it runs in float32.
    network.load_state_dict({**network.state_dict(), **{k: v.float() for k, v in state.items()}})
    return network


def load_network(config: GenderConfig, folder: Path) -> nn.Module:
    """Build the network of ``config`` and load its weights from ``folder``."""
    return GENDER_KINDS.create(config.kind, config, folder)
