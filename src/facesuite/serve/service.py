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
from typing import Any, TypeVar

import numpy as np

from facesuite.config import user_home
from facesuite.errors import InputError, missing_extra
from facesuite.io import Decoded
from facesuite.serve.thumbnails import ThumbnailStore

log = logging.getLogger("facesuite.serve")
T = TypeVar("T")


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
                 thumbnails: ThumbnailStore | None = None) -> None:
        # A gallery URI of any backend, as the `gallery` commands take it (facesuite.gallery).
        self.gallery_uri = gallery
        self.thumbnails = thumbnails
        self._embedder_name = embedder
        self._use_cache = use_cache
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="facesuite-models")
        self._analysis = None
        self._gallery = None
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
            self._analysis = FaceAnalysis(self._embedder_name, **options)
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

    def analyze(self, upload: Decoded, images: bool, all_faces: bool = False) -> dict:
        """The main face's record; with ``all_faces`` also ``faces``, every face's record
        (main face first, the first being the same face)."""
        analysis = self._require_analysis()
        self._open_gallery(create=False)  # faces get an identity when the gallery holds anyone
        faces = analysis.get(upload, max_faces=None if all_faces else 1)
        records = [face.to_dict() | ({"crop": png_data_uri(face.chip())} if images else {}) for face in faces]
        return records[0] | ({"faces": records} if all_faces else {})

    def verify(self, first: Decoded, second: Decoded, images: bool) -> dict:
        from facesuite.embed.calibration import load_far_marks

        record = self.analysis.verify(first, second).to_dict()
        # Where the distance sits on the calibrated scale: the thresholds at FAR 1% and 0.1%.
        record["far_marks"] = [{"far": far, "threshold": round(t, 6)} for far, t in sorted(load_far_marks(self.analysis.embedder.name).items())]
        if images:
            crops, _ = self.analysis.crops([first, second])
            record["crops"] = [png_data_uri(crop.chip) for crop in crops]
        return record

    def explain(self, upload: Decoded) -> tuple[bytes, dict]:
        try:
            from facesuite.explain import explain_gender
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

    def enroll(self, identity: str, uploads: Sequence[Decoded]) -> dict:
        gallery = self._open_gallery(create=True)
        result = gallery.enroll(identity, uploads)
        if not result.faces:
            raise ApiError(422, "no usable face in the uploaded images")
        if self.thumbnails is not None and not self.thumbnails.has(identity):
            # Uploads arrive decoded, so none is skipped: the first one's face is the picture.
            crops, _ = self._analysis.crops(uploads[:1])
            if crops:
                self.thumbnails.put(identity, crops[0].chip)
        return {"identity": identity, "enrolled": result.faces, "skipped": [str(s.source) for s in result.skipped],
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
        if face.no_face and answer.match_kind != "source":
            return {"path": upload.name, "identity": face.identity, "no_face": True, "fallback": face.fallback,
                    "distance": None, "match_kind": None, "source_photo": None, "nearest": None, "threshold": None,
                    "candidates": []}
        return {"path": upload.name, "identity": face.identity, "distance": round(best.distance, 4),
                "match_kind": answer.match_kind, "source_photo": face.source_photo,
                "nearest": best.identity, "threshold": round(gallery.threshold_for(face.distortion), 6), "fallback": face.fallback,
                "no_face": face.no_face,
                "candidates": [{"identity": m.identity, "distance": round(m.distance, 4)} for m in candidates]}

    def gallery_listing(self) -> dict:
        from facesuite.gallery import display_uri

        gallery = self._open_gallery(create=False)
        where = display_uri(self.gallery_uri)
        if gallery is None:
            return {"path": where, "exists": False, "identities": [], "faces": 0}
        return {"path": where, "exists": True, "embedder": gallery.embedder,
                "threshold": round(gallery.threshold, 6), "faces": len(gallery),
                "identities": [{"identity": i, "faces": n, "thumbnail": self.thumbnails is not None and self.thumbnails.has(i)}
                               for i, n in gallery.list()]}

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

    def threshold(self) -> float:
        return self.analysis.threshold


def png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def png_data_uri(image: np.ndarray) -> str:
    import base64

    return "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode("ascii")
