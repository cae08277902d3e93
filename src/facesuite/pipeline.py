"""One object that loads the models once and turns image files into face results.

    pipeline = FacePipeline()                     # MTCNN + distortion routing + default embedder
    result = pipeline.verify("a.jpg", "b.jpg")    # distance, same, threshold
    vectors, crops, skipped = pipeline.embed_paths(paths)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from facesuite.detect import DetectorSettings
from facesuite.detect.extract import Crop, FaceExtractor, Skipped
from facesuite.embed import Embedder, cosine_distance, get_embedder
from facesuite.embed.calibration import load_threshold
from facesuite.errors import InputError


@dataclass
class Verification:
    distance: float
    same: bool
    threshold: float
    threshold_source: str
    fallback: tuple[bool, bool]

    def to_dict(self) -> dict:
        return {
            "distance": round(self.distance, 6),
            "same": self.same,
            "threshold": round(self.threshold, 6),
            "threshold_source": self.threshold_source,
            "fallback": list(self.fallback),
        }


class FacePipeline:
    """Detector + aligner + (routed) embedder, loaded once and reused for every image.

    With ``routes`` (``"default"``: the shipped table; or a routing folder) each face's distortion
    is named by the distortion detector and the face is embedded through that type's route
    (restoration step and/or embedding adapter, ``facesuite.distortion.routing``); clean faces
    take the plain embedder. ``routes=None`` embeds every face with the plain embedder.
    """

    def __init__(
        self,
        embedder: str | Embedder = "default",
        detector: DetectorSettings | None = None,
        use_cache: bool = True,
        threshold: float | None = None,
        routes: str | Path | None = "default",
    ) -> None:
        self.embedder = get_embedder(embedder) if isinstance(embedder, str) else embedder
        self.extractor = FaceExtractor(detector, use_cache=use_cache)
        self.routes = routes
        self._distortion = None
        self._router = None
        if threshold is None:
            self.threshold, self.threshold_source = load_threshold(self.embedder.name, self.embedder.default_threshold)
        else:
            self.threshold, self.threshold_source = threshold, "given threshold"

    def crops(self, paths: Sequence[str | Path], progress: str | None = None) -> tuple[list[Crop], list[Skipped]]:
        return self.extractor.crops(paths, self.embedder.chip_spec, progress)

    def embed_crops(self, crops: Sequence[Crop]) -> np.ndarray:
        return self.embed_with_views(crops)[0]

    def embed_with_views(self, crops: Sequence[Crop]) -> tuple[np.ndarray, list[str | None]]:
        """(embeddings, per crop the gallery view its route compares with, or None)."""
        if self.routes is None:
            return self.embedder.embed([crop.chip for crop in crops]), [None] * len(crops)
        routed, _, kinds, _ = self.route_crops(crops)
        return routed, self.views_of([kind.label for kind in kinds])

    def views_of(self, labels: Sequence[str]) -> list[str | None]:
        """The gallery view each distortion label's route compares with (None: the clean gallery)."""
        return [self.router.route(label).gallery_view for label in labels]

    def open_gallery(self, uri: str | Path, create: bool = False):
        """The gallery at ``uri`` with the views this pipeline's routes use
        (:class:`~facesuite.gallery_views.ViewedGallery`); ``create`` makes it if absent."""
        from facesuite.gallery_views import ViewedGallery

        routes = {} if self.routes is None else self.router.gallery_views
        scales = {name: route.view_distance for name, route in routes.items()}
        if create:
            return ViewedGallery.create(uri, self.embedder.name, self.embedder.dim, self.threshold, scales)
        return ViewedGallery.open(uri, scales)

    def enroll(self, gallery, identity: str, vectors: np.ndarray, crops: Sequence[Crop], sources: Sequence[str]) -> int:
        """Enroll ``identity``'s faces into a :class:`~facesuite.gallery_views.ViewedGallery`,
        rendering the views it holds from the crops' images."""
        return gallery.enroll(identity, vectors, sources, self.view_embeddings(crops, set(gallery.views)))

    def route_crops(
        self, crops: Sequence[Crop], frames: Sequence[np.ndarray] | None = None, hidden: bool = False
    ) -> tuple[np.ndarray, np.ndarray, list, np.ndarray | None]:
        """(routed embeddings, plain embeddings of the restored chips, distortion predictions,
        pooled hidden features of the same pass when ``hidden``, else None)."""
        from facesuite.distortion.detector import DistortionDetector
        from facesuite.distortion.routing import DEFAULT_ROUTES, Router
        from facesuite.io import load_image

        if self._router is None:
            folder = DEFAULT_ROUTES if self.routes == "default" else self.routes
            self._distortion, self._router = DistortionDetector.load(), Router.load(self.embedder, folder)
        if not crops:
            empty = np.zeros((0, self.embedder.dim), dtype=np.float32)
            return empty, empty, [], None
        kinds = self._distortion.predict(list(frames) if frames is not None else [load_image(c.path) for c in crops])
        routed, plain, pooled = self._router.embed([c.chip for c in crops], [k.label for k in kinds], hidden)
        return routed, plain, kinds, pooled

    def view_embeddings(
        self, crops: Sequence[Crop], views: set[str] | None = None, progress: bool = False
    ) -> dict[str, np.ndarray]:
        """Per gallery view (default: every view the routes use), the embeddings of ``crops``'
        images rendered that way and cut as a probe of that type is cut: detected afresh, with the
        fallback box where no face is found."""
        from facesuite.distortion.views import VIEWS
        from facesuite.io import load_image

        views = set(self.router.gallery_views) if views is None else views
        spec, detector = self.embedder.chip_spec, self.extractor.detector
        result = {}
        for view in sorted(views):
            chips: list[np.ndarray] = []
            for start in tqdm(range(0, len(crops), 32), desc=f"gallery view {view}", disable=not progress, leave=False):
                batch = crops[start : start + 32]
                rendered = [VIEWS[view](load_image(crop.path), crop.face.box) for crop in batch]
                chips += [face.chip(image, spec.size, spec.padding) for image, face in zip(rendered, detector.detect_largest(rendered))]
            result[view] = self.embedder.embed(chips)
        return result

    @property
    def router(self):
        if self._router is None:
            self.route_crops([])
        return self._router

    def embed_paths(self, paths: Sequence[str | Path], progress: str | None = None) -> tuple[np.ndarray, list[Crop], list[Skipped]]:
        """Unit embeddings of the faces in ``paths`` (bad files are skipped and returned)."""
        crops, skipped = self.crops(paths, progress)
        return self.embed_crops(crops), crops, skipped

    def embed_one(self, path: str | Path) -> tuple[np.ndarray, Crop]:
        vectors, crops, skipped = self.embed_paths([path])
        if skipped:
            raise InputError(skipped[0].reason.split(": ", 1)[-1], path)
        return vectors[0], crops[0]

    def verify(self, first: str | Path, second: str | Path) -> Verification:
        """Same person or not, by cosine distance against the calibrated threshold."""
        (a, crop_a), (b, crop_b) = self.embed_one(first), self.embed_one(second)
        distance = float(cosine_distance(a, b))
        return Verification(distance, distance <= self.threshold, self.threshold, self.threshold_source,
                            (crop_a.face.fallback, crop_b.face.fallback))


