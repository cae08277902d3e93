"""The PyTorch/ONNX port of dlib's face ResNet against dlib itself, on real FACECOM faces.

Chips are aligned by dlib (HOG detector, 5-point landmarks, ``get_face_chip``) so any difference
comes from the network alone. The weight cache is redirected to a temporary folder so the tests
exercise the first-use conversion and never touch the user's cache.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from facesuite.embed import cosine_distance, get_embedder
from facesuite.embed.dlib.network import (
    DlibResNet,
    export_onnx,
    load_dlib_resnet,
    shipped_model_path,
)
from facesuite.embed.dlib.reader import DlibFormatError, read_dlib_net
from facesuite.embed.dlib.runtimes import chips_to_array

dlib = pytest.importorskip("dlib")
face_recognition_models = pytest.importorskip("face_recognition_models")

SAME_PERSON = "Colin_Powell"  # the identity with the most photos in FACECOM task B
SAME_COUNT = 8
OTHER_COUNT = 8  # one photo each from other identities
TOLERANCE = 1e-4


def _align(path: Path, detector, predictor) -> np.ndarray | None:
    """dlib's own 150x150 chip of the largest face in ``path``, or None if no face is found."""
    image = dlib.load_rgb_image(str(path))
    faces = detector(image, 1)
    if not faces:
        return None
    face = max(faces, key=lambda rect: rect.area())
    return dlib.get_face_chip(image, predictor(image, face), size=150, padding=0.25)


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FACESUITE_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="session")
def chips(facecom_b: Path) -> tuple[list[np.ndarray], np.ndarray]:
    """16 aligned chips and their identity labels: 8 of one person, then 8 different people."""
    train = facecom_b
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(face_recognition_models.pose_predictor_five_point_model_location())
    found: list[np.ndarray] = []
    labels: list[str] = []
    for photo in sorted((train / SAME_PERSON).glob("*.jpg")):
        if (chip := _align(photo, detector, predictor)) is not None:
            found.append(chip)
            labels.append(SAME_PERSON)
            if len(found) == SAME_COUNT:
                break
    for identity in sorted(path for path in train.iterdir() if path.name != SAME_PERSON):
        photo = next(identity.glob("*.jpg"), None)
        if photo is not None and (chip := _align(photo, detector, predictor)) is not None:
            found.append(chip)
            labels.append(identity.name)
            if len(found) == SAME_COUNT + OTHER_COUNT:
                break
    assert len(found) == SAME_COUNT + OTHER_COUNT, "dlib found too few faces in FACECOM"
    return found, np.array(labels)


@pytest.fixture(scope="session")
def dlib_vectors(chips: tuple[list[np.ndarray], np.ndarray]) -> np.ndarray:
    model = dlib.face_recognition_model_v1(face_recognition_models.face_recognition_model_location())
    # The list overload takes aligned 150x150 chips, exactly what get_face_chip produced.
    return np.array([np.array(vector) for vector in model.compute_face_descriptor(chips[0])])


@pytest.fixture(scope="session")
def model() -> DlibResNet:
    return load_dlib_resnet()


@pytest.fixture(scope="session")
def torch_vectors(model: DlibResNet, chips: tuple[list[np.ndarray], np.ndarray]) -> np.ndarray:
    with torch.inference_mode():
        return model(torch.from_numpy(chips_to_array(chips[0]))).numpy()


def test_torch_matches_dlib(torch_vectors: np.ndarray, dlib_vectors: np.ndarray) -> None:
    assert torch_vectors.shape == dlib_vectors.shape == (SAME_COUNT + OTHER_COUNT, 128)
    assert np.abs(torch_vectors - dlib_vectors).max() < TOLERANCE


def test_onnx_matches_torch(
    model: DlibResNet, chips: tuple[list[np.ndarray], np.ndarray], torch_vectors: np.ndarray, tmp_path: Path
) -> None:
    import onnxruntime

    session = onnxruntime.InferenceSession(
        str(export_onnx(model, tmp_path / "dlib.onnx")), providers=["CPUExecutionProvider"]
    )
    # Two batch sizes: the exported batch axis must really be dynamic.
    pixels = chips_to_array(chips[0])
    outputs = [session.run(["embedding"], {"pixels": part})[0] for part in (pixels[:3], pixels[3:])]
    assert np.abs(np.concatenate(outputs) - torch_vectors).max() < TOLERANCE


