"""`facesuite demo`, the main job `make demo` runs, on its default path and into a gallery URI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from facesuite.cli import main
from facesuite.config import data_root


def test_demo_default_path_writes_a_report_with_right_answers(tmp_path: Path, facecom_b: Path, capsys) -> None:
    out = tmp_path / "demo-out"
    assert main(["demo", "--data", str(data_root()), "--out", str(out), "--identities", "6"]) == 0
    printed = capsys.readouterr().out
    assert f"demo report: {(out / 'report.html').resolve()}" in printed
    # It ends with the headline results, then where the report is.
    assert printed.index("nearest identity right by face alone") < printed.index("(FPIR)") < printed.index("demo report:")
    assert "6/6 (100.0%)" in printed  # the enrolled clean faces, named back
    rows = list(csv.DictReader(open(out / "analysis.csv")))
    clean = [r for r in rows if r["true_distortion"] == "clean"]
    # The clean faces are enrolled images: each must come back as its own identity.
    assert len(clean) == 6 and all(r["identity"] == r["true_identity"] for r in clean)
    assert all(r["route"] == "plain" for r in rows if r["distortion"] == "sunny")
    recognition = json.loads((out / "recognition" / "metrics.json").read_text())
    assert recognition["identification"]["identities"] == 6 and recognition["pipeline"] == "routed"
    assert (out / "report.html").stat().st_size > 10_000 and (out / "gender" / "metrics.json").is_file()


def test_demo_enrolls_into_a_gallery_uri_and_keeps_other_identities(tmp_path: Path, facecom_b: Path, capsys) -> None:
    gallery = str(tmp_path / "people.db")  # Milvus Lite
    someone = tmp_path / "someone" / "Someone_Else"
    someone.mkdir(parents=True)
    (someone / "a.jpg").symlink_to(min((facecom_b / "Tiger_Woods").glob("*.jpg")).resolve())
    assert main(["gallery", "enroll", str(someone.parent), "--gallery", gallery]) == 0
    for _ in range(2):  # a rerun replaces the sample's identities instead of adding them twice
        assert main(["demo", "--data", str(data_root()), "--out", str(tmp_path / "out"), "--identities", "3",
                     "--gallery", gallery]) == 0
    capsys.readouterr()
    assert main(["gallery", "list", "--gallery", gallery, "--json"]) == 0
    listing = {e["identity"]: e["faces"] for e in json.loads(capsys.readouterr().out)["identities"]}
    assert listing.pop("Someone_Else") == 1 and len(listing) == 3 and all(1 <= n <= 3 for n in listing.values())
