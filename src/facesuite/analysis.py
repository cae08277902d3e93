"""FaceAnalysis: the one object that loads the models and answers about faces.

    from facesuite import FaceAnalysis

    app = FaceAnalysis()                          # detector, distortion routes, embedder, gender
    faces = app.get("photo.jpg")                  # or bytes, an RGB numpy array, a PIL image
    faces[0].box, faces[0].gender, faces[0].embedding
    app.verify("a.jpg", "b.jpg").same

    app = FaceAnalysis(gallery="people/")         # identity and distance on every Face
    app.gallery.enroll("alice", ["alice1.jpg", "alice2.jpg"])

Each face goes ``decode -> detect/align -> name its distortion -> embed through that distortion's
route -> gender -> identity``. Every caller (CLI, REST API, batch jobs, demo, evaluations) goes
through this class; they only parse and format.

The attribute stages (age, gender) are objects in :mod:`facesuite.classify.stages`; the gallery
seen through this class is :mod:`facesuite.gallery.images`; every decision is :mod:`facesuite.decide`.

Long because the one pass over a batch (detection, presence, distortion, route, quality, the
stages) and the result types every caller reads are the public contract, kept in one place.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from facesuite.classify.age import AgeHead
from facesuite.classify.gender_head import UNCERTAIN
from facesuite.classify.quality import QualityModel, quality_features
from facesuite.classify.stages import AgeStage, GenderStage, SharedPass, Stage
from facesuite.decide import SAME, OperatingPoint
from facesuite.detect import DetectorSettings
from facesuite.detect.extract import Crop, FaceExtractor
from facesuite.embed import ChipSpec, Embedder, cosine_distance, embedders_of_space, get_embedder
from facesuite.embed.calibration import load_route_calibration, load_threshold
from facesuite.errors import InputError, Skipped
from facesuite.gallery.images import Gallery
from facesuite.io import ImageInput
from facesuite.parallel import model_loading, ordered_map

if TYPE_CHECKING:
    from facesuite.cluster import Clusters


@dataclass
class Face:
    """Everything facesuite says about one face. Coordinates are in the input image's own pixels."""

    box: tuple[float, float, float, float]  # x1, y1, x2, y2
    landmarks: np.ndarray = field(repr=False)  # (5, 2): eyes, nose, mouth corners
    det_score: float
    fallback: bool  # the detector found no face: the box is the configured centre box
    # How likely the box is to hold a face at all (facesuite.classify.presence); a box that does
    # not (no_face) gets no distortion, route, gender, quality or identity.
    face_probability: float | None = None
    no_face: bool = False
    turn: int = 0  # degrees the photo was turned (counter-clockwise) to find the face upright
    distortion: str | None = None  # clean, blurred, foggy, lowlight, noisy, rainy, resized, sunny
    distortion_probability: float | None = None
    route: str | None = None  # how it was embedded: plain, or its restoration step
    embedding: np.ndarray | None = field(default=None, repr=False)  # unit vector
    gender: str | None = None  # male, female, or uncertain (below the model's confidence floor)
    p_female: float | None = None
    age: float | None = None  # years
    age_range: tuple[float, float] | None = None  # calibrated 80% interval, years
    quality: float | None = None  # 0-1: the chance this face can be recognised (facesuite.classify.quality)
    identity: str | None = None  # with a gallery: the enrolled identity, "unknown", "unrecognisable" or "no face"
    distance: float | None = None  # with a gallery: cosine distance to the nearest identity
    # With a gallery: the distance the face was held to, and why that one (or why none was used).
    threshold: float | None = None
    held_to: str | None = None
    # With a gallery: what named the identity: "face" (the face embedding) or "source" (the image is
    # a processed copy of the enrolled photo source_photo; source_agreement is the evidence).
    match_kind: str | None = None
    source_photo: str | None = None
    source_agreement: float | None = None
    source: str = ""  # the input's path, or the name given to an input in memory
    index: int = 0  # which face of its image: 0 is the main face (the most prominent)
    _crop: Crop | None = field(default=None, repr=False, compare=False)

    def chip(self, size: int = 150, padding: float = 0.25) -> np.ndarray:
        """The face aligned on its five landmarks, ``size`` x ``size`` RGB."""
        if self._crop is None:
            raise ValueError("this Face was not made by FaceAnalysis: no image to cut a chip from")
        return self._crop.face.chip(self._crop.pixels(), size, padding)

    def to_dict(self) -> dict:
        """The JSON record of ``facesuite analyze`` and ``POST /analyze`` (no embedding)."""
        def rounded(value: float | None, digits: int = 4) -> float | None:
            return None if value is None else round(float(value), digits)

        return {
            "path": self.source, "box": [round(float(v), 1) for v in self.box], "fallback": self.fallback,
            "score": rounded(self.det_score), "no_face": self.no_face, "face_probability": rounded(self.face_probability),
            "turn": self.turn, "distortion": self.distortion,
            "distortion_probability": rounded(self.distortion_probability), "route": self.route,
            "gender": self.gender, "p_female": rounded(self.p_female), "quality": rounded(self.quality), "identity": self.identity,
            "distance": rounded(self.distance), "threshold": rounded(self.threshold, 6), "held_to": self.held_to,
            "match_kind": self.match_kind, "source_photo": self.source_photo,
            "source_agreement": rounded(self.source_agreement), "face": self.index,
            "age": rounded(self.age, 1), "age_range": None if self.age_range is None else [rounded(v, 1) for v in self.age_range],
        }