def test_gradients_reach_first_conv_and_last_stage(
    model: DlibResNet, chips: tuple[list[np.ndarray], np.ndarray]
) -> None:
    captured: dict[str, torch.Tensor] = {}

    def keep_activation(_module: torch.nn.Module, _inputs: object, output: torch.Tensor) -> None:
        output.retain_grad()
        captured["last_stage"] = output

    model.zero_grad()
    hook = model.stages[-1].register_forward_hook(keep_activation)
    try:
        model(torch.from_numpy(chips_to_array(chips[0][:2]))).sum().backward()
    finally:
        hook.remove()
    first_conv = model.stem_conv.weight.grad
    assert first_conv is not None and torch.isfinite(first_conv).all() and first_conv.abs().sum() > 0
    last_stage = captured["last_stage"]
    assert last_stage.shape[1:] == (256, 2, 2)
    assert last_stage.grad is not None and last_stage.grad.abs().sum() > 0
    # The folded batch norms are frozen by default, as in dlib.
    assert model.stem_affine.gamma.grad is None
    model.zero_grad()


@pytest.mark.parametrize("name", ["dlib-torch", "dlib-onnx"])
def test_registered_embedders_return_unit_rows(
    name: str, chips: tuple[list[np.ndarray], np.ndarray], dlib_vectors: np.ndarray
) -> None:
    embedder = get_embedder(name)
    vectors = embedder.embed(chips[0], batch_size=5)  # several batches, the last one partial
    assert vectors.dtype == np.float32 and vectors.shape == (len(chips[0]), embedder.dim)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    expected = dlib_vectors / np.linalg.norm(dlib_vectors, axis=1, keepdims=True)
    assert np.abs(vectors - expected).max() < TOLERANCE
    assert embedder.embed([]).shape == (0, embedder.dim)


def test_the_int8_network_stays_close_to_the_float_one(
    chips: tuple[list[np.ndarray], np.ndarray], dlib_vectors: np.ndarray
) -> None:
    """dlib-int8 (the faster option): unit rows within cosine 0.99 of dlib's own vectors (model card:
    >= 0.991 on 288 held-out chips), the same person still nearest, and hidden features of the
    float pass's shape and close to them (the gender head reads them)."""
    embedder = get_embedder("dlib-int8")
    vectors, hidden = embedder.describe(chips[0], batch_size=5, maps=True)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    expected = dlib_vectors / np.linalg.norm(dlib_vectors, axis=1, keepdims=True)
    assert np.sum(vectors * expected, axis=1).min() > 0.99
    labels = chips[1]
    distances = cosine_distance(vectors[:, None], vectors[None])
    np.fill_diagonal(distances, np.inf)
    assert all(labels[np.argmin(distances[i])] == SAME_PERSON for i in np.flatnonzero(labels == SAME_PERSON))
    _, float_hidden = get_embedder("dlib-onnx").describe(chips[0], maps=True)
    assert hidden.shape == float_hidden.shape
    assert np.linalg.norm(hidden - float_hidden) / np.linalg.norm(float_hidden) < 0.06
    assert embedder.space != get_embedder("dlib-onnx").space


def test_same_person_is_closer_than_different_people(
    torch_vectors: np.ndarray, chips: tuple[list[np.ndarray], np.ndarray]
) -> None:
    labels = chips[1]
    unit = torch_vectors / np.linalg.norm(torch_vectors, axis=1, keepdims=True)
    distances = cosine_distance(unit[:, None], unit[None])
    np.fill_diagonal(distances, np.inf)
    threshold = get_embedder("dlib-torch").default_threshold
    # Each photo of the repeated person has another photo of him as its nearest neighbour...
    for i in np.flatnonzero(labels == SAME_PERSON):
        assert labels[np.argmin(distances[i])] == SAME_PERSON
    # ...and the first real pair is accepted while that person against everyone else is rejected.
    assert distances[0, 1] < threshold
    assert distances[np.ix_(labels == SAME_PERSON, labels != SAME_PERSON)].min() > threshold


def test_weights_are_cached_under_the_files_hash(model: DlibResNet) -> None:
    digest = hashlib.sha1(shipped_model_path().read_bytes()).hexdigest()
    cached = list((Path(os.environ["FACESUITE_CACHE"]) / "dlib_resnet").glob(f"{digest}*.pt"))
    assert len(cached) == 1
    reloaded = load_dlib_resnet()
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, reloaded.state_dict()[name]), name


def test_reader_rejects_a_truncated_file() -> None:
    data = shipped_model_path().read_bytes()
    kinds = [kind for kind, _ in DlibResNet().dlib_layers()]
    with pytest.raises(DlibFormatError, match="unexpected end of file"):
        read_dlib_net(data[: len(data) // 2], kinds)
