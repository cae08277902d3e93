"""The sunny route's gallery view: rendering, routing, and what it does to real dev-split faces
(identities never used to fit it; skipped when FACECOM is absent)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from facesuite.analysis import Face, FaceAnalysis
from facesuite.config import data_root
from facesuite.data import read_identity_folders, read_split
from facesuite.embed import get_embedder
from facesuite.errors import InputError
from facesuite.evaluate.recognition import EmbeddedSet
from facesuite.io import load_image
from facesuite.route.routes import DEFAULT_ROUTES, Router
from facesuite.route.views import render_overexposed

FACECOM = data_root() / "facecom" / "task_b" / "train"
DEV_SPLIT = data_root() / "splits" / "facecom_dev_identities.txt"
needs_data = pytest.mark.skipif(
    not FACECOM.is_dir() or not DEV_SPLIT.is_file(),
    reason=f"FACECOM task_b or the dev split not found under {data_root()} (set FACESUITE_DATA)",
)


@pytest.fixture(scope="module")
def analysis() -> FaceAnalysis:
    return FaceAnalysis("dlib-torch", gender=None)


@pytest.fixture(scope="module")
def dev_sunny(analysis):
    """40 dev identities: their clean crops and identities, and their sunny copies' crops."""
    dataset = read_identity_folders(FACECOM)
    chosen = sorted(read_split(DEV_SPLIT) & set(dataset.identities))[:40]
    part = dataset.subset(set(chosen))
    clean, _ = analysis.crops([path for path, _ in part.clean])
    identity_of = {str(path): identity for path, identity in part.clean}
    copies = [d for d in part.distorted if d.distortion == "sunny"]
    sunny, _ = analysis.crops([d.path for d in copies])
    return clean, np.asarray([identity_of[str(c.path)] for c in clean]), sunny, np.asarray([d.identity for d in copies]), copies


OTHER_TYPES = ("blurred", "foggy", "lowlight", "noisy", "rainy", "resized")


@needs_data
def _enroll(analysis: FaceAnalysis, gallery, identity: str, vectors: np.ndarray, crops: list, sources: list[str]) -> int:
    """Enroll precomputed vectors into a gallery store, its views rendered from the crops."""
    return gallery.enroll(identity, vectors, sources, analysis.view_embeddings(crops, set(gallery.views)))


