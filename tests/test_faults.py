"""A fault of facesuite's own is not bad input: each command stops with exit 1 and one line that
names the fault and the log holding its traceback, keeps what it finished, and the API answers a
logged JSON 500. Faults are injected by making one real model call raise; the inputs are fine.
(Worker processes and Ray actors: tests/test_batch.py and tests/test_ray_cluster.py.)"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from facesuite.analysis import FaceAnalysis
from facesuite.classify.distortion import DistortionDetector
from facesuite.cli import main
from facesuite.detect import FaceDetector


def _explode(*_: object, **__: object) -> None:
    raise RuntimeError("injected fault")


def _images(facecom_b: Path, identity: str, count: int = 2) -> list[Path]:
    return sorted((facecom_b / identity).glob("*.jpg"))[:count]


def _assert_one_fault_line(stderr: str) -> Path:
    (line,) = [entry for entry in stderr.splitlines() if entry.startswith("facesuite:")]
    assert line.startswith("facesuite: internal error") and "RuntimeError: injected fault" in line, stderr
    assert "Traceback" not in stderr
    log = Path(line.rsplit("full traceback in ", 1)[1])
    assert "Traceback" in log.read_text() and "_explode" in log.read_text()
    return log


@pytest.mark.parametrize("command", ["analyze", "detect", "verify", "eval-gender"])
def test_a_fault_stops_the_command_with_exit_1_and_one_line(command: str, facecom_b: Path, facecom_a: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setattr(FaceDetector, "detect", _explode)
    images = [str(p) for p in _images(facecom_b, "Colin_Powell")]
    argv = {"analyze": ["analyze", *images], "detect": ["detect", *images, "--out", str(tmp_path / "out")],
            "verify": ["verify", *images], "eval-gender": ["eval", "gender", str(facecom_a), "--out", str(tmp_path / "g")]}[command]
    assert main([*argv, "--no-cache"] if command != "eval-gender" else argv) == 1
    _assert_one_fault_line(capsys.readouterr().err)


def test_gallery_enroll_keeps_the_identities_enrolled_before_a_fault(facecom_b: Path, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    # 20 people with two photos each: enrolled in two batches of whole identities (16, then 4).
    people = [d.name for d in sorted(facecom_b.iterdir()) if len(list(d.glob("*.jpg"))) >= 2][:20]
    for person in people:
        (tmp_path / "ids" / person).mkdir(parents=True)
        for image in _images(facecom_b, person):
            (tmp_path / "ids" / person / image.name).symlink_to(image.resolve())
    embed = FaceAnalysis.route_crops  # the one embedding pass every enrolled face goes through

    def fails_on_the_second_batch(self, crops, *args, **kwargs):
        if any(Path(crop.path).parent.name in people[16:] for crop in crops):
            _explode()
        return embed(self, crops, *args, **kwargs)

    monkeypatch.setattr(FaceAnalysis, "route_crops", fails_on_the_second_batch)
    gallery = str(tmp_path / "gallery")
    assert main(["gallery", "enroll", str(tmp_path / "ids"), "--gallery", gallery]) == 1
    _assert_one_fault_line(capsys.readouterr().err)
    monkeypatch.undo()
    assert main(["gallery", "list", "--gallery", gallery, "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert [entry["identity"] for entry in listing["identities"]] == sorted(people[:16])


def test_api_answers_a_fault_with_a_logged_json_500(facecom_b: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    from fastapi.testclient import TestClient

    from facesuite.serve import create_app

    image = _images(facecom_b, "Colin_Powell", 1)[0]
    app = create_app(gallery=tmp_path / "gallery", work_dir=tmp_path)
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.post("/analyze", files={"image": (image.name, image.read_bytes(), "image/jpeg")}).status_code == 200
        monkeypatch.setattr(DistortionDetector, "predict", _explode)
        with caplog.at_level(logging.ERROR, logger="facesuite.serve"):
            response = client.post("/analyze", files={"image": (image.name, image.read_bytes(), "image/jpeg")})
    assert response.status_code == 500 and response.json() == {"error": "internal error (see the server log)"}
    assert any("injected fault" in str(record.exc_info[1]) for record in caplog.records if record.exc_info)
