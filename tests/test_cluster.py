"""Clustering a photo collection by person, on real FACECOM faces and photos made from them."""

from __future__ import annotations

import csv
import json
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facesuite.cli import main
from facesuite.evaluate.clustering import clustering_metrics

# Training identities (none is in splits/facecom_dev_identities.txt).
PEOPLE = ("Colin_Powell", "Hugo_Chavez", "Kofi_Annan")


def _photos(root: Path, person: str, first: int, count: int) -> list[Path]:
    return sorted((root / person).glob("*.jpg"))[first : first + count]


def _copy(photos: list[Path], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    copies = []
    for photo in photos:
        copies.append(folder / photo.name)
        copies[-1].write_bytes(photo.read_bytes())
    return copies


def _rows(out: Path) -> list[dict]:
    with open(out / "clusters.csv", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _main_faces(rows: list[dict]) -> dict[str, str]:
    """Photo file name -> cluster id of its main face."""
    return {Path(r["path"]).name: r["cluster"] for r in rows if r["face"] == "0"}


@pytest.fixture(scope="module")
def analysis():
    from facesuite.analysis import FaceAnalysis

    return FaceAnalysis(gender=None)


def test_three_people_make_three_groups(facecom_b: Path, tmp_path: Path, capsys) -> None:
    folder = tmp_path / "photos"
    person_of = {}
    for person in PEOPLE:
        for photo in _copy(_photos(facecom_b, person, 0, 4), folder / person.lower()):
            person_of[photo.name] = person
    out = tmp_path / "out"
    assert main(["cluster", str(folder), "--out", str(out)]) == 0
    assert "12 photos" in capsys.readouterr().out
    main_faces = _main_faces(_rows(out))
    assert set(main_faces) == set(person_of)
    # Each person's photos in one cluster, and no cluster holding two people.
    groups = {}
    for name, cluster in main_faces.items():
        assert cluster != "", name
        groups.setdefault(cluster, set()).add(person_of[name])
    assert sorted(len(people) for people in groups.values()) == [1, 1, 1]
    assert sorted(p for people in groups.values() for p in people) == sorted(PEOPLE)
    record = json.loads((out / "clusters.json").read_text())
    sizes = [c["size"] for c in record["clusters"]]
    assert sizes == sorted(sizes, reverse=True)
    for cluster in record["clusters"]:
        members = [r for r in _rows(out) if r["cluster"] == str(cluster["id"])]
        assert cluster["size"] == len(members)
        assert sorted(cluster["photos"]) == sorted({r["path"] for r in members})
        # The representative is the member nearest the centre.
        nearest = min(members, key=lambda r: float(r["distance"]))
        assert cluster["representative"]["path"] == nearest["path"]
    # Distances to the centre, computed again from the stored embeddings.
    stored = np.load(out / "clusters.npz")
    for cluster in record["clusters"]:
        rows = np.flatnonzero(stored["cluster"] == cluster["id"])
        centre = stored["embeddings"][rows].astype(np.float64).mean(axis=0)
        expected = 1 - stored["embeddings"][rows] @ (centre / np.linalg.norm(centre))
        assert np.allclose(stored["distance"][rows], np.maximum(expected, 0), atol=1e-5)
    page = (out / "report.html").read_text()
    # A strip per cluster of two or more faces, in the order of clusters.json (largest first);
    # every face of every cluster on the page.
    several = [c["id"] for c in record["clusters"] if c["size"] > 1]
    strips = [page.index(f'<div class="cluster" data-cluster="{c}"') for c in several]
    assert strips == sorted(strips)
    assert page.count('<figure class="face') == len(_rows(out))


def test_group_photo_faces_land_in_different_clusters(facecom_b: Path, tmp_path: Path, analysis) -> None:
    colin, hugo = _photos(facecom_b, "Colin_Powell", 0, 4), _photos(facecom_b, "Hugo_Chavez", 0, 4)
    # A group photo: another photo of each person, side by side.
    left, right = (np.asarray(Image.open(p).convert("RGB")) for p in (_photos(facecom_b, "Colin_Powell", 5, 1)[0],
                                                                        _photos(facecom_b, "Hugo_Chavez", 5, 1)[0]))
    group = tmp_path / "group.jpg"
    Image.fromarray(np.concatenate([left, right], axis=1)).save(group, quality=95)
    clusters = analysis.cluster([*colin, *hugo, group])
    in_group = [f for f in clusters.faces if f.path == str(group) and f.cluster is not None]
    # The two subjects (and any bystander) are each in a cluster of their own person.
    centre_x = [(f.box[0] + f.box[2]) / 2 for f in in_group]
    colin_face = next(f for f, x in zip(in_group, centre_x) if abs(x - 112) < 40)
    hugo_face = next(f for f, x in zip(in_group, centre_x) if abs(x - 336) < 40)
    cluster_of = {f.path: f.cluster for f in clusters.faces if f.index == 0}
    assert colin_face.cluster != hugo_face.cluster
    assert colin_face.cluster == cluster_of[str(colin[0])]
    assert hugo_face.cluster == cluster_of[str(hugo[0])]


def test_no_face_and_unrecognisable_faces_stay_unclustered(facecom_b: Path, tmp_path: Path, analysis) -> None:
    blank = tmp_path / "blank.png"
    Image.new("RGB", (224, 224), (128, 128, 128)).save(blank)
    # A blown-out copy in which a face is found but the quality model puts it below the floor
    # (read from FaceAnalysis first, independently of clustering).
    copies = sorted((facecom_b / "Colin_Powell" / "distortion").glob("*_sunny.jpg"))[:12]
    sunny = next(path for path, (face,) in zip(copies, analysis.get_batch(copies))
                 if not face.fallback and face.quality < analysis.quality.floor)
    photos = _photos(facecom_b, "Colin_Powell", 0, 3)
    clusters = analysis.cluster([*photos, blank, sunny])
    by_path = {f.path: f for f in clusters.faces if f.index == 0}
    assert by_path[str(blank)].cluster is None and by_path[str(blank)].reason == "no face"
    assert by_path[str(sunny)].cluster is None and by_path[str(sunny)].reason.startswith("unrecognisable")
    assert all(by_path[str(p)].cluster is not None for p in photos)
    assert {by_path[str(p)].cluster for p in photos} == {by_path[str(photos[0])].cluster}


def test_summary_counts_boxes_with_no_face_apart_from_faces(samples: Path, tmp_path: Path, analysis, capsys) -> None:
    # A white page and a noise image have only their flagged centre box, and no face in it.
    blank, noise = tmp_path / "blank.png", tmp_path / "noise.png"
    Image.new("RGB", (224, 224), (255, 255, 255)).save(blank)
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)).save(noise)
    photos = [*sorted((samples / "photos").glob("*.jpg")), blank, noise]
    # What analyze finds in the same photos, every face of each (read independently of clustering).
    boxes = [face for faces in analysis.get_batch(photos, max_faces=None) for face in faces]
    empty = sum(face.no_face for face in boxes)
    faces = len(boxes) - empty
    floor = analysis.quality.floor
    below_floor = sum(not face.no_face and face.quality < floor for face in boxes)
    assert empty >= 2 and faces > 0
    out = tmp_path / "out"
    assert main(["cluster", *map(str, photos), "--out", str(out)]) == 0
    summary = capsys.readouterr().out.splitlines()[0]
    no_face_boxes = f"{empty} boxes" if empty > 1 else "1 box"
    assert summary.startswith(f"{faces} faces ({faces} new) in {len(photos)} photos, {no_face_boxes} with no face: ")
    unclustered = f"{below_floor} face" + ("" if below_floor == 1 else "s")
    assert summary.endswith(f"{unclustered} unclustered; 0 files skipped")


