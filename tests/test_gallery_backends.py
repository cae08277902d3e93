"""One gallery test suite run against every backend: the embedded FAISS + SQLite folder, Milvus
Lite (a ``.db`` folder, in process) and a Milvus server reached by ``milvus://HOST:PORT/NAME``
(Milvus Lite's gRPC server on loopback, so the network client path is exercised offline).

Vectors are seeded random unit vectors: in 32 dimensions two of them are nearly orthogonal, so
nearest identities are unambiguous and results can be compared exactly across backends.
"""

from __future__ import annotations

import csv
import io
import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest

from facesuite.errors import InputError
from facesuite.gallery import (
    FolderGallery,
    create_gallery,
    is_milvus_uri,
    open_gallery,
)
from serve_process import free_port

DIM = 32
BACKENDS = ("faiss", "milvus-lite", "milvus-server")


def unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``HOST:PORT`` of a Milvus Lite gRPC server on loopback, for the ``milvus://`` backend."""
    pytest.importorskip("milvus_lite", reason="milvus-lite not installed (see requirements.txt)")
    port = free_port()
    log = tmp_path_factory.mktemp("milvus-server") / "server.log"
    with open(log, "wb") as handle:
        server = subprocess.Popen(
            [sys.executable, "-m", "milvus_lite", "server", "--data-dir", str(log.parent / "data"),
             "--host", "127.0.0.1", "--port", str(port)],
            stdout=handle, stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"Milvus Lite server did not start: {log.read_text()[-2000:]}")
                time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture(params=BACKENDS)
def new_uri(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], str]:
    """A function returning a fresh, unused gallery URI of the parametrised backend."""
    counter = iter(range(1000))
    if request.param == "milvus-server":
        address = request.getfixturevalue("milvus_server")
        # One server for the session: collection names carry the test's name to stay apart.
        prefix = "".join(c if c.isalnum() else "_" for c in request.node.name)[:150]
        return lambda: f"milvus://{address}/{prefix}_{next(counter)}"
    if request.param == "milvus-lite":
        pytest.importorskip("milvus_lite", reason="milvus-lite not installed (see requirements.txt)")
        return lambda: str(tmp_path / f"gallery{next(counter)}.db")
    return lambda: str(tmp_path / f"gallery{next(counter)}")


def enroll_random(uri: str, identities: dict[str, int], seed: int = 0, threshold: float = 0.4) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    enrolled = {name: unit(rng, count) for name, count in identities.items()}
    with create_gallery(uri, "test", DIM, threshold) as gallery:
        for name, vectors in enrolled.items():
            gallery.enroll(name, vectors, [f"{name}/{j}.jpg" for j in range(len(vectors))])
    return enrolled


def brute_force(enrolled: dict[str, np.ndarray], probe: np.ndarray, top_k: int) -> list[tuple[str, float, str]]:
    best = []
    for name, vectors in enrolled.items():
        similarities = vectors @ probe
        j = int(np.argmax(similarities))
        best.append((1.0 - float(similarities[j]), name, f"{name}/{j}.jpg"))
    return [(name, distance, source) for distance, name, source in sorted(best)[:top_k]]


def test_uri_picks_the_backend(tmp_path: Path) -> None:
    assert is_milvus_uri("milvus://host:19530/faces") and is_milvus_uri(tmp_path / "people.db")
    assert not is_milvus_uri(tmp_path / "people")
    with create_gallery(tmp_path / "folder", "test", DIM, 0.4) as gallery:
        assert isinstance(gallery, FolderGallery)


def test_identify_returns_enrolled_identity_and_source(new_uri: Callable[[], str]) -> None:
    uri = new_uri()
    enrolled = enroll_random(uri, {f"person{i}": 3 for i in range(5)})
    with open_gallery(uri) as gallery:
        assert (gallery.embedder, gallery.dim, len(gallery)) == ("test", DIM, 15)
        (matches,) = gallery.identify(enrolled["person3"][1])
    assert [m.identity for m in matches] == ["person3"]
    assert matches[0].source == "person3/1.jpg"
    assert matches[0].distance == pytest.approx(0.0, abs=1e-5)


