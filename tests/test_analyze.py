"""`analyze` and distortion routing on real FACECOM images (shipped models)."""

from __future__ import annotations

import json
from pathlib import Path

from facesuite.cli import main
from facesuite.distortion.routing import Router
from facesuite.embed import get_embedder

PERSON = "Colin_Powell"


def _distorted(root: Path, kind: str, n: int = 4) -> list[Path]:
    return sorted((root / PERSON / "distortion").glob(f"*_{kind}.jpg"))[:n]


def test_routes_follow_the_detected_distortion(facecom_b: Path, capsys) -> None:
    router = Router.load(get_embedder())
    images = [p for kind in ("sunny", "noisy") for p in _distorted(facecom_b, kind)]
    clean = sorted((facecom_b / PERSON).glob("*.jpg"))[:4]
    assert main(["analyze", *map(str, images + clean), "--json"]) == 0
    rows = {Path(r["path"]).name: r for r in json.loads(capsys.readouterr().out)}
    assert len(rows) == len(images) + len(clean)
    for name, row in rows.items():
        expected = name.rsplit("_", 1)[-1].removesuffix(".jpg") if "_" in name and "distortion" in row["path"] else "clean"
        if row["distortion"] == expected:  # a correct detection must take that type's route
            assert row["route"] == router.route(expected).describe()
    detected = [r["distortion"] for r in rows.values()]
    assert detected.count("clean") >= 3 and detected.count("sunny") >= 3 and detected.count("noisy") >= 3


def test_analyze_reports_every_field(facecom_b: Path, capsys) -> None:
    image = sorted((facecom_b / PERSON).glob("*.jpg"))[0]
    assert main(["analyze", str(image), "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert set(row) >= {"path", "box", "fallback", "distortion", "distortion_probability", "route", "gender", "p_female"}
    assert row["gender"] == "male" and row["fallback"] is False and row["identity"] is None


def test_analyze_with_gallery_names_the_person(facecom_b: Path, tmp_path: Path, capsys) -> None:
    people = tmp_path / "people"
    for person in (PERSON, "Hugo_Chavez", "Kofi_Annan"):
        (people / person).mkdir(parents=True)
        for image in sorted((facecom_b / person).glob("*.jpg"))[:2]:
            (people / person / image.name).symlink_to(image.resolve())
    gallery = tmp_path / "gallery"
    assert main(["gallery", "enroll", str(people), "--gallery", str(gallery)]) == 0
    probe = _distorted(facecom_b, "rainy", 8)[-1]  # made from an image that was not enrolled
    capsys.readouterr()
    assert main(["analyze", str(probe), "--gallery", str(gallery), "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["identity"] == PERSON


def test_analyze_bad_input(tmp_path: Path, bad_files, facecom_b: Path, capsys) -> None:
    assert main(["analyze", str(tmp_path / "missing.jpg")]) == 2
    assert "missing.jpg" in capsys.readouterr().err
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "good.jpg").write_bytes(sorted((facecom_b / PERSON).glob("*.jpg"))[0].read_bytes())
    (folder / "bad.jpg").write_bytes(bad_files["truncated"].read_bytes())
    out = tmp_path / "rows.csv"
    assert main(["analyze", str(folder), "--csv", str(out)]) == 0
    captured = capsys.readouterr()
    assert "bad.jpg" in captured.err and "1 skipped" in captured.out
    assert len(out.read_text().strip().splitlines()) == 2