def test_update_keeps_old_ids_and_embeds_only_new_photos(facecom_b: Path, tmp_path: Path, capsys) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    for person in PEOPLE[:2]:
        _copy(_photos(facecom_b, person, 0, 3), first / person)
        _copy(_photos(facecom_b, person, 3, 2), second / person)
    _copy(_photos(facecom_b, PEOPLE[2], 0, 3), second / PEOPLE[2])
    out = tmp_path / "out"
    assert main(["cluster", str(first), "--out", str(out)]) == 0
    before = _rows(out)
    stored = np.load(out / "clusters.npz")["embeddings"]
    capsys.readouterr()
    assert main(["cluster", str(first), str(second), "--update", str(out)]) == 0
    # Only the new photos were analysed: the first run's faces are reported as not new.
    assert f"({len(_rows(out)) - len(before)} new)" in capsys.readouterr().out
    after = _rows(out)
    for old, new in zip(before, after):
        assert (old["path"], old["face"], old["cluster"]) == (new["path"], new["face"], new["cluster"])
    assert np.array_equal(np.load(out / "clusters.npz")["embeddings"][: len(stored)], stored)
    cluster_of = _main_faces(after)
    for person in PEOPLE[:2]:
        # New photos of a known person join that person's cluster.
        old_ids = {cluster_of[p.name] for p in _photos(facecom_b, person, 0, 3)}
        new_ids = {cluster_of[p.name] for p in _photos(facecom_b, person, 3, 2)}
        assert old_ids == new_ids and len(old_ids) == 1
    known = {r["cluster"] for r in before if r["cluster"]}
    newcomer = {cluster_of[p.name] for p in _photos(facecom_b, PEOPLE[2], 0, 3)}
    assert len(newcomer) == 1 and not newcomer & known