def test_top_k_distinct_identities_match_brute_force(new_uri: Callable[[], str]) -> None:
    uri = new_uri()
    rng = np.random.default_rng(7)
    enrolled = enroll_random(uri, {f"id{i}": 1 + (i * 7) % 5 for i in range(40)}, seed=3)
    # One identity with far more faces than a first search pass returns, all close to the
    # probe: finding the 2nd..5th identities forces the backends to search past them.
    probe = unit(rng, 1)[0]
    crowd = probe + 0.05 * rng.normal(size=(300, DIM)).astype(np.float32)
    enrolled["crowd"] = crowd / np.linalg.norm(crowd, axis=1, keepdims=True)
    with open_gallery(uri) as gallery:
        gallery.enroll("crowd", crowd, [f"crowd/{j}.jpg" for j in range(300)])
        probes = np.vstack([probe, unit(rng, 5)])
        results = gallery.identify(probes, top_k=5)
    for row, found in zip(probes, results):
        expected = brute_force(enrolled, row / np.linalg.norm(row), 5)
        assert [m.identity for m in found] == [name for name, _, _ in expected]
        assert [m.source for m in found] == [source for _, _, source in expected]
        np.testing.assert_allclose([m.distance for m in found], [d for _, d, _ in expected], atol=1e-5)
    assert results[0][0].identity == "crowd"


def test_threshold_is_stored_and_applied_the_same_way(new_uri: Callable[[], str]) -> None:
    uri = new_uri()
    enroll_random(uri, {"person0": 2}, threshold=0.4)
    with create_gallery(uri, "test", DIM, 0.9) as gallery:  # existing gallery keeps its threshold
        assert gallery.threshold == pytest.approx(0.4)
        gallery.set_threshold(0.25)
    with open_gallery(uri) as gallery:
        assert gallery.threshold == pytest.approx(0.25)
        with pytest.raises(InputError, match="threshold"):
            gallery.set_threshold(2.5)


def test_identities_len_and_remove(new_uri: Callable[[], str]) -> None:
    uri = new_uri()
    enrolled = enroll_random(uri, {"bob": 2, "alice": 3, "carol": 1})
    with open_gallery(uri) as gallery:
        assert gallery.identities() == [("alice", 3), ("bob", 2), ("carol", 1)]
        assert gallery.remove("alice") == 3
        assert gallery.identities() == [("bob", 2), ("carol", 1)]
        assert len(gallery) == 3
        (matches,) = gallery.identify(enrolled["alice"][0], top_k=3)
        assert "alice" not in {m.identity for m in matches}
        with pytest.raises(InputError, match="no identity 'alice'"):
            gallery.remove("alice")
    with open_gallery(uri) as gallery:  # the removal is persistent
        assert gallery.identities() == [("bob", 2), ("carol", 1)]


def test_awkward_identity_names_round_trip(new_uri: Callable[[], str]) -> None:
    # Quotes, backslashes and non-ASCII must survive Milvus filter expressions intact.
    names = ['O"Brien', "back\\slash", "Zoë Ångström", "it's", "a, b"]
    uri = new_uri()
    enrolled = enroll_random(uri, {name: 2 for name in names})
    with open_gallery(uri) as gallery:
        for name in names:
            assert gallery.identify(enrolled[name][0])[0][0].identity == name
        assert gallery.remove('O"Brien') == 2
        assert gallery.remove("back\\slash") == 2
        assert [name for name, _ in gallery.identities()] == sorted(names[2:])
        # With every other identity excluded, the widening search must still find them all.
        assert len(gallery.identify(enrolled["it's"][0], top_k=10)[0]) == 3


