"""Locations facesuite reads and writes: the data root, the detection cache and its own home (calibrations, logs),
and how a cache file is written."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
MODELS_DIR = PACKAGE_DIR / "models"


def data_root() -> Path:
    """Root of the shared face data: ``$FACESUITE_DATA``, else ``../shared/data`` from the cwd;
    absolute, so the lists and links made from it hold from any folder."""
    return Path(os.environ.get("FACESUITE_DATA", "../shared/data")).expanduser().absolute()


def cache_dir() -> Path:
    """Where detection crops are cached: ``$FACESUITE_CACHE``, else ``~/.cache/facesuite``."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "facesuite"
    return Path(os.environ.get("FACESUITE_CACHE", default)).expanduser()


def user_home() -> Path:
    """facesuite's own files (calibrations, the dashboard's gallery, fault logs):
    ``$FACESUITE_HOME``, else ``~/.local/share/facesuite``."""
    return Path(os.environ.get("FACESUITE_HOME", Path.home() / ".local/share/facesuite")).expanduser()


def write_atomically(path: Path, write: Callable[[str], object]) -> None:
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


# Images per chunk of a batch job (`facesuite batch --batch-size`): one detection batch and one
# forward pass of the embedding backbone, 16 each. Chunks of 32 cost 9% more wall time on 300
# images and 2 cores (5.7 against 5.2 s): the threads' work evened out less at the end of the job.
# Here, not in facesuite.batch, so the CLI's parser can show it without importing pyarrow.
DEFAULT_BATCH_SIZE = 16
# The gender kind `facesuite train gender` trains unless told (the kinds are
# facesuite.classify.gender.GENDER_KINDS): the one the shipped model is. Here for the same reason:
# the registry's module imports PyTorch.
DEFAULT_GENDER_KIND = "backbone"

def inference_threads() -> int:
    """Threads inference may use (:mod:`facesuite.parallel` runs that many batches at once):
    ``$OMP_NUM_THREADS`` when set (as PyTorch honours it), else the cores this process may run on."""
    try:
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    except (KeyError, ValueError):
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def onnx_session(path: Path):
    """An ONNX Runtime CPU session for the model file at ``path``, one per network for the process.

    Every session runs on one thread: the cores go to whole batches run side by side
    (:mod:`facesuite.parallel`), which measured 1.2-1.4x faster than one batch at a time through
    sessions :func:`inference_threads` wide, because the NumPy and OpenCV stages between the
    networks leave a wide session's other threads idle. A single image (the API, ``analyze
    one.jpg``) runs on one core; with the detector's own savings the API's p50 stayed at 27 ms.
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
