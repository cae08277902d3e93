"""Where commands write, and how they end: an output that cannot be written is a one-line error
naming it (exit 2), `-` is standard output, a closed pipe ends quietly, and a bad file named on
the command line makes every command that reads files exit 2 after doing the rest."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from facesuite.cli import main

CLI = "import sys; from facesuite.cli import main; sys.exit(main())"


@pytest.fixture(scope="module")
def gallery(samples: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A gallery of the sample people, enrolled through the CLI."""
    folder = tmp_path_factory.mktemp("outputs") / "g"
    assert main(["gallery", "enroll", str(samples / "people"), "--gallery", str(folder)]) == 0
    return folder


@pytest.fixture()
def bad_photo(tmp_path: Path) -> Path:
    path = tmp_path / "broken.jpg"
    path.write_bytes(b"\xff\xd8\xff not really a JPEG")
    return path


def _one_line_error(err: str, path: str | Path) -> None:
    # The progress bar rewrites its own line with carriage returns: the last text of each line counts.
    lines = [line.rsplit("\r", 1)[-1] for line in err.split("\n") if line.rsplit("\r", 1)[-1].strip()]
    assert len(lines) == 1 and lines[0].startswith("facesuite: error: ") and str(path) in lines[0], err
    assert "internal error" not in err


def test_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    from facesuite.gallery import create_gallery

    rng = np.random.default_rng(0)
    with create_gallery(tmp_path / "g", "test", 8, 0.4) as store:
        for i in range(40):
            store.enroll(f"person{i:03d}", rng.normal(size=(1, 8)).astype(np.float32), [f"{i}.jpg"])
    # `facesuite gallery list | head -0`: the reader is gone before anything is written.
    process = subprocess.Popen([sys.executable, "-c", CLI, "gallery", "list", "--gallery", str(tmp_path / "g")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=os.environ | {"FACESUITE_HOME": str(tmp_path)})
    process.stdout.close()
    error = process.stderr.read().decode()
    assert process.wait(timeout=120) == 0
    assert error == ""
    assert not (tmp_path / "logs").exists()  # no fault logged


@pytest.mark.parametrize("where", ["/nonexistent/x.csv", "under-a-file"])
def test_an_unwritable_csv_is_a_user_error_naming_it(where: str, gallery: Path, samples: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    if where == "under-a-file":
        (tmp_path / "file.txt").write_text("a file, not a folder")
        where = str(tmp_path / "file.txt" / "x.csv")
    photo = str(samples / "photos" / "Hugo_Chavez_0005.jpg")
    for argv in (["gallery", "identify", photo, "--gallery", str(gallery), "--csv", where],
                 ["analyze", photo, "--csv", where],
                 ["predict", "gender", photo, "--csv", where]):
        assert main(argv) == 2, argv
        _one_line_error(capsys.readouterr().err, where)


def test_an_unwritable_out_folder_is_a_user_error_naming_it(samples: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file.txt").write_text("a file, not a folder")
    out = tmp_path / "file.txt" / "out"
    evaluation = tmp_path / "evaluation"
    evaluation.mkdir()
    (evaluation / "metrics.json").write_text('{"accuracy": 0.5}')
    photo = str(samples / "photos" / "Hugo_Chavez_0005.jpg")
    for argv in (["detect", photo, "--out", str(out)], ["cluster", photo, "--out", str(out)],
                 ["eval", "recognition", str(samples / "people"), "--out", str(out)],
                 ["report", str(evaluation), "--out", str(out / "summary.html")]):
        assert main(argv) == 2, argv
        _one_line_error(capsys.readouterr().err, out)


def test_dash_is_standard_output(gallery: Path, samples: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    photo = samples / "photos" / "Hugo_Chavez_0005.jpg"
    assert main(["gallery", "identify", str(photo), "--gallery", str(gallery), "--csv", "-"]) == 0
    (row,) = csv.DictReader(io.StringIO(capsys.readouterr().out))
    assert (row["path"], row["identity"]) == (str(photo), "Hugo_Chavez")
    assert main(["predict", "gender", str(photo), "--csv", "-"]) == 0
    (row,) = csv.DictReader(io.StringIO(capsys.readouterr().out))
    assert row["path"] == str(photo) and row["gender"] == "male"
    assert main(["analyze", str(photo), "--csv", "-"]) == 0
    captured = capsys.readouterr()
    (row,) = csv.DictReader(io.StringIO(captured.out))  # the summary line went to stderr
    assert row["path"] == str(photo) and "analysed 1 image (1 face" in captured.err
    assert not (tmp_path / "-").exists()


def test_a_bad_named_file_exits_2_after_the_rest(gallery: Path, samples: Path, bad_photo: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    photo = samples / "photos" / "Hugo_Chavez_0005.jpg"
    for argv in (["gallery", "identify", str(photo), str(bad_photo), "--gallery", str(gallery)],
                 ["predict", "distortion", str(photo), str(bad_photo), "--csv", str(tmp_path / "d.csv")]):
        assert main(argv) == 2, argv
        captured = capsys.readouterr()
        assert f"skipped: {bad_photo}" in captured.err
        if argv[0] == "gallery":
            (row,) = csv.DictReader(io.StringIO(captured.out))  # the good photo was still answered
            assert row["identity"] == "Hugo_Chavez"
    (row,) = csv.DictReader(io.StringIO((tmp_path / "d.csv").read_text()))
    assert row["path"] == str(photo)
    # A bad file found inside a named folder is a counted skip, not a failed run.
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / photo.name).symlink_to(photo)
    (folder / bad_photo.name).symlink_to(bad_photo)
    assert main(["gallery", "identify", str(folder), "--gallery", str(gallery)]) == 0


def test_every_csv_writes_flags_and_line_ends_alike(gallery: Path, samples: Path, tmp_path: Path) -> None:
    """analyze and gallery identify write one CSV dialect: a flag is 1 or 0, a missing value is an
    empty cell, and lines end with a newline alone."""
    photos = [str(samples / "photos" / "Hugo_Chavez_0005.jpg"), str(samples / "photos" / "no_face.png")]
    analyzed, identified = tmp_path / "analyze.csv", tmp_path / "identify.csv"
    assert main(["analyze", *photos, "--csv", str(analyzed)]) == 0
    assert main(["gallery", "identify", *photos, "--gallery", str(gallery), "--csv", str(identified)]) == 0
    for written in (analyzed, identified):
        assert b"\r" not in written.read_bytes(), written
        rows = list(csv.DictReader(open(written, newline="")))
        assert [row["fallback"] for row in rows] == ["0", "1"], written
    no_face = list(csv.DictReader(open(analyzed, newline="")))
    assert [row["no_face"] for row in no_face] == ["0", "1"]
    assert no_face[1]["gender"] == "" and no_face[0]["gender"] in {"male", "female", "uncertain"}


def test_a_piped_summary_keeps_each_row_on_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """Redirected (not a terminal), the closing table of a command is not wrapped at 80 columns:
    a row's name and its long value share one line, as a reader piping it to grep needs."""
    from facesuite.cli.summary import print_summary

    rows = [("TAR at FAR 1%", "0.8408 (95% 0.828-0.854; 33 different-person pairs at that FAR)"),
            ("top-1, foggy", "1.000 face, 1.000 with source matching"), ("coverage", 0.8471)]
    print_summary("recognition", rows)
    lines = capsys.readouterr().out.splitlines()
    for what, value in rows:
        shown = f"{value:.3f}" if isinstance(value, float) else value
        assert any(what in line and shown in line for line in lines), (what, lines)