@pytest.mark.parametrize("name", ["", " padded", "line\nbreak", "unknown", "x" * 201])
def test_bad_identity_names_are_rejected(new_uri: Callable[[], str], name: str) -> None:
    with create_gallery(new_uri(), "test", DIM, 0.4) as gallery, pytest.raises(InputError):
        gallery.enroll(name, unit(np.random.default_rng(0), 1), ["s.jpg"])


def test_user_errors(new_uri: Callable[[], str]) -> None:
    uri = new_uri()
    with pytest.raises(InputError, match="no gallery here"):
        open_gallery(uri)
    with create_gallery(uri, "test", DIM, 0.4) as gallery:
        with pytest.raises(InputError, match="empty"):
            gallery.identify(unit(np.random.default_rng(0), 1))
        with pytest.raises(InputError, match="dimension 16"):
            gallery.enroll("bob", unit(np.random.default_rng(0), 1, dim=16), ["s.jpg"])
        with pytest.raises(ValueError, match="sources"):
            gallery.enroll("bob", unit(np.random.default_rng(0), 2), ["s.jpg"])
    with pytest.raises(InputError, match="embedder 'test'"):
        create_gallery(uri, "other", DIM, 0.4)


def test_malformed_milvus_uri_is_an_input_error() -> None:
    with pytest.raises(InputError, match="milvus://HOST:PORT/COLLECTION"):
        open_gallery("milvus://localhost/faces")


def test_backends_return_identical_results(tmp_path: Path, milvus_server: str) -> None:
    uris = [str(tmp_path / "folder"), str(tmp_path / "lite.db"), f"milvus://{milvus_server}/identical"]
    identities = {f"p{i}": 1 + i % 4 for i in range(60)}
    enrolled = [enroll_random(uri, identities, seed=11) for uri in uris]
    probes = np.vstack([enrolled[0]["p5"][0], unit(np.random.default_rng(12), 20)])
    answers, distances = [], []
    for uri in uris:
        with open_gallery(uri) as gallery:
            results = gallery.identify(probes, top_k=3)
        answers.append([[(m.identity, m.source) for m in row] for row in results])
        distances.append([[m.distance for m in row] for row in results])
    assert answers[0][0][0] == ("p5", "p5/0.jpg")
    assert answers[0] == answers[1] == answers[2]
    np.testing.assert_allclose(distances[1], distances[0], atol=1e-5)
    np.testing.assert_allclose(distances[2], distances[0], atol=1e-5)


def _cli(*argv: str) -> str:
    from facesuite.cli import main

    out = io.StringIO()
    with redirect_stdout(out):
        assert main(list(argv)) == 0
    return out.getvalue()


def _real_faces(tmp_path: Path, facecom_b: Path) -> tuple[Path, Path, list[Path]]:
    """``(enroll folder, probe folder, people)``: two clean images each of three FACECOM people to
    enroll, a third image of each plus a stranger's as probes (symlinks: data is never copied)."""
    facecom_b = facecom_b.resolve()  # symlink targets must not depend on the working folder
    people = [d for d in sorted(facecom_b.iterdir()) if len(list(d.glob("*.jpg"))) >= 3][:3]
    assert len(people) == 3, "needs three FACECOM identities with three or more clean images"
    enroll_dir, probes = tmp_path / "enroll", tmp_path / "probes"
    probes.mkdir()
    for person in people:
        images = sorted(person.glob("*.jpg"))
        (enroll_dir / person.name).mkdir(parents=True)
        for image in images[:2]:
            (enroll_dir / person.name / image.name).symlink_to(image)
        (probes / images[2].name).symlink_to(images[2])
    stranger = next(d for d in sorted(facecom_b.iterdir()) if d.name.endswith("_frontal"))
    (probes / "stranger.jpg").symlink_to(next(stranger.glob("*.jpg")))
    return enroll_dir, probes, people


