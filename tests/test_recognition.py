"""Verification, calibration, gallery commands and recognition evaluation on real FACECOM faces."""

from __future__ import annotations

import csv
import html
import json
import re
from pathlib import Path

import numpy as np
import pytest

from facesuite.cli import main
from facesuite.embed import get_embedder
from facesuite.embed.calibration import threshold_at_far

# Identities with several clean images, used as a small fixed gallery.
PEOPLE = ["Colin_Powell", "Hugo_Chavez", "Tom_Ridge", "Kofi_Annan", "Tiger_Woods"]
STRANGER = "Naomi_Watts"


def _images(root: Path, identity: str) -> list[Path]:
    return sorted((root / identity).glob("*.jpg"))


def _run_json(capsys, argv: list[str]) -> dict:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_verify_same_and_different_people(samples: Path, capsys) -> None:
    powell = _images(samples / "people", "Colin_Powell")
    chavez = _images(samples / "people", "Hugo_Chavez")
    same = _run_json(capsys, ["verify", str(powell[0]), str(powell[1]), "--json"])
    different = _run_json(capsys, ["verify", str(powell[0]), str(chavez[0]), "--json"])
    assert same["same"] and not different["same"]
    assert same["distance"] < same["threshold"] < different["distance"]


def test_verify_bad_input_is_one_line_error(samples: Path, bad_files, capsys) -> None:
    powell = _images(samples / "people", "Colin_Powell")[0]
    assert main(["verify", str(powell), str(bad_files["text"])]) == 2
    err = capsys.readouterr().err
    assert str(bad_files["text"]) in err and "Traceback" not in err and err.count("\n") == 1


