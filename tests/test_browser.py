"""The dashboard in a real browser (Playwright driving Debian's Chromium against `facesuite serve`),
and the demo report opened from disk.

Needs ``apt-get install -y chromium`` and ``pip install playwright==1.65.2`` (no browser download:
the system Chromium is used). Set ``FACESUITE_SCREENSHOTS=docs`` to save each page's screenshot
there (that is how ``docs/*.png`` are made).
"""

from __future__ import annotations

import base64
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
# Matplotlib's first line colour (tab:blue), the EDC curve's.
MATPLOTLIB_FIRST_COLOUR = (31, 119, 180)
# The CLI entry point run by this interpreter, so the test needs no console script on PATH.
SERVE = "import sys; from facesuite.cli import main; sys.exit(main())"

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed (pip install playwright==1.65.2)")
if not CHROMIUM.is_file():
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def server_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The server's FACESUITE_HOME: its gallery is the folder ``gallery`` in it."""
    return tmp_path_factory.mktemp("browser-home")


@pytest.fixture(scope="module")
def server(server_home: Path, tmp_path_factory: pytest.TempPathFactory, facecom_b: Path) -> Iterator[str]:
    port = free_port()
    env = os.environ | {"FACESUITE_HOME": str(server_home)}
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


@pytest.fixture(scope="module")
def analysis():
    """The library's own answers, to check what the pages show against."""
    from facesuite import FaceAnalysis

    with FaceAnalysis() as analysis:
        yield analysis


def _unrecognisable_face(analysis, samples: Path, folder: Path) -> Path:
    """A sample face overexposed until the library finds it still a face, but below the quality floor."""
    import numpy as np
    from PIL import Image

    photo = np.asarray(Image.open(samples / "photos" / "Naomi_Watts_0001.jpg").convert("RGB"), dtype=float)
    for gain in (1.5, 2.0, 2.5, 3.0, 4.0, 5.0):
        path = folder / f"overexposed-{gain}.png"
        Image.fromarray(np.clip(photo * gain + 60, 0, 255).astype(np.uint8)).save(path)
        if analysis.verify(path, samples / "photos" / "Hugo_Chavez_0005.jpg").decision == "unrecognisable":
            return path
    pytest.fail("no overexposure of the sample photo made its face unrecognisable")


def _colour(page, selector: str) -> str:
    return page.eval_on_selector(selector, "element => getComputedStyle(element).color")


def _legend(page) -> dict[str, str]:
    """The page's legend: each entry's term and its colour."""
    return dict(page.eval_on_selector_all("#legend dt", "terms => terms.map((dt) => [dt.innerText, getComputedStyle(dt).color])"))


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
    # A group photo: the page says which of its faces was compared, as `verify` does.
    import numpy as np
    from PIL import Image

    photos = [np.asarray(Image.open(_face(facecom_b, name, 0)).convert("RGB")) for name in ("Colin_Powell", "Hugo_Chavez")]
    height = min(photo.shape[0] for photo in photos)
    group = tmp_path / "group.png"
    Image.fromarray(np.concatenate([photo[:height] for photo in photos], axis=1)).save(group)
    page.set_input_files("#image2", str(group))
    page.click("#submit")
    page.wait_for_function("document.querySelector('#fields').innerText.includes('faces:')")
    assert "2 faces: the most prominent compared" in page.inner_text("#fields")


