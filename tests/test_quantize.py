"""The command that builds the shipped int8 embedder, run small: it samples training images only
and writes a network close to the float one."""

from __future__ import annotations

from pathlib import Path

import onnx
import onnxruntime
import pytest

from facesuite.config import data_root
from facesuite.data import read_split
from facesuite.embed.dlib.quantize import FLOAT_LAYERS, MODEL_NAME, build, training_images
from facesuite.errors import InputError

pytestmark = [pytest.mark.data, pytest.mark.skipif(
    not (data_root() / "splits" / "utkface_dev.txt").is_file(),
    reason=f"FACECOM, UTKFace or the dev splits are absent under {data_root()} (set FACESUITE_DATA)",
)]


def test_quantize_samples_training_images_only() -> None:
    root = data_root()
    paths = training_images(root, 64, 32)
    assert len(paths) == len(set(paths)) == 96
    assert paths == training_images(root, 64, 32)  # a fixed sample
    facecom_dev = read_split(root / "splits/facecom_dev_identities.txt")
    utkface_dev = read_split(root / "splits/utkface_dev.txt")
    for path in map(Path, paths):
        if "facecom" in path.parts:
            identity = path.parent.parent.name if path.parent.name == "distortion" else path.parent.name
            assert identity not in facecom_dev, path
        else:
            assert path.name not in utkface_dev, path


def test_quantize_writes_an_int8_network_close_to_the_float_one(tmp_path: Path) -> None:
    record = build(data_root(), tmp_path, facecom=16, utkface=8)
    model = tmp_path / f"{MODEL_NAME}.onnx"
    assert record["model"] == model.name and (tmp_path / f"{MODEL_NAME}.json").is_file()
    assert record["calibration_chips"] == record["held_out"]["chips"] == 12
    assert record["held_out"]["cosine_min"] > 0.98
    graph = onnx.load(str(model)).graph
    assert {"QuantizeLinear", "DequantizeLinear"} <= {node.op_type for node in graph.node}
    # A quantised convolution reads its weights through DequantizeLinear; the layers kept float read
    # them as stored.
    dequantized = {node.output[0] for node in graph.node if node.op_type == "DequantizeLinear"}
    weights_quantized = {node.name: node.input[1] in dequantized for node in graph.node if node.op_type == "Conv"}
    assert weights_quantized["/stages.1/stages.1.0/conv1/Conv"] and weights_quantized["/stages.4/stages.4.0/conv2/Conv"]
    kept_float = [name for name in weights_quantized if name.startswith(FLOAT_LAYERS)]
    assert "/stem_conv/Conv" in kept_float and not any(weights_quantized[name] for name in kept_float)
    onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])  # loads as shipped


def test_quantize_sample_sizes_beyond_the_training_images_are_input_errors() -> None:
    with pytest.raises(InputError, match="--utkface must be between 1 and"):
        training_images(data_root(), 8, 10**7)
    with pytest.raises(InputError, match="--facecom must be between 1 and"):
        training_images(data_root(), 0, 8)
