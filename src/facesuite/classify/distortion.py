"""The distortion detector: a two-view CNN over a face photo, 8 classes (clean + 7 distortions).

What it reads of a photo (:mod:`facesuite.classify.distortion_input`, the model's ``framing``):
the square around the detected face, 2.74 box sides wide, as FACECOM's LFW-style frames show a
face (about 90 px in the middle of 224), so a tight crop and a wide photo are read at one face
scale; the whole photo where no face was detected. Input views, both taken from that frame after
it is resized to ``base`` x ``base``:

- ``crop``: the centre ``crop`` x ``crop`` pixels at native resolution. Downscaling would erase
  exactly what separates ``resized`` and ``blurred`` from ``clean`` (fine detail) and thin the
  salt-and-pepper dots of ``noisy`` and the streaks of ``rainy``.
- ``frame``: the whole frame shrunk to ``frame`` x ``frame``, for global cues: the radial
  overexposure of ``sunny``, the patchy haze of ``foggy``, the overall darkness of ``lowlight``.

The centre crop covers the face in this framing; the frame around it keeps the context a
distortion spreads over (fog, rain, overexposure are applied to whole photos). Pixels are only
scaled to [-0.5, 0.5]; per-image normalisation would remove the brightness cues of ``lowlight``
and ``sunny``.

A face is routed by its predicted type only when the detector is sure enough of it
(:meth:`DistortionDetector.route_label`); the floor is chosen on a calibration fold of the
training data and saved in ``config.json`` as ``route_floor``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Protocol

import numpy as np

from facesuite.classify.distortion_input import InputSpec, face_input, make_views, photo_reader
from facesuite.config import MODELS_DIR, cache_dir, onnx_session, write_atomically
from facesuite.distortion import LABELS
from facesuite.errors import InputError, Skipped
from facesuite.integrity import verify_model_folder
from facesuite.io import load_image, readable_images
from facesuite.parallel import ordered_map

if TYPE_CHECKING:
    from facesuite.detect import Detection

DEFAULT_MODEL_DIR = MODELS_DIR / "distortion"
WEIGHTS_FILE = "weights.pt"
CONFIG_FILE = "config.json"
ONNX_FILE = "model.onnx"  # the network exported from WEIGHTS_FILE, what loading runs
# Bumped whenever the ONNX export (distortion_net.export_onnx) changes, so stale cached files are not used.
_ONNX_EXPORT = 1


class Prediction(NamedTuple):
    label: str
    probability: float
    probs: dict[str, float]


class LogitsRunner(Protocol):
    """What runs the network: (crop, frame) uint8 view batches in, ``(N, classes)`` logits out."""

    def run(self, crops: np.ndarray | None, frames: np.ndarray | None) -> np.ndarray: ...


class OnnxDistortionNet:
    """The network under ONNX Runtime: the model folder's ``model.onnx`` (the shipped model carries
    one, made by ``python -m facesuite.train.export``), else, for a folder ``facesuite train
    distortion`` wrote, exported once from its weights to the cache (keyed by the weights' and the
    config's hash and the export's version), the one step that imports PyTorch."""

    def __init__(self, folder: Path, spec: InputSpec, classes: int) -> None:
        exported = folder / ONNX_FILE
        if not exported.is_file():
            weights, config_path = folder / WEIGHTS_FILE, folder / CONFIG_FILE
            digest = hashlib.sha1(weights.read_bytes() + config_path.read_bytes()).hexdigest()[:16]
            exported = cache_dir() / "distortion" / f"{digest}-onnx{_ONNX_EXPORT}.onnx"
            if not exported.is_file():
                from facesuite.classify.distortion_net import export_onnx, load_net

                write_atomically(exported, lambda temp: export_onnx(load_net(weights, spec, classes), spec, temp))
        self.session = onnx_session(exported)
        self.inputs = [item.name for item in self.session.get_inputs()]

    def run(self, crops: np.ndarray | None, frames: np.ndarray | None) -> np.ndarray:
        views = {"crop": crops, "frame": frames}
        return self.session.run(["logits"], {name: views[name] for name in self.inputs})[0]


class DistortionDetector:
    """A trained distortion network (:class:`OnnxDistortionNet` when loaded, the PyTorch
    :class:`~facesuite.classify.distortion_net.DistortionNet` while training) with its input spec and labels."""

    def __init__(self, net: LogitsRunner, spec: InputSpec, labels: Sequence[str] = LABELS, batch_size: int = 64,
                 route_floor: float = 0.0) -> None:
        self.net = net
        self.spec = spec
        self.labels = tuple(labels)
        self.batch_size = batch_size
        self.route_floor = route_floor
        self._photo_reader = None

    def route_label(self, prediction: Prediction) -> str:
        """The label a face is routed by: its predicted type when the detector is at least
        ``route_floor`` sure of it, else ``clean``, whose route is the plain embedder. A restoration
        step meant for one distortion can only hurt a face that does not have it."""
        return prediction.label if prediction.probability >= self.route_floor else "clean"

    @classmethod
    def load(cls, path: str | Path | None = None) -> DistortionDetector:
        """Load from a model folder (or its ``weights.pt``); the shipped model by default."""
        folder = Path(path) if path is not None else DEFAULT_MODEL_DIR
        if folder.is_file():
            folder = folder.parent
        weights, config_path = folder / WEIGHTS_FILE, folder / CONFIG_FILE
        if not weights.is_file() or not config_path.is_file():
            raise InputError(f"not a distortion model folder (needs {WEIGHTS_FILE} and {CONFIG_FILE})", folder)
        verify_model_folder(folder)
        config = json.loads(config_path.read_text(encoding="utf-8"))
        spec = InputSpec(**config["input"])
        return cls(OnnxDistortionNet(folder, spec, len(config["labels"])), spec, config["labels"],
                   route_floor=float(config.get("route_floor", 0.0)))

    def save(self, folder: str | Path, extra: dict | None = None) -> None:
        """Write ``weights.pt`` (state dict only) and ``config.json`` into ``folder``; the detector
        must hold the PyTorch network (a trained one)."""
        import torch

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(self.net.state_dict(), folder / WEIGHTS_FILE)
        # An export of earlier weights would be loaded in place of these (python -m
        # facesuite.train.export writes the shipped model's again).
        (folder / ONNX_FILE).unlink(missing_ok=True)
        config = {"labels": list(self.labels), "input": asdict(self.spec), **(extra or {})}
        (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")

    def views(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Stacked (crop, frame) views of RGB images, the network's uint8 input."""
        pairs = [make_views(image, self.spec) for image in images]
        crops = np.stack([c for c, _ in pairs]) if self.spec.crop else None
        frames = np.stack([f for _, f in pairs]) if self.spec.frame else None
        return crops, frames

    def logits(self, crops: np.ndarray | None, frames: np.ndarray | None) -> np.ndarray:
        return self.net.run(crops, frames)

    def predict(self, images: Sequence[np.ndarray | str | Path]) -> list[Prediction]:
        """One :class:`Prediction` per RGB uint8 image (any size) or image path, in order.

        Paths are read with :func:`facesuite.io.load_image`, so a bad file raises InputError;
        use :meth:`predict_paths` to skip bad files instead.
        """
        def probabilities(start: int) -> np.ndarray:
            batch = [load_image(item) if isinstance(item, (str, Path)) else item for item in images[start : start + self.batch_size]]
            return _softmax(self.logits(*self.views(batch)))

        predictions: list[Prediction] = []
        for probs in ordered_map(probabilities, range(0, len(images), self.batch_size)):
            for row in probs:
                best = int(row.argmax())
                predictions.append(
                    Prediction(self.labels[best], float(row[best]), {label: float(p) for label, p in zip(self.labels, row)})
                )
        return predictions

    def predict_faces(self, images: Sequence[np.ndarray], faces: Sequence[Detection]) -> list[Prediction]:
        """One prediction per face, each read in the image it was found in
        (:func:`~facesuite.classify.distortion_input.face_input`): how the analyzer names a
        face's distortion."""
        return self.predict([face_input(image, face, self.spec.framing) for image, face in zip(images, faces)])

    def predict_photos(self, photos: Sequence[np.ndarray | str | Path]) -> list[Prediction]:
        """Predictions for whole RGB photos, each read as the analyzer reads its main face (with a
        face-framed model, the face is detected first: :func:`~facesuite.classify.distortion_input.photo_reader`).
        :meth:`predict` takes the network's input images as they are."""
        if self._photo_reader is None:
            self._photo_reader = photo_reader(self.spec.framing)
        return self.predict([self._photo_reader(load_image(photo) if isinstance(photo, (str, Path)) else photo)
                             for photo in photos])

    def predict_paths(self, paths: Sequence[Path]) -> tuple[list[tuple[Path, Prediction]], list[Skipped]]:
        """Predictions for readable photo files (:meth:`predict_photos`), and the files that could
        not be read."""
        done: list[tuple[Path, Prediction]] = []
        skipped: list[Skipped] = []
        for start in range(0, len(paths), self.batch_size):
            readable = list(readable_images(paths[start : start + self.batch_size], skipped))
            if readable:
                done.extend(zip([p for p, _ in readable], self.predict_photos([image for _, image in readable])))
        return done, skipped


def _softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)