def test_cli_gallery_commands_agree_on_real_faces(tmp_path: Path, facecom_b: Path, milvus_server: str) -> None:
    """`facesuite gallery enroll|identify|list|remove` give the same answers on every backend."""
    enroll_dir, probes, people = _real_faces(tmp_path, facecom_b)
    outputs, distances = [], []
    # Milvus Lite is the same client code as the server; the unit tests above cover it.
    for uri in (str(tmp_path / "folder"), f"milvus://{milvus_server}/cli"):
        # Default settings: the second backend gets its faces from the detection cache, which
        # must give exactly what fresh detections give.
        _cli("gallery", "enroll", str(enroll_dir), "--gallery", uri)
        identified = list(csv.DictReader(io.StringIO(
            _cli("gallery", "identify", str(probes), "--gallery", uri, "--top-k", "2"))))
        listing = json.loads(_cli("gallery", "list", "--gallery", uri, "--json"))
        _cli("gallery", "remove", people[0].name, "--gallery", uri)
        after = json.loads(_cli("gallery", "list", "--gallery", uri, "--json"))
        # Distances are compared with a tolerance: the backends sum in different orders.
        distances.append([float(row.pop("distance")) for row in identified])
        for row in identified:
            row["candidates"] = ";".join(c.rsplit(":", 1)[0] for c in row["candidates"].split(";"))
        outputs.append((identified, listing, after))
    identified, listing, after = outputs[0]
    assert outputs[1] == outputs[0]
    np.testing.assert_allclose(distances[1], distances[0], atol=1e-5)
    # And the answers are right, not just equal: each probe is its own person, the stranger nobody.
    by_file = {Path(row["path"]).name: row for row in identified}
    for person in people:
        assert by_file[sorted(person.glob("*.jpg"))[2].name]["identity"] == person.name
    assert by_file["stranger.jpg"]["identity"] == "unknown"
    assert [e["identity"] for e in listing["identities"]] == [p.name for p in people]
    assert [e["identity"] for e in after["identities"]] == [p.name for p in people[1:]]


@pytest.mark.parametrize("backend", BACKENDS)
def test_serve_takes_every_gallery_uri(backend: str, tmp_path: Path, facecom_b: Path, monkeypatch: pytest.MonkeyPatch,
                                       request: pytest.FixtureRequest) -> None:
    """`facesuite serve --gallery URI` serves the gallery `facesuite gallery enroll` wrote, whatever the backend."""
    import uvicorn
    from fastapi.testclient import TestClient

    from facesuite.cli import main

    if backend == "milvus-server":
        uri = f"milvus://{request.getfixturevalue('milvus_server')}/served"
    else:
        uri = str(tmp_path / ("people.db" if backend == "milvus-lite" else "folder"))
    enroll_dir, probes, people = _real_faces(tmp_path, facecom_b)
    _cli("gallery", "enroll", str(enroll_dir), "--gallery", uri)

    started: dict = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: started.update(app=app))
    assert main(["serve", "--gallery", uri]) == 0
    with TestClient(started["app"], base_url="http://127.0.0.1:8000") as client:
        listing = client.get("/gallery").json()
        assert listing["exists"] and [e["identity"] for e in listing["identities"]] == [p.name for p in people]
        for person in people:
            probe = probes / sorted(person.glob("*.jpg"))[2].name
            answer = client.post("/gallery/identify", files={"image": (probe.name, probe.read_bytes(), "image/jpeg")})
            assert answer.status_code == 200 and answer.json()["identity"] == person.name, answer.text
        stranger = (probes / "stranger.jpg").read_bytes()
        assert client.post("/gallery/identify", files={"image": ("s.jpg", stranger, "image/jpeg")}).json()["identity"] == "unknown"


def _schema_2_gallery(uri: str, plain: dict[str, np.ndarray], rendered: dict[str, np.ndarray]) -> None:
    """Write what facesuite wrote at schema 2, when the sunny gallery view was kept: each face's
    rendering as a row of the same store (``view`` "sunny", the plain vector's ``""``), the
    views recorded in the metadata."""
    rows = [(name, f"{name}/{j}.jpg", vector, view) for view, vectors in (("", plain), ("sunny", rendered))
            for name, block in vectors.items() for j, vector in enumerate(block)]
    if not is_milvus_uri(uri):
        _old_folder_gallery(uri, "ALTER TABLE faces ADD COLUMN view TEXT NOT NULL DEFAULT ''",
                            [(name, source, vector.astype("<f4").tobytes(), view) for name, source, vector, view in rows],
                            {"schema_version": "2", "generation": "7", "views": "sunny"})
        return
    _old_milvus_collection(uri, "2", [{"identity": name, "source": source, "vector": vector.tolist(), "view": view}
                                      for name, source, vector, view in rows], views=True)