@pytest.mark.parametrize("argv, option", [
    (["verify", "{a}", "{b}", "--threshold", "-1"], "--threshold"),      # a cosine distance is 0 to 2
    (["verify", "{a}", "{b}", "--threshold", "2.5"], "--threshold"),
    (["analyze", "{a}", "--min-score", "7"], "--min-score"),              # a detector score is 0 to 1
    (["calibrate", "{people}", "--far", "5", "--save-to", "{out}"], "--far"),  # a rate is 0 to 1
])
def test_out_of_range_numbers_are_refused(samples: Path, tmp_path: Path, capsys, argv: list[str], option: str) -> None:
    powell = _images(samples / "people", "Colin_Powell")
    places = {"a": powell[0], "b": powell[1], "people": samples / "people", "out": tmp_path / "calibration"}
    with pytest.raises(SystemExit) as exit_info:
        main([part.format(**places) for part in argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}: expected a number from 0 to " in err and "Traceback" not in err
    assert not (tmp_path / "calibration").exists()  # nothing fitted or stored


def test_verify_threshold_in_range_decides_the_pair(samples: Path, capsys) -> None:
    powell = _images(samples / "people", "Colin_Powell")
    distance = _run_json(capsys, ["verify", str(powell[0]), str(powell[1]), "--json"])["distance"]
    # Just above and just below the pair's own distance, the given threshold decides it.
    above = _run_json(capsys, ["verify", str(powell[0]), str(powell[1]), "--json", "--threshold", f"{distance + 0.001:.6f}"])
    below = _run_json(capsys, ["verify", str(powell[0]), str(powell[1]), "--json", "--threshold", f"{distance - 0.001:.6f}"])
    assert above["same"] and not below["same"]
    assert above["threshold_source"] == below["threshold_source"] == "given threshold"


def test_threshold_at_far_accepts_the_target_share_of_impostors() -> None:
    impostor = np.linspace(0.1, 1.0, 1000)
    threshold = threshold_at_far(np.array([0.01]), impostor, 0.01)
    assert (impostor <= threshold).mean() == pytest.approx(0.01)


def _identity_tree(root: Path, facecom: Path, people: list[str], per_person: int = 3, distorted: bool = False) -> Path:
    for person in people:
        target = root / person
        target.mkdir(parents=True)
        for image in _images(facecom, person)[:per_person]:
            (target / image.name).symlink_to(image.resolve())
            if distorted:
                (target / "distortion").mkdir(exist_ok=True)
                for copy in sorted((facecom / person / "distortion").glob(f"{image.stem}_*.jpg")):
                    (target / "distortion" / copy.name).symlink_to(copy.resolve())
    return root


def test_ten_fold_accuracy_of_separable_pairs_is_one() -> None:
    """Pairs whose same and different distances do not overlap are all right at a threshold in the
    gap; each fold's threshold, chosen on the others, must sit inside it, not on its edge."""
    from facesuite.evaluate.verification import _fold_accuracy

    rng = np.random.default_rng(0)
    distances = np.concatenate([rng.uniform(0.02, 0.05, 200), rng.uniform(0.12, 0.30, 200)])
    labels = np.repeat([1, 0], 200)
    assert _fold_accuracy(distances, labels, seed=0) == 1.0


def test_calibrate_stores_threshold_used_by_verify(facecom_b: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("FACESUITE_HOME", str(tmp_path / "home"))  # keep this calibration out of other tests
    data = _identity_tree(tmp_path / "ids", facecom_b, PEOPLE, per_person=4)
    record = _run_json(capsys, ["calibrate", str(data), "--json", "--far", "0.05"])
    assert 0 < record["threshold"] < 1 and record["genuine_pairs"] == 5 * 6
    powell = _images(facecom_b, "Colin_Powell")
    result = _run_json(capsys, ["verify", str(powell[0]), str(powell[1]), "--json"])
    assert result["threshold"] == pytest.approx(record["threshold"], abs=1e-6)
    assert result["threshold_source"] == "user calibration, FAR 5%"  # what it is, never a server path


def test_calibrate_counts_each_pair_once_and_refuses_a_rate_it_cannot_show(facecom_b: Path, tmp_path: Path, capsys,
                                                                          monkeypatch) -> None:
    """Five people, four photos each: 190 pairs, 30 of one person, so 160 different-person pairs,
    each counted once; a FAR below one pair in 160 is refused, naming the lowest it can show; and
    the summary says the per-distortion thresholds give way to this one."""
    monkeypatch.setenv("FACESUITE_HOME", str(tmp_path / "home"))
    data = _identity_tree(tmp_path / "ids", facecom_b, PEOPLE, per_person=4)
    photos = 5 * 4
    different = photos * (photos - 1) // 2 - 5 * (4 * 3 // 2)
    record = _run_json(capsys, ["calibrate", str(data), "--json", "--far", "0.05"])
    assert record["impostor_pairs"] == different and record["genuine_pairs"] == 30
    assert set(record["far_marks"]) == {"0.01"}  # 0.001 of 160 pairs is less than one
    assert main(["calibrate", str(data), "--far", "0.001"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()[-1:]
    assert f"{different} different-person pairs cannot show FAR 0.001" in line and f"--far {1 / different:.2g}" in line
    assert main(["calibrate", str(data), "--far", "0.05"]) == 0
    captured = capsys.readouterr()
    assert f"{different} different-person pairs" in captured.out
    assert "shipped per-type thresholds are not used" in captured.err and "--per-route" in captured.err


def test_gallery_enroll_identify_list_remove(samples: Path, tmp_path: Path, bad_files, capsys) -> None:
    data = samples / "people"  # PEOPLE, two photos each
    gallery = str(tmp_path / "gallery")
    assert main(["gallery", "enroll", str(data), "--gallery", gallery]) == 0
    listing = _run_json(capsys, ["gallery", "list", "--gallery", gallery, "--json"])
    assert [e["identity"] for e in listing["identities"]] == sorted(PEOPLE)

    known = samples / "photos" / "Colin_Powell_0003.jpg"  # not enrolled: 0001 and 0002 were
    stranger = samples / "photos" / f"{STRANGER}_0001.jpg"
    out = tmp_path / "who.csv"
    argv = ["gallery", "identify", str(known), str(stranger), str(bad_files["empty"]), "--gallery", gallery, "--csv", str(out), "--top-k", "3"]
    assert main(argv) == 2  # a bad file named on the command line, after the rest was done
    rows = {Path(r["path"]).name: r for r in csv.DictReader(open(out))}
    assert rows[known.name]["identity"] == "Colin_Powell"
    assert rows[stranger.name]["identity"] == "unknown"
    assert len(rows[known.name]["candidates"].split(";")) == 3
    assert str(bad_files["empty"]) in capsys.readouterr().err  # counted skip, batch still done

    assert main(["gallery", "remove", "Colin_Powell", "--gallery", gallery]) == 0
    listing = _run_json(capsys, ["gallery", "list", "--gallery", gallery, "--json"])
    assert "Colin_Powell" not in [e["identity"] for e in listing["identities"]]


def test_gallery_list_names_the_embedders_that_can_search_it(samples: Path, tmp_path: Path, capsys) -> None:
    gallery = str(tmp_path / "gallery")
    assert main(["gallery", "enroll", str(samples / "people"), "--gallery", gallery, "--embedder", "dlib-onnx"]) == 0
    capsys.readouterr()
    assert main(["gallery", "list", "--gallery", gallery]) == 0
    summary = capsys.readouterr().out.splitlines()[-1]
    named = re.search(r"\(--embedder ([\w-]+(?: or [\w-]+)*);", summary)
    assert named, summary
    embedders = named.group(1).split(" or ")
    assert "dlib-onnx" in embedders  # the one it was enrolled with
    # Every embedder the line names searches the gallery; one it does not name is refused.
    photo = str(samples / "photos" / "Colin_Powell_0003.jpg")
    for name in [*embedders, "dlib-int8"]:
        code = main(["gallery", "identify", photo, "--gallery", gallery, "--embedder", name])
        assert code == (0 if name in embedders else 2), name
    assert "gallery was built with embedder" in capsys.readouterr().err
    # The JSON listing names the same embedders, and the space their vectors share.
    listing = _run_json(capsys, ["gallery", "list", "--gallery", gallery, "--json"])
    assert sorted(listing["embedders"]) == sorted(embedders)
    assert {get_embedder(name).space for name in embedders} == {listing["space"]}


def test_gallery_errors(tmp_path: Path, samples: Path, capsys) -> None:
    image = _images(samples / "people", "Colin_Powell")[0]
    assert main(["gallery", "identify", str(image), "--gallery", str(tmp_path / "none")]) == 2
    assert "no gallery" in capsys.readouterr().err
    assert main(["gallery", "remove", "Nobody", "--gallery", str(tmp_path / "none")]) == 2
    capsys.readouterr()
    # A count that cannot be one is the user's error, refused before any work: one line, exit 2.
    for count in ("0", "-3"):
        with pytest.raises(SystemExit) as stopped:
            main(["gallery", "identify", str(image), "--gallery", str(tmp_path / "none"), "--top-k", count])
        assert stopped.value.code == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert f"--top-k: expected a whole number of at least 1, not {count}" in line and "--help" in line


def test_eval_recognition_writes_metrics_and_report(facecom_b: Path, tmp_path: Path, capsys) -> None:
    data = _identity_tree(tmp_path / "ids", facecom_b, PEOPLE, per_person=2, distorted=True)
    out = tmp_path / "eval"
    assert main(["eval", "recognition", str(data), "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    ident, verif = metrics["identification"], metrics["verification"]
    assert set(ident["per_distortion"]) == {"blurred", "foggy", "lowlight", "noisy", "rainy", "resized", "sunny"}
    assert ident["probes"] == 5 * 2 * 7 and 0.5 < ident["top1"] <= 1.0
    assert ident["source_excluded_probes"] == ident["probes"]  # every identity keeps another clean image
    assert 0.5 < verif["auc"] <= 1.0 and set(verif) >= {"auc", "tar_at_far_1pct", "threshold", "accuracy"}
    # Each TAR carries a bootstrap interval around it and the number of different-person pairs
    # its FAR allows (one per probe here): at 0.1% of 70 pairs, fewer than one.
    for name, far in (("1pct", 0.01), ("0.1pct", 0.001)):
        low, high = verif[f"tar_at_far_{name}_ci95"]
        assert 0.0 <= low <= verif[f"tar_at_far_{name}"] <= high <= 1.0
        assert verif[f"impostors_within_far_{name}"] == round(far * verif["pairs"] / 2, 1)
    assert "TAR at FAR 0.1%</td><td>" in (out / "report.html").read_text() and "different-person pairs at that FAR" in (out / "report.html").read_text()
    assert "(95%" in capsys.readouterr().out  # the summary printed gives the interval too
    rows = list(csv.DictReader(open(out / "predictions.csv")))
    assert len(rows) == ident["probes"] and set(rows[0]) == {
        "path", "true_identity", "predicted_identity", "distance", "decision", "threshold", "held_to", "match_kind", "source_photo", "source_agreement",
        "route", "quality", "distortion", "gallery_path", "mate_path", "mate_distance"}
    # Every probe here is a processed copy of an enrolled photo: source matching names it, and
    # top-1 is given with and without it.
    source = metrics["source_match"]
    assert source["enabled"] and source["overall"]["fired_elsewhere"] == 0 and source["overall"]["own_source_rate"] > 0.5
    assert ident["top1_with_source"] >= ident["top1"] and set(ident["per_distortion_with_source"]) == set(ident["per_distortion"])
    for row in rows:
        assert row["match_kind"] in ("face", "source")
        if row["match_kind"] == "source":
            assert row["decision"] == row["true_identity"] and Path(row["source_photo"]).stem in Path(row["path"]).stem
    for row in rows:  # the nearest gallery face is an enrolled image of the predicted identity; the mate one of the true identity
        assert Path(row["gallery_path"]).parent.name == row["predicted_identity"] and Path(row["mate_path"]).parent.name == row["true_identity"]
        assert float(row["mate_distance"]) >= float(row["distance"]) - 1e-6 and row["path"].endswith(f"_{row['distortion']}.jpg")
    page = (out / "report.html").read_text()
    assert page.count('class="strip"') == 7 and "Worst errors" in page and page.count("data:image/jpeg") >= 7 * 2
    for name in ("roc.png", "distances.png", "per_distortion.png", "report.html"):
        assert (out / name).stat().st_size > 1000


def test_eval_recognition_on_folders_of_plain_photos(facecom_b: Path, tmp_path: Path, capsys) -> None:
    """Identity folders of plain photos (LFW's layout, no distortion/ copies) are evaluated by
    default on the cross protocol: each identity's alternate photos enrolled, the others searched."""
    people = [*PEOPLE, STRANGER]
    data = _identity_tree(tmp_path / "ids", facecom_b, people, per_person=4)
    out = tmp_path / "eval"
    assert main(["eval", "recognition", str(data), "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    ident = metrics["identification"]
    assert metrics["protocol"] == "cross" and set(ident["per_distortion"]) == {"clean"}
    assert ident["probes"] == 2 * len(people) and ident["top1"] >= 0.9
    # Other photos of a person are not copies of the enrolled ones: source matching stays silent.
    assert metrics["source_match"]["fired"] == 0
    rows = list(csv.DictReader(open(out / "predictions.csv")))
    searched = {str(image.resolve()) for person in people for image in _images(facecom_b, person)[1:4:2]}
    assert {str((data / Path(row["path"]).parent.name / Path(row["path"]).name).resolve()) for row in rows} == searched
    assert main(["eval", "recognition", str(data), "--protocol", "facecom", "--out", str(tmp_path / "e2")]) == 2
    assert "--protocol cross searches each identity's other photos" in capsys.readouterr().err


def test_identity_lists_as_celeba_ships_them_and_as_csv(facecom_b: Path, tmp_path: Path, capsys) -> None:
    """A list of images and identities instead of folders: CelebA's identity_CelebA.txt
    (``000001.jpg 2880``, images in img_align_celeba/ beside it) to evaluate, and a CSV with
    file and identity columns to enrol."""
    (tmp_path / "img_align_celeba").mkdir()
    lines, rows = [], ["file,identity"]
    for number, person in enumerate(PEOPLE):
        for image in _images(facecom_b, person)[:3]:
            name = f"{len(lines) + 1:06d}.jpg"
            (tmp_path / "img_align_celeba" / name).symlink_to(image.resolve())
            lines.append(f"{name} {1000 + number}")
            rows.append(f"img_align_celeba/{name},{person}")
    (tmp_path / "identity_CelebA.txt").write_text("\n".join(lines) + "\n")
    out = tmp_path / "eval"
    assert main(["eval", "recognition", str(tmp_path / "identity_CelebA.txt"), "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["protocol"] == "cross" and metrics["identification"]["probes"] == len(PEOPLE)
    assert metrics["identification"]["top1"] >= 0.8
    (tmp_path / "people.csv").write_text("\n".join(rows) + "\n")
    gallery = str(tmp_path / "gallery")
    assert main(["gallery", "enroll", str(tmp_path / "people.csv"), "--gallery", gallery]) == 0
    listing = _run_json(capsys, ["gallery", "list", "--gallery", gallery, "--json"])
    assert {e["identity"]: e["faces"] for e in listing["identities"]} == {p: 3 for p in PEOPLE}
    (tmp_path / "broken.txt").write_text("000001.jpg\n")
    assert main(["eval", "recognition", str(tmp_path / "broken.txt"), "--out", str(tmp_path / "e2")]) == 2
    assert "line 1: expected an image and its identity" in capsys.readouterr().err


def test_gallery_from_pgm_faces_decided_by_content(facecom_b: Path, tmp_path: Path, capsys) -> None:
    # A classic face-data layout: greyscale .pgm files (plus a README that is no image), and a
    # JPEG saved under a .jfif name; the format comes from each file's content, not its suffix.
    from PIL import Image

    root = tmp_path / "pgm"
    for person in PEOPLE:
        (root / person).mkdir(parents=True)
        for image in _images(facecom_b, person)[:2]:
            Image.open(image).convert("L").save(root / person / f"{image.stem}.pgm")
    (root / PEOPLE[0] / "README").write_text("faces of one person\n")
    gallery = str(tmp_path / "gallery")
    assert main(["gallery", "enroll", str(root), "--gallery", gallery]) == 0
    assert "README" in capsys.readouterr().err  # a counted skip, not a silent one
    listing = _run_json(capsys, ["gallery", "list", "--gallery", gallery, "--json"])
    assert {e["identity"]: e["faces"] for e in listing["identities"]} == {p: 2 for p in PEOPLE}

    probe = tmp_path / "probe.pgm"
    Image.open(_images(facecom_b, "Colin_Powell")[5]).convert("L").save(probe)
    jfif = tmp_path / "probe.jfif"
    jfif.write_bytes(_images(facecom_b, "Hugo_Chavez")[5].read_bytes())
    out = tmp_path / "who.csv"
    assert main(["gallery", "identify", str(probe), str(jfif), "--gallery", gallery, "--csv", str(out)]) == 0
    rows = {Path(r["path"]).name: r["identity"] for r in csv.DictReader(open(out))}
    assert rows == {"probe.pgm": "Colin_Powell", "probe.jfif": "Hugo_Chavez"}


def test_eval_verification_on_lfws_pairs_txt(facecom_b: Path, tmp_path: Path, capsys) -> None:
    """LFW's own pairs.txt, as LFW ships it: its image folder beside it, named <name>/<name>_<i:04d>.jpg."""
    people = [*PEOPLE, STRANGER]
    lines = ["1\t6"] + [f"{p}\t1\t2" for p in people] + [f"{a}\t3\t{b}\t3" for a, b in zip(people, people[1:] + people[:1])]
    (tmp_path / "pairs.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "lfw").mkdir()
    for person in people:
        (tmp_path / "lfw" / person).symlink_to((facecom_b / person).resolve(), target_is_directory=True)
    out = tmp_path / "verification"
    assert main(["eval", "verification", str(tmp_path / "pairs.txt"), "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["pairs"] == 12 and metrics["pairs_skipped"] == 0 and metrics["auc"] >= 0.9


def test_eval_verification_on_a_pair_list(facecom_b: Path, tmp_path: Path, bad_files, capsys) -> None:
    # Hand-made pairs: two images of one person are the same, of two people different.
    facecom_b = facecom_b.resolve()  # paths in a pair list are relative to the list's folder
    rows = ["img1,img2,same"]
    for person in PEOPLE:
        a, b = _images(facecom_b, person)[:2]
        rows.append(f"{a},{b},1")
    for first, second in zip(PEOPLE, PEOPLE[1:] + PEOPLE[:1]):
        rows.append(f"{_images(facecom_b, first)[0]},{_images(facecom_b, second)[1]},0")
    rows.append(f"{_images(facecom_b, PEOPLE[0])[0]},{bad_files['text']},0")  # an unreadable image: pair skipped
    listing = tmp_path / "pairs.csv"
    listing.write_text("\n".join(rows) + "\n")
    out = tmp_path / "verification"
    assert main(["eval", "verification", str(listing), "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["pairs"], metrics["same_pairs"], metrics["pairs_skipped"]) == (10, 5, 1)
    assert metrics["auc"] == 1.0 and metrics["accuracy_at_threshold"] == 1.0  # these faces are easy
    # Perfectly separated pairs stay so in every resample: the interval is the point.
    assert metrics["tar_at_far_0.1pct"] == 1.0 and metrics["tar_at_far_0.1pct_ci95"] == [1.0, 1.0]
    assert metrics["threshold_source"] == "shipped calibration, FAR 1%"
    written = list(csv.DictReader(open(out / "pairs.csv")))
    assert len(written) == 10 and all(r["same"] == r["predicted_same"] for r in written)
    for name in ("roc.png", "distances.png", "report.html"):
        assert (out / name).stat().st_size > 1000
    # The hardest pairs are shown with both faces, each card naming the pair's two files.
    page = (out / "report.html").read_text()
    shown = re.findall(r'<figure class="face (right|wrong)" data-first="([^"]+)" data-second="([^"]+)"', page)
    assert len(shown) == 10 and {(html.unescape(a), html.unescape(b)) for _, a, b in shown} == {(r["img1"], r["img2"]) for r in written}
    assert str(bad_files["text"]) in capsys.readouterr().err


def test_eval_verification_answers_each_pair_as_verify_does(facecom_b: Path, tmp_path: Path, capsys) -> None:
    """A pair with a blank image is answered ``no face`` (never the same person at any threshold of
    the curves), as ``verify`` answers it, and every pair's answer in pairs.csv is the one
    ``facesuite verify --json`` prints for the same two images."""
    from PIL import Image

    blank = tmp_path / "blank.png"
    Image.new("RGB", (250, 250), (128, 128, 128)).save(blank)
    colin, hugo = _images(facecom_b.resolve(), "Colin_Powell"), _images(facecom_b.resolve(), "Hugo_Chavez")
    pairs = [(colin[0], colin[1], 1), (hugo[0], hugo[1], 1), (colin[0], hugo[0], 0), (colin[2], blank, 1), (blank, hugo[2], 0)]
    listing = tmp_path / "pairs.csv"
    listing.write_text("img1,img2,same\n" + "".join(f"{a},{b},{same}\n" for a, b, same in pairs))
    out = tmp_path / "verification"
    assert main(["eval", "verification", str(listing), "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    written = list(csv.DictReader(open(out / "pairs.csv", newline="")))
    assert metrics["no_face_pairs"] == 2 and [r["decision"] for r in written][3:] == ["no face", "no face"]
    assert all(r["distance"] == "" and r["predicted_same"] == "0" for r in written[3:])
    # The no-face genuine pair is a miss at every threshold: accuracy 4 of 5 at the operating point.
    assert metrics["accuracy_at_threshold"] == pytest.approx(4 / 5)
    capsys.readouterr()
    for row in written:
        assert main(["verify", row["img1"], row["img2"], "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["decision"] == row["decision"], row


def test_eval_verification_reads_pair_lists_as_data_sets_write_them(facecom_b: Path, tmp_path: Path, capsys) -> None:
    """Pair lists without a header (``img1 img2 1`` lines split on white space, relative paths) and
    with other column names (tab-separated ``path1 path2 label``) give the same pairs; a line
    that is not a pair is one error line naming it, exit 2."""
    for person in PEOPLE:
        (tmp_path / person).symlink_to((facecom_b / person).resolve(), target_is_directory=True)
    same = [(_images(tmp_path, p)[0], _images(tmp_path, p)[1], "1") for p in PEOPLE]
    different = [(_images(tmp_path, a)[0], _images(tmp_path, b)[1], "0") for a, b in zip(PEOPLE, PEOPLE[1:] + PEOPLE[:1])]
    relative = [(a.relative_to(tmp_path), b.relative_to(tmp_path), label) for a, b, label in same + different]
    listings = {"pairs.txt": "\n".join(f"{a} {b} {label}" for a, b, label in relative),
                "pairs.tsv": "path1\tpath2\tlabel\n" + "\n".join(f"{a}\t{b}\t{label}" for a, b, label in same + different)}
    results = []
    for name, text in listings.items():
        (tmp_path / name).write_text(text + "\n")
        out = tmp_path / name.replace(".", "_")
        assert main(["eval", "verification", str(tmp_path / name), "--out", str(out)]) == 0
        results.append(json.loads((out / "metrics.json").read_text()))
        assert (results[-1]["pairs"], results[-1]["same_pairs"], results[-1]["pairs_skipped"]) == (10, 5, 0)
    assert results[0]["auc"] == results[1]["auc"] and results[0]["accuracy_at_threshold"] == results[1]["accuracy_at_threshold"]
    (tmp_path / "bad.txt").write_text(listings["pairs.txt"] + f"\n{relative[0][0]} {relative[0][1]} maybe\n")
    capsys.readouterr()
    assert main(["eval", "verification", str(tmp_path / "bad.txt"), "--out", str(tmp_path / "bad")]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "line 11: expected two images and same" in error[0] and "bad.txt" in error[0]


class _RunsCode:
    """What a hostile pickle carries: unpickling it would create ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def test_eval_verification_reads_a_pair_bin(facecom_b: Path, tmp_path: Path, capsys) -> None:
    """A verification .bin as the field ships LFW or AgeDB-30 (a pickle of the encoded images, two
    per pair, and the labels): its images are written to OUT/images and evaluated; a .bin that
    would run code, or that is not (images, labels), is one line, exit 2."""
    import pickle

    same = [(_images(facecom_b, p)[0], _images(facecom_b, p)[1], True) for p in PEOPLE]
    different = [(_images(facecom_b, a)[0], _images(facecom_b, b)[1], False) for a, b in zip(PEOPLE, PEOPLE[1:] + PEOPLE[:1])]
    encoded = [path.read_bytes() for a, b, _ in same + different for path in (a, b)]
    labels = [label for _, _, label in same + different]
    results = []
    # Python 2's pickle protocol (the field's older files) and Python 3's newest.
    for name, content, protocol in (("protocol2.bin", (encoded, labels), 2), ("protocol5.bin", (encoded, labels), 5)):
        (tmp_path / name).write_bytes(pickle.dumps(content, protocol=protocol))
        out = tmp_path / name.replace(".", "_")
        assert main(["eval", "verification", str(tmp_path / name), "--out", str(out)]) == 0
        results.append(json.loads((out / "metrics.json").read_text()))
        assert (results[-1]["pairs"], results[-1]["same_pairs"], results[-1]["pairs_skipped"]) == (10, 5, 0)
        assert sorted(p.read_bytes() for p in (out / "images" / Path(name).stem).iterdir()) == sorted(encoded)
    assert results[0]["auc"] == results[1]["auc"] >= 0.9
    hostile = tmp_path / "ran"
    (tmp_path / "hostile.bin").write_bytes(pickle.dumps((encoded[:2], [_RunsCode(hostile)]), protocol=2))
    (tmp_path / "array.bin").write_bytes(pickle.dumps((encoded[:2], np.array([True])), protocol=2))
    (tmp_path / "odd.bin").write_bytes(pickle.dumps((encoded[:3], [True]), protocol=2))
    (tmp_path / "text_labels.bin").write_bytes(pickle.dumps((encoded[:2], ["0"]), protocol=2))
    for name, message in (("hostile.bin", "it holds __builtin__.getattr"), ("array.bin", "it holds numpy"),
                          ("odd.bin", "two images per label: 3 images, 1 labels"),
                          ("text_labels.bin", "encoded images and True/False labels")):
        capsys.readouterr()
        assert main(["eval", "verification", str(tmp_path / name), "--out", str(tmp_path / "bad")]) == 2
        error = capsys.readouterr().err.strip().splitlines()
        assert len(error) == 1 and message in error[0] and name in error[0], error
    assert not hostile.exists()


def test_tar_interval_narrows_with_more_pairs(facecom_b: Path) -> None:
    """On real distances (a clean photo against its distorted copies, and against other people's
    photos), resampling four copies of the same pairs gives a narrower interval around the same
    TAR: the interval measures how much the figure rests on."""
    from facesuite.analysis import FaceAnalysis
    from facesuite.evaluate.verification import tar_figures

    analysis = FaceAnalysis(gender=None)
    clean = {person: _images(facecom_b, person)[0] for person in PEOPLE}
    copies = {person: sorted((facecom_b / person / "distortion").glob(f"{clean[person].stem}_*.jpg")) for person in PEOPLE}
    vectors, crops, _ = analysis.embed([clean[p] for p in PEOPLE] + [c for p in PEOPLE for c in copies[p]])
    owner = {str(crop.path): person for person in PEOPLE for crop in crops if crop.path in (clean[person], *copies[person])}
    anchors = {owner[str(crop.path)]: vectors[row] for row, crop in enumerate(crops) if crop.path == clean[owner[str(crop.path)]]}
    distances, labels = [], []
    for row, crop in enumerate(crops):
        if crop.path != clean[owner[str(crop.path)]]:
            for person, anchor in anchors.items():
                distances.append(1 - float(vectors[row] @ anchor))
                labels.append(int(person == owner[str(crop.path)]))
    distances, labels = np.array(distances), np.array(labels)
    once, four = tar_figures(distances, labels), tar_figures(np.tile(distances, 4), np.tile(labels, 4))
    assert 0.0 < once["tar_at_far_1pct"] < 1.0  # sunny copies are missed: the figure is not trivially 1
    assert once["tar_at_far_1pct"] == pytest.approx(four["tar_at_far_1pct"])
    width = {name: r["tar_at_far_1pct_ci95"][1] - r["tar_at_far_1pct_ci95"][0] for name, r in (("once", once), ("four", four))}
    assert 0.0 < width["four"] < width["once"] and four["impostors_within_far_1pct"] == 4 * once["impostors_within_far_1pct"]


@pytest.mark.parametrize("protocol", ["facecom", "cross"])
def test_eval_recognition_of_one_identity_is_bad_input(facecom_b: Path, tmp_path: Path, capsys, protocol: str) -> None:
    """One enrolled identity leaves no different-person pairs to draw: a one-line error naming the
    folder, before anything is embedded (it used to search for an impostor forever)."""
    data = _identity_tree(tmp_path / "ids", facecom_b, PEOPLE[:1], per_person=3, distorted=True)
    assert main(["eval", "recognition", str(data), "--out", str(tmp_path / "eval"), "--protocol", protocol]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert error == [f"facesuite: error: {data}: a recognition evaluation needs at least two identities in the gallery"]
    assert not (tmp_path / "eval").exists()
    # Calibrating on one identity is the same mistake: no different-person pairs.
    assert main(["calibrate", str(data), "--save-to", str(tmp_path / "calibration")]) == 2
    assert "at least two identities to calibrate" in capsys.readouterr().err


def test_eval_recognition_with_no_readable_gallery_photo_is_bad_input(facecom_b: Path, tmp_path: Path, capsys) -> None:
    """Every gallery photo unreadable (here: links whose files are gone): one line naming the
    folder, exit 2, not an internal error."""
    data = _identity_tree(tmp_path / "ids", facecom_b, PEOPLE[:2], per_person=1, distorted=True)
    for photo in data.glob("*/*.jpg"):
        photo.unlink()
        photo.symlink_to(tmp_path / "gone.jpg")
    assert main(["eval", "recognition", str(data), "--out", str(tmp_path / "eval")]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("facesuite: error: ") and str(data) in error and "internal" not in error


def test_eval_verification_names_a_folder_given_as_the_pair_list(tmp_path: Path, capsys) -> None:
    """A folder where the pair list goes, and a missing list: one line each naming it, exit 2."""
    for given, said in ((tmp_path, "a folder, not a pair list"), (tmp_path / "missing.csv", "no such pair list")):
        assert main(["eval", "verification", str(given), "--out", str(tmp_path / "out")]) == 2
        error = capsys.readouterr().err.strip().splitlines()
        assert len(error) == 1 and said in error[0] and str(given) in error[0]
    # A list whose images are all missing names the list, one of the images and where they are looked for.
    listing = tmp_path / "lists" / "pairs.csv"
    listing.parent.mkdir()
    listing.write_text("a.jpg,b.jpg,1\nc.jpg,d.jpg,0\n")
    assert main(["eval", "verification", str(listing), "--out", str(tmp_path / "out")]) == 2
    error = [line for line in capsys.readouterr().err.splitlines() if line.strip() and "img/s" not in line]
    assert len(error) == 1 and str(listing) in error[0] and str(tmp_path / "lists" / "a.jpg") in error[0]
    assert "list's folder" in error[0]
