"""REST API on real faces (the sample photos; FACECOM for evaluation jobs) through FastAPI's
TestClient (models loaded once per module)."""

from __future__ import annotations

import base64
import csv
import io
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="fastapi is not installed")
from fastapi.testclient import TestClient

from facesuite.cli import main
from facesuite.config import MODELS_DIR
from facesuite.serve import create_app

# /analyze and /explain need the shipped gender and distortion models.
HAVE_ANALYSIS_MODELS = (MODELS_DIR / "distortion" / "weights.pt").is_file() and (MODELS_DIR / "gender" / "model.json").is_file()
needs_models = pytest.mark.skipif(not HAVE_ANALYSIS_MODELS, reason=f"shipped gender/distortion models not in {MODELS_DIR}")
LIMIT = 2 * 1024 * 1024


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("serve")
    # Evaluations may read the test's temporary folders (and nothing else: see test_api_safety.py).
    app = create_app(gallery=work / "gallery", max_upload_bytes=LIMIT, work_dir=work,
                     eval_roots=[tmp_path_factory.getbasetemp()])
    with TestClient(app) as test_client:
        yield test_client


def _image(folder: Path, identity: str, index: int = 0) -> Path:
    return sorted((folder / identity).glob("*.jpg"))[index]


def _upload(path: Path, field: str = "image") -> tuple[str, tuple[str, bytes, str]]:
    return field, (path.name, path.read_bytes(), "image/jpeg")


def _health_once_loaded(client: TestClient) -> dict:
    """/health after the service's background load has finished (it runs on the worker thread
    before anything handed to it later)."""
    service = client.app.state.service
    service.call(lambda: None)
    return client.get("/health").json()


def test_health_reports_the_models_the_service_loaded(client: TestClient) -> None:
    from facesuite import __version__

    body = _health_once_loaded(client)
    assert body == {"status": "ok", "version": __version__, "models_loaded": True, "analysis": "ready",
                    "gallery": client.app.state.service.gallery_uri}
    analysis = client.app.state.service.call(lambda: client.app.state.service.analysis)
    assert analysis.gender is not None and analysis.age is not None and analysis.router.routes  # what "ready" stands for