def _old_folder_gallery(uri: str, alter: str, rows: list[tuple], meta: dict[str, str]) -> None:
    """A folder gallery as facesuite wrote it at an older schema: today's tables changed by
    ``alter``, face rows ``(identity, source, vector[, view])`` and the ``meta`` values of then."""
    import sqlite3

    with create_gallery(uri, "test", DIM, 0.4):
        pass
    columns = ["identity", "source", "vector", "view"][: len(rows[0])]
    with sqlite3.connect(Path(uri) / "gallery.sqlite") as db:
        db.execute(alter)
        db.executemany(f"INSERT INTO faces ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})", rows)
        db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", meta.items())


def _old_milvus_collection(uri: str, version: str, rows: list[dict], views: bool = False) -> None:
    """A Milvus collection as facesuite wrote it at schema ``version``: no hash field, and with
    ``views`` the ``view`` field and property of schema 2."""
    from pymilvus import DataType, MilvusClient

    from facesuite.gallery.milvus import parse_uri

    address, collection = parse_uri(uri)
    client = MilvusClient(address)
    schema = client.create_schema(auto_id=True, enable_dynamic_field=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    for name, size in (("identity", 800), ("source", 65_535), *((("view", 64),) if views else ())):
        schema.add_field(name, DataType.VARCHAR, max_length=size)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=DIM)
    index = client.prepare_index_params()
    index.add_index(field_name="vector", index_type="FLAT", metric_type="IP")
    client.create_collection(collection, schema=schema, index_params=index, consistency_level="Strong", properties={
        "facesuite.schema_version": version, "facesuite.embedder": "test", "facesuite.dim": str(DIM),
        "facesuite.threshold": "0.4", **({"facesuite.views": "sunny"} if views else {})})
    client.insert(collection, rows)
    client.flush(collection)
    client.close()


def test_a_schema_2_gallery_drops_its_view_rows_and_works(new_uri: Callable[[], str]) -> None:
    """Galleries written while the sunny view was kept open as plain galleries: the view rows are
    gone (they would otherwise answer searches), faces are counted as before, and enroll and remove
    work."""
    uri = new_uri()
    rng = np.random.default_rng(3)
    plain = {name: unit(rng, 2) for name in ("ann", "bob")}
    probe = plain["bob"][1] + 0.05 * unit(rng, 1)[0]
    probe /= np.linalg.norm(probe)
    # Ann's rendered rows are the probe itself: were they searched, ann would answer at distance 0.
    rendered = {"ann": np.stack([probe, probe]), "bob": unit(rng, 2)}
    _schema_2_gallery(uri, plain, rendered)
    with open_gallery(uri) as gallery:
        assert gallery.identities() == [("ann", 2), ("bob", 2)] and len(gallery) == 4
        (best,) = gallery.identify(probe)
        assert best[0].identity == "bob" and 0 < best[0].distance < 0.01
        assert [m.identity for m in gallery.identify(plain["ann"][0], top_k=2)[0]] == ["ann", "bob"]
        assert gallery.enroll("cy", unit(rng, 1), ["cy.jpg"]) == 1
        assert gallery.remove("ann") == 2
        assert gallery.identities() == [("bob", 2), ("cy", 1)] and len(gallery) == 3
    with open_gallery(uri) as gallery:  # upgraded once: opening again changes nothing
        assert gallery.identities() == [("bob", 2), ("cy", 1)]
        assert gallery.identify(probe)[0][0].identity == "bob"
    if is_milvus_uri(uri):
        from pymilvus import MilvusClient

        from facesuite.gallery.milvus import parse_uri

        address, collection = parse_uri(uri)
        client = MilvusClient(address)
        properties = client.describe_collection(collection)["properties"]
        client.close()
        assert properties["facesuite.schema_version"] == "4" and "facesuite.views" not in properties
    else:
        import sqlite3

        with sqlite3.connect(Path(uri) / "gallery.sqlite") as db:
            assert "view" not in {row[1] for row in db.execute("PRAGMA table_info(faces)")}
            assert dict(db.execute("SELECT key, value FROM meta"))["schema_version"] == "4"


