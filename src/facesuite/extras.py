"""The optional parts of facesuite, and the pip extra that installs each.

A plain ``pip install facesuite`` runs everything that reads the shipped ONNX networks: analysis,
verification, galleries, evaluations, reports, local batch jobs and the web service. What runs
PyTorch (training, Grad-CAM, the PyTorch runtimes, the exports), a Ray cluster or a Milvus gallery
needs its extra; a command that reaches one without it stops with one line naming the extra.
"""

from __future__ import annotations

from facesuite.errors import InputError

#: What each extra is for, as the error names it.
EXTRAS = {
    "train": "PyTorch: training, explain, the dlib-torch and dlib runtimes, model exports",
    "scale": "Ray and Milvus: batch jobs on a cluster, Milvus galleries",
    "dev": "the test suite",
}
#: Top-level module -> the extra that installs it (pyproject.toml's optional-dependencies).
EXTRA_OF_MODULE = {
    "torch": "train",
    "torchvision": "train",
    "albumentations": "train",
    "pytorch_grad_cam": "train",
    "onnx": "train",
    "dlib": "train",
    "face_recognition_models": "train",
    "ray": "scale",
    "pymilvus": "scale",
    "milvus_lite": "scale",
    "pytest": "dev",
    "hypothesis": "dev",
    "httpx": "dev",
    "playwright": "dev",
}


class MissingExtra(InputError):
    """Something the user asked for needs an extra that is not installed."""


def missing_extra(error: ModuleNotFoundError) -> MissingExtra | None:
    """The one-line error for a module an extra installs; None for any other missing module (a
    fault of the installation, not a choice of the user's)."""
    module = (error.name or "").partition(".")[0]
    extra = EXTRA_OF_MODULE.get(module)
    if extra is None:
        return None
    return MissingExtra(f"this needs facesuite[{extra}] ({EXTRAS[extra]}), and {module} is not installed: "
                        f"pip install 'facesuite[{extra}]'")
