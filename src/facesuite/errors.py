"""User errors and faults.

Anything the user can fix (a wrong path, a corrupt image, a folder in the wrong layout) is raised
as :class:`InputError`: the CLI prints its one-line message and exits with code 2, and inside a
folder the file is skipped and counted. Everything else is a fault of facesuite's own: it is never
recorded as if the input were bad; the run stops with exit code 1 and one line, and the full
traceback goes to a log file that line names (:func:`log_fault`). A shipped model file that does
not match its recorded hash is neither: the installation is damaged (:class:`ModelIntegrityError`,
one line naming the file, exit 1; ``facesuite serve`` refuses to start).

A plain ``pip install facesuite`` runs everything that reads the shipped ONNX networks (analysis,
verification, galleries, evaluations, reports, local batch jobs, the web service). What runs
PyTorch, a Ray cluster or a Milvus gallery needs a pip extra; reaching one without it is a
:class:`MissingExtra`, one line naming the extra, exit 2.
"""

from __future__ import annotations

import importlib.util
import os
import time
import traceback
from dataclasses import dataclass
from pathlib import Path



class PathError(Exception):
    """An error described in one line that starts with the path it is about, when there is one."""

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.path = None if path is None else str(path)
        self.message = message  # without the path, for callers that name the input their own way
        super().__init__(f"{self.path}: {message}" if self.path else message)


class InputError(PathError):
    """A problem with user input, described in one line that names the offending path."""


class ModelIntegrityError(PathError):
    """A shipped model file (or the manifest recording them) differs from its record: modified,
    corrupt, missing or unrecorded. Not the user's input, so never a skip or exit 2: whatever
    needs the models stops (:mod:`facesuite.integrity`)."""


@dataclass
class Skipped:
    """An input that could not be analysed, and why: what a batch returns in place of its result."""

    source: Path | str  # the file, or the name of an input given in memory
    error: InputError

    @classmethod
    def of(cls, item: object, error: InputError) -> Skipped:
        """The skip of input ``item``: named by its path when it is one, else by the error's name."""
        return cls(Path(item) if isinstance(item, (str, os.PathLike)) else error.path or "<image>", error)

    @property
    def path(self) -> Path | str:
        return self.source

    @property
    def reason(self) -> str:
        """One line naming the input and the problem."""
        return str(self.error)


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


def _missing(module: str) -> MissingExtra:
    extra = EXTRA_OF_MODULE[module]
    return MissingExtra(f"this needs facesuite[{extra}] ({EXTRAS[extra]}), and {module} is not installed: "
                        f"pip install 'facesuite[{extra}]'")


def require(module: str) -> None:
    """Raise :class:`MissingExtra` now when ``module`` (one an extra installs) is not installed: for
    work that would otherwise find out halfway through."""
    if importlib.util.find_spec(module) is None:
        raise _missing(module)


def missing_extra(error: ModuleNotFoundError) -> MissingExtra | None:
    """The one-line error for a module an extra installs; None for any other missing module (a
    fault of the installation, not a choice of the user's)."""
    module = (error.name or "").partition(".")[0]
    return _missing(module) if module in EXTRA_OF_MODULE else None


class Fault(Exception):
    """A fault of facesuite's own, with what the user needs to know about the work done so far.

    Raised ``from`` the original exception, whose traceback the fault log keeps."""


def describe_fault(error: BaseException) -> str:
    """``Type: first line of the message`` of the innermost cause (Ray and pools wrap the real one);
    a :class:`Fault`'s own message, which already says what happened."""
    while not isinstance(error, Fault):
        inner = getattr(error, "cause", None) or error.__cause__
        # A process pool attaches the worker's traceback as a text-only "cause": the exception
        # itself is already the real one.
        if not isinstance(inner, BaseException) or inner is error or type(inner).__name__ == "_RemoteTraceback":
            break
        error = inner
    if isinstance(error, Fault):
        return str(error)
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[-1] if lines else ''}".rstrip(": ")[:300]


def log_fault(error: BaseException, command: list[str]) -> Path:
    """Write the traceback of ``error`` (with its causes) to a new file under
    ``$FACESUITE_HOME/logs`` and return its path."""
    from facesuite.config import user_home

    folder = user_home() / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"fault-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    text = "".join(traceback.format_exception(error))
    # Python's own escape for undecodable names: text.py (ours) imports this module's errors.
    path.write_text(f"facesuite {' '.join(command)}\n\n{text}", encoding="utf-8", errors="backslashreplace")
    return path
