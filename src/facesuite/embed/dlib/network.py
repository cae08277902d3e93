"""dlib's 128-D face ResNet in PyTorch, reproducing dlib's conventions exactly, loaded from its ``.dat``.

:func:`load_dlib_resnet` reads the shipped ``.dat`` once (:mod:`~facesuite.embed.dlib.reader`) and
caches the converted weights by the file's hash; :func:`export_onnx` writes the same network for
ONNX Runtime.
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from facesuite.config import write_atomically
from facesuite.embed.dlib.reader import (
    CHIP_SIZE,
    CONV_MODE,
    EMBEDDING_DIM,
    FC_NO_BIAS,
    ROUTING_KINDS,
    STAGES,
    DlibFormatError,
    DlibLayer,
    DlibNet,
    cache_path,
    read_dlib_net,
    shipped_model_path,
)
from facesuite.errors import InputError
from facesuite.integrity import verify_model_file

# Hidden stages pooled by DlibResNet.describe: 128 + 256 + 256 = 640 channels.
POOLED_STAGES = 3

class Affine(nn.Module):
    """Per-channel ``y = gamma * x + beta``: dlib's inference form of batch normalisation.

    dlib trained this network with batch norm and then folded the running statistics into this
    fixed affine map, so there are no statistics left to update. ``gamma`` and ``beta`` are
    parameters (not buffers) so they load from a state_dict and *can* be fine-tuned, but they are
    frozen by default, as they are in dlib: fine-tuning on the small batches face datasets allow
    would let them drift away from the normalisation the following layers were trained to expect.
    Freezing them does not stop gradients flowing through them to the input or to other layers
    (Grad-CAM only needs those). Use :meth:`DlibResNet.set_affine_trainable` to unfreeze.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(channels), requires_grad=False)
        self.beta = nn.Parameter(torch.zeros(channels), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma.view(1, -1, 1, 1) + self.beta.view(1, -1, 1, 1)


def _add_zero_extended(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's ``add_prev``: sum of two tensors after zero-extending both to the larger shape.

    Where a downsampling block's branch (3x3 stride-2 conv, no padding) and its shortcut (2x2
    stride-2 average pool) disagree on size (8 -> 3 vs 4, 4 -> 1 vs 2) or on channels (the
    shortcut has no projection), dlib pads the smaller one with zeros at the end of each axis.
    Cropping instead would change the output by up to ~0.3.
    """
    channels, height, width = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))

    def extend(x: torch.Tensor) -> torch.Tensor:
        pad = (0, width - x.shape[3], 0, height - x.shape[2], 0, channels - x.shape[1])
        return F.pad(x, pad) if any(pad) else x

    return extend(a) + extend(b)


class ResidualBlock(nn.Module):
    """``relu(branch(x) + shortcut(x))`` with branch conv3x3-affine-relu-conv3x3-affine.

    A downsampling block strides its first conv by 2 and, as everywhere in dlib when the stride
    is not 1, without padding; its shortcut is a 2x2 average pool with no projection.
    """

    def __init__(self, in_channels: int, out_channels: int, downsample: bool) -> None:
        super().__init__()
        stride = 2 if downsample else 1
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=0 if downsample else 1)
        self.affine1 = Affine(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, padding=1)
        self.affine2 = Affine(out_channels)
        self.shortcut: nn.Module = nn.AvgPool2d(2, 2) if downsample else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch = self.affine2(self.conv2(F.relu(self.affine1(self.conv1(x)))))
        return F.relu(_add_zero_extended(branch, self.shortcut(x)))

    def dlib_layers(self) -> Iterator[tuple[str, nn.Module | None]]:
        """This block's layers in dlib's order (input first), tags and skips included."""
        yield "tag1", None
        yield from (("con", self.conv1), ("affine", self.affine1), ("relu", None))
        yield from (("con", self.conv2), ("affine", self.affine2))
        if isinstance(self.shortcut, nn.AvgPool2d):
            yield from (("tag2", None), ("skip1", None), ("avg_pool", self.shortcut))
        yield from (("add_prev", None), ("relu", None))


class DlibResNet(nn.Module):
    """dlib's face recognition ResNet: 150x150 RGB chip -> 128-D descriptor (not normalised).

    Input: float tensor ``(N, 3, 150, 150)`` of RGB pixel values in [0, 255], aligned like
    ``dlib.get_face_chip(..., size=150, padding=0.25)``. Normalisation (subtract the per-channel
    means stored in the model, divide by 256, as dlib's input layer does) happens inside, so
    gradients and the ONNX export work on plain pixels.

    Spatial sizes: 150 -> 72 (7x7/2 conv) -> 35 (3x3/2 max pool) -> 35, 17, 8, 4, 2 across the
    five stages -> global average pool -> 128-D linear map without bias. Every conv or pool with
    stride 2 has no padding, matching dlib. ``stages[-1]`` is the last conv stage (256x2x2), the
    natural Grad-CAM target; the 35x35 ``stages[0]`` gives finer maps.
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("channel_means", torch.tensor([122.782, 117.001, 104.298]))
        self.stem_conv = nn.Conv2d(3, 32, 7, 2, padding=0)
        self.stem_affine = Affine(32)
        self.stem_pool = nn.MaxPool2d(3, 2, padding=0)
        stages = []
        in_channels = 32
        for channels, blocks, downsample in STAGES:
            stage = [ResidualBlock(in_channels, channels, downsample)]
            stage += [ResidualBlock(channels, channels, False) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*stage))
            in_channels = channels
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(in_channels, EMBEDDING_DIM, bias=False)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.describe(pixels)[0]

    def describe(self, pixels: torch.Tensor, maps: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(128-D descriptor, hidden features) in one pass.

        Hidden features: the pooled channels of the last three stages (640), and with ``maps`` also
        the last stage's input map (256x4x4, flattened after them), which a fine-tuned copy of the
        last stage (:class:`~facesuite.classify.gender.FinetuneGenderNet`) reads. The pooled hidden
        stages keep attributes (gender, age) that the identity descriptor was trained to discard,
        so heads reading them come free with the embedding pass.
        """
        last_input, pooled = self.trunk(pixels)
        last = self.stages[-1](last_input).mean(dim=(2, 3))
        hidden = torch.cat([pooled, last], dim=1)
        if maps:
            hidden = torch.cat([hidden, last_input.flatten(1)], dim=1)
        return self.fc(last), hidden

    def trunk(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Every stage but the last: the part a gender branch shares with the identity embedding.

        Returns the last stage's input map (N, 256, 4, 4) and the pooled channels of the hidden
        stages before the last that :meth:`describe` reports (128 + 256).
        """
        x = (pixels - self.channel_means.view(1, 3, 1, 1)) / 256.0
        x = self.stem_pool(F.relu(self.stem_affine(self.stem_conv(x))))
        pooled = []
        for index, stage in enumerate(self.stages[:-1]):
            x = stage(x)
            if index >= len(self.stages) - POOLED_STAGES:
                pooled.append(x.mean(dim=(2, 3)))
        return x, torch.cat(pooled, dim=1)

    def set_affine_trainable(self, trainable: bool = True) -> None:
        """Let fine-tuning update the folded batch-norm layers (frozen by default, see Affine)."""
        for module in self.modules():
            if isinstance(module, Affine):
                module.gamma.requires_grad_(trainable)
                module.beta.requires_grad_(trainable)

    def dlib_layers(self) -> Iterator[tuple[str, nn.Module | None]]:
        """All layers in dlib's order (input first), including routing-only tags and skips.

        This is the single description of the topology: the reader uses the kinds to walk the
        file and the modules to receive the weights.
        """
        yield from (("con", self.stem_conv), ("affine", self.stem_affine), ("relu", None))
        yield "max_pool", self.stem_pool
        for stage in self.stages:
            for block in stage:
                yield from block.dlib_layers()
        yield from (("avg_pool", None), ("fc", self.fc))

    def load_dlib_net(self, net: DlibNet) -> None:
        """Copy weights from a parsed file, checking each layer's geometry against this module."""
        modules = [module for kind, module in self.dlib_layers() if kind not in ROUTING_KINDS]
        with torch.no_grad():
            self.channel_means.copy_(torch.tensor(net.channel_means))
            for layer, module in zip(net.layers, modules, strict=True):
                _load_layer(layer, module)


def _load_layer(layer: DlibLayer, module: nn.Module | None) -> None:
    def check(condition: bool) -> None:
        if not condition:
            raise DlibFormatError(f"{layer.kind} layer {layer.meta} does not match {module}")

    meta = layer.meta
    if isinstance(module, nn.Conv2d):
        weight, bias = module.weight, module.bias
        check(bias is not None and meta["use_bias"] == 1)
        check((meta["filters"], meta["nr"], meta["nc"]) == (weight.shape[0], *weight.shape[2:]))
        check((meta["stride_y"], meta["stride_x"]) == module.stride)
        check((meta["padding_y"], meta["padding_x"]) == module.padding)
        params = torch.from_numpy(layer.params.reshape(-1))
        check(params.numel() == weight.numel() + bias.numel())
        # dlib stores one flat tensor: all filters (OIHW, like torch), then the biases.
        weight.copy_(params[: weight.numel()].view_as(weight))
        bias.copy_(params[weight.numel() :])
    elif isinstance(module, Affine):
        check(meta["mode"] == CONV_MODE)  # one gamma/beta per channel, not per element
        params = torch.from_numpy(layer.params.reshape(-1))
        check(params.numel() == 2 * module.gamma.numel())
        module.gamma.copy_(params[: module.gamma.numel()])
        module.beta.copy_(params[module.gamma.numel() :])
    elif isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
        size = (meta["nr"], meta["nc"], meta["stride_y"], meta["stride_x"])
        check(size == (module.kernel_size,) * 2 + (module.stride,) * 2)
        check(meta["padding_y"] == meta["padding_x"] == module.padding)
    elif isinstance(module, nn.Linear):
        check((meta["inputs"], meta["outputs"]) == (module.in_features, module.out_features))
        check(meta["bias_mode"] == FC_NO_BIAS and module.bias is None)
        # fc_no_bias stores an (inputs, outputs) matrix: the transpose of nn.Linear's weight.
        module.weight.copy_(torch.from_numpy(layer.params.reshape(meta["inputs"], -1).T))
    elif layer.kind == "avg_pool":
        # avg_pool_everything (window 0 means "whole input"), done with a mean in forward().
        check(meta["nr"] == meta["nc"] == 0)


# --------------------------------------------------------------------------------------------
# Loading and caching
# --------------------------------------------------------------------------------------------


def load_dlib_resnet(path: str | Path | None = None) -> DlibResNet:
    """Build :class:`DlibResNet` with the weights of dlib's ``.dat`` (the shipped one by default).

    The first call parses the file (~1 s) and caches the converted state_dict under
    ``facesuite.config.cache_dir()``, keyed by the file's SHA-1 so a different ``.dat`` never
    picks up stale weights. The model is returned in eval mode, on the CPU.
    """
    path = Path(path) if path is not None else shipped_model_path()
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read dlib model ({exc.strerror})", path) from None
    verify_model_file(path)
    model = DlibResNet()
    cached = cache_path(data, ".pt")
    try:
        # Mapped and assigned rather than read and copied into fresh parameters: a third of the time.
        model.load_state_dict(torch.load(cached, map_location="cpu", weights_only=True, mmap=True), assign=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError):
        # First use, or a damaged cache file: convert from the source and (re)write the cache.
        model.load_dlib_net(read_dlib_net(data, [kind for kind, _ in model.dlib_layers()], str(path)))
        try:
            write_atomically(cached, lambda temp: torch.save(model.state_dict(), temp))
        except OSError:
            pass  # a read-only cache only costs the conversion next time
    return model.eval()


class _Described(nn.Module):
    """:meth:`DlibResNet.describe` with the maps, as the graph ONNX exports: two outputs."""

    def __init__(self, model: DlibResNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.describe(pixels, maps=True)


def export_onnx(model: DlibResNet, path: str | Path) -> Path:
    """Export ``model`` to ONNX with a dynamic batch axis: ``pixels`` (N,3,150,150) -> ``embedding``
    (N,128, raw descriptors) and ``hidden`` (N, 640 + 256*4*4: :meth:`DlibResNet.describe`'s hidden
    features with the last stage's input map), so one pass serves the identity and the gender heads.

    Uses the TorchScript exporter (``dynamo=False``): this network is static apart from the batch
    size, so tracing is exact, and it exports in ~1 s where the dynamo exporter takes ~11 s.
    """
    path = Path(path)
    was_training = model.training
    model.eval()
    try:
        with warnings.catch_warnings():
            # The tracer warns that the zero-extension's shape arithmetic becomes constant. That is
            # intended: the network only takes 150x150 chips, so those shapes never change.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            torch.onnx.export(
                _Described(model),
                (torch.zeros(1, 3, CHIP_SIZE, CHIP_SIZE, device=next(model.parameters()).device),),
                str(path),
                input_names=["pixels"],
                output_names=["embedding", "hidden"],
                dynamic_axes={"pixels": {0: "batch"}, "embedding": {0: "batch"}, "hidden": {0: "batch"}},
                opset_version=17,
                dynamo=False,
            )
    finally:
        model.train(was_training)
    return path
