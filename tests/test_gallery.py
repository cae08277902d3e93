"""Tests for the on-disk gallery: search results, persistence, cache rebuilds and crash safety.

Vectors are seeded random unit vectors: in 32+ dimensions two of them are nearly orthogonal
(cosine distance ~1), so a probe equal to an enrolled face has one unambiguous nearest identity.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from facesuite.decide import OperatingPoint
from facesuite.errors import InputError
from facesuite.gallery import INDEX_NAME, FolderGallery, faiss_sqlite

DIM = 32
SRC = Path(__file__).resolve().parents[1] / "src"
TESTS = Path(__file__).resolve().parent


def unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def crash_face_count(i: int) -> int:
    """Faces enrolled for identity ``i`` in the SIGKILL test: varied, up to a large batch."""
    return 1 + (i * 37) % 150


def crash_faces(i: int) -> np.ndarray:
    return unit(np.random.default_rng(1000 + i), crash_face_count(i))


def run_python(code: str, *args: str, **popen: object) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(TESTS)])}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], env=env, **popen)


def make_gallery(path: Path, identities: int = 5, faces: int = 3, seed: int = 0) -> dict[str, np.ndarray]:
    """Create a gallery of ``identities`` x ``faces`` random vectors; return them by identity."""
    rng = np.random.default_rng(seed)
    enrolled = {f"person{i}": unit(rng, faces) for i in range(identities)}
    with FolderGallery.create(path, "test", DIM, 0.4) as gallery:
        for name, vectors in enrolled.items():
            gallery.enroll(name, vectors, [f"{name}/{j}.jpg" for j in range(faces)])
    return enrolled


# ---------------------------------------------------------------- search


def test_identify_returns_enrolled_identity_and_source(tmp_path: Path) -> None:
    enrolled = make_gallery(tmp_path / "g")
    with FolderGallery.open(tmp_path / "g") as gallery:
        probes = np.stack([enrolled[name][1] for name in enrolled])
        results = gallery.identify(probes)
    for name, matches in zip(enrolled, results):
        assert len(matches) == 1
        assert matches[0].identity == name
        assert matches[0].source == f"{name}/1.jpg"
        assert matches[0].distance == pytest.approx(0.0, abs=1e-5)


def test_top_k_is_distinct_identities_best_first(tmp_path: Path) -> None:
    enrolled = make_gallery(tmp_path / "g", identities=6, faces=4)
    probe = enrolled["person2"][0] + 0.3 * unit(np.random.default_rng(9), 1)[0]
    with FolderGallery.open(tmp_path / "g") as gallery:
        (matches,) = gallery.identify(probe, top_k=4)
        (everyone,) = gallery.identify(probe, top_k=50)
    assert matches[0].identity == "person2"
    assert len({m.identity for m in matches}) == 4
    distances = [m.distance for m in matches]
    assert distances == sorted(distances)
    # More than the gallery holds: every identity once, no padding.
    assert sorted(m.identity for m in everyone) == sorted(enrolled)
    # Each identity is represented by its closest face.
    unit_probe = probe / np.linalg.norm(probe)
    for match in everyone:
        best = 1.0 - float(np.max(enrolled[match.identity] @ unit_probe))
        assert match.distance == pytest.approx(best, abs=1e-5)


def test_decide_unknown_beyond_threshold(tmp_path: Path) -> None:
    enrolled = make_gallery(tmp_path / "g")
    stranger = unit(np.random.default_rng(123), 1)
    close = enrolled["person0"][0] + 0.05 * unit(np.random.default_rng(5), 1)[0]
    with FolderGallery.open(tmp_path / "g") as gallery:
        (far,), (near,) = gallery.identify(np.vstack([stranger, close]))
        point = OperatingPoint(gallery.threshold)
        assert far.distance > gallery.threshold
        assert point.search(far.identity, far.distance, None, None).answer == "unknown"
        assert point.search(near.identity, near.distance, None, None).answer == "person0"
        assert point.search("x", gallery.threshold, None, None).answer == "x"  # inclusive bound


@settings(max_examples=25, deadline=None)
@given(
    counts=st.lists(st.integers(1, 6), min_size=1, max_size=6),
    top_k=st.integers(1, 7),
    seed=st.integers(0, 2**16),
)
def test_identify_matches_brute_force(counts: list[int], top_k: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    enrolled = {f"id{i}": unit(rng, n) for i, n in enumerate(counts)}
    probes = unit(rng, 3)
    # A tiny first pass forces the widening path that large identities would take.
    with tempfile.TemporaryDirectory() as folder, mock.patch.object(faiss_sqlite, "_FIRST_PASS_WIDTH", 1):
        with FolderGallery.create(folder, "test", DIM, 0.5) as gallery:
            for name, vectors in enrolled.items():
                gallery.enroll(name, vectors, [name] * len(vectors))
            results = gallery.identify(probes, top_k=top_k)
    for probe, matches in zip(probes, results):
        best = sorted(1.0 - float(np.max(vectors @ probe)) for vectors in enrolled.values())
        assert [m.distance for m in matches] == pytest.approx(best[:top_k], abs=1e-5)
        for match in matches:
            own_best = 1.0 - float(np.max(enrolled[match.identity] @ probe))
            assert match.distance == pytest.approx(own_best, abs=1e-5)


# ---------------------------------------------------------------- listing, removing, errors


def test_identities_len_and_remove(tmp_path: Path) -> None:
    make_gallery(tmp_path / "g", identities=3, faces=2)
    with FolderGallery.open(tmp_path / "g") as gallery:
        gallery.enroll("person1", unit(np.random.default_rng(7), 3), ["x", "y", "z"])  # adds to existing
        assert gallery.identities() == [("person0", 2), ("person1", 5), ("person2", 2)]
        assert len(gallery) == 9
        assert gallery.remove("person1") == 5
        with pytest.raises(InputError, match="no identity 'person1'"):
            gallery.remove("person1")
        assert all(m[0].identity != "person1" for m in gallery.identify(unit(np.random.default_rng(7), 3)))
    with FolderGallery.open(tmp_path / "g") as gallery:
        assert gallery.identities() == [("person0", 2), ("person2", 2)]
        assert len(gallery) == 4


def test_empty_gallery_is_an_input_error(tmp_path: Path) -> None:
    with FolderGallery.create(tmp_path / "g", "test", DIM, 0.4) as gallery:
        with pytest.raises(InputError, match="gallery is empty") as error:
            gallery.identify(unit(np.random.default_rng(0), 1))
        assert str(tmp_path / "g") in str(error.value)
        gallery.enroll("a", unit(np.random.default_rng(0), 2), ["1", "2"])
        gallery.remove("a")
        with pytest.raises(InputError, match="gallery is empty"):
            gallery.identify(unit(np.random.default_rng(0), 1))


def test_wrong_dim_is_an_input_error(tmp_path: Path) -> None:
    make_gallery(tmp_path / "g")
    with FolderGallery.open(tmp_path / "g") as gallery:
        with pytest.raises(InputError, match="dimension 16"):
            gallery.enroll("new", unit(np.random.default_rng(0), 2, dim=16), ["a", "b"])
        with pytest.raises(InputError, match="dimension 16"):
            gallery.identify(unit(np.random.default_rng(0), 1, dim=16))
        assert "new" not in dict(gallery.identities())
        with pytest.raises(ValueError):
            gallery.enroll("new", unit(np.random.default_rng(0), 2), ["only one source"])


@pytest.mark.parametrize("name", ["", "a\nb", "tab\there", "x" * 201, " padded", "unknown", "a\u2028b"])
def test_bad_identity_names_are_rejected(tmp_path: Path, name: str) -> None:
    with FolderGallery.create(tmp_path / "g", "test", DIM, 0.4) as gallery:
        with pytest.raises(InputError):
            gallery.enroll(name, unit(np.random.default_rng(0), 1), ["a"])
        assert len(gallery) == 0
        gallery.enroll("Zoë O'Brien-Łukasz", unit(np.random.default_rng(0), 1), ["a"])  # fine


def test_open_non_gallery_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no gallery here"):
        FolderGallery.open(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no gallery here") as error:
        FolderGallery.open(empty)
    assert str(empty) in str(error.value)
    assert list(empty.iterdir()) == []  # opening must not create anything
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "gallery.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(InputError, match="no gallery here"):
        FolderGallery.open(junk)
    other = tmp_path / "other"
    other.mkdir()
    with sqlite3.connect(other / "gallery.sqlite") as conn:
        conn.execute("CREATE TABLE t (x)")
    with pytest.raises(InputError, match="no gallery here"):
        FolderGallery.open(other)


def test_create_checks_embedder_and_dim_and_keeps_threshold(tmp_path: Path) -> None:
    FolderGallery.create(tmp_path / "g", "test", DIM, 0.4).close()
    with pytest.raises(InputError, match="'test'"):
        FolderGallery.create(tmp_path / "g", "other", DIM, 0.4)
    with pytest.raises(InputError, match="dim"):
        FolderGallery.create(tmp_path / "g", "test", 64, 0.4)
    with FolderGallery.create(tmp_path / "g", "test", DIM, 0.9) as gallery:
        assert (gallery.embedder, gallery.dim, gallery.threshold) == ("test", DIM, 0.4)
        gallery.set_threshold(0.55)
        with pytest.raises(InputError, match="threshold"):
            gallery.set_threshold(float("nan"))
    with FolderGallery.open(tmp_path / "g") as gallery:
        assert gallery.threshold == 0.55


# ---------------------------------------------------------------- persistence and the index cache


def test_persistence_across_processes(tmp_path: Path) -> None:
    folder = tmp_path / "g"
    code = """
        import sys
        from test_gallery import DIM, unit
        import numpy as np
        from facesuite.gallery import FolderGallery
        with FolderGallery.create(sys.argv[1], "test", DIM, 0.4) as gallery:
            for i, name in enumerate(["ann", "bo", "cy"]):
                gallery.enroll(name, unit(np.random.default_rng(i), 4), [f"{name}{j}" for j in range(4)])
    """
    assert run_python(code, str(folder)).wait(timeout=60) == 0
    with FolderGallery.open(folder) as gallery:
        assert gallery.identities() == [("ann", 4), ("bo", 4), ("cy", 4)]
        results = gallery.identify(np.vstack([unit(np.random.default_rng(i), 4)[3] for i in range(3)]))
    assert [(m[0].identity, m[0].source) for m in results] == [("ann", "ann3"), ("bo", "bo3"), ("cy", "cy3")]


def test_reader_sees_changes_from_other_writers(tmp_path: Path) -> None:
    enrolled = make_gallery(tmp_path / "g", identities=2)
    newcomer = unit(np.random.default_rng(77), 2)
    with FolderGallery.open(tmp_path / "g") as reader:
        assert reader.identify(newcomer[0])[0][0].identity != "newcomer"
        code = """
            import sys
            from test_gallery import DIM, unit
            import numpy as np
            from facesuite.gallery import FolderGallery
            with FolderGallery.open(sys.argv[1]) as gallery:
                gallery.enroll("newcomer", unit(np.random.default_rng(77), 2), ["n0", "n1"])
                gallery.remove("person0")
        """
        assert run_python(code, str(tmp_path / "g")).wait(timeout=60) == 0
        assert reader.identify(newcomer[1])[0][0].identity == "newcomer"
        assert reader.identify(enrolled["person0"][0])[0][0].identity != "person0"
        # A write from a stale instance lands correctly and is visible to it afterwards.
        reader.enroll("late", unit(np.random.default_rng(78), 1), ["l"])
        assert reader.identify(unit(np.random.default_rng(78), 1))[0][0].identity == "late"
        assert reader.identities() == [("late", 1), ("newcomer", 2), ("person1", 3)]
    with FolderGallery.open(tmp_path / "g") as gallery:
        assert gallery.identify(unit(np.random.default_rng(78), 1))[0][0].identity == "late"


@pytest.mark.parametrize("damage", ["delete", "truncate", "flip", "garbage", "empty"])
def test_damaged_index_is_rebuilt_on_open(tmp_path: Path, damage: str) -> None:
    enrolled = make_gallery(tmp_path / "g")
    index_file = tmp_path / "g" / INDEX_NAME
    original = index_file.read_bytes()
    if damage == "delete":
        index_file.unlink()
    elif damage == "truncate":
        index_file.write_bytes(original[: len(original) // 2])
    elif damage == "flip":
        flipped = bytearray(original)
        flipped[len(flipped) // 2] ^= 0xFF
        index_file.write_bytes(bytes(flipped))
    elif damage == "garbage":
        index_file.write_bytes(os.urandom(len(original)))
    else:
        index_file.write_bytes(b"")
    with FolderGallery.open(tmp_path / "g") as gallery:
        results = gallery.identify(np.stack([vectors[0] for vectors in enrolled.values()]))
    assert [m[0].identity for m in results] == list(enrolled)
    assert index_file.read_bytes() == original  # the rebuilt cache was saved again


def test_stale_index_is_rebuilt(tmp_path: Path) -> None:
    make_gallery(tmp_path / "g")
    index_file = tmp_path / "g" / INDEX_NAME
    old = index_file.read_bytes()
    with FolderGallery.open(tmp_path / "g") as gallery:
        gallery.enroll("extra", unit(np.random.default_rng(42), 1), ["e"])
    index_file.write_bytes(old)  # e.g. a backup restored over a newer index
    with FolderGallery.open(tmp_path / "g") as gallery:
        assert gallery.identify(unit(np.random.default_rng(42), 1))[0][0].identity == "extra"
    assert index_file.read_bytes() != old


def test_index_from_another_gallery_is_not_trusted(tmp_path: Path) -> None:
    enrolled = make_gallery(tmp_path / "a", seed=1)
    make_gallery(tmp_path / "b", seed=2)  # same shape, so the same generation counter
    (tmp_path / "a" / INDEX_NAME).write_bytes((tmp_path / "b" / INDEX_NAME).read_bytes())
    with FolderGallery.open(tmp_path / "a") as gallery:
        [[match]] = gallery.identify(enrolled["person3"][2])
    assert match.identity == "person3" and match.distance == pytest.approx(0.0, abs=1e-5)


# ---------------------------------------------------------------- crash safety


CRASH_ENROLLER = """
    import sys
    from test_gallery import DIM, crash_face_count, crash_faces
    from facesuite.gallery import FolderGallery
    gallery = FolderGallery.create(sys.argv[1], "test", DIM, 0.4)
    for i in range(100_000):
        name = f"id{i:05d}"
        gallery.enroll(name, crash_faces(i), [f"{name}/{j}.jpg" for j in range(crash_face_count(i))])
        print(name, flush=True)  # only after enroll() returned, i.e. committed