def test_shipped_routes_send_sunny_faces_and_only_them_to_the_gallery_view(dev_sunny, analysis, tmp_path: Path):
    """Through behaviour, not the table: real copies of every type go through the shipped routes
    (distortion detector included: it tells sunny copies from the rest without a miss on these)
    to a stored gallery; sunny faces are answered from the sunny view, every other face (clean
    ones too) by the clean gallery, distance for distance."""
    clean, gallery_ids, _, _, copies = dev_sunny
    chosen = copies[:: len(copies) // 5][:5]  # sunny copies of 5 clean images, studio and LFW-style
    paths, is_sunny = [], []
    for copy in chosen:  # each with its clean source and its copies of every other type
        siblings = [copy.path.with_name(copy.path.name.replace("_sunny.jpg", f"_{kind}.jpg")) for kind in OTHER_TYPES]
        paths += [copy.path, copy.source, *siblings]
        is_sunny += [True] + [False] * (1 + len(siblings))
    probes, skipped = analysis.crops(paths)
    assert not skipped and [c.path for c in probes] == paths
    vectors, views = analysis.embed_crops(probes)

    identities = {copy.identity for copy in chosen}
    members = [c for c, i in zip(clean, gallery_ids) if i in identities]
    member_ids = np.asarray([i for i in gallery_ids if i in identities])
    member_vectors = analysis.embedder.embed([c.chip for c in members])
    with analysis.open_gallery(tmp_path / "gallery", create=True) as facade:
        gallery = facade.store
        assert gallery.views == ("sunny",)  # the shipped routes use one view, the sunny one
        for identity in identities:
            rows = [i for i, g in enumerate(member_ids) if g == identity]
            _enroll(analysis, gallery, identity, member_vectors[rows], [members[i] for i in rows],
                            [str(members[i].path) for i in rows])
        answers = [m[0] for m in gallery.identify(vectors, views=views)]
    # The clean gallery's answer, worked out here: nearest enrolled face by cosine distance.
    plain = 1.0 - vectors @ member_vectors.T
    for answer, distances, sunny, path in zip(answers, plain, is_sunny, paths):
        if sunny:  # answered from the view: not the clean gallery's nearest distance
            assert abs(answer.distance - distances.min()) > 1e-3, path
        else:
            assert answer.distance == pytest.approx(distances.min(), abs=1e-5), path
            assert answer.identity == member_ids[distances.argmin()], path


def test_unknown_gallery_view_is_an_input_error_naming_the_table(tmp_path: Path):
    table = {"embedder": "dlib-torch", "routes": {"sunny": {"restore": "none", "gallery_view": "snow"}}}
    (tmp_path / "routes.json").write_text(json.dumps(table))
    with pytest.raises(InputError, match="unknown gallery view") as error:
        Router.load(get_embedder("dlib-torch"), tmp_path)
    assert "routes.json" in str(error.value)


@needs_data
def test_rendering_reproduces_facecom_sunny_copies_where_the_recogniser_looks(dev_sunny, analysis):
    clean, _, _, _, copies = dev_sunny
    face_of = {str(c.path): c.face for c in clean}
    spec = analysis.embedder.chip_spec
    rendered_error, clean_error = [], []
    for copy in copies[::3]:  # studio and LFW-style frames alike
        face = face_of[str(copy.source)]
        source = load_image(copy.source)

        def chip(image: np.ndarray, face=face) -> np.ndarray:
            return face.chip(image, spec.size, spec.padding).astype(np.float32)

        real = chip(load_image(copy.path))
        rendered_error.append(np.abs(chip(render_overexposed(source, face.box)) - real).mean())
        clean_error.append(np.abs(chip(source) - real).mean())
    assert np.mean(rendered_error) < 0.2 * np.mean(clean_error)


@needs_data
def test_sunny_faces_find_their_identity_in_the_gallery_view(dev_sunny, analysis):
    clean, gallery_ids, sunny, sunny_ids, _ = dev_sunny
    gallery = analysis.embedder.embed([c.chip for c in clean])
    view = analysis.view_embeddings(clean)["sunny"]
    probes = analysis.embedder.embed([c.chip for c in sunny])
    top1_clean = (gallery_ids[np.argmax(probes @ gallery.T, axis=1)] == sunny_ids).mean()
    top1_view = (gallery_ids[np.argmax(probes @ view.T, axis=1)] == sunny_ids).mean()
    assert top1_view > top1_clean + 0.05

    # The view changes the ranking, not the distance scale: mapped impostor distances sit where
    # sunny faces' impostor distances to the clean gallery do, so the threshold keeps its meaning.
    route = Router.load(analysis.embedder, DEFAULT_ROUTES).route("sunny")
    data = EmbeddedSet(
        gallery_paths=[c.path for c in clean], gallery_ids=list(gallery_ids), gallery=gallery,
        probe_paths=[c.path for c in sunny], probe_ids=list(sunny_ids), probe_types=["sunny"] * len(sunny),
        probe_sources=[c.path for c in sunny], probes=probes,
        gallery_views={"sunny": view}, probe_views=["sunny"] * len(sunny), view_scales={"sunny": route.view_distance},
    )
    impostor = sunny_ids[:, None] != gallery_ids[None, :]
    mapped, plain = data.distances()[impostor], (1.0 - probes @ gallery.T)[impostor]
    assert abs(mapped.mean() - plain.mean()) < 0.03
    assert (1.0 - probes @ view.T)[impostor].mean() < plain.mean() - 0.03  # unmapped, the view is much closer


def test_api_slices_merge_with_their_gallery_views():
    from facesuite.serve.jobs import merge_embedded

    rng = np.random.default_rng(0)

    def unit(n: int) -> np.ndarray:
        v = rng.normal(size=(n, 8)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    def part(tag: str, views: list[str | None]) -> EmbeddedSet:
        return EmbeddedSet(
            gallery_paths=[Path(f"{tag}g{i}") for i in range(3)], gallery_ids=[f"{tag}{i}" for i in range(3)],
            gallery=unit(3), probe_paths=[Path(f"{tag}p{i}") for i in range(len(views))],
            probe_ids=[f"{tag}0"] * len(views), probe_types=["sunny"] * len(views),
            probe_sources=[Path(f"{tag}g0")] * len(views), probes=unit(len(views)),
            gallery_views={"sunny": unit(3)}, probe_views=views, view_scales={"sunny": lambda d: d + 1.0},
        )

    a, b = part("a", ["sunny", None]), part("b", [None, "sunny"])
    merged, _, _ = merge_embedded([(a, [], {}), (b, [], {})])
    distances = merged.distances()
    view = np.concatenate([a.gallery_views["sunny"], b.gallery_views["sunny"]])
    assert np.allclose(distances[0], 2.0 - a.probes[0] @ view.T)  # sunny probe: scaled view distances
    assert np.allclose(distances[1], 1.0 - a.probes[1] @ merged.gallery.T)  # others: the clean gallery
    assert np.allclose(distances[3], 2.0 - b.probes[1] @ view.T)


@needs_data
def test_stored_gallery_answers_sunny_faces_from_its_view_and_keeps_it_in_step(dev_sunny, analysis, tmp_path: Path):
    clean, gallery_ids, sunny, sunny_ids, _ = dev_sunny
    folder = tmp_path / "gallery"
    with analysis.open_gallery(folder, create=True).store as store:
        assert store.views == ("sunny",)  # the shipped routes use one view, kept in the same store
        for identity in np.unique(gallery_ids):
            rows = [i for i, g in enumerate(gallery_ids) if g == identity]
            crops = [clean[i] for i in rows]
            _enroll(analysis, store, identity, analysis.embedder.embed([c.chip for c in crops]), crops,
                    [str(c.path) for c in crops])
        with pytest.raises(ValueError, match="keeps views"):  # a write without its view is refused
            store.enroll("someone_new", analysis.embedder.embed([clean[0].chip]), ["x.jpg"])
    probes = analysis.embedder.embed([c.chip for c in sunny])
    faces = [Face(box=c.face.box, landmarks=c.face.landmarks, det_score=c.face.score, fallback=c.face.fallback,
                  distortion="sunny", embedding=vector) for c, vector in zip(sunny, probes)]
    with analysis.open_gallery(folder) as gallery:
        assert gallery.store.views == ("sunny",) and len(gallery.list()) == len(np.unique(gallery_ids))
        plain = [m[0].identity for m in gallery.store.identify(probes)]
        viewed = gallery.candidates(faces)
        assert np.mean([m[0].identity for m in viewed] == sunny_ids) > np.mean(plain == sunny_ids) + 0.05
        # mapped onto the clean scale: the one threshold keeps its meaning
        assert np.median([m[0].distance for m in viewed]) > 0.09
        gone = str(gallery_ids[0])
        gallery.remove(gone)
        # The identity's view rows went in the same delete: no sunny face can still be called it.
        assert gone not in {m.identity for found in gallery.candidates(faces, top_k=5) for m in found}
