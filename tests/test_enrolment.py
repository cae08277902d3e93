"""Enrolment can be re-run: a photo an identity already holds is counted, not enrolled again, through
the CLI, the Python API and the REST API; single photos are enrolled under a name (--identity).
Real photos from samples/ (and a PGM copy of one)."""

from __future__ import annotations

import hashlib
import io
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facesuite.cli import main
from facesuite.gallery import DB_NAME


def _stored_rows(gallery: Path) -> list[tuple[str, str, str | None]]:
    """``(identity, source, hash)`` of every face row, read from the database itself."""
    with sqlite3.connect(gallery / DB_NAME) as db:
        return db.execute("SELECT identity, source, hash FROM faces ORDER BY id").fetchall()


def _sha1(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def test_enrolling_a_folder_twice_adds_nothing_the_second_time(samples: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    people = tmp_path / "people"
    for name in ("Colin_Powell", "Hugo_Chavez"):
        shutil.copytree(samples / "people" / name, people / name)
    photos = sorted(people.glob("*/*.jpg"))
    monkeypatch.chdir(tmp_path)  # relative paths on the command line, as a user types them
    assert main(["gallery", "enroll", "people", "--gallery", "g"]) == 0
    first = capsys.readouterr().out
    assert main(["gallery", "enroll", "people", "--gallery", "g"]) == 0
    second = capsys.readouterr().out
    assert f"({len(photos)} faces)" in first and "0 photos already enrolled" in first
    assert "(0 faces)" in second and f"{len(photos)} photos already enrolled" in second
    rows = _stored_rows(tmp_path / "g")
    # One row per photo, each under its own absolute path and the hash of its bytes.
    assert sorted(rows) == sorted((p.parent.name, str(p.resolve()), _sha1(p)) for p in photos)


def test_a_photo_needs_a_name_and_is_enrolled_once_under_it(samples: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    photo = tmp_path / "colin.pgm"  # the user's case: a single photo, not even a JPEG
    Image.open(samples / "photos" / "Colin_Powell_0003.jpg").convert("L").save(photo)
    gallery = tmp_path / "g"
    assert main(["gallery", "enroll", str(photo), "--gallery", str(gallery)]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and str(photo) in error and "--identity" in error
    assert not (gallery / DB_NAME).exists()

    assert main(["gallery", "enroll", str(photo), "--identity", "Colin Powell", "--gallery", str(gallery)]) == 0
    assert "(1 face)" in capsys.readouterr().out
    other = samples / "photos" / "Colin_Powell_0003_noisy.jpg"
    assert main(["gallery", "enroll", str(photo), str(other), "--identity", "Colin Powell", "--gallery", str(gallery)]) == 0
    assert "(1 face) into" in (printed := capsys.readouterr().out) and "1 photo already enrolled" in printed
    assert _stored_rows(gallery) == [("Colin Powell", str(photo.resolve()), _sha1(photo)),
                                     ("Colin Powell", str(other.resolve()), _sha1(other))]
    # One photo's main face is one person: under another name it is a skip naming the first, exit 2.
    capsys.readouterr()
    assert main(["gallery", "enroll", str(photo), "--identity", "someone else", "--gallery", str(gallery)]) == 2
    assert "already enrolled as 'Colin Powell'" in capsys.readouterr().err
    assert "someone else" not in {row[0] for row in _stored_rows(gallery)}


def test_a_bad_photo_named_for_enrolment_exits_2_after_the_rest(samples: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    good = samples / "photos" / "Tom_Ridge_0004.jpg"
    assert main(["gallery", "enroll", str(good), str(bad), "--identity", "Tom", "--gallery", str(tmp_path / "g")]) == 2
    assert f"skipped: {bad}" in capsys.readouterr().err
    assert [row[1] for row in _stored_rows(tmp_path / "g")] == [str(good.resolve())]


def test_python_api_counts_photos_already_enrolled(samples: Path, tmp_path: Path) -> None:
    from facesuite import FaceAnalysis

    path = samples / "photos" / "Naomi_Watts_0001.jpg"
    pixels = np.asarray(Image.open(path).convert("RGB"))
    with FaceAnalysis(routes=None, gender=None, age=None) as analysis, \
            analysis.open_gallery(tmp_path / "g", create=True) as gallery:
        # The same file twice in one call, then again: one face, the rest counted as already there.
        first = gallery.enroll("Naomi", [path, path])
        again = gallery.enroll("Naomi", [str(path)])
        # In memory, a photo is known by its decoded pixels.
        from_pixels = gallery.enroll("Naomi", [pixels])
        pixels_again = gallery.enroll("Naomi", [pixels.copy()])
        assert len(gallery) == 2
    assert (first.faces, first.already) == (1, 1)
    assert (again.faces, again.already) == (0, 1)
    assert (from_pixels.faces, from_pixels.already) == (1, 0)
    assert (pixels_again.faces, pixels_again.already) == (0, 1)
    rows = _stored_rows(tmp_path / "g")
    assert rows[0] == ("Naomi", str(path.resolve()), _sha1(path))


def test_rest_enroll_says_what_was_already_enrolled(samples: Path, tmp_path: Path) -> None:
    pytest.importorskip("fastapi", reason="fastapi is not installed")
    from fastapi.testclient import TestClient

    from facesuite.serve import create_app

    photo = samples / "photos" / "Hugo_Chavez_0005.jpg"
    other = samples / "photos" / "Hugo_Chavez_0005_tight.jpg"
    upload = ("image", (photo.name, photo.read_bytes(), "image/jpeg"))
    with TestClient(create_app(gallery=str(tmp_path / "g")), base_url="http://127.0.0.1:8000") as client:
        first = client.post("/gallery/enroll", data={"identity": "Hugo"}, files=[upload])
        second = client.post("/gallery/enroll", data={"identity": "Hugo"},
                             files=[upload, ("image", (other.name, other.read_bytes(), "image/jpeg"))])
        third = client.post("/gallery/enroll", data={"identity": "Hugo"}, files=[upload])
    assert first.status_code == 200 and (first.json()["enrolled"], first.json()["already_enrolled"]) == (1, 0)
    assert second.status_code == 200 and (second.json()["enrolled"], second.json()["already_enrolled"]) == (1, 1)
    assert third.status_code == 200, third.text
    assert (third.json()["enrolled"], third.json()["already_enrolled"], third.json()["faces"]) == (0, 1, 2)
    assert [row[2] for row in _stored_rows(tmp_path / "g")] == [_sha1(photo), _sha1(other)]


def test_a_folder_of_photos_without_identity_folders_says_how_to_enrol_it(samples: Path, tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gallery", "enroll", str(samples / "photos"), "--gallery", str(tmp_path / "g")]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and str(samples / "photos") in error and "--identity NAME" in error
    assert not (tmp_path / "g").exists()


def test_identity_folders_are_not_enrolled_under_one_name(samples: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """``--identity NAME`` with a folder of people's folders would make one person of several."""
    assert main(["gallery", "enroll", str(samples / "people"), "--identity", "Someone", "--gallery", str(tmp_path / "g")]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "Colin_Powell" in error and "leave out --identity" in error
    assert not (tmp_path / "g").exists()
    # One person's photos named explicitly are enrolled under the name.
    photos = [str(p) for p in sorted((samples / "people" / "Colin_Powell").glob("*.jpg"))]
    assert main(["gallery", "enroll", *photos, "--identity", "Colin", "--gallery", str(tmp_path / "g")]) == 0
    # A folder mixing one person's folder and loose photos: refused under one name; without a
    # name the loose photo is not enrolled, and a note says so.
    mixed = tmp_path / "mixed"
    (mixed / "Hugo").mkdir(parents=True)
    hugo = sorted((samples / "people" / "Hugo_Chavez").glob("*.jpg"))[0]
    (mixed / "Hugo" / hugo.name).symlink_to(hugo.resolve())
    (mixed / "stranger.jpg").symlink_to((samples / "photos" / "Naomi_Watts_0001.jpg").resolve())
    capsys.readouterr()
    assert main(["gallery", "enroll", str(mixed), "--identity", "Z", "--gallery", str(tmp_path / "g2")]) == 2
    assert "leave out --identity" in capsys.readouterr().err
    assert main(["gallery", "enroll", str(mixed), "--gallery", str(tmp_path / "g2")]) == 0
    (note,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note")]
    assert "stranger.jpg" in note and str(mixed) in note


def test_rest_enroll_says_why_nothing_was_enrolled_as_the_cli_does(samples: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("fastapi", reason="fastapi is not installed")
    from fastapi.testclient import TestClient

    from facesuite.serve import create_app

    photo = samples / "photos" / "Hugo_Chavez_0005.jpg"
    assert main(["gallery", "enroll", str(photo), "--identity", "Hugo", "--gallery", str(tmp_path / "g")]) == 0
    assert main(["gallery", "enroll", str(photo), "--identity", "Someone_Else", "--gallery", str(tmp_path / "g")]) == 2
    cli_reason = capsys.readouterr().err
    assert "already enrolled as 'Hugo'" in cli_reason
    with TestClient(create_app(gallery=str(tmp_path / "g")), base_url="http://127.0.0.1:8000") as client:
        answer = client.post("/gallery/enroll", data={"identity": "Someone_Else"},
                             files=[("image", (photo.name, photo.read_bytes(), "image/jpeg"))])
    assert answer.status_code == 422 and "already enrolled as 'Hugo'" in answer.json()["error"]


def test_a_face_enrolled_under_another_persons_name_is_flagged(samples: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """A photo of Colin Powell filed as "Hugo_Chavez" is enrolled (the user decides), with a warning
    naming the person it looks like; a second photo of Hugo Chavez under his own name, and another
    person, raise none. The Python API and REST say the same."""
    pytest.importorskip("fastapi", reason="fastapi is not installed")
    from fastapi.testclient import TestClient

    from facesuite import FaceAnalysis
    from facesuite.serve import create_app

    powell = sorted((samples / "people" / "Colin_Powell").glob("*.jpg"))
    chavez = sorted((samples / "people" / "Hugo_Chavez").glob("*.jpg"))
    gallery = tmp_path / "g"
    assert main(["gallery", "enroll", str(powell[0]), "--identity", "Colin_Powell", "--gallery", str(gallery)]) == 0
    assert main(["gallery", "enroll", str(chavez[0]), "--identity", "Hugo_Chavez", "--gallery", str(gallery)]) == 0
    assert "warning" not in capsys.readouterr().err
    assert main(["gallery", "enroll", str(powell[1]), "--identity", "Hugo_Chavez", "--gallery", str(gallery)]) == 0
    (warning,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning")]
    assert str(powell[1].resolve()) in warning and "'Hugo_Chavez'" in warning and "'Colin_Powell'" in warning
    with FaceAnalysis().open_gallery(gallery) as opened:
        (result,) = opened.enroll_many({"Hugo_Chavez": [chavez[1]]})
        assert result.faces == 1 and result.resembles == []
        mirrored = np.ascontiguousarray(np.asarray(Image.open(powell[1]).convert("RGB"))[:, ::-1])  # not a photo it holds
        (result,) = opened.enroll_many({"Tom_Ridge": [mirrored]})
        ((_, other, distance),) = result.resembles
        assert other in ("Colin_Powell", "Hugo_Chavez") and distance <= FaceAnalysis().operating_point.threshold
    with TestClient(create_app(gallery=str(gallery)), base_url="http://127.0.0.1:8000") as client:
        flipped = io.BytesIO()
        Image.open(powell[0]).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(flipped, format="PNG")
        answer = client.post("/gallery/enroll", data={"identity": "Kofi"},
                             files=[("image", ("flipped.png", flipped.getvalue(), "image/png"))]).json()
    assert [r["identity"] for r in answer["resembles"]] == ["Colin_Powell"]


def test_rest_enroll_skips_an_unreadable_upload_as_the_cli_skips_a_file(samples: Path, tmp_path: Path) -> None:
    """Several uploads: a file that is not an image is skipped and named, the photos are enrolled;
    when no upload is readable the request is refused."""
    pytest.importorskip("fastapi", reason="fastapi is not installed")
    from fastapi.testclient import TestClient

    from facesuite.serve import create_app

    photo = samples / "people" / "Colin_Powell" / "Colin_Powell_0001.jpg"
    broken = ("image", ("broken.jpg", b"not an image at all", "image/jpeg"))
    with TestClient(create_app(gallery=str(tmp_path / "g")), base_url="http://127.0.0.1:8000") as client:
        mixed = client.post("/gallery/enroll", data={"identity": "Colin"},
                            files=[("image", (photo.name, photo.read_bytes(), "image/jpeg")), broken])
        alone = client.post("/gallery/enroll", data={"identity": "Colin"}, files=[broken])
    assert mixed.status_code == 200, mixed.text
    assert (mixed.json()["enrolled"], mixed.json()["skipped"]) == (1, ["broken.jpg"])
    assert alone.status_code == 415 and "broken.jpg" in alone.json()["error"]


def test_a_group_photo_is_enrolled_by_its_main_face_and_says_so(samples: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Two people side by side: the most prominent face is enrolled, and the CLI and REST say the
    photo held as many faces as the detector finds; a portrait gets no such note."""
    pytest.importorskip("fastapi", reason="fastapi is not installed")
    from fastapi.testclient import TestClient

    from facesuite.detect import FaceDetector
    from facesuite.serve import create_app

    left = np.asarray(Image.open(samples / "people" / "Colin_Powell" / "Colin_Powell_0001.jpg").convert("RGB"))
    right = np.asarray(Image.open(samples / "people" / "Hugo_Chavez" / "Hugo_Chavez_0001.jpg").convert("RGB").resize(left.shape[1::-1]))
    group = np.concatenate([left, right], axis=1)
    path = tmp_path / "group.png"
    Image.fromarray(group).save(path)
    found = len(FaceDetector().detect([group])[0])
    assert found >= 2
    gallery = tmp_path / "g"
    assert main(["gallery", "enroll", str(path), "--identity", "Colin_Powell", "--gallery", str(gallery)]) == 0
    (note,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note")]
    assert f"holds {found} faces" in note and "'Colin_Powell'" in note
    portrait = samples / "people" / "Colin_Powell" / "Colin_Powell_0002.jpg"
    assert main(["gallery", "enroll", str(portrait), "--identity", "Colin_Powell", "--gallery", str(gallery)]) == 0
    assert "note" not in capsys.readouterr().err
    buffer = io.BytesIO()
    Image.fromarray(group[:, ::-1].copy()).save(buffer, format="PNG")
    with TestClient(create_app(gallery=str(gallery)), base_url="http://127.0.0.1:8000") as client:
        answer = client.post("/gallery/enroll", data={"identity": "Pair"},
                             files=[("image", ("pair.png", buffer.getvalue(), "image/png"))]).json()
    assert answer["enrolled"] == 1 and answer["group_photos"] == [{"source": "pair.png", "faces": found}]
