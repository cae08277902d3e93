"""The models behind the API: one :class:`~facesuite.analysis.FaceAnalysis` and the gallery, on one thread.

Every model and the gallery live on one worker thread (:class:`ModelService`): the gallery holds
SQLite connections, which may only be used by the thread that opened them, and two inference
calls at once would only fight over the same CPU cores anyway. Request handlers decode uploads in
memory (:mod:`facesuite.serve.uploads`) and hand the decoded images to that thread.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path, PurePath
from typing import Any, TypeVar

import numpy as np

from facesuite.config import user_home
from facesuite.errors import InputError, missing_extra
from facesuite.io import Decoded
from facesuite.serve.thumbnails import ThumbnailStore

log = logging.getLogger("facesuite.serve")
T = TypeVar("T")
# The longest side of the upload preview the dashboard draws boxes on: its canvas is 420 px
# wide, so twice that stays sharp on a high-density screen.
PREVIEW_SIDE = 840
# Mean grey-level difference under which a file's frame is the kept frame of the photo enrolled
# (the same file gives 0; another photo differs by tens of levels).
SAME_PHOTO_FRAME_DIFFERENCE = 1.0


def default_gallery() -> str:
    """The dashboard's gallery when none is given: the folder ``$FACESUITE_HOME/gallery``."""
    return str(user_home() / "gallery")