@dataclass
class Verification:
    distance: float | None  # None when either image holds no face: nothing was compared
    same: bool  # False whenever a face is unrecognisable
    threshold: float
    threshold_source: str
    fallback: tuple[bool, bool]
    # "same", "different", "unrecognisable" when either face is below the quality floor, or
    # "no face" when either image holds none: nothing to compare, the distance says nothing.
    decision: str = "different"
    quality: tuple[float | None, float | None] = (None, None)
    no_face: tuple[bool, bool] = (False, False)  # which image holds no face
    held_to: str = ""  # why this threshold, or why no comparison (facesuite.decide)
    # The threshold a gallery search holds the stricter of the two faces to: a pair within
    # `threshold` but beyond this is `same` here and `unknown` to `gallery identify`.
    search_threshold: float | None = None
    # Faces found in each image: of several, the most prominent one was compared.
    faces_in_image: tuple[int, int] = (1, 1)
    # The two faces compared, as the pass read them (a vetoed box replaced by its centre box).
    crops: tuple[Crop, Crop] | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict:
        return {
            "distance": None if self.distance is None else round(self.distance, 6),
            "same": self.same,
            "decision": self.decision,
            "quality": [None if q is None else round(q, 4) for q in self.quality],
            "threshold": round(self.threshold, 6),
            "threshold_source": self.threshold_source,
            "fallback": list(self.fallback),
            "no_face": list(self.no_face),
            "held_to": self.held_to,
            "search_threshold": None if self.search_threshold is None else round(self.search_threshold, 6),
            "faces_in_image": list(self.faces_in_image),
        }


@dataclass
class JudgedPass:
    """One recognition pass over a batch of crops, each judged a face or not
    (:meth:`FaceAnalysis.judged_pass`): row ``i`` of every field is ``crops[i]``'s."""

    crops: list[Crop]
    routed: np.ndarray  # unit embeddings, each through its distortion's route
    plain: np.ndarray  # embeddings of the chips the pass read, not mirrored
    kinds: list  # distortion predictions
    pooled: np.ndarray | None  # the pass's hidden features, when asked for or read by the presence head
    p_face: np.ndarray | None  # how likely each box is to hold a face; None without a presence head
    is_face: np.ndarray