def test_pair_page_shows_each_decision_as_itself(page, server: str, samples: Path, analysis, tmp_path: Path) -> None:
    photos, other = samples / "photos", samples / "photos" / "Hugo_Chavez_0005.jpg"
    pairs = [(photos / "Colin_Powell_0003.jpg", samples / "people" / "Colin_Powell" / "Colin_Powell_0001.jpg"),
             (photos / "Colin_Powell_0003.jpg", other), (_unrecognisable_face(analysis, samples, tmp_path), other),
             (photos / "no_face.png", other)]
    shown = {}
    for first, second in pairs:
        expected = analysis.verify(first, second)
        page.goto(f"{server}/pair")
        page.set_input_files("#image1", str(first))
        page.set_input_files("#image2", str(second))
        page.click("#submit")
        page.wait_for_selector("#result:not(.hidden)")
        assert page.get_attribute("#verdict", "data-decision") == expected.decision
        text = page.inner_text("#verdict")
        shown[expected.decision] = (text, _colour(page, "#verdict"))
        if expected.decision == "unrecognisable":  # names the image whose face is below the floor
            poor = [i + 1 for i, q in enumerate(expected.quality) if q < analysis.quality.floor]
            assert poor and all(f"image {i}" in text for i in poor), text
        if expected.decision == "no face":  # nothing was compared: no distance on the scale
            assert "image 1" in text and page.locator("#distance-mark").count() == 0
    assert set(shown) == {"same", "different", "unrecognisable", "no face"}
    # Each its own words and its own colour, and the legend explains each in that colour.
    assert len({text for text, _ in shown.values()}) == len({colour for _, colour in shown.values()}) == 4
    legend = _legend(page)
    assert {colour for _, colour in shown.values()} <= set(legend.values()) and "quality" in legend
    assert page.is_visible("#legend")
    # The same person to a pair, unknown to a gallery search (held tighter): the page says both.
    first, second = samples / "people" / "Colin_Powell" / "Colin_Powell_0001.jpg", photos / "Colin_Powell_0003_noisy.jpg"
    expected = analysis.verify(first, second)
    assert expected.same and expected.distance > expected.search_threshold  # the case under test
    page.goto(f"{server}/pair")
    page.set_input_files("#image1", str(first))
    page.set_input_files("#image2", str(second))
    page.click("#submit")
    page.wait_for_selector("#result:not(.hidden)")
    note = page.inner_text("#search-note")
    assert page.inner_text("#verdict") == "Same person" and "would answer unknown" in note
    assert f"{expected.search_threshold:.4f}" in note