class ApiError(Exception):
    """An error answered with ``status`` and ``{"error": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ModelService:
    """Owns the :class:`~facesuite.analysis.FaceAnalysis` and the gallery on one worker thread.

    Public methods must be called through :meth:`call` (or :meth:`submit`). They take uploads
    already decoded (:class:`~facesuite.io.Decoded`, named by the uploaded file's name).
    """

    def __init__(self, gallery: str, embedder: str = "default", use_cache: bool = True,
                 thumbnails: ThumbnailStore | None = None, gender: str | Path = "default", age: str | Path = "default") -> None:
        # A gallery URI of any backend, as the `gallery` commands take it (facesuite.gallery).
        self.gallery_uri = gallery
        self.thumbnails = thumbnails
        self._embedder_name = embedder
        self._use_cache = use_cache
        self._gender, self._age = gender, age  # model folders, or "default" for the shipped ones
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="facesuite-models")
        self._analysis = None
        self._gallery = None
        # Per identity, its first enrolled photo as the gallery keeps it: (source path, frame),
        # read again only when the gallery's stamp changes.
        self._first_photos: dict[str, tuple[str, bytes]] = {}
        self._photos_stamp: int | None = None
        # Why /analyze and /explain cannot work (models not shipped yet, say); None when they can.
        self.analyzer_error: str | None = None
        self._can_analyse = False
        self.loaded = False

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        return self._executor.submit(fn, *args)

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        return self.submit(fn, *args).result()

    def start(self) -> None:
        """Load the models in the background, so the first request does not pay for it."""
        self.submit(self._load)

    def close(self) -> None:
        self.call(self._close_gallery)
        self._executor.shutdown(wait=True)

    # -- everything below runs on the worker thread

    def _load(self) -> None:
        if self.loaded:
            return
        from facesuite.analysis import FaceAnalysis

        options = {"use_cache": self._use_cache}
        try:
            self._analysis = FaceAnalysis(self._embedder_name, gender=self._gender, age=self._age, **options)
            self._analysis.distortion  # noqa: B018 - loaded now, so a missing model degrades here
            self._can_analyse = True
        except InputError as error:
            # Degrade step by step: analysis without gender and age, then verification and gallery only.
            self.analyzer_error = f"analysis models unavailable ({error})"
            log.warning(self.analyzer_error)
            try:
                self._analysis = FaceAnalysis(self._embedder_name, gender=None, age=None, **options)
                self._analysis.distortion  # noqa: B018
                self._can_analyse = True
            except InputError:
                self._analysis = FaceAnalysis(self._embedder_name, gender=None, age=None, routes=None, **options)
        self.loaded = True

    @property
    def analysis(self):
        self._load()
        return self._analysis

    def _require_analysis(self):
        self._load()
        if not self._can_analyse:
            raise ApiError(503, self.analyzer_error or "analysis models unavailable")
        return self._analysis

    def _open_gallery(self, create: bool):
        from facesuite.gallery import gallery_exists

        if self._gallery is None:
            if not (create or gallery_exists(self.gallery_uri)):
                return None
            # FaceAnalysis.open_gallery checks the gallery was built with this embedder.
            self._gallery = self.analysis.open_gallery(self.gallery_uri, create=create)
            self._analysis.gallery = self._gallery
        return self._gallery

    def _close_gallery(self) -> None:
        if self._gallery is not None:
            self._gallery.close()
            self._gallery = None
            self._analysis.gallery = None

    def analyze(self, upload: Decoded, images: bool, all_faces: bool = False, preview: bool = False) -> dict:
        """The main face's record; with ``all_faces`` also ``faces``, every face's record
        (main face first, the first being the same face); with ``preview`` also ``preview``, the
        decoded upload as a JPEG data URI a browser can draw whatever the upload's format, and
        ``size``, the upload's own width and height (the boxes' coordinates)."""
        analysis = self._require_analysis()
        self._open_gallery(create=False)  # faces get an identity when the gallery holds anyone
        faces = analysis.get(upload, max_faces=None if all_faces else 1)
        records = [face.to_dict() | {"source_photo": _photo_name(face.source_photo)} |
                   ({"crop": png_data_uri(face.chip())} if images else {}) for face in faces]
        height, width = upload.pixels.shape[:2]
        shown = {"preview": jpeg_data_uri(upload.pixels, PREVIEW_SIDE),
                 "size": [round(width * upload.scale[0]), round(height * upload.scale[1])]} if preview else {}
        return records[0] | ({"faces": records} if all_faces else {}) | shown | {"quality_floor": self._quality_floor()}

    def verify(self, first: Decoded, second: Decoded, images: bool) -> dict:
        from facesuite.embed.calibration import load_far_marks

        verification = self.analysis.verify(first, second)
        record = verification.to_dict()
        # Where the distance sits on the calibrated scale: the thresholds at FAR 1% and 0.1%.
        record["far_marks"] = [{"far": far, "threshold": round(t, 6)} for far, t in sorted(load_far_marks(self.analysis.embedder.name).items())]
        record["quality_floor"] = self._quality_floor()
        if images:
            record["crops"] = [png_data_uri(crop.chip) for crop in verification.crops]
        return record

    def _quality_floor(self) -> float | None:
        """The quality below which a face is unrecognisable; None without a quality model."""
        quality = self.analysis.quality
        return None if quality is None else quality.floor

    def explain(self, upload: Decoded) -> tuple[bytes, dict]:
        try:
            import facesuite.explain  # noqa: F401 - Grad-CAM's PyTorch: missing without the extra
            from facesuite.classify.gender_eval import explain_gender
        except ModuleNotFoundError as error:
            # Grad-CAM runs in PyTorch, an extra: the dashboard shows the line that names it.
            missing = missing_extra(error)
            if missing is None:
                raise
            raise ApiError(503, str(missing)) from None

        analysis = self._require_analysis()
        if analysis.gender is None:
            raise ApiError(503, self.analyzer_error or "no gender model loaded")
        heatmap, info = explain_gender(upload, analysis)  # no face: an InputError, answered 422
        return png_bytes(heatmap), {"gender": info["gender"], "p_female": info["p_female"]}

    def enroll(self, identity: str, uploads: Sequence[Decoded], unreadable: Sequence[str] = ()) -> dict:
        gallery = self._open_gallery(create=True)
        result = gallery.enroll(identity, uploads)
        if not result.faces and not result.already:
            # Why, as the CLI says it per photo (no face, already enrolled under another name...).
            reasons = list(dict.fromkeys(skip.error.message for skip in result.skipped))
            raise ApiError(422, f"nothing enrolled: {'; '.join(reasons) or 'no usable face in the uploaded images'}")
        if self.thumbnails is not None and not self.thumbnails.has(identity):
            # Uploads arrive decoded, so none is skipped: the first one's face is the picture.
            crops, _ = self._analysis.judged_crops(uploads[:1])
            if crops:
                self.thumbnails.put(identity, crops[0].chip)
        # already_enrolled: uploads this identity already held (the same file content), not added again.
        return {"identity": identity, "enrolled": result.faces, "already_enrolled": result.already,
                "skipped": [*unreadable, *(str(s.source) for s in result.skipped)],
                # Faces verify would call the same person as someone enrolled under another name.
                "resembles": [{"source": source, "identity": other, "distance": round(distance, 6)}
                              for source, other, distance in result.resembles],
                # Photos holding several faces: the most prominent one was enrolled.
                "group_photos": [{"source": source, "faces": count} for source, count in result.group_photos],
                "identities": len(gallery.list()), "faces": len(gallery)}

    def identify(self, upload: Decoded, top_k: int) -> dict:
        gallery = self._open_gallery(create=False)
        if gallery is None or not len(gallery):
            raise ApiError(404, "the gallery is empty: enroll someone first (POST /gallery/enroll)")
        # Same face and vector as /analyze: routed through the recogniser suited to its distortion.
        (face,) = self._require_analysis().get(upload)
        candidates = gallery.candidates([face], top_k=top_k)[0]
        best = candidates[0]
        answer = gallery.answer(face, best)
        if face.no_face:
            return {"path": upload.name, "identity": face.identity, "no_face": True, "fallback": face.fallback,
                    "distance": None, "match_kind": None, "source_photo": None, "nearest": None, "threshold": None,
                    "held_to": face.held_to, "candidates": []}
        return {"path": upload.name, "identity": face.identity, "distance": round(best.distance, 4),
                "match_kind": answer.match_kind, "source_photo": _photo_name(face.source_photo),
                "nearest": best.identity, "threshold": None if face.threshold is None else round(face.threshold, 6),
                "held_to": face.held_to, "distortion": face.distortion,
                "quality": None if face.quality is None else round(face.quality, 4),
                "fallback": face.fallback, "no_face": face.no_face,
                "candidates": [{"identity": m.identity, "distance": round(m.distance, 4)} for m in candidates]}

    def gallery_listing(self) -> dict:
        from facesuite.embed import embedders_of_space
        from facesuite.gallery import display_uri

        gallery = self._open_gallery(create=False)
        where = display_uri(self.gallery_uri)
        if gallery is None:
            return {"path": where, "exists": False, "identities": [], "faces": 0}
        photos = self._enrolled_photos()
        # The store records its vectors' space; the embedders named are those that can search it.
        return {"path": where, "exists": True, "space": gallery.embedder, "embedders": embedders_of_space(gallery.embedder),
                "threshold": round(gallery.threshold, 6), "faces": len(gallery),
                "identities": [{"identity": i, "faces": n,
                                "thumbnail": self.thumbnails is not None and (self.thumbnails.has(i) or i in photos)}
                               for i, n in gallery.list()]}

    def _enrolled_photos(self) -> dict[str, tuple[str, bytes]]:
        """Each identity's first enrolled photo the gallery keeps a frame of: (source, frame)."""
        gallery = self._open_gallery(create=False)
        if gallery is None:
            return {}
        stamp, rows = gallery.store.frames(since=self._photos_stamp)
        if rows is not None:
            self._first_photos, self._photos_stamp = {}, stamp
            for identity, source, frame in rows:
                self._first_photos.setdefault(identity, (source, frame))
        return self._first_photos

    def thumbnail(self, identity: str) -> bytes | None:
        """``identity``'s picture (JPEG): the face stored when it was enrolled through this server;
        for one enrolled elsewhere (the CLI) made once from its first enrolled photo -- the face
        cut from the file when it is still there, else the photo's frame the gallery keeps for
        source matching (grey, whole photo) -- and stored; None when neither is there."""
        if self.thumbnails is None:
            return None
        picture = self.thumbnails.get(identity)
        if picture is not None:
            return picture
        photo = self._enrolled_photos().get(identity)
        if photo is None:
            return None
        from facesuite.gallery.source_match import frame_from_bytes

        source, frame = photo
        kept = frame_from_bytes(frame)
        enrolled = self._enrolled_file(source, kept)
        crops, _ = self.analysis.judged_crops([enrolled]) if enrolled is not None else ([], [])
        if crops:
            self.thumbnails.put(identity, crops[0].chip)
        else:
            self.thumbnails.put(identity, np.repeat(kept[..., None], 3, axis=2))
        return self.thumbnails.get(identity)

    @staticmethod
    def _enrolled_file(source: str, kept: np.ndarray) -> Decoded | None:
        """The file ``source`` decoded if it is still the photo enrolled (its frame is the ``kept``
        one), else None: a stored source is only a name -- an upload's file name, or a file since
        replaced -- and the server shows no file but the very photo enrolled."""
        from pathlib import Path

        from facesuite.gallery.source_match import frame_of
        from facesuite.io import decode

        if not Path(source).is_file():
            return None
        try:
            decoded = decode(source)
        except InputError:
            return None
        difference = np.abs(frame_of(decoded.pixels).astype(int) - kept.astype(int)).mean()
        return decoded if difference <= SAME_PHOTO_FRAME_DIFFERENCE else None

    def remove(self, identity: str) -> dict:
        gallery = self._open_gallery(create=False)
        missing = ApiError(404, f"no identity {identity!r} in the gallery")
        if gallery is None:
            raise missing
        try:
            removed = gallery.remove(identity)
        except InputError:  # unknown identity; its message names the gallery's folder, not for clients
            raise missing from None
        if self.thumbnails is not None:
            self.thumbnails.remove(identity)
        return {"identity": identity, "removed": removed, "identities": len(gallery.list()), "faces": len(gallery)}

    def cluster(self, uploads: Sequence[Decoded]) -> dict:
        """Every face of the uploaded photos grouped by person (named from the gallery when it
        holds anyone): clusters largest first, each face with its thumbnail."""
        import base64

        analysis = self._require_analysis()
        self._open_gallery(create=False)
        clusters = analysis.cluster(uploads)

        def face(row: int) -> dict:
            entry = clusters.faces[row]
            return {"photo": entry.path, "face": entry.index, "box": [round(v, 1) for v in entry.box],
                    "distance": None if entry.distance is None else round(entry.distance, 4),
                    "quality": None if entry.quality is None else round(entry.quality, 4), "reason": entry.reason,
                    "thumbnail": "data:image/jpeg;base64," + base64.b64encode(clusters.thumbnails[row]).decode("ascii")}

        return {"photos": len(uploads), "faces": len(clusters.faces), "edge_threshold": round(clusters.threshold, 6),
                "clusters": [{"id": c, "name": clusters.names.get(c), "size": clusters.size(c),
                              "faces": [face(row) for row in clusters.members(c)]} for c in clusters.ids()],
                "unclustered": [face(row) for row in clusters.unclustered()]}

    def embed_slice(self, dataset):
        """Embeddings (routed when the models allow) of one slice of an evaluation data set."""
        from facesuite.evaluate.recognition import embed_dataset

        return embed_dataset(self.analysis, dataset, progress=False)

    def face_chips(self, paths: Sequence[str]) -> dict[str, np.ndarray]:
        """Aligned chips of server-side files, for the faces in an evaluation's report."""
        from facesuite.report.faces import chips_of

        return chips_of(self.analysis)(paths)

    def operating_point(self):
        """The thresholds and quality floor every decision reads (facesuite.decide)."""
        return self.analysis.operating_point


def png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg_data_uri(image: np.ndarray, longest_side: int) -> str:
    """``image`` (RGB) shrunk to at most ``longest_side`` pixels a side, as a JPEG data URI."""
    import base64

    from PIL import Image

    picture = Image.fromarray(image)
    picture.thumbnail((longest_side, longest_side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    picture.convert("RGB").save(buffer, format="JPEG", quality=88)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def png_data_uri(image: np.ndarray) -> str:
    import base64

    return "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode("ascii")


def _photo_name(source: str | None) -> str | None:
    """An enrolled photo as an answer names it to a client: its file name, never the server's path
    to it (the CLI, on the server's own machine, gives the path)."""
    return None if source is None else PurePath(source).name