def _schema_3_gallery(uri: str, enrolled: dict[str, np.ndarray]) -> None:
    """Write what facesuite wrote at schema 3: face rows without a content hash."""
    rows = [(name, f"{name}/{j}.jpg", vector) for name, block in enrolled.items() for j, vector in enumerate(block)]
    if not is_milvus_uri(uri):
        _old_folder_gallery(uri, "ALTER TABLE faces DROP COLUMN hash",
                            [(name, source, vector.astype("<f4").tobytes()) for name, source, vector in rows],
                            {"schema_version": "3"})
        return
    _old_milvus_collection(uri, "3", [{"identity": name, "source": source, "vector": vector.tolist()} for name, source, vector in rows])


def test_a_gallery_without_hashes_keeps_its_faces_and_enrols_each_photo_once(new_uri: Callable[[], str]) -> None:
    """A schema-3 gallery (no content hashes) opens with every face kept and searchable; from then
    on a photo enrolled twice for one identity is stored once."""
    uri = new_uri()
    rng = np.random.default_rng(5)
    old = {"ann": unit(rng, 2), "bob": unit(rng, 3)}
    _schema_3_gallery(uri, old)
    new = unit(rng, 2)
    with open_gallery(uri) as gallery:
        assert gallery.identities() == [("ann", 2), ("bob", 3)]
        best = gallery.identify(old["bob"][2])[0][0]
        assert (best.identity, best.source) == ("bob", "bob/2.jpg") and best.distance < 1e-5
        # The same photo twice in one call, then again: stored once.
        assert gallery.enroll("ann", np.stack([new[0], new[0]]), ["n.jpg", "n.jpg"], ["h-new", "h-new"]) == 1
        assert gallery.enroll("ann", new[:1], ["n.jpg"], ["h-new"]) == 0
        assert gallery.enrolled_as(["h-new", "h-other"]) == {"h-new": "ann"}
        # Per identity: another person may hold the same photo; no hash, no check.
        assert gallery.enroll("bob", new[:1], ["n.jpg"], ["h-new"]) == 1
        assert gallery.enroll("bob", new[1:], ["m.jpg"]) == 1 and gallery.enroll("bob", new[1:], ["m.jpg"]) == 1
    with open_gallery(uri) as gallery:  # upgraded once: opening again changes nothing
        assert gallery.identities() == [("ann", 3), ("bob", 6)]
        assert gallery.identify(old["ann"][1])[0][0].source == "ann/1.jpg"


def test_a_schema_1_gallery_opens_and_gains_the_frames_table(tmp_path: Path) -> None:
    import sqlite3

    rng = np.random.default_rng(4)
    vectors = unit(rng, 2)
    with create_gallery(tmp_path / "old", "test", DIM, 0.4) as gallery:
        gallery.enroll("ann", vectors, ["a.jpg", "b.jpg"])
    # Turn it back into what facesuite wrote before source matching: no frames table, schema 1.
    with sqlite3.connect(tmp_path / "old" / "gallery.sqlite") as db:
        db.execute("DROP TABLE frames")
        db.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    with open_gallery(tmp_path / "old") as gallery:
        assert gallery.identities() == [("ann", 2)]
        assert gallery.identify(vectors[:1])[0][0].identity == "ann"
        assert gallery.frames() == (gallery.frames()[0], [])