class FaceAnalysis:
    """Loads every model once and turns images into :class:`Face` results.

    ``routes``: ``"default"`` (the shipped distortion routes), a routing folder, or ``None`` to
    embed every face with the plain embedder (the distortion is still reported). ``gender``:
    ``"default"``, a model folder, or ``None`` for no gender. ``gallery``: a gallery URI (a folder,
    ``NAME.db``, ``milvus://HOST:PORT/COLLECTION``) to identify every face against; it is then
    :attr:`gallery`. ``threshold`` overrides the calibrated verification threshold.
    ``source_match``: with a gallery, also say when an image is a processed copy of an enrolled
    photo (``match_kind: source``, :mod:`facesuite.gallery.source_match`). ``age``: ``"default"``, an
    age model folder, or ``None`` for no age. ``abstain``: gender says ``uncertain`` below its
    model's confidence floor (False: male or female for every face).
    """

    def __init__(
        self,
        embedder: str | Embedder = "default",
        detector: DetectorSettings | None = None,
        *,
        use_cache: bool = True,
        routes: str | Path | None = "default",
        gender: str | Path | None = "default",
        gallery: str | Path | None = None,
        threshold: float | None = None,
        batch_size: int = 32,
        source_match: bool = True,
        age: str | Path | None = "default",
        abstain: bool = True,
        distortion: str | Path = "default",
    ) -> None:
        from facesuite.classify.presence import DEFAULT_PRESENCE_DIR, PresenceHead
        from facesuite.route.routes import DEFAULT_ROUTES, Router

        self.embedder = get_embedder(embedder) if isinstance(embedder, str) else embedder
        self.extractor = FaceExtractor(detector, use_cache=use_cache)
        self.routed = routes is not None
        self.router = Router.load(self.embedder, DEFAULT_ROUTES if routes == "default" else routes)
        self._distortion = None
        self._distortion_folder = None if distortion == "default" else distortion
        # Whether a box holds a face reads the recognition pass's hidden features; an embedder
        # without them (another space, no hidden outputs) has no presence head, and then only
        # faces the detector found count as faces.
        presence = PresenceHead.load(DEFAULT_PRESENCE_DIR)
        readable = presence.space == self.embedder.space and hasattr(self.embedder, "describe")
        self.presence: PresenceHead | None = presence if readable else None
        # The attribute stages, in the order they answer (gender reads the age band).
        self.gender_stage = None if gender is None else GenderStage(gender, self.embedder, abstain)
        gender_pass = [self.gender_stage.embedder] if self.gender_stage is not None and self.gender_stage.embedder else []
        self.age_stage = None if age is None else AgeStage(AgeHead.load(None if age == "default" else age), self.embedder, gender_pass)
        self.stages: list[Stage] = [stage for stage in (self.age_stage, self.gender_stage) if stage is not None]
        if threshold is None:
            threshold, threshold_source = load_threshold(self.embedder.name, self.embedder.default_threshold)
        else:
            threshold_source = "given threshold"
        # Search thresholds per distortion type, fitted on routed embeddings at the target FPIR: a
        # type whose impostors come closer (noisy, rainy, blurred) is decided more strictly.
        route_thresholds, quality = load_route_calibration(self.embedder.name) if self.routed else ({}, None)
        # How likely each face is to be recognised at all; below its floor a face is unrecognisable.
        self.quality = QualityModel.from_dict(quality) if quality else None
        #: The thresholds and quality floor every decision reads (facesuite.decide).
        self.operating_point = OperatingPoint(threshold, threshold_source, route_thresholds,
                                              self.quality.floor if self.quality is not None else None)
        self.batch_size = batch_size
        self.source_match = source_match
        self.gallery: Gallery | None = None
        if gallery is not None:
            self.gallery = self.open_gallery(gallery)

    @property
    def threshold(self) -> float:
        """The verification threshold (cosine distance): :attr:`operating_point`'s."""
        return self.operating_point.threshold

    # ------------------------------------------------------------------ the public API

    def get(self, image: ImageInput, max_faces: int | None = 1) -> list[Face]:
        """The faces in one image, main face first (``max_faces=None``: all of them); a flagged
        centre-box face when none is found. :class:`InputError` naming the input if it is bad."""
        (result,) = self.get_batch([image], max_faces)
        if isinstance(result, Skipped):
            raise result.error
        return result

    def get_batch(self, images: Sequence[ImageInput], max_faces: int | None = 1,
                  progress: str | None = None, identify: bool = True) -> list[list[Face] | Skipped]:
        """:meth:`get` for many images, batched through every stage: per input, in order, its
        faces or a :class:`Skipped` saying why it could not be read. ``identify=False`` leaves
        out the gallery lookup (faces being enrolled)."""
        def analyse(items: list[Crop | Skipped]) -> tuple[list[list[Face] | Skipped], list[np.ndarray]]:
            per_input: list[list[Crop] | Skipped] = []
            for item in items:
                if isinstance(item, Skipped):
                    per_input.append(item)
                elif item.face_index == 0:
                    per_input.append([item])
                else:
                    per_input[-1].append(item)
            crops = [c for entry in per_input if not isinstance(entry, Skipped) for c in entry]
            faces, frames = self._analyse(crops)
            _release_files(crops)  # ...and no longer
            faces_in_order = iter(faces)
            return [entry if isinstance(entry, Skipped) else [next(faces_in_order) for _ in entry] for entry in per_input], frames

        # The decoded images stay with their crops through the batch (one decode per input)...
        results: list[list[Face] | Skipped] = []
        for per_input, frames in self.extractor.map_batches(images, analyse, self.embedder.chip_spec, progress,
                                                            max_faces or 0, keep_pixels=True):
            # Identified here, on the calling thread: the gallery's store is not shared between threads.
            if identify:
                self._identify([face for entry in per_input if not isinstance(entry, Skipped) for face in entry], frames)
            results += per_input
        return results

    def faces(self, images: Sequence[ImageInput], max_faces: int | None = 1,
              progress: str | None = None) -> tuple[list[Face], list[Skipped]]:
        """Every face of ``images`` in one list, and the inputs that could not be read."""
        results = self.get_batch(images, max_faces, progress)
        return ([face for r in results if not isinstance(r, Skipped) for face in r],
                [r for r in results if isinstance(r, Skipped)])

    def cluster(self, images: Sequence[ImageInput], progress: str | None = None, previous: Clusters | None = None) -> Clusters:
        """Every face of ``images`` grouped by person (:mod:`facesuite.cluster`); ``previous``: an
        earlier result to add these to, its faces kept in their clusters and not embedded again."""
        from facesuite.cluster import cluster_faces

        return cluster_faces(self, images, progress, previous)

    def verify(self, first: ImageInput, second: ImageInput) -> Verification:
        """Same person or not: cosine distance of the two images' main faces against the calibrated
        threshold; ``unrecognisable`` (and not the same) when either face is below the quality floor."""
        crops, skipped = self.crops([first, second])
        if skipped:
            raise skipped[0].error
        # One distortion pass per face serves its route, its quality and whether it is a face.
        judged = self.judged_pass(crops, [crop.pixels() for crop in crops])
        (a, b), kinds, is_face = judged.routed, judged.kinds, judged.is_face
        crop_a, crop_b = judged.crops
        distance = float(cosine_distance(a, b))
        scores = self._quality(judged.crops, kinds)
        quality = (None, None) if scores is None else (float(scores[0]), float(scores[1]))
        no_face = (not is_face[0], not is_face[1])
        # A box with no face has no quality, as in analyze: nothing there to recognise.
        quality = tuple(None if empty else q for q, empty in zip(quality, no_face))
        point = self.operating_point
        decision = point.pair(distance, quality, no_face)
        if any(no_face):
            distance = None  # a distance to a box that holds no face says nothing
        # What a gallery search would hold the stricter of the two faces to (verify tells the user
        # when a search would leave this pair unknown).
        search = min(point.search_threshold(kind.label if face else None) for kind, face in zip(kinds, is_face))
        return Verification(distance, decision.answer == SAME, point.threshold, point.source,
                            (crop_a.face.fallback, crop_b.face.fallback), decision.answer, quality, no_face,
                            decision.held_to, search, (crop_a.face.faces_in_image, crop_b.face.faces_in_image),
                            (crop_a, crop_b))

    def open_gallery(self, uri: str | Path, create: bool = False) -> Gallery:
        """The gallery at ``uri`` (``create``: made if absent), checked to be built with this embedder."""
        from facesuite.gallery import create_gallery, display_uri, open_gallery

        if create:
            store = create_gallery(uri, self.embedder.space, self.embedder.dim, self.threshold)
        else:
            store = open_gallery(uri)
        if store.embedder != self.embedder.space:
            store.close()
            names = embedders_of_space(store.embedder)
            hint = f"pass --embedder {' or '.join(names)}" if names else "no installed embedder gives its vectors: enroll again"
            raise InputError(f"gallery was built with embedder {store.embedder!r}, not {self.embedder.name!r} ({hint})",
                             display_uri(uri))
        return Gallery(self, store)

    def close(self) -> None:
        if self.gallery is not None:
            self.gallery.close()

    def __enter__(self) -> FaceAnalysis:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ stages, for evaluations

    def crops(self, images: Sequence[ImageInput], progress: str | None = None) -> tuple[list[Crop], list[Skipped]]:
        """Aligned chips of the main face of each input, and the inputs that could not be read."""
        return self.extractor.crops(images, self.embedder.chip_spec, progress)

    def judged_crops(self, images: Sequence[ImageInput], progress: str | None = None) -> tuple[list[Crop], list[Skipped]]:
        """:meth:`crops` as the analysis reads them (:meth:`judged_pass`): the chips a user is shown."""
        crops, skipped = self.crops(images, progress)
        return self.judged_pass(crops).crops if crops else [], skipped

    def embed(self, images: Sequence[ImageInput], progress: str | None = None) -> tuple[np.ndarray, list[Crop], list[Skipped]]:
        """Unit embeddings (through each face's route) of the main face of each input."""
        def embed_batch(items: list[Crop | Skipped]) -> tuple[np.ndarray, list[Crop], list[Skipped]]:
            crops = [item for item in items if isinstance(item, Crop)]
            vectors = self.embed_crops(crops)
            _release_files(crops)
            return vectors, crops, [item for item in items if isinstance(item, Skipped)]

        # The distortion detector reads each image (or a face's square of it): from the batch's
        # decoded pixels, instead of every file a second time.
        parts = list(self.extractor.map_batches(images, embed_batch, self.embedder.chip_spec, progress, keep_pixels=self.routed))
        if not parts:
            return np.zeros((0, self.embedder.dim), np.float32), [], []
        return (np.concatenate([vectors for vectors, _, _ in parts]), [c for _, crops, _ in parts for c in crops],
                [s for _, _, skipped in parts for s in skipped])

    def embed_crops(self, crops: Sequence[Crop]) -> np.ndarray:
        """Unit embeddings of the crops, each through its route."""
        if not self.routed:
            return self.embedder.embed([crop.chip for crop in crops])
        return self.route_crops(crops)[0]

    def route_crops(
        self, crops: Sequence[Crop], frames: Sequence[np.ndarray] | None = None, hidden: bool = False,
        maps: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, list, np.ndarray | None]:
        """(routed embeddings, plain embeddings of the restored chips, distortion predictions,
        hidden features of the same pass when ``hidden`` (with the last stage's input map when
        ``maps``), else None)."""
        if not crops:
            empty = np.zeros((0, self.embedder.dim), dtype=np.float32)
            return empty, empty, [], None
        # Parts of one extraction batch each, side by side on every core (inline within a batch).
        size = self.extractor.batch_size
        parts = list(ordered_map(
            lambda start: self._route_part(crops[start : start + size], frames[start : start + size] if frames is not None else None,
                                           hidden, maps),
            range(0, len(crops), size)))
        routed, plain, kinds, pooled = zip(*parts)
        return (np.concatenate(routed), np.concatenate(plain), [k for part in kinds for k in part],
                np.concatenate(pooled) if hidden else None)

    def _route_part(self, crops: Sequence[Crop], frames: Sequence[np.ndarray] | None, hidden: bool,
                    maps: bool) -> tuple[np.ndarray, np.ndarray, list, np.ndarray | None]:
        images = list(frames) if frames is not None else [c.pixels() for c in crops]
        # Each face is read in a square of its own around its box (a model trained on whole photos:
        # only a face of a group photo), so each face gets its own distortion, route and quality.
        kinds = self.distortion.predict_faces(images, [crop.face for crop in crops])
        routed, plain, pooled = self.router.embed([c.chip for c in crops], [self.distortion.route_label(k) for k in kinds],
                                                  hidden, maps)
        return routed, plain, kinds, pooled

    @property
    def distortion(self):
        """The distortion detector, loaded on first use (embedding without routes never needs it)."""
        with model_loading:
            if self._distortion is None:
                from facesuite.classify.distortion import DistortionDetector

                self._distortion = DistortionDetector.load(self._distortion_folder)
        return self._distortion

    @property
    def gender(self):
        """The gender model (:class:`~facesuite.classify.gender.GenderModel`, PyTorch: standalone
        chips, Grad-CAM), or None without gender. When the analyzer's own pass feeds a linear head
        it is loaded on first use only: analysing runs that head in NumPy."""
        if self.gender_stage is None:
            return None
        with model_loading:
            return self.gender_stage.model

    @property
    def age(self) -> AgeHead | None:
        """The age head, or None without age."""
        return None if self.age_stage is None else self.age_stage.head

    @property
    def abstain(self) -> bool:
        """Whether gender says ``uncertain`` below its confidence floor."""
        return self.gender_stage is not None and self.gender_stage.abstain

    # ------------------------------------------------------------------ internals

    def _analyse(self, crops: list[Crop]) -> tuple[list[Face], list[np.ndarray]]:
        """Distortion, route, embedding and gender of each crop, one pass per stage; and the
        image each face is in."""
        if not crops:
            return [], []
        # One decode per input, shared by all its faces.
        frames_of = {id(c.image) if c.image is not None else str(c.path): c for c in crops}
        decoded = {key: crop.pixels() for key, crop in frames_of.items()}
        frames = [decoded[id(c.image) if c.image is not None else str(c.path)] for c in crops]
        # Without routes the router holds none: the type is still named, every face embeds plain.
        judged = self.judged_pass(crops, frames, hidden=any(stage.reads_hidden for stage in self.stages),
                                  maps=any(stage.reads_maps for stage in self.stages))
        crops, routed, plain, kinds, pooled = judged.crops, judged.routed, judged.plain, judged.kinds, judged.pooled
        p_face, is_face = judged.p_face, judged.is_face
        quality = self._quality(crops, kinds)
        recognisable = self.operating_point.recognisable(quality, len(crops))
        batch = SharedPass(
            len(crops), kinds, plain, pooled, self.embedder,
            restored=lambda rows: self.router.restored([crops[i].chip for i in rows],
                                                       [self.distortion.route_label(kinds[i]) for i in rows]),
            cut=lambda spec, rows: self._chips_of([crops[i] for i in rows], [frames[i] for i in rows], spec))
        answers = [stage.run(batch) for stage in self.stages]
        faces = []
        for i, (crop, kind) in enumerate(zip(crops, kinds)):
            shown = crop.input_face
            faces.append(Face(
                box=tuple(float(v) for v in shown.box), landmarks=np.asarray(shown.landmarks, dtype=np.float64),
                det_score=float(crop.face.score), fallback=crop.face.fallback,
                face_probability=None if p_face is None else float(p_face[i]), no_face=not is_face[i], turn=crop.face.turn,
                embedding=routed[i], source=str(crop.path), index=crop.face_index, _crop=crop,
            ))
            if not is_face[i]:
                continue  # nothing is decided on a box that holds no face
            faces[-1].distortion, faces[-1].distortion_probability = kind.label, float(kind.probability)
            faces[-1].route = self.router.route(self.distortion.route_label(kind)).describe()
            if quality is not None:
                faces[-1].quality = float(quality[i])
            for stage, answer in zip(self.stages, answers):
                stage.apply(faces[-1], answer, i)
            if not recognisable[i]:
                self._withhold_attributes(faces[-1])
        return faces, frames

    def _withhold_attributes(self, face: Face) -> None:
        """No age and (abstaining) no gender for a face below the quality floor: it shows too
        little. On the training identities' blown-out copies under the floor, gender answers were
        right 0.889 of the time (0.980 above it) and ages correlated 0.13 with those of the same
        photos unspoilt (mean difference 15 years)."""
        face.age = face.age_range = None
        if self.abstain and face.gender is not None:
            face.gender = UNCERTAIN

    def _identify(self, faces: list[Face], frames: list[np.ndarray]) -> None:
        """Each face's identity in the gallery (``frames``: the image each face is in, for source matching)."""
        if self.gallery is not None and len(self.gallery) and faces:
            for face, candidates, frame in zip(faces, self.gallery.candidates(faces), frames):
                self.gallery.answer(face, candidates[0], frame)

    def judged_pass(self, crops: Sequence[Crop], frames: Sequence[np.ndarray] | None = None, hidden: bool = False,
                    maps: bool = False) -> JudgedPass:
        """The recognition pass over ``crops`` (:meth:`route_crops`), each box judged a face or not.

        A main face the detector found and the presence head vetoes, with no other face of its
        image kept, is read as if the detector had found nothing: where the image's centre box is
        judged a face, it takes the vetoed face's place. MTCNN's boxes in a blown-out photo are
        often on clothing or background while the face fills the middle; the centre box is what
        the same photo gets when MTCNN finds no box at all (on the training identities' overexposed
        copies, 15 of 15 such centre boxes hold a face)."""
        routed, plain, kinds, pooled = self.route_crops(crops, frames, hidden or self.presence is not None, maps)
        p_face, is_face = self.present(crops, pooled)
        judged = JudgedPass(list(crops), routed, plain, list(kinds), pooled, p_face, is_face)
        vetoed = self._vetoed_alone(crops, is_face)
        if not vetoed:
            return judged
        centred = [crops[i].centre_box(self.extractor.settings, self.embedder.chip_spec) for i in vetoed]
        c_routed, c_plain, c_kinds, c_pooled = self.route_crops(
            centred, None if frames is None else [frames[i] for i in vetoed], True, maps)
        c_p_face, c_is_face = self.present(centred, c_pooled)
        for row, i in enumerate(vetoed):
            if c_is_face[row]:
                judged.crops[i], judged.kinds[i] = centred[row], c_kinds[row]
                judged.routed[i], judged.plain[i], judged.pooled[i] = c_routed[row], c_plain[row], c_pooled[row]
                judged.p_face[i], judged.is_face[i] = c_p_face[row], True
        return judged

    @staticmethod
    def _vetoed_alone(crops: Sequence[Crop], is_face: np.ndarray) -> list[int]:
        """Rows of main faces found by the detector and judged no face, where no other face of
        the same image (the rows after it, until the next main face) is kept."""
        rows = []
        for i, crop in enumerate(crops):
            if crop.face_index != 0 or is_face[i] or not crop.face.detected:
                continue
            end = next((j for j in range(i + 1, len(crops)) if crops[j].face_index == 0), len(crops))
            if not is_face[i + 1 : end].any():
                rows.append(i)
        return rows

    def present(self, crops: Sequence[Crop], pooled: np.ndarray | None) -> tuple[np.ndarray | None, np.ndarray]:
        """(probability that each crop's box holds a face, or None without a presence head;
        whether it is a face). Without a head, only a face the detector found is one."""
        detected = np.array([crop.face.detected for crop in crops], dtype=bool)
        if self.presence is None or not crops:
            return None, detected
        return self.presence.judge(pooled, detected, [crop.chip for crop in crops])

    def _quality(self, crops: Sequence[Crop], kinds: Sequence) -> np.ndarray | None:
        """Each face's chance of being recognised (None without a quality model)."""
        if self.quality is None:
            return None
        return self.quality.score(quality_features([k.probs for k in kinds], [c.face.score for c in crops],
                                                   [c.face.fallback for c in crops]))

    def _chips_of(self, crops: Sequence[Crop], frames: Sequence[np.ndarray], spec: ChipSpec) -> list[np.ndarray]:
        """The crops' chips in the geometry ``spec``: the chip already cut when the recognition
        embedder's geometry is the same, else cut again from the frame."""
        if spec == self.embedder.chip_spec:
            return [crop.chip for crop in crops]
        return [crop.face.chip(frame, spec.size, spec.padding) for crop, frame in zip(crops, frames)]


def _release_files(crops: Sequence[Crop]) -> None:
    """Let go of the decoded pixels the crops of files held for their batch: a file is read again
    when its image is asked for; inputs given in memory keep theirs."""
    for crop in crops:
        if isinstance(crop.path, Path):
            crop.image = None