"""


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_sigkill_during_enroll_loses_nothing_committed(tmp_path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    folder = tmp_path / "g"
    process = run_python(CRASH_ENROLLER, str(folder), stdout=subprocess.PIPE, text=True)
    printed = []
    try:
        for _ in range(int(rng.integers(1, 40))):
            line = process.stdout.readline()
            assert line, "enroller exited early"
            printed.append(line.strip())
        time.sleep(float(rng.uniform(0, 0.02)))  # land at a random point inside the next enrolls
    finally:
        process.send_signal(signal.SIGKILL)
        # read() drains the lines readline() already buffered, then the pipe up to EOF;
        # communicate() would read the raw pipe only and lose those buffered lines.
        rest = process.stdout.read()
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    printed += rest.split()

    with FolderGallery.open(folder) as gallery:
        listed = dict(gallery.identities())
        # Every committed identity is there; at most one more (committed, killed before print).
        assert set(printed) <= listed.keys()
        assert len(listed) - len(printed) in (0, 1)
        # All or nothing: every visible identity has exactly the faces it was enrolled with.
        for name, count in listed.items():
            assert count == crash_face_count(int(name[2:])), name
        assert len(gallery) == sum(listed.values())
        names = sorted(listed)
        probes = np.stack([crash_faces(int(name[2:]))[-1] for name in names])
        results = gallery.identify(probes)
    last = {name: f"{name}/{crash_face_count(int(name[2:])) - 1}.jpg" for name in names}
    assert [(m[0].identity, m[0].source) for m in results] == [(name, last[name]) for name in names]


# ---------------------------------------------------------------- concurrent readers


ENROLLER = """
    import sys
    from test_gallery import DIM, crash_face_count, crash_faces
    from facesuite.gallery import FolderGallery
    with FolderGallery.open(sys.argv[1]) as gallery:
        for i in range(int(sys.argv[2])):
            name = f"id{i:05d}"
            gallery.enroll(name, crash_faces(i), [f"{name}/{j}.jpg" for j in range(crash_face_count(i))])
            print(name, flush=True)