def test_gallery_names_clusters_and_enrols_from_clusters(facecom_b: Path, tmp_path: Path, capsys) -> None:
    photos = tmp_path / "photos"
    for person in PEOPLE[:2]:
        _copy(_photos(facecom_b, person, 0, 3), photos / person)
    out, gallery = tmp_path / "out", tmp_path / "gallery"
    assert main(["cluster", str(photos), "--out", str(out)]) == 0
    cluster_of = _main_faces(_rows(out))
    colin = cluster_of[_photos(facecom_b, "Colin_Powell", 0, 1)[0].name]
    assert main(["gallery", "enroll", "--gallery", str(gallery), "--from-clusters", str(out), "--name", f"{colin}=Colin"]) == 0
    assert "enrolled Colin: 3 faces" in capsys.readouterr().out
    # New photos of the enrolled person: their cluster (and the old one) is named from the gallery.
    more = _copy(_photos(facecom_b, "Colin_Powell", 3, 2), tmp_path / "more")
    assert main(["cluster", str(photos), str(more[0].parent), "--update", str(out), "--gallery", str(gallery)]) == 0
    record = json.loads((out / "clusters.json").read_text())
    names = {c["id"]: c["name"] for c in record["clusters"]}
    assert names[int(colin)] == "Colin"
    assert all(name is None for cluster, name in names.items() if cluster != int(colin))


