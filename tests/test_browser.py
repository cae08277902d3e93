"""The dashboard in a real browser: Playwright driving Debian's Chromium against `facesuite serve`.

Needs ``apt-get install -y chromium`` and ``pip install playwright==1.65.2`` (no browser download:
the system Chromium is used). Set ``FACESUITE_SCREENSHOTS=docs`` to save each page's screenshot
there (that is how ``docs/*.png`` are made).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from facesuite.config import MODELS_DIR
from facesuite.serve.launch import free_port, wait_until_ready

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
HAVE_ANALYSIS_MODELS = (MODELS_DIR / "distortion" / "weights.pt").is_file() and (MODELS_DIR / "gender" / "model.json").is_file()
TIMEOUT_MS = 60_000
# The CLI entry point run by this interpreter, so the test needs no console script on PATH.
SERVE = "import sys; from facesuite.cli import main; sys.exit(main())"

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed (pip install playwright==1.65.2)")
if not CHROMIUM.is_file():
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, facecom_b: Path) -> Iterator[str]:
    port = free_port()
    home = tmp_path_factory.mktemp("browser-home")
    env = os.environ | {"FACESUITE_HOME": str(home)}
    # Evaluations may only read folders under --eval-root; the test builds its own under the temp root.
    process = subprocess.Popen([sys.executable, "-c", SERVE, "serve", "--port", str(port), "--eval-root", str(tmp_path_factory.getbasetemp())], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        if not wait_until_ready(url, process, timeout=60):
            assert process.poll() is None, f"server exited: {process.stderr.read()}"
            raise AssertionError("server did not start in 60 s")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)


@pytest.fixture(scope="module")
def page(server: str):
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(TIMEOUT_MS)
        yield page
        browser.close()


def _screenshot(page, name: str, tmp_path: Path) -> None:
    target = Path(os.environ.get("FACESUITE_SCREENSHOTS", tmp_path))
    target.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target / f"{name}.png"), full_page=True)


def _face(facecom_b: Path, identity: str, index: int = 0) -> str:
    return str(sorted((facecom_b / identity).glob("*.jpg"))[index])


@pytest.mark.skipif(not HAVE_ANALYSIS_MODELS, reason=f"shipped gender/distortion models not in {MODELS_DIR}")
def test_analyze_page_shows_the_result(page, server: str, facecom_b: Path, tmp_path: Path) -> None:
    page.goto(f"{server}/")
    page.set_input_files("#image", _face(facecom_b, "Colin_Powell"))
    page.click("#submit")
    page.wait_for_selector("#result:not(.hidden)")
    fields = page.inner_text("#fields")
    assert "gender" in fields and ("male" in fields or "female" in fields) and "distortion" in fields
    page.wait_for_function("document.getElementById('cam').complete && document.getElementById('cam').naturalWidth > 0")
    _screenshot(page, "dashboard-analyze", tmp_path)


def test_pair_page_shows_the_verdict(page, server: str, facecom_b: Path, tmp_path: Path) -> None:
    page.goto(f"{server}/pair")
    page.set_input_files("#image1", _face(facecom_b, "Colin_Powell", 0))
    page.set_input_files("#image2", _face(facecom_b, "Colin_Powell", 1))
    page.click("#submit")
    page.wait_for_selector("#result:not(.hidden)")
    assert page.inner_text("#verdict") == "Same person"
    assert page.eval_on_selector("#crop1", "img => img.naturalWidth") > 0
    _screenshot(page, "dashboard-pair", tmp_path)


def test_bad_file_shows_an_error(page, server: str, bad_files: dict[str, Path], tmp_path: Path) -> None:
    page.goto(f"{server}/")
    page.set_input_files("#image", str(bad_files["text"]))
    page.click("#submit")
    page.wait_for_selector("#error:not(.hidden)")
    assert "notes.jpg: not a readable image" in page.inner_text("#error")
    assert page.is_hidden("#result")
    _screenshot(page, "dashboard-error", tmp_path)


def test_evaluate_page_runs_a_job(page, server: str, facecom_b: Path, tmp_path: Path) -> None:
    data = tmp_path / "ids"
    for identity in ("001_frontal", "004_frontal", "007_frontal"):
        shutil.copytree(facecom_b / identity, data / identity)
    page.goto(f"{server}/evaluate")
    page.fill("#folder", str(data))
    page.click("#submit")
    page.wait_for_selector("#report-link:not(.hidden)")
    assert "top1" in page.inner_text("#metrics")
    page.frame_locator("#report").locator("h1").wait_for()
    _screenshot(page, "dashboard-evaluate", tmp_path)
