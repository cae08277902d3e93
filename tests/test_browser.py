"""The dashboard in a real browser (Playwright driving Debian's Chromium against `facesuite serve`),
and the demo report opened from disk.

Needs ``apt-get install -y chromium`` and ``pip install playwright==1.65.2`` (no browser download:
the system Chromium is used). Set ``FACESUITE_SCREENSHOTS=docs`` to save each page's screenshot
there (that is how ``docs/*.png`` are made).
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from facesuite.config import MODELS_DIR
from serve_process import free_port, wait_until_ready

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
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def page(browser, server: str):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(TIMEOUT_MS)
    yield page
    page.close()


def _screenshot(page, name: str, tmp_path: Path, full_page: bool = True) -> None:
    target = Path(os.environ.get("FACESUITE_SCREENSHOTS", tmp_path))
    target.mkdir(parents=True, exist_ok=True)
    from PIL import Image

    # 256 colours: a third of the bytes, the same look for flat dashboard pages (docs/ stays small).
    shot = Image.open(io.BytesIO(page.screenshot(full_page=full_page)))
    shot.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT).save(target / f"{name}.png", optimize=True)


def _face(facecom_b: Path, identity: str, index: int = 0) -> str:
    return str(sorted((facecom_b / identity).glob("*.jpg"))[index])


@pytest.mark.skipif(not HAVE_ANALYSIS_MODELS, reason=f"shipped gender/distortion models not in {MODELS_DIR}")
def test_analyze_page_shows_the_result(page, server: str, facecom_b: Path, tmp_path: Path) -> None:
    page.goto(f"{server}/")
    page.set_input_files("#image", _face(facecom_b, "Colin_Powell"))
    page.click("#submit")
    # Every panel shows at once, with a spinner until its own answer is in.
    page.wait_for_selector("#result:not(.hidden)")
    assert page.locator("#result .panel.loading").count() >= 1
    page.wait_for_function("document.querySelectorAll('#result .panel.loading').length === 0")
    fields = page.inner_text("#fields")
    assert "gender" in fields and ("male" in fields or "female" in fields) and "distortion" in fields
    assert "why this route" in fields and "detector says" in fields and "quality" in fields
    page.wait_for_function("document.getElementById('cam').complete && document.getElementById('cam').naturalWidth > 0")
    assert page.is_hidden("#panel-faces")  # one face: no list of faces
    _screenshot(page, "dashboard-analyze", tmp_path)


@pytest.mark.skipif(not HAVE_ANALYSIS_MODELS, reason=f"shipped gender/distortion models not in {MODELS_DIR}")
def test_analyze_page_shows_every_face_of_a_group_photo(page, server: str, facecom_b: Path, tmp_path: Path) -> None:
    from PIL import Image

    people = ["Colin_Powell", "Hugo_Chavez", "Tiger_Woods"]
    group = Image.new("RGB", (224 * len(people), 224), "white")
    for column, person in enumerate(people):
        group.paste(Image.open(_face(facecom_b, person)), (224 * column, 0))
    photo = tmp_path / "group.jpg"
    group.save(photo, quality=95)
    page.goto(f"{server}/")
    page.set_input_files("#image", str(photo))
    page.click("#submit")
    page.wait_for_selector("#panel-faces:not(.hidden)")
    assert page.locator("#faces figure").count() == len(people)
    page.wait_for_function("[...document.querySelectorAll('#faces img')].every((img) => img.complete && img.naturalWidth > 0)")
    page.wait_for_function("document.querySelectorAll('#result .panel.loading').length === 0")
    _screenshot(page, "dashboard-analyze-group", tmp_path)


def test_pair_page_shows_the_verdict(page, server: str, facecom_b: Path, tmp_path: Path) -> None:
    page.goto(f"{server}/pair")
    page.set_input_files("#image1", _face(facecom_b, "Colin_Powell", 0))
    page.set_input_files("#image2", _face(facecom_b, "Colin_Powell", 1))
    page.click("#submit")
    page.wait_for_selector("#result:not(.hidden)")
    assert page.inner_text("#verdict") == "Same person"
    assert page.eval_on_selector("#crop1", "img => img.naturalWidth") > 0
    # The distance on the calibrated scale: inside the accepted zone, with the FAR 1% and 0.1% marks
    # in their order (a stricter rate accepts only smaller distances).
    marks = page.eval_on_selector_all("#scale .mark.far", "marks => marks.map((m) => [m.dataset.far, m.innerText, m.offsetLeft])")
    assert [(far, label) for far, label, _ in marks] == [("0.001", "FAR 0.1%"), ("0.01", "FAR 1%")] and marks[0][2] < marks[1][2]
    pair = page.eval_on_selector("#distance-mark", "m => m.offsetLeft")
    accepted = page.eval_on_selector("#scale .accept", "zone => zone.offsetWidth")
    assert 0 <= pair <= accepted and abs(accepted - marks[1][2]) <= 1  # the shipped threshold is the FAR 1% one
    _screenshot(page, "dashboard-pair", tmp_path)


def test_pair_page_says_when_an_image_holds_no_face(page, server: str, facecom_b: Path, tmp_path: Path) -> None:
    import numpy as np

    from facesuite.io import write_image

    blank = tmp_path / "blank.png"
    write_image(blank, np.full((224, 224, 3), 128, np.uint8))
    page.goto(f"{server}/pair")
    page.set_input_files("#image1", str(blank))
    page.set_input_files("#image2", _face(facecom_b, "Colin_Powell", 0))
    page.click("#submit")
    page.wait_for_selector("#result:not(.hidden)")
    assert page.inner_text("#verdict") == "No face found in image 1"
    assert "undecided" in page.get_attribute("#verdict", "class")


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


def test_gallery_page_shows_a_face_per_identity_and_removes_one(page, server: str, facecom_b: Path, tmp_path: Path) -> None:
    people = {"Colin Powell": "Colin_Powell", "Hugo Chavez": "Hugo_Chavez"}
    page.goto(f"{server}/gallery-page")
    for name, folder in people.items():
        page.fill("#identity", name)
        page.set_input_files("#images", [_face(facecom_b, folder, 0), _face(facecom_b, folder, 1)])
        page.click("#submit")
        page.wait_for_selector(f'figure.person[data-identity="{name}"] img.thumb')
    for name in people:
        card = f'figure.person[data-identity="{name}"]'
        page.wait_for_function(f"(() => {{ const img = document.querySelector('{card} img.thumb'); return img.complete && img.naturalWidth === 112; }})()")
        assert "2 faces" in page.inner_text(card)
    _screenshot(page, "dashboard-gallery", tmp_path)
    page.once("dialog", lambda dialog: dialog.accept())
    page.click('figure.person[data-identity="Hugo Chavez"] button.remove')
    page.wait_for_selector('figure.person[data-identity="Hugo Chavez"]', state="detached")
    assert "removed Hugo Chavez (2 faces)" in page.inner_text("#message")
    assert page.locator('figure.person[data-identity="Colin Powell"] img.thumb').count() == 1
    assert page.request.get(f"{server}/gallery/thumbnail?identity=Hugo%20Chavez").status == 404
    assert page.request.get(f"{server}/gallery/thumbnail?identity=Colin%20Powell").status == 200


def test_cluster_page_shows_a_strip_per_person(page, server: str, facecom_b: Path, tmp_path: Path) -> None:
    people = {"Colin_Powell": [_face(facecom_b, "Colin_Powell", i) for i in range(3)],
              "Hugo_Chavez": [_face(facecom_b, "Hugo_Chavez", i) for i in range(3)]}
    page.goto(f"{server}/cluster-page")
    page.set_input_files("#images", [photo for photos in people.values() for photo in photos])
    page.click("#submit")
    page.wait_for_selector("section.cluster figure.person img.thumb")
    strips = page.locator("section.cluster[data-cluster]")
    # Each person's main faces in one strip of their own (a bystander may add a strip).
    strip_of = {}
    for i in range(strips.count()):
        for name in strips.nth(i).locator("figure.person").evaluate_all("cards => cards.map(c => c.dataset.photo)"):
            strip_of.setdefault(name, set()).add(i)
    for photos in people.values():
        assert len({i for photo in photos for i in strip_of[Path(photo).name]}) == 1, strip_of
    assert strip_of[Path(people["Colin_Powell"][0]).name] != strip_of[Path(people["Hugo_Chavez"][0]).name]
    assert "6 photos" in page.inner_text("#summary")
    _screenshot(page, "dashboard-cluster", tmp_path)


@pytest.mark.skipif(not HAVE_ANALYSIS_MODELS, reason=f"shipped gender/distortion models not in {MODELS_DIR}")
def test_demo_report_opens_from_disk_with_its_plots_and_faces(browser, facecom_b: Path, tmp_path: Path) -> None:
    from facesuite import FaceAnalysis
    from facesuite.cli import main
    from facesuite.config import data_root
    from facesuite.report.faces import chips_of
    from facesuite.report.html import thumbnail_uri

    out = tmp_path / "demo-out"
    assert main(["demo", "--data", str(data_root()), "--out", str(out), "--identities", "6"]) == 0
    predictions = list(csv.DictReader(open(out / "recognition" / "predictions.csv", newline="", encoding="utf-8")))
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    fetched = []
    page.on("request", lambda request: fetched.append(request.url))
    page.goto((out / "report.html").as_uri())
    # Nothing but the file itself is loaded: every picture is embedded.
    assert fetched == [(out / "report.html").as_uri()]
    # The plots are inline, and drawn.
    plots = page.eval_on_selector_all("figure.plot img", "imgs => imgs.map((img) => [img.alt, img.src.slice(0, 22), img.naturalWidth])")
    captions = " ".join(alt for alt, _, _ in plots)
    for plot in ("ROC", "Top-1 per distortion type", "DET", "Distance histograms", "Confusion matrix", "Accuracy per group"):
        assert plot in captions, plot
    assert all(src == "data:image/png;base64," and width > 100 for _, src, width in plots)
    # One strip per distortion type, and each face card shows the files its predictions.csv row names.
    strips = page.eval_on_selector_all(".strip", "strips => strips.map((strip) => strip.dataset.type)")
    assert sorted(strips) == sorted({row["distortion"] for row in predictions}) and len(strips) == 7
    cards = page.eval_on_selector_all(".strip figure.face", """cards => cards.map((card) => ({
        row: Number(card.dataset.row), probe: card.dataset.probe, gallery: card.dataset.gallery,
        probeSrc: card.querySelector('img.probe').src, gallerySrc: card.querySelector('img.gallery').src,
        caption: card.querySelector('figcaption').innerText}))""")
    assert len(cards) >= 7 * 3
    for card in cards:
        row = predictions[card["row"]]
        assert (card["probe"], card["gallery"]) == (row["path"], row["gallery_path"])
        assert f"distance {float(row['distance']):.3f}" in card["caption"] and row["route"] in card["caption"]
        assert ("right" if row["predicted_identity"] == row["true_identity"] else "wrong") in card["caption"]
    # ... and the pictures are those files' faces.
    with FaceAnalysis() as analysis:
        chips = chips_of(analysis)([path for card in cards for path in (card["probe"], card["gallery"])])
    for card in cards:
        assert card["probeSrc"] == thumbnail_uri(chips[card["probe"]]) and card["gallerySrc"] == thumbnail_uri(chips[card["gallery"]])
    assert page.locator("text=Worst errors").count() >= 1 and page.locator("text=Gender: Errors").count() == 1
    _screenshot(page, "demo-report", tmp_path, full_page=False)
    page.close()