def test_one_person_of_a_group_photo_is_enrolled_from_their_cluster(facecom_b: Path, tmp_path: Path, capsys) -> None:
    left, right = (_photos(facecom_b, person, 0, 1)[0] for person in PEOPLE[:2])
    group = tmp_path / "photos" / "group.jpg"
    group.parent.mkdir()
    Image.fromarray(np.concatenate([np.asarray(Image.open(left)), np.asarray(Image.open(right))], axis=1)).save(group, quality=95)
    out, gallery = tmp_path / "out", tmp_path / "gallery"
    assert main(["cluster", str(group), "--out", str(out)]) == 0
    rows = [row for row in _rows(out) if row["cluster"]]
    assert len(rows) == 2
    # The face on the right half of the photo (the second person), alone in its cluster.
    right_face = max(rows, key=lambda row: float(row["x1"]))
    assert main(["gallery", "enroll", "--gallery", str(gallery), "--from-clusters", str(out),
                 "--name", f"{right_face['cluster']}={PEOPLE[1]}"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert f"enrolled {PEOPLE[1]}: 1 face" in lines
    assert any(line.startswith("enrolled 1 identity (1 face) from ") for line in lines)
    answers = tmp_path / "who.csv"
    assert main(["gallery", "identify", str(group), "--all-faces", "--gallery", str(gallery), "--csv", str(answers)]) == 0
    named = {row["face"]: row["identity"] for row in csv.DictReader(open(answers))}
    assert named[right_face["face"]] == PEOPLE[1]
    assert [who for face, who in named.items() if face != right_face["face"]] == ["unknown"]


def test_bad_input_is_one_line_and_counted(facecom_b: Path, tmp_path: Path, bad_files: dict[str, Path], capsys) -> None:
    folder = tmp_path / "photos"
    _copy(_photos(facecom_b, "Colin_Powell", 0, 2), folder)
    for path in bad_files.values():
        (folder / path.name).write_bytes(path.read_bytes())
    out = tmp_path / "out"
    assert main(["cluster", str(folder), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "3 files skipped" in captured.out
    for path in bad_files.values():
        assert f"skipped: {folder / path.name}:" in captured.err
    assert len(json.loads((out / "clusters.json").read_text())["skipped"]) == 3
    # A named bad file, a missing path, no output folder, an output folder of something else.
    assert main(["cluster", str(folder / bad_files["text"].name), "--out", str(tmp_path / "o2")]) == 2
    for argv in (["cluster", str(tmp_path / "missing"), "--out", str(out)], ["cluster", str(folder)],
                 ["cluster", str(folder), "--update", str(tmp_path)],
                 ["gallery", "enroll", "--gallery", str(tmp_path / "g"), "--from-clusters", str(out), "--name", "x"],
                 ["gallery", "enroll", "--gallery", str(tmp_path / "g"), "--from-clusters", str(out), "--name", "99=x"]):
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("facesuite: error:") and "\n" not in err and "Traceback" not in err


def _brute_force(truth: list[str], clusters: list[int | None]) -> dict:
    """The figures by their definitions, one face and one pair at a time."""
    labels = [("u", i) if c is None else ("c", c) for i, c in enumerate(clusters)]
    n = len(truth)
    tp = sum(1 for i, j in combinations(range(n), 2) if labels[i] == labels[j] and truth[i] == truth[j])
    same_cluster = sum(1 for i, j in combinations(range(n), 2) if labels[i] == labels[j])
    same_person = sum(1 for i, j in combinations(range(n), 2) if truth[i] == truth[j])
    bp = np.mean([sum(labels[j] == labels[i] and truth[j] == truth[i] for j in range(n)) / sum(labels[j] == labels[i] for j in range(n))
                  for i in range(n)])
    br = np.mean([sum(labels[j] == labels[i] and truth[j] == truth[i] for j in range(n)) / sum(truth[j] == truth[i] for j in range(n))
                  for i in range(n)])
    wrong = 0
    for cluster in {c for c in clusters if c is not None}:
        people = [truth[i] for i in range(n) if clusters[i] == cluster]
        wrong += len(people) - max(people.count(p) for p in people)
    clustered = sum(c is not None for c in clusters)
    return {"pair_p": tp / same_cluster if same_cluster else 1.0, "pair_r": tp / same_person if same_person else 1.0,
            "bp": bp, "br": br, "impurity": wrong / clustered if clustered else 0.0}


@pytest.mark.parametrize("seed", range(5))
def test_metrics_match_their_definitions(seed: int) -> None:
    rng = np.random.default_rng(seed)
    truth = [f"p{v}" for v in rng.integers(0, 6, 40)]
    clusters = [None if rng.random() < 0.15 else int(v) for v in rng.integers(0, 5, 40)]
    metrics, expected = clustering_metrics(truth, clusters), _brute_force(truth, clusters)
    assert metrics["pairwise"]["precision"] == pytest.approx(expected["pair_p"])
    assert metrics["pairwise"]["recall"] == pytest.approx(expected["pair_r"])
    assert metrics["bcubed"]["precision"] == pytest.approx(expected["bp"])
    assert metrics["bcubed"]["recall"] == pytest.approx(expected["br"])
    assert metrics["impurity"] == pytest.approx(expected["impurity"])
    assert metrics["unclustered"] == sum(c is None for c in clusters)


def test_eval_clustering_scores_identity_folders(facecom_b: Path, tmp_path: Path, capsys) -> None:
    data = tmp_path / "people"
    for person in PEOPLE:
        _copy(_photos(facecom_b, person, 0, 3), data / person)
        _copy(sorted((facecom_b / person / "distortion").glob("*_blurred.jpg"))[:2], data / person / "distortion")
    out = tmp_path / "eval"
    assert main(["eval", "clustering", str(data), "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    rows = [r for r in _rows(out) if r["face"] == "0"]
    truth = [Path(r["path"]).parent.name if Path(r["path"]).parent.name != "distortion" else Path(r["path"]).parent.parent.name
             for r in rows]
    expected = _brute_force(truth, [int(r["cluster"]) if r["cluster"] else None for r in rows])
    assert metrics["faces"] == 15 and metrics["people"] == 3
    assert metrics["bcubed"]["precision"] == pytest.approx(expected["bp"])
    assert metrics["bcubed"]["recall"] == pytest.approx(expected["br"])
    assert metrics["pairwise"]["precision"] == pytest.approx(expected["pair_p"])
    assert (out / "report.html").read_text().count("<figure") >= 15


def test_dashboard_groups_uploaded_photos(facecom_b: Path, tmp_path: Path, bad_files: dict[str, Path]) -> None:
    from fastapi.testclient import TestClient

    from facesuite.serve import create_app

    photos = [*_photos(facecom_b, "Colin_Powell", 0, 3), *_photos(facecom_b, "Hugo_Chavez", 0, 3)]
    blank = tmp_path / "blank.png"
    Image.new("RGB", (224, 224), (128, 128, 128)).save(blank)
    files = [("image", (p.name, p.read_bytes(), "image/jpeg")) for p in [*photos, blank]]
    with TestClient(create_app(gallery=tmp_path / "gallery", work_dir=tmp_path / "work")) as client:
        page = client.get("/cluster-page")
        assert page.status_code == 200 and "/static/cluster.js" in page.text
        answer = client.post("/cluster", files=files)
        assert answer.status_code == 200, answer.text
        result = answer.json()
        # Each person's photos in one cluster of their own; the blank photo unclustered.
        cluster_of = {f["photo"]: c["id"] for c in result["clusters"] for f in c["faces"] if f["face"] == 0}
        assert len({cluster_of[p.name] for p in photos[:3]}) == 1 and len({cluster_of[p.name] for p in photos[3:]}) == 1
        assert cluster_of[photos[0].name] != cluster_of[photos[3].name]
        assert [(f["photo"], f["reason"]) for f in result["unclustered"]] == [("blank.png", "no face")]
        assert all(f["thumbnail"].startswith("data:image/jpeg;base64,") for c in result["clusters"] for f in c["faces"])
        bad = client.post("/cluster", files=[*files[:1], ("image", ("notes.jpg", bad_files["text"].read_bytes(), "image/jpeg"))])
        assert bad.status_code == 415 and "notes.jpg" in bad.json()["error"]
        assert client.post("/cluster").status_code == 400
