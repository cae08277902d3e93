"""Shared fixtures: the sample photos in the repository, the real FACECOM data (skipped with a
reason when absent) and bad files.

Two tiers: every test that uses the shared data (the ``facecom_a`` / ``facecom_b`` fixtures, or a
module marked ``data``) is marked ``data``; ``pytest -m "not data"`` (``make test-fast``) runs the
rest, which need only ``samples/`` and images made in the test.

With ``FACESUITE_NO_SKIPS=1`` (set by ``.ci/run``) every skip is a failure: in CI the data, the
browser, Ray and the network namespaces all exist, so a test that skips there is a test that did
not run, and a green run must not hide it.
"""

from __future__ import annotations

import os
from pathlib import Path

import anyio._core._fileio  # noqa: F401  (see below)
import pytest

from facesuite.config import data_root

# anyio is a pytest plugin, so pytest rewrites (parses) its modules when they are first imported.
# Starlette's FileResponse imports this one lazily, inside the dashboard's worker thread, and
# CPython 3.11.7 can fail parsing in two threads at once ("SystemError: AST constructor recursion
# depth mismatch", fixed in 3.11.8): a dashboard test failed once that way. Imported here, in the
# main thread, before any test starts a server.

NO_SKIPS = os.environ.get("FACESUITE_NO_SKIPS") == "1"
SAMPLES = Path(__file__).resolve().parents[1] / "samples"
DATA_FIXTURES = {"facecom_a", "facecom_b", "utkface"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # One rule instead of a marker on every test: a test that reaches for the shared data, through
    # any fixture it depends on, belongs to the data tier.
    for item in items:
        if DATA_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.data)


def _fail_if_skipped(report: pytest.TestReport | pytest.CollectReport) -> None:
    if NO_SKIPS and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped with FACESUITE_NO_SKIPS=1 (skips fail in CI): {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    _fail_if_skipped(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):
    # Module-level skips (importorskip, allow_module_level) happen while collecting.
    outcome = yield
    _fail_if_skipped(outcome.get_result())


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    # Tests must not read detections cached by earlier runs on this machine.
    os.environ["FACESUITE_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    os.environ["FACESUITE_HOME"] = str(tmp_path_factory.mktemp("home"))


@pytest.fixture(scope="session")
def facecom_b() -> Path:
    root = data_root() / "facecom" / "task_b" / "train"
    if not root.is_dir():
        pytest.skip(f"FACECOM task_b not found at {root} (set FACESUITE_DATA)")
    return root


@pytest.fixture(scope="session")
def utkface() -> Path:
    """UTKFace's images folder; its dev split is ``data_root()/splits/utkface_dev.txt``."""
    root = data_root() / "utkface" / "images"
    if not root.is_dir() or not (data_root() / "splits" / "utkface_dev.txt").is_file():
        pytest.skip(f"UTKFace or its dev split not found under {data_root()} (set FACESUITE_DATA)")
    return root


@pytest.fixture(scope="session")
def facecom_a() -> Path:
    root = data_root() / "facecom" / "task_a" / "train"
    if not root.is_dir():
        pytest.skip(f"FACECOM task_a not found at {root} (set FACESUITE_DATA)")
    return root


@pytest.fixture(scope="session")
def samples() -> Path:
    """The sample photos shipped in the repository (samples/README.md lists them): identity folders
    in ``people/`` (two photos each) and other photos in ``photos/``."""
    return SAMPLES


@pytest.fixture()
def bad_files(tmp_path: Path, samples: Path) -> dict[str, Path]:
    """A zero-byte file, a text file named .jpg, and a truncated JPEG."""
    good = samples / "people" / "Colin_Powell" / "Colin_Powell_0001.jpg"
    files = {
        "empty": tmp_path / "empty.jpg",
        "text": tmp_path / "notes.jpg",
        "truncated": tmp_path / "truncated.jpg",
    }
    files["empty"].write_bytes(b"")
    files["text"].write_text("this is not an image\n")
    files["truncated"].write_bytes(good.read_bytes()[:600])
    return files