@pytest.mark.skipif(not HAVE_ANALYSIS_MODELS, reason=f"shipped gender/distortion models not in {MODELS_DIR}")
def test_analyze_page_shows_each_identity_decision_as_itself(page, server: str, server_home: Path, samples: Path,
                                                              analysis, tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    from facesuite import FaceAnalysis

    enrolled = sorted((samples / "people" / "Tom_Ridge").glob("*.jpg"))
    for photo in enrolled:
        response = page.request.post(f"{server}/gallery/enroll", multipart={
            "identity": "Tom Ridge", "image": {"name": photo.name, "mimeType": "image/jpeg", "buffer": photo.read_bytes()}})
        assert response.ok, response.text()
    # A processed copy (darkened, noised) of an enrolled photo: a source-photo match.
    pixels = np.asarray(Image.open(enrolled[0]).convert("RGB"), dtype=float)
    copy = tmp_path / "darkened_copy.jpg"
    Image.fromarray(np.clip(pixels * 0.45 + np.random.default_rng(0).normal(0, 12, pixels.shape), 0, 255).astype(np.uint8)).save(copy)
    probes = [samples / "photos" / "Tom_Ridge_0004.jpg", copy, samples / "photos" / "Naomi_Watts_0001.jpg",
              _unrecognisable_face(analysis, samples, tmp_path), samples / "photos" / "no_face.png"]
    # What the library answers with the server's own gallery.
    with FaceAnalysis(gallery=server_home / "gallery") as library:
        expected = {probe: library.get(probe)[0] for probe in probes}
    kinds = {"unknown": "unknown", "unrecognisable": "unrecognisable", "no face": "no-face"}
    shown = {}
    for probe, face in expected.items():
        page.goto(f"{server}/")
        page.set_input_files("#image", str(probe))
        page.click("#submit")
        page.wait_for_function("document.querySelectorAll('#result .panel.loading').length === 0")
        kind = "source" if face.match_kind == "source" else kinds.get(face.identity, "named")
        assert page.get_attribute("#identity", "data-decision") == kind, probe
        text = page.inner_text("#identity")
        if kind in ("named", "source"):
            assert face.identity in text
        shown[kind] = (text, _colour(page, "#identity"))
    assert set(shown) == {"named", "source", "unknown", "unrecognisable", "no-face"}
    assert len({text for text, _ in shown.values()}) == len({colour for _, colour in shown.values()}) == 5
    # A line for route and quality, and one per decision in its colour.
    legend = _legend(page)
    assert {"route", "quality"} <= set(legend) and {colour for _, colour in shown.values()} <= set(legend.values())
    assert page.is_visible("#legend")


@pytest.mark.skipif(not HAVE_ANALYSIS_MODELS, reason=f"shipped gender/distortion models not in {MODELS_DIR}")
def test_analyze_page_previews_a_format_the_browser_cannot_decode(page, server: str, samples: Path, analysis, tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    grey = Image.open(samples / "photos" / "Colin_Powell_0003.jpg").convert("L")
    photo = tmp_path / "colin.pgm"
    grey.save(photo)
    assert photo.read_bytes()[:2] == b"P5"
    page.goto(f"{server}/")
    page.set_input_files("#image", str(photo))
    page.click("#submit")
    page.wait_for_function("document.querySelectorAll('#result .panel.loading').length === 0")
    assert page.is_hidden("#error") and page.inner_text("#canvas-note") == ""
    width, height, rgba = page.eval_on_selector("#canvas", """canvas => [canvas.width, canvas.height,
        Array.from(canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data)]""")
    drawn = np.asarray(rgba, dtype=np.uint8).reshape(height, width, 4)[..., :3].astype(int)
    assert (width, height) == grey.size  # a 224-pixel photo is drawn at its own size
    # The photo itself (grey) ...
    photo_pixels = np.asarray(grey, dtype=int)
    is_grey = (drawn.max(axis=2) - drawn.min(axis=2)) < 12
    assert np.abs(drawn[..., 0] - photo_pixels)[is_grey].mean() < 8
    # ... with the main face's box drawn on it, where the library finds the face.
    x1, y1, x2, y2 = (round(v) for v in analysis.get(photo)[0].box)
    top_edge = drawn[y1 - 1 : y1 + 2, x1 + 5 : x2 - 5]
    assert ((top_edge[..., 1] > 150) & (top_edge[..., 0] < 80)).mean() > 0.5  # the first box's green


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
    # Every figure in words, none by its key.
    metrics = page.inner_text("#metrics")
    assert "accepted genuine pairs at 1% false accepts" in metrics and "right person" in metrics
    assert not any(key in metrics for key in ("top1", "tar_at_far_1pct", "auc"))
    report = page.frame_locator("#report")
    report.locator("h1").wait_for()
    # The EDC plot holds its curve, drawn whole (every face is named right here: a curve at zero,
    # which the axis used to hide), about 3 pixels thick wherever it runs.
    import numpy as np
    from PIL import Image

    edc = report.locator("figure.plot img[alt^='EDC']").get_attribute("src")
    pixels = np.asarray(Image.open(io.BytesIO(base64.b64decode(edc.split(",", 1)[1]))).convert("RGB"), dtype=int)
    curve = np.abs(pixels - MATPLOTLIB_FIRST_COLOUR).max(axis=2) < 40
    assert curve.any(axis=0).sum() > pixels.shape[1] / 2 and curve.sum() >= 2.5 * curve.any(axis=0).sum()
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


def test_gallery_page_shows_a_face_for_identities_enrolled_by_the_cli(page, server: str, server_home: Path, samples: Path,
                                                                    analysis, tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    from facesuite.cli import main

    people = tmp_path / "people"
    for name in ("Kofi_Annan", "Tiger_Woods"):
        shutil.copytree(samples / "people" / name, people / name)
    assert main(["gallery", "enroll", str(people), "--gallery", str(server_home / "gallery")]) == 0
    # Tiger Woods's files now hold another man's photo: his picture comes from the frame the gallery
    # keeps of his first photo, never from a file that is no longer the photo enrolled.
    for photo in (people / "Tiger_Woods").iterdir():
        shutil.copy(samples / "people" / "Kofi_Annan" / "Kofi_Annan_0001.jpg", photo)
    page.goto(f"{server}/gallery-page")
    for name in ("Kofi_Annan", "Tiger_Woods"):
        card = f'figure.person[data-identity="{name}"]'
        page.wait_for_function(f"(() => {{ const img = document.querySelector('{card} img.thumb'); return img && img.complete && img.naturalWidth === 112; }})()")
        tile = tmp_path / f"{name}.jpg"
        tile.write_bytes(page.request.get(f"{server}/gallery/thumbnail?identity={name}").body())
        # ... and the picture is that person's face: the library takes it for the same person as their photo.
        assert analysis.verify(tile, sorted((samples / "people" / name).glob("*.jpg"))[0]).decision == "same", name
        # In colour where it was cut from the photo's file, grey where only the kept frame was left.
        pixels = np.asarray(Image.open(tile).convert("RGB"), dtype=int)
        colour_spread = (pixels.max(axis=2) - pixels.min(axis=2)).mean()
        assert colour_spread > 10 if name == "Kofi_Annan" else colour_spread < 3, (name, colour_spread)


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