def test_health_says_what_is_missing_when_a_model_is_not_there(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from facesuite.classify import stages

    monkeypatch.setattr(stages, "DEFAULT_GENDER_DIR", tmp_path / "no-gender-model")  # where "default" is read
    with TestClient(create_app(gallery=tmp_path / "gallery", work_dir=tmp_path)) as degraded:
        body = _health_once_loaded(degraded)
        assert body["models_loaded"] is True
        assert body["analysis"].startswith("analysis models unavailable") and "no-gender-model" in body["analysis"]
        assert degraded.app.state.service.call(lambda: degraded.app.state.service.analysis).gender is None


def test_verify_same_and_different(client: TestClient, samples: Path) -> None:
    people = samples / "people"
    a, b = _image(people, "Colin_Powell", 0), _image(people, "Colin_Powell", 1)
    other = _image(people, "Hugo_Chavez")
    same = client.post("/verify", files=[_upload(a, "image1"), _upload(b, "image2")])
    assert same.status_code == 200, same.text
    assert same.json()["same"] is True and same.json()["distance"] <= same.json()["threshold"]
    # What the threshold is, in words; never a path on the server.
    assert same.json()["threshold_source"] == "shipped calibration, FAR 1%"
    different = client.post("/verify?images=true", files=[_upload(a, "image1"), _upload(other, "image2")])
    body = different.json()
    assert body["same"] is False and body["distance"] > body["threshold"]
    assert all(crop.startswith("data:image/png;base64,") for crop in body["crops"])


@pytest.fixture(scope="module")
def library(client: TestClient):
    """The library's own FaceAnalysis (default models, detection cache off), reading the gallery the
    client's server reads: what the API must answer."""
    from facesuite.analysis import FaceAnalysis

    # After the server's own load: registries fill on first use, and two threads filling one at
    # once can see it empty (registry.py).
    client.app.state.service.call(lambda: None)
    analysis = FaceAnalysis(use_cache=False)
    yield analysis
    if analysis.gallery is not None:
        analysis.gallery.close()


@needs_models
def test_analyze_answers_what_the_library_answers(client: TestClient, library, samples: Path) -> None:
    enrolled = _image(samples / "people", "Colin_Powell", 1)
    assert client.post("/gallery/enroll", data={"identity": "Colin Powell"}, files=[_upload(enrolled)]).status_code == 200
    library.gallery = library.open_gallery(client.app.state.service.gallery_uri)
    photo = _image(samples / "people", "Colin_Powell")
    response = client.post("/analyze?images=true", files=[_upload(photo)])
    assert response.status_code == 200, response.text
    body = response.json()
    [face] = library.get(photo)
    assert body["path"] == photo.name and body["box"] == pytest.approx(list(face.box), abs=0.051)
    assert (body["gender"], body["identity"], body["distortion"], body["route"]) == (face.gender, face.identity, face.distortion, face.route)
    assert face.identity == "Colin Powell"  # another photo of him: the distance is a real match's
    assert body["distance"] == pytest.approx(face.distance, abs=1e-4) and body["p_female"] == pytest.approx(face.p_female, abs=1e-4)
    assert body["age"] == pytest.approx(face.age, abs=0.051)
    crop = np.asarray(Image.open(io.BytesIO(base64.b64decode(body["crop"].split(",", 1)[1]))).convert("RGB"))
    assert np.array_equal(crop, face.chip())


@needs_models
def test_a_trained_gender_model_answers_in_the_api_as_in_the_cli(samples: Path, tmp_path: Path, capsys) -> None:
    """A gender model of the user's (here the shipped one with its threshold moved so that every
    face is female) answers `POST /analyze` and `analyze --gender-model` alike; a wrong folder
    stops `serve` in one line."""
    from facesuite.classify.gender_head import DEFAULT_GENDER_DIR

    model = tmp_path / "gender"
    shutil.copytree(DEFAULT_GENDER_DIR, model)
    record = json.loads((model / "model.json").read_text())
    record["threshold"] = 1e-6
    (model / "model.json").write_text(json.dumps(record))
    photo = _image(samples / "people", "Colin_Powell")
    assert main(["analyze", str(photo), "--gender-model", str(model), "--json"]) == 0
    (cli,) = json.loads(capsys.readouterr().out)
    with TestClient(create_app(gallery=str(tmp_path / "g"), work_dir=tmp_path / "w", gender_model=model),
                    base_url="http://127.0.0.1:8000") as api:
        served = api.post("/analyze", files=[_upload(photo)]).json()
    assert cli["gender"] == served["gender"] == "female"
    assert served["p_female"] == pytest.approx(cli["p_female"], abs=1e-4)
    assert main(["serve", "--gender-model", str(tmp_path / "missing"), "--port", "8799"]) == 2
    assert "missing" in capsys.readouterr().err


@needs_models
def test_analyze_preview_of_a_format_browsers_cannot_draw(client: TestClient, samples: Path) -> None:
    grey = Image.open(samples / "photos" / "Colin_Powell_0003.jpg").convert("L")
    pgm = io.BytesIO()
    grey.save(pgm, format="PPM")
    response = client.post("/analyze?preview=true", files=[("image", ("colin.pgm", pgm.getvalue(), "image/x-portable-graymap"))])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["size"] == list(grey.size) and body["preview"].startswith("data:image/jpeg;base64,")
    preview = Image.open(io.BytesIO(base64.b64decode(body["preview"].split(",", 1)[1])))
    assert preview.size == grey.size  # small photos are not enlarged
    assert np.abs(np.asarray(preview.convert("L"), dtype=int) - np.asarray(grey, dtype=int)).mean() < 4
    assert "preview" not in client.post("/analyze", files=[("image", ("colin.pgm", pgm.getvalue(), "image/x-portable-graymap"))]).json()


@needs_models
def test_explain_overlays_a_heatmap_on_the_face_the_library_sees(client: TestClient, library, samples: Path) -> None:
    photo = _image(samples / "people", "Colin_Powell")
    response = client.post("/explain", files=[_upload(photo)])
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    [face] = library.get(photo)
    assert response.headers["x-gender"] == face.gender
    assert float(response.headers["x-p-female"]) == pytest.approx(face.p_female, abs=1e-4)
    size = library.gender.chip_spec.size
    overlay = np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB"), dtype=np.float64)
    chip = face.chip(size, library.gender.chip_spec.padding).astype(np.float64)
    assert overlay.shape == chip.shape == (size, size, 3)
    # The heatmap changes the picture, from blue (cold) to red (hot) across the face, not a uniform
    # tint (one would move red minus blue by under half the chip's own spread, 16 levels here)...
    change = overlay - chip
    assert np.abs(change).mean() > 10 and (change[..., 0] - change[..., 2]).std() > 30
    # ...and it is still this face under it.
    assert np.corrcoef(overlay.mean(axis=2).ravel(), chip.mean(axis=2).ravel())[0, 1] > 0.3
    # A photo with no face has no gender decision to explain: a JSON 422 naming the upload.
    blank = samples / "photos" / "no_face.png"
    refused = client.post("/explain", files=[("image", (blank.name, blank.read_bytes(), "image/png"))])
    assert refused.status_code == 422 and refused.json()["error"] == "no_face.png: no face found: there is no gender decision to explain"


@pytest.mark.parametrize("kind", ["text", "truncated"])
def test_corrupt_upload_is_a_json_4xx(client: TestClient, bad_files: dict[str, Path], kind: str) -> None:
    response = client.post("/verify", files=[_upload(bad_files[kind], "image1"), _upload(bad_files[kind], "image2")])
    assert response.status_code == 415
    assert bad_files[kind].name in response.json()["error"] and "/tmp/facesuite-upload" not in response.json()["error"]


def test_missing_and_empty_files_are_400(client: TestClient, bad_files: dict[str, Path]) -> None:
    assert client.post("/gallery/identify").status_code == 400
    response = client.post("/gallery/identify", files=[_upload(bad_files["empty"])])
    assert response.status_code == 400 and "empty" in response.json()["error"]


def test_verify_names_the_missing_field(client: TestClient, samples: Path) -> None:
    photo = _image(samples / "people", "Colin_Powell")
    one = client.post("/verify", files=[_upload(photo, "image1")])
    assert one.status_code == 400 and one.json()["error"] == "no file uploaded in field 'image2'"
    # A file under another field name is no file in either field.
    neither = client.post("/verify", files=[_upload(photo, "a"), _upload(photo, "b")])
    assert neither.status_code == 400 and neither.json()["error"] == "no file uploaded in fields 'image1' and 'image2'"
    both = client.post("/verify", files=[_upload(photo, "image1"), _upload(photo, "image2")])
    assert both.status_code == 200 and both.json()["same"]


def test_too_large_upload_is_413(client: TestClient) -> None:
    response = client.post("/verify", files=[("image1", ("big.jpg", b"\xff" * (LIMIT + 1), "image/jpeg"))])
    assert response.status_code == 413
    assert "too large" in response.json()["error"]


def test_enroll_then_identify(client: TestClient, samples: Path) -> None:
    colin = [_upload(path) for path in (_image(samples / "people", "Colin_Powell", 0), samples / "photos" / "Colin_Powell_0003.jpg")]
    assert client.post("/gallery/enroll", data={"identity": "Colin Powell"}, files=colin).json()["enrolled"] == 2
    client.post("/gallery/enroll", data={"identity": "Hugo"}, files=[_upload(_image(samples / "people", "Hugo_Chavez"))])
    listing = client.get("/gallery").json()
    assert {e["identity"] for e in listing["identities"]} == {"Colin Powell", "Hugo"}
    probe = _image(samples / "people", "Colin_Powell", 1)
    response = client.post("/gallery/identify", files=[_upload(probe)])
    assert response.status_code == 200, response.text
    assert response.json()["identity"] == "Colin Powell"
    # What the face was held to, and why: as the library decides it on the same gallery.
    from facesuite import FaceAnalysis

    with FaceAnalysis(gender=None, age=None, gallery=client.app.state.service.gallery_uri) as app:
        (face,) = app.get(probe)
    answer = response.json()
    assert (answer["identity"], answer["held_to"], answer["distortion"]) == (face.identity, face.held_to, face.distortion)
    assert answer["threshold"] == pytest.approx(face.threshold, abs=1e-6) and answer["quality"] == pytest.approx(face.quality, abs=1e-4)
    bad_name = client.post("/gallery/enroll", data={"identity": "unknown"}, files=[colin[0]])
    assert bad_name.status_code == 422 and "reserved" in bad_name.json()["error"]


def _finished_job(client: TestClient, folder: str) -> dict:
    """Start an evaluation job on ``folder`` and poll it until it ends (two minutes at most)."""
    job = client.post("/jobs/recognition", json={"folder": folder}).json()
    deadline = time.monotonic() + 120
    while (status := client.get(f"/jobs/{job['id']}").json())["state"] not in ("done", "failed"):
        assert time.monotonic() < deadline, status
        time.sleep(0.2)
    return status


def test_evaluation_job_runs_to_a_report(client: TestClient, facecom_b: Path, tmp_path: Path) -> None:
    for identity in ("001_frontal", "004_frontal", "007_frontal"):
        shutil.copytree(facecom_b / identity, tmp_path / identity)
    assert client.post("/jobs/recognition", json={"folder": str(tmp_path / "missing")}).status_code == 422
    status = _finished_job(client, str(tmp_path))
    assert status["state"] == "done", status["message"]
    assert status["done"] == status["total"] == 3 + 21
    report = client.get(status["report_url"])
    assert report.status_code == 200 and "<img src=\"data:image/png;base64," in report.text
    assert report.text.count('class="strip"') == 7 and 'class="probe" src="data:image/jpeg;base64,' in report.text  # faces, cut on the model thread
    # The job embeds one slice at a time: a probe found to be a processed copy names its own
    # clean photo (FACECOM's <identity>/distortion/<stem>_<type>.jpg comes from <identity>/<stem>.jpg).
    out = client.app.state.jobs.get(status["id"]).out
    assert json.loads((out / "metrics.json").read_text())["source_match"]["enabled"]
    rows = list(csv.DictReader(open(out / "predictions.csv", newline="", encoding="utf-8")))
    sourced = [row for row in rows if row["match_kind"] == "source"]
    assert sourced and all(Path(row["source_photo"]) == Path(row["path"]).parent.parent / (Path(row["path"]).stem.rsplit("_", 1)[0] + ".jpg")
                           for row in sourced)


def test_evaluation_job_on_folders_of_plain_photos(client: TestClient, facecom_b: Path, tmp_path: Path) -> None:
    """Plain photos, no distortion/ copies: the job runs the cross protocol (alternate photos
    enrolled, the others searched), as `facesuite eval recognition` does by default."""
    for identity in ("Colin_Powell", "Hugo_Chavez", "Tom_Ridge"):
        (tmp_path / identity).mkdir()
        for photo in sorted((facecom_b / identity).glob("*.jpg"))[:2]:
            shutil.copy(photo, tmp_path / identity)
    status = _finished_job(client, str(tmp_path))
    assert status["state"] == "done", status["message"]
    assert status["metrics"]["probes"] == 3 and status["metrics"]["identities"] == 3
    (tmp_path / "Tom_Ridge" / sorted(p.name for p in (tmp_path / "Tom_Ridge").iterdir())[1]).unlink()
    for identity in ("Colin_Powell", "Hugo_Chavez"):
        shutil.rmtree(tmp_path / identity)
    lonely = client.post("/jobs/recognition", json={"folder": str(tmp_path)})
    assert lonely.status_code == 422 and "two or more photos" in lonely.json()["error"]
    # One identity with distorted copies has probes, but no one else to mistake them for.
    single = tmp_path / "one_identity"
    shutil.copytree(facecom_b / "001_frontal", single / "001_frontal")
    alone = client.post("/jobs/recognition", json={"folder": str(single)})
    assert alone.status_code == 422 and "at least two identities" in alone.json()["error"]


def test_report_command_embeds_images(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    (tmp_path / "metrics.json").write_text(json.dumps({"accuracy": 0.9, "per_class": {"a": {"f1": 0.8}}}))
    Image.new("RGB", (8, 8), "red").save(tmp_path / "roc.png")
    # The evaluation's own page shows faces: the summary lifts that section as it is.
    from facesuite.report.faces import Card, cards_html
    from facesuite.report.html import write_html

    faces = cards_html([Card([("probe", "a.jpg")], ["a face"])], {"a.jpg": np.zeros((16, 16, 3), np.uint8)})
    write_html(tmp_path / "report.html", "an evaluation", [("Summary", "<p>numbers</p>"), ("Faces", faces)])
    assert main(["report", str(tmp_path)]) == 0
    page = (tmp_path / "summary.html").read_text()
    assert "per_class.a.f1" in page and "data:image/png;base64," in page
    assert faces in page and "numbers" not in page
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_a_source_match_names_the_photo_not_the_servers_path(samples: Path, tmp_path: Path) -> None:
    """A photo enrolled from the server's disk (by its absolute path) that a processed copy comes
    from is named to the client by its file name: /gallery/identify and /analyze never hand out
    the server's folders. The CLI, on the server's own machine, gives the path."""
    source = (samples / "photos" / "Colin_Powell_0003.jpg").resolve()
    gallery = tmp_path / "g"
    assert main(["gallery", "enroll", str(source), "--identity", "Colin", "--gallery", str(gallery)]) == 0
    copy = samples / "photos" / "Colin_Powell_0003_noisy.jpg"
    with TestClient(create_app(gallery=str(gallery), work_dir=tmp_path / "serve"), base_url="http://127.0.0.1:8000") as client:
        identified = client.post("/gallery/identify", files=[_upload(copy)]).json()
        analysed = client.post("/analyze", files=[_upload(copy)]).json()
    assert identified["match_kind"] == analysed["match_kind"] == "source"
    assert identified["source_photo"] == analysed["source_photo"] == source.name
    assert main(["gallery", "identify", str(copy), "--gallery", str(gallery), "--csv", str(tmp_path / "who.csv")]) == 0
    (row,) = csv.DictReader(open(tmp_path / "who.csv", newline=""))
    assert row["source_photo"] == str(source)