"""


def test_identify_during_enroll_sees_only_whole_identities(tmp_path: Path) -> None:
    """A reader searching while another process enrolls sees each identity complete or not at all,
    and finds every identity it can list (as `facesuite serve` does while `gallery enroll` runs)."""
    folder = tmp_path / "g"
    FolderGallery.create(folder, "test", DIM, 0.4).close()
    total = 60
    process = run_python(ENROLLER, str(folder), str(total), stdout=subprocess.PIPE, text=True)
    searches_during_enroll = 0
    with FolderGallery.open(folder) as gallery:
        while True:
            running = process.poll() is None
            listed = dict(gallery.identities())
            for name, count in listed.items():
                assert count == crash_face_count(int(name[2:])), name
            names = sorted(listed)
            if names:
                results = gallery.identify(np.stack([crash_faces(int(n[2:]))[-1] for n in names]))
                last = [f"{n}/{crash_face_count(int(n[2:])) - 1}.jpg" for n in names]
                assert [(m[0].identity, m[0].source) for m in results] == list(zip(names, last))
                assert max(m[0].distance for m in results) < 1e-4
                searches_during_enroll += running
            if not running:
                break
    assert process.wait(timeout=60) == 0 and len(process.stdout.read().split()) == total
    assert len(listed) == total
    assert searches_during_enroll >= 3  # the searches did overlap the enrolment