@dataclass
class FaceAnalysis:
    """Everything facesuite says about the face in one image (one model pass per stage)."""

    path: str
    box: list[float]
    fallback: bool
    score: float
    distortion: str
    distortion_probability: float
    route: str
    gender: str | None = None
    p_female: float | None = None
    identity: str | None = None
    distance: float | None = None
    embedding: np.ndarray | None = None
    face: int = 0  # which face of the image: 0 is the largest (the only one unless all_faces)

    def to_dict(self) -> dict:
        record = {k: v for k, v in self.__dict__.items() if k != "embedding"}
        record["box"] = [round(float(v), 1) for v in self.box]
        for key in ("score", "distortion_probability", "p_female", "distance"):
            if record[key] is not None:
                record[key] = round(float(record[key]), 4)
        return record


class UnifiedFaceAnalyzer:
    """Detect -> name the distortion -> route to the recogniser that suits it -> gender -> identity.

    Models are loaded once. Gender comes from the same embedding pass when the gender model is the
    embedding kind built on this embedder; otherwise from its own network on its own chip.
    """

    def __init__(
        self,
        embedder: str | Embedder = "default",
        detector: DetectorSettings | None = None,
        use_cache: bool = True,
        routes: str | Path | None = "default",
        gender_model: str | Path | None = "default",
        gallery: str | Path | None = None,
        batch_size: int = 32,
    ) -> None:
        from facesuite.classify.gender import GenderModel

        # The distortion type is reported even without routing, so the router always loads; with
        # routes=None it holds no routes and every face takes the plain embedder.
        self.pipeline = FacePipeline(embedder, detector, use_cache, routes=routes)
        self.embedder = self.pipeline.embedder
        self.router = self.pipeline.router
        self.gender = GenderModel.load(None if gender_model == "default" else gender_model) if gender_model else None
        self.gallery = None
        if gallery is not None:
            self.gallery = self.pipeline.open_gallery(gallery)
            if self.gallery.embedder != self.embedder.name:
                self.gallery.close()
                raise InputError(f"gallery was built with embedder {self.gallery.embedder!r}, not {self.embedder.name!r}", gallery)
        self.batch_size = batch_size

    def _gender_shares_backbone(self) -> bool:
        from facesuite.classify.gender import HEAD_KINDS

        if self.gender is None or self.gender.config.kind not in HEAD_KINDS:
            return False
        # The head was fitted on dlib-torch's pass; the hidden stages exist only in that runtime.
        return self.embedder.name in (("dlib-torch",) if self.gender.config.kind == "backbone" else ("dlib", "dlib-torch", "dlib-onnx"))

    def analyze(self, paths: Sequence[str | Path], progress: str | None = None) -> tuple[list[FaceAnalysis], list[Skipped]]:
        from tqdm import tqdm

        from facesuite.io import load_image

        results: list[FaceAnalysis] = []
        skipped: list[Skipped] = []
        bar = tqdm(total=len(paths), desc=progress, disable=progress is None, unit="img", leave=False)
        for start in range(0, len(paths), self.batch_size):
            batch = paths[start : start + self.batch_size]
            crops, bad = self.pipeline.crops(batch)
            skipped += bad
            bar.update(len(batch))
            if not crops:
                continue
            # One decode per file, shared by all faces of that file when all_faces is on.
            decoded = {path: load_image(path) for path in dict.fromkeys(c.path for c in crops)}
            frames = [decoded[c.path] for c in crops]
            shared = self._gender_shares_backbone()
            routed, plain, kinds, pooled = self.pipeline.route_crops(crops, frames, hidden=shared)
            p_female = self._p_female(crops, frames, plain, pooled if shared else None)
            matches = None
            if self.gallery is not None:
                matches = self.gallery.identify(routed, views=self.pipeline.views_of([k.label for k in kinds]))
            for i, (crop, kind) in enumerate(zip(crops, kinds)):
                analysis = FaceAnalysis(
                    path=str(crop.path), box=list(crop.input_face.box), fallback=crop.face.fallback, score=crop.face.score,
                    distortion=kind.label, distortion_probability=kind.probability,
                    route=self.router.route(kind.label).describe(), embedding=routed[i], face=crop.face_index,
                )
                if p_female is not None:
                    analysis.p_female = float(p_female[i])
                    analysis.gender = self.gender.labels_for(p_female[i : i + 1])[0]
                if matches is not None:
                    best = matches[i][0]
                    analysis.identity, analysis.distance = self.gallery.decide(best), best.distance
                results.append(analysis)
        bar.close()
        return results, skipped

    def _p_female(self, crops: list[Crop], frames: list[np.ndarray], plain: np.ndarray, pooled: np.ndarray | None) -> np.ndarray | None:
        if self.gender is None:
            return None
        if self._gender_shares_backbone():
            import torch

            with torch.inference_mode():
                hidden = torch.from_numpy(pooled) if pooled is not None else None
                logits = self.gender.network.head(torch.from_numpy(plain), hidden)
                return torch.softmax(logits, dim=1)[:, 1].numpy()
        spec = self.gender.chip_spec
        return self.gender.p_female([c.face.chip(f, spec.size, spec.padding) for c, f in zip(crops, frames)])

    def close(self) -> None:
        if self.gallery is not None:
            self.gallery.close()
