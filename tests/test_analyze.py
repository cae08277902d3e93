"""`analyze` and distortion routing on real photos (the sample photos and FACECOM; shipped models)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from facesuite.cli import main
from facesuite.config import MODELS_DIR
from facesuite.errors import InputError

PERSON = "Colin_Powell"


def _distorted(root: Path, kind: str, n: int = 4) -> list[Path]:
    return sorted((root / PERSON / "distortion").glob(f"*_{kind}.jpg"))[:n]


def _route_names() -> dict[str, str]:
    """What each type's route is called in `analyze`'s output, from the shipped table itself
    (models/routing/routes.json): its restoration step, then `mirror` when the face is also
    embedded mirrored, joined by `+`; `plain` for neither."""
    table = json.loads((MODELS_DIR / "routing" / "routes.json").read_text(encoding="utf-8"))["routes"]
    names = {}
    for kind, spec in table.items():
        steps = ([spec["restore"]] if spec["restore"] != "none" else []) + (["mirror"] if spec.get("mirror") else [])
        names[kind] = "+".join(steps) or "plain"
    return names


ROUTE_OF = _route_names()


def _true_type(path: Path) -> str:
    """The distortion a FACECOM file was made with, from its name: `distortion/<stem>_<type>.jpg`."""
    return path.stem.rsplit("_", 1)[-1] if path.parent.name == "distortion" else "clean"


def test_routes_follow_the_detected_distortion(facecom_b: Path, capsys) -> None:
    images = [p for kind in ROUTE_OF if kind != "clean" for p in _distorted(facecom_b, kind, 2)]
    images += sorted((facecom_b / PERSON).glob("*.jpg"))[:2]
    assert main(["analyze", *map(str, images), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert sorted(Path(r["path"]).name for r in rows) == sorted(p.name for p in images)
    # Below the detector's calibrated floor a face takes the plain route whatever its type.
    floor = json.loads((MODELS_DIR / "distortion" / "config.json").read_text())["route_floor"]
    sure = [r for r in rows if r["distortion_probability"] >= floor]
    right = [r for r in sure if r["distortion"] == _true_type(Path(r["path"]))]
    # The detector must be right and sure often enough, and on most types, for the route check to
    # mean something.
    assert len(right) >= 0.6 * len(rows), [(Path(r["path"]).name, r["distortion"], r["distortion_probability"]) for r in rows]
    assert len({r["distortion"] for r in right}) >= 6
    for row in right:
        assert row["route"] == ROUTE_OF[_true_type(Path(row["path"]))], row
    for row in rows:  # a wrong detection still takes the route of the type it was given, when sure
        assert row["route"] == (ROUTE_OF[row["distortion"]] if row in sure else "plain"), row


def test_analyze_reports_every_field(samples: Path, capsys) -> None:
    image = sorted((samples / "people" / PERSON).glob("*.jpg"))[0]
    assert main(["analyze", str(image), "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert set(row) >= {"path", "box", "fallback", "distortion", "distortion_probability", "route", "gender", "p_female"}
    assert row["gender"] == "male" and row["fallback"] is False and row["identity"] is None


def test_analyze_prints_each_list_of_numbers_on_one_line(samples: Path, capsys) -> None:
    """The default output is the JSON of ``--json``, indented, with a box or an age range on one line."""
    image = sorted((samples / "people" / PERSON).glob("*.jpg"))[0]
    assert main(["analyze", str(image), "--json"]) == 0
    compact = capsys.readouterr().out
    assert main(["analyze", str(image)]) == 0
    shown = capsys.readouterr().out
    assert json.loads(shown) == json.loads(compact)
    [row] = json.loads(shown)
    lines = shown.splitlines()
    assert f'    "box": {json.dumps(row["box"])},' in lines
    assert f'    "age_range": {json.dumps(row["age_range"])}' in lines
    assert len(lines) == len(row) + 4  # one line a field, in braces and brackets


@pytest.mark.parametrize("box", ["2,2,0,0", "0.5,0.5,0,0.4", "0.5,0.5,1.5,0.4", "a,b,c,d"])
def test_a_fallback_box_outside_the_image_is_refused(samples: Path, capsys, box: str) -> None:
    image = sorted((samples / "people" / PERSON).glob("*.jpg"))[0]
    with pytest.raises(SystemExit) as exit_info:
        main(["analyze", str(image), "--fallback-box", box])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "--fallback-box" in error[0]


def test_a_model_of_the_other_kind_is_named_as_such(samples: Path, capsys) -> None:
    from facesuite.classify.age import DEFAULT_AGE_DIR
    from facesuite.classify.gender_head import DEFAULT_GENDER_DIR

    image = sorted((samples / "people" / PERSON).glob("*.jpg"))[0]
    for option, folder, said in (("--gender-model", DEFAULT_AGE_DIR, "holds an age model"),
                                 ("--age-model", DEFAULT_GENDER_DIR, "holds a gender model")):
        assert main(["analyze", str(image), option, str(folder)]) == 2
        error = capsys.readouterr().err.strip().splitlines()
        assert len(error) == 1 and said in error[0] and str(folder) in error[0]


def test_analyze_with_gallery_names_the_person(facecom_b: Path, tmp_path: Path, capsys) -> None:
    people = tmp_path / "people"
    for person in (PERSON, "Hugo_Chavez", "Kofi_Annan"):
        (people / person).mkdir(parents=True)
        for image in sorted((facecom_b / person).glob("*.jpg"))[:2]:
            (people / person / image.name).symlink_to(image.resolve())
    gallery = tmp_path / "gallery"
    assert main(["gallery", "enroll", str(people), "--gallery", str(gallery)]) == 0
    # Copies of images that were not enrolled: a new photo of an enrolled person. Lightly distorted
    # ones are named; heavily distorted ones may be held back as unknown, never given another name.
    light, heavy = _distorted(facecom_b, "resized", 8)[-1], _distorted(facecom_b, "rainy", 8)[-1]
    capsys.readouterr()
    assert main(["analyze", str(light), str(heavy), "--gallery", str(gallery), "--json"]) == 0
    rows = {Path(r["path"]).name: r for r in json.loads(capsys.readouterr().out)}
    assert rows[light.name]["identity"] == PERSON
    assert rows[heavy.name]["identity"] in (PERSON, "unknown")


def test_analyze_bad_input(tmp_path: Path, bad_files, samples: Path, capsys) -> None:
    assert main(["analyze", str(tmp_path / "missing.jpg")]) == 2
    assert "missing.jpg" in capsys.readouterr().err
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "good.jpg").write_bytes(sorted((samples / "people" / PERSON).glob("*.jpg"))[0].read_bytes())
    (folder / "bad.jpg").write_bytes(bad_files["truncated"].read_bytes())
    out = tmp_path / "rows.csv"
    assert main(["analyze", str(folder), "--csv", str(out)]) == 0
    captured = capsys.readouterr()
    assert "bad.jpg" in captured.err and "1 skipped" in captured.out
    assert len(out.read_text().strip().splitlines()) == 2


def test_a_mirrored_route_averages_the_face_and_its_mirror_image(facecom_b: Path) -> None:
    """A route with ``mirror`` embeds the restored chip and its mirror image and averages the two
    (renormalised); a face on an unmirrored route is embedded as it is."""
    import numpy as np

    from facesuite.analysis import FaceAnalysis
    from facesuite.embed import l2_normalise
    from facesuite.route.restore import RESTORERS

    analysis = FaceAnalysis(gender=None, source_match=False)
    crops, _ = analysis.crops([_distorted(facecom_b, "noisy", 1)[0], sorted((facecom_b / PERSON).glob("*.jpg"))[0]])
    chips = [crop.chip for crop in crops]
    routed, _, _ = analysis.router.embed(chips, ["noisy", "clean"])
    assert analysis.router.route("noisy").mirror and not analysis.router.route("clean").mirror
    noisy_chip = RESTORERS[analysis.router.route("noisy").restore](chips[0])
    expected = l2_normalise(analysis.embedder.embed([noisy_chip]) + analysis.embedder.embed([np.ascontiguousarray(noisy_chip[:, ::-1])]))
    np.testing.assert_allclose(routed[0], expected[0], atol=1e-5)
    np.testing.assert_allclose(routed[1], analysis.embedder.embed([chips[1]])[0], atol=1e-5)
    # The mirror moves the embedding (it is not a no-op), but not far: the same face.
    unmirrored = analysis.embedder.embed([noisy_chip])[0]
    assert 1e-4 < 1.0 - float(unmirrored @ routed[0]) < 0.05


def test_a_routing_table_naming_an_embedding_adapter_is_refused(tmp_path: Path) -> None:
    from facesuite.embed import get_embedder
    from facesuite.route.routes import Router

    table = {"routes": {"noisy": {"restore": "cnn-noisy", "adapter": "adapter_noisy.npz"}, "clean": {"restore": "none"}}}
    (tmp_path / "routes.json").write_text(json.dumps(table), encoding="utf-8")
    with pytest.raises(InputError, match="embedding adapters are not supported .routes noisy."):
        Router.load(get_embedder("default"), tmp_path)
    table["routes"]["noisy"]["adapter"] = None  # as the shipped table still spells "no adapter"
    (tmp_path / "routes.json").write_text(json.dumps(table), encoding="utf-8")
    assert Router.load(get_embedder("default"), tmp_path).route("noisy").describe() == "cnn-noisy"
