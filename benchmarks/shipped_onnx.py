"""The shipped ONNX networks against the networks they were exported from, on real faces: the figures
of ``models/mtcnn/MODEL_CARD.md`` and ``models/dlib-float/MODEL_CARD.md``.

- **MTCNN**: facesuite's cascade on the shipped P/R/O-Net files against facenet-pytorch's ``MTCNN``
  (PyTorch, its own weights) on the same images: images where both find the same number of faces,
  and the largest box, landmark and probability differences over the faces both find.
- **dlib float ResNet**: the shipped ``dlib-float/model.onnx`` against the PyTorch port
  (``dlib-torch``) and against dlib itself on the same aligned chips: largest difference of the
  unit vectors and of the hidden features the gender head reads, smallest cosine to dlib; and what
  storing the weights as float16 (half the file) would change, for the record of why it is float32.

Images: ``--n`` (default 200) FACECOM dev-split images, clean and distorted, a fixed sample.
Run: ``python benchmarks/shipped_onnx.py`` (needs ``facesuite[train]`` and facenet-pytorch).
"""

from __future__ import annotations

import argparse
import random
import tempfile
from pathlib import Path

import numpy as np

from facesuite.config import data_root
from facesuite.data import read_identity_folders, read_split
from facesuite.io import load_image


def sample(n: int) -> list[Path]:
    dataset = read_identity_folders(data_root() / "facecom/task_b/train")
    dataset = dataset.subset(read_split(data_root() / "splits/facecom_dev_identities.txt"))
    paths = [p for p, _ in dataset.clean] + [d.path for d in dataset.distorted]
    return sorted(random.Random(0).sample(paths, min(n, len(paths))))


def mtcnn(images: list[np.ndarray]) -> dict:
    import torch
    from facenet_pytorch import MTCNN

    from facesuite.detect.mtcnn import MTCNNRunner

    reference = MTCNN(keep_all=True, device="cpu")
    ours = MTCNNRunner(reference.min_face_size, reference.thresholds)
    same_count, box, point, score = 0, [], [], []
    with torch.inference_mode():
        for image in images:
            (boxes, points), = ours.detect(image[None])
            ref_boxes, ref_scores, ref_points = reference.detect(image, landmarks=True)
            ref_boxes = np.zeros((0, 4)) if ref_boxes is None else np.asarray(ref_boxes, dtype=np.float64)
            if len(boxes) != len(ref_boxes):
                continue
            same_count += 1
            if not len(boxes):
                continue
            # Pair each face with the reference's nearest box.
            order = [int(np.abs(ref_boxes - b[:4]).sum(axis=1).argmin()) for b in boxes]
            box.append(np.abs(boxes[:, :4] - ref_boxes[order]).max())
            point.append(np.abs(points - np.asarray(ref_points, dtype=np.float64)[order]).max())
            score.append(np.abs(boxes[:, 4] - np.asarray(ref_scores, dtype=np.float64)[order]).max())
    return {"images": len(images), "same_face_count": same_count, "max_box_px": max(box), "max_landmark_px": max(point),
            "max_probability": max(score)}


def _float16_copy(source: Path, out: Path) -> None:
    """``source`` with every float32 initializer stored as float16 and cast back in the graph (what
    float16 storage would ship: ONNX Runtime folds the casts when it loads the file)."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(source))
    graph = model.graph
    casts = []
    for initializer in graph.initializer:
        if initializer.data_type == onnx.TensorProto.FLOAT and np.prod(initializer.dims) > 16:
            half = numpy_helper.from_array(numpy_helper.to_array(initializer).astype(np.float16), initializer.name + "_fp16")
            initializer.CopyFrom(half)
            casts.append(helper.make_node("Cast", [half.name], [half.name[:-5]], to=onnx.TensorProto.FLOAT))
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.save(model, str(out))


def dlib_float(images: list[np.ndarray]) -> dict:
    from facesuite.config import onnx_session
    from facesuite.detect import DetectorSettings, FaceDetector
    from facesuite.embed import l2_normalise
    from facesuite.embed.dlib.runtimes import FLOAT_MODEL, DlibEmbedder, DlibTorchEmbedder, chips_to_array

    shipped = onnx_session(FLOAT_MODEL)
    spec = DlibTorchEmbedder.chip_spec
    detector = FaceDetector(DetectorSettings())
    chips = [face.chip(image, spec.size, spec.padding) for image in images for face in detector.detect_main([image])]
    pixels = chips_to_array(chips)
    vectors, hidden = shipped.run(["embedding", "hidden"], {"pixels": pixels})
    vectors = l2_normalise(vectors)
    port_vectors, port_hidden = DlibTorchEmbedder().describe(chips, maps=True)
    dlib_vectors = DlibEmbedder().embed(chips)
    with tempfile.TemporaryDirectory() as work:
        half_path = Path(work) / "half.onnx"
        _float16_copy(FLOAT_MODEL, half_path)
        half_vectors = l2_normalise(onnx_session(half_path).run(["embedding"], {"pixels": pixels})[0])
        half_size = half_path.stat().st_size
    return {"chips": len(chips), "max_vector_vs_port": float(np.abs(vectors - port_vectors).max()),
            "max_hidden_vs_port": float(np.abs(hidden - port_hidden).max()),
            "min_cosine_vs_dlib": float((vectors * dlib_vectors).sum(axis=1).min()),
            "float32_mb": FLOAT_MODEL.stat().st_size / 1e6, "float16_mb": half_size / 1e6,
            "float16_min_cosine": float((vectors * half_vectors).sum(axis=1).min()),
            "float16_max_vector_change": float(np.abs(vectors - half_vectors).max())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200)
    args = parser.parse_args()
    images = [load_image(p) for p in sample(args.n)]
    print("MTCNN, shipped ONNX cascade vs facenet-pytorch:", mtcnn(images))
    print("dlib float ResNet, shipped ONNX:", dlib_float(images))


if __name__ == "__main__":
    main()
