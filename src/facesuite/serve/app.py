"""The REST API and the web dashboard, one FastAPI app built by :func:`create_app`.

Every model and the gallery live on one worker thread (:class:`ModelService`): the gallery holds
SQLite connections, which may only be used by the thread that opened them, and two inference
calls at once would only fight over the same CPU cores anyway. Request handlers read uploads into
memory, decode them with :func:`facesuite.io.decode` (no temporary files), and hand the decoded
images to that thread. Every error reaches the client as JSON ``{"error": "..."}`` -- never a
traceback.

Safety, for a server that may be exposed: request bodies and decoded images are size-limited
(:class:`BodyLimit`, :func:`facesuite.io.load_image`); uploads are stored under generated names,
so a client's file name never becomes a path; evaluations read only folders under the configured
roots; :class:`RequestGuard` checks the API key on mutating routes, refuses cross-origin writes
and, on loopback, unknown Host headers (DNS rebinding). No CORS headers are sent.
"""

from __future__ import annotations

import hmac
import io
import logging
import math
import os
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypeVar

import numpy as np
from fastapi import FastAPI, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from facesuite import __version__
from facesuite.config import user_home
from facesuite.errors import InputError
from facesuite.io import (
    Decoded,
    EmptyFile,
    ImageTooLarge,
    ImageTooSmall,
    decode,
)

log = logging.getLogger("facesuite.serve")

STATIC_DIR = Path(__file__).resolve().parent / "static"
DEFAULT_MAX_UPLOAD_BYTES = 10 * 1024 * 1024
# Enrolling more faces than this in one request is better done with `facesuite gallery enroll`.
MAX_ENROLL_FILES = 20
# An evaluation is embedded in about this many slices, so the progress bar moves and dashboard
# requests get the model thread between slices instead of waiting for the whole evaluation.
EVAL_SLICES = 20
API_KEY_HEADER = "X-API-Key"
API_KEY_ENV = "FACESUITE_API_KEY"
# Routes that change server state (the gallery; evaluation reports on disk): they need the API key
# when the server has one. Every other POST only computes an answer from the uploaded images.
MUTATING_ROUTES = frozenset({("POST", "/gallery/enroll"), ("POST", "/jobs/recognition")})
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
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


# ---------------------------------------------------------------------------- models


class ModelService:
    """Owns the :class:`~facesuite.analysis.FaceAnalysis` and the gallery on one worker thread.

    Public methods must be called through :meth:`call` (or :meth:`submit`). They take uploads
    already decoded (:class:`~facesuite.io.Decoded`, named by the uploaded file's name).
    """

    def __init__(self, gallery: str, embedder: str = "default", use_cache: bool = True) -> None:
        # A gallery URI of any backend, as the `gallery` commands take it (facesuite.gallery).
        self.gallery_uri = gallery
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
            # Degrade step by step: analysis without gender, then verification and gallery only.
            self.analyzer_error = f"analysis models unavailable ({error})"
            log.warning(self.analyzer_error)
            try:
                self._analysis = FaceAnalysis(self._embedder_name, gender=None, **options)
                self._analysis.distortion  # noqa: B018
                self._can_analyse = True
            except InputError:
                self._analysis = FaceAnalysis(self._embedder_name, gender=None, routes=None, **options)
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

    def analyze(self, upload: Decoded, images: bool) -> dict:
        analysis = self._require_analysis()
        self._open_gallery(create=False)  # faces get an identity when the gallery holds anyone
        (face,) = analysis.get(upload)
        record = face.to_dict()
        if images:
            record["crop"] = png_data_uri(face.chip())
        return record

    def verify(self, first: Decoded, second: Decoded, images: bool) -> dict:
        record = self.analysis.verify(first, second).to_dict()
        if images:
            crops, _ = self.analysis.crops([first, second])
            record["crops"] = [png_data_uri(crop.chip) for crop in crops]
        return record

    def explain(self, upload: Decoded) -> tuple[bytes, dict]:
        from facesuite.classify.gender import LABELS, predict_files
        from facesuite.explain import gradcam, overlay

        model = self._require_analysis().gender
        if model is None:
            raise ApiError(503, self.analyzer_error or "no gender model loaded")
        (prediction,), _ = predict_files(model, [upload], self.analysis.extractor)
        heat, _ = gradcam(model.network, model.network.cam_layer(), prediction.chip, LABELS.index(prediction.label))
        info = {"gender": prediction.label, "p_female": round(prediction.p_female, 4)}
        return png_bytes(overlay(prediction.chip, heat)), info

    def enroll(self, identity: str, uploads: Sequence[Decoded]) -> dict:
        gallery = self._open_gallery(create=True)
        result = gallery.enroll(identity, uploads)
        if not result.faces:
            raise ApiError(422, "no usable face in the uploaded images")
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
        return {"path": upload.name, "identity": gallery.decide(best), "distance": round(best.distance, 4),
                "nearest": best.identity, "threshold": round(gallery.threshold, 6), "fallback": face.fallback,
                "candidates": [{"identity": m.identity, "distance": round(m.distance, 4)} for m in candidates]}

    def gallery_listing(self) -> dict:
        from facesuite.gallery import display_uri

        gallery = self._open_gallery(create=False)
        where = display_uri(self.gallery_uri)
        if gallery is None:
            return {"path": where, "exists": False, "identities": [], "faces": 0}
        return {"path": where, "exists": True, "embedder": gallery.embedder,
                "threshold": round(gallery.threshold, 6), "faces": len(gallery),
                "identities": [{"identity": i, "faces": n} for i, n in gallery.list()]}

    def embed_slice(self, dataset):
        """Embeddings (routed when the models allow) of one slice of an evaluation data set."""
        from facesuite.evaluate.recognition import embed_dataset

        return embed_dataset(self.analysis, dataset, progress=False)

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


# ---------------------------------------------------------------------------- evaluation jobs


@dataclass
class Job:
    id: str
    folder: str
    out: Path
    state: str = "queued"  # queued -> running -> done | failed
    done: int = 0
    total: int = 0
    message: str = ""
    metrics: dict = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    finished: float | None = None

    def to_dict(self) -> dict:
        return {
            "id": self.id, "folder": self.folder, "state": self.state, "done": self.done, "total": self.total,
            "message": self.message, "metrics": self.metrics,
            "seconds": round((self.finished or time.time()) - self.started, 1),
            "report_url": f"/jobs/{self.id}/report" if self.state == "done" else None,
        }


class JobRunner:
    """Recognition evaluations over server-side folders, each on its own background thread."""

    def __init__(self, service: ModelService, work_dir: Path, roots: Sequence[Path]) -> None:
        self.service = service
        self.work_dir = work_dir
        # Folders (and split files) a client may name must resolve inside one of these.
        self.roots = [root.expanduser().resolve() for root in roots]
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def start(self, folder: str, split: str | None) -> Job:
        from facesuite.data import read_identity_folders, read_split

        # Validated here so a wrong folder is answered at once, not as a failed job.
        dataset = read_identity_folders(self._readable(folder))
        if split:
            dataset = dataset.subset(read_split(self._readable(split)) & set(dataset.identities))
        if not dataset.distorted:
            raise InputError("no distorted probes (expected <identity>/distortion/<stem>_<type>.jpg)", folder)
        if len({i for _, i in dataset.clean}) < 2:
            raise InputError("needs clean images of at least two identities", folder)
        job = Job(uuid.uuid4().hex[:12], folder, self.work_dir / "jobs")
        job.out = job.out / job.id
        with self._lock:
            self._jobs[job.id] = job
        threading.Thread(target=self._run, args=(job, dataset), name=f"eval-{job.id}", daemon=True).start()
        return job

    def _readable(self, name: str) -> Path:
        """``name`` resolved (symbolic links and ``..`` included) if it lies under a root, else 403."""
        path = Path(name).expanduser().resolve()
        if not any(path.is_relative_to(root) for root in self.roots):
            raise ApiError(403, f"{name}: outside the folders this server may read (see facesuite serve --eval-root)")
        return path

    def get(self, job_id: str) -> Job:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise ApiError(404, f"no job {job_id!r}")
        return job

    def _run(self, job: Job, dataset) -> None:
        from facesuite.evaluate.recognition import (
            recognition_metrics,
            write_recognition_report,
        )

        try:
            identities = dataset.identities
            size = max(1, math.ceil(len(identities) / EVAL_SLICES))
            slices = [set(identities[i : i + size]) for i in range(0, len(identities), size)]
            job.total, job.state, job.message = len(dataset.clean) + len(dataset.distorted), "running", "embedding faces"
            parts = []
            for names in slices:
                subset = dataset.subset(names)
                parts.append(self.service.call(self.service.embed_slice, subset))
                job.done += len(subset.clean) + len(subset.distorted)
            data, skipped, routing = merge_embedded(parts)
            job.message = "computing metrics and plots"
            metrics = recognition_metrics(data, self.service.call(self.service.threshold))
            metrics.update(pipeline="routed" if routing else "single", skipped=len(skipped))
            if routing:
                metrics["routing"] = routing
            write_recognition_report(job.out, data, metrics, f"Recognition: {job.folder}")
            ident, verif = metrics["identification"], metrics["verification"]
            job.metrics = {"top1": round(ident["top1"], 4), "auc": round(verif["auc"], 4),
                           "tar_at_far_1pct": round(verif["tar_at_far_1pct"], 4), "probes": ident["probes"],
                           "identities": ident["identities"], "skipped": len(skipped)}
            job.state, job.message = "done", "finished"
        except (InputError, ApiError) as error:
            job.state, job.message = "failed", str(error)
        except Exception:  # a bug: keep the server up, log the traceback, tell the page
            log.exception("evaluation job %s failed", job.id)
            job.state, job.message = "failed", "internal error (see the server log)"
        finally:
            job.finished = time.time()


def merge_embedded(parts: Sequence[tuple]) -> tuple:
    """Join the ``embed_dataset`` results of several slices into one (data, skipped, routing)."""
    from facesuite.evaluate.recognition import EmbeddedSet

    sets = [p[0] for p in parts]
    data = EmbeddedSet(
        gallery_paths=[x for s in sets for x in s.gallery_paths],
        gallery_ids=[x for s in sets for x in s.gallery_ids],
        gallery=np.concatenate([s.gallery for s in sets if len(s.gallery)]),
        probe_paths=[x for s in sets for x in s.probe_paths],
        probe_ids=[x for s in sets for x in s.probe_ids],
        probe_types=[x for s in sets for x in s.probe_types],
        probe_sources=[x for s in sets for x in s.probe_sources],
        probes=np.concatenate([s.probes for s in sets if len(s.probes)]),
        gallery_views={view: np.concatenate([s.gallery_views[view] for s in sets]) for view in sets[0].gallery_views},
        probe_views=None if sets[0].probe_views is None else [x for s in sets for x in s.probe_views or []],
        view_scales=sets[0].view_scales,
    )
    skipped = [x for p in parts for x in p[1]]
    routing: dict = {}
    routed = [(p[2], len(p[0].probe_paths)) for p in parts if p[2]]
    if routed:
        # Each slice reports its detector accuracy; weight by its probe count.
        counted = [(r["detector_accuracy"], n) for r, n in routed if r["detector_accuracy"] is not None]
        total = sum(n for _, n in counted)
        routing = {"detector_accuracy": sum(a * n for a, n in counted) / total if total else None,
                   "routes": {k: v for r, _ in routed for k, v in r["routes"].items()}}
    return data, skipped, routing


# ---------------------------------------------------------------------------- uploads


class BodyLimit:
    """Answers 413 to any request body over ``limit`` bytes, declared or streamed.

    A declared Content-Length over the limit is refused before anything is read; a body that
    grows past the limit while streaming is cut off and whatever the app answers is replaced by
    the 413, so the multipart parser never spools more than ``limit`` bytes to disk.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(scope, receive, send)
            return
        received = 0
        exceeded = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    exceeded = True
                    return {"type": "http.disconnect"}
            return message

        replaced = False

        async def guarded_send(message: Message) -> None:
            nonlocal replaced
            if exceeded and not replaced:
                replaced = True
                await self._refuse(scope, receive, send)
            if not replaced:
                await send(message)

        await self.app(scope, limited_receive, guarded_send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        mb = self.limit / (1024 * 1024)
        await JSONResponse({"error": f"upload too large (limit {mb:g} MB per request)"}, status_code=413)(scope, receive, send)


class RequestGuard:
    """Checks run on the headers alone, before any request body is read.

    - ``allowed_hosts``: the Host header must name one of them. A server on loopback is otherwise
      reachable from any web page through DNS rebinding (evil.example resolving to 127.0.0.1).
    - A state-changing method with an ``Origin`` header naming another site is refused: a page on
      another origin can POST a multipart form without any CORS preflight.
    - With ``api_key``, :data:`MUTATING_ROUTES` need it in ``X-API-Key`` (or ``Authorization: Bearer``).
    """

    def __init__(self, app: ASGIApp, api_key: str | None, allowed_hosts: Sequence[str] | None) -> None:
        self.app = app
        self.api_key = api_key.encode() if api_key else None
        self.allowed_hosts = None if allowed_hosts is None else {h.lower() for h in allowed_hosts}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            problem = self._problem(scope)
            if problem is not None:
                status, message = problem
                await JSONResponse({"error": message}, status_code=status)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _problem(self, scope: Scope) -> tuple[int, str] | None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        if self.allowed_hosts is not None and _hostname(host) not in self.allowed_hosts:
            return 400, f"unexpected Host header {host!r}"
        method = scope["method"]
        if method not in ("GET", "HEAD", "OPTIONS") and "origin" in headers:
            origin = headers["origin"]
            if origin.partition("://")[2].lower() != host.lower():
                return 403, f"cross-origin request from {origin!r} refused"
        if self.api_key is not None and (method, scope["path"]) in MUTATING_ROUTES:
            given = headers.get(API_KEY_HEADER.lower()) or headers.get("authorization", "").removeprefix("Bearer ").strip()
            if not hmac.compare_digest(given.encode(), self.api_key):
                return 401, f"{method} {scope['path']} needs the server's API key (header {API_KEY_HEADER})"
        return None


def _hostname(host: str) -> str:
    """``host`` of a Host header ``host[:port]`` or ``[v6]:port``, lower-cased."""
    if host.startswith("["):
        return host[1 : host.find("]")].lower()
    return host.rsplit(":", 1)[0].lower() if host.count(":") == 1 else host.lower()


def _describe_upload(error: InputError, name: str) -> ApiError:
    """The loader's error as the status a client should see, naming the uploaded file."""
    if isinstance(error, ImageTooLarge):
        return ApiError(413, f"{name}: {error.message}")
    if isinstance(error, EmptyFile):
        return ApiError(400, f"{name}: {error.message}")
    if isinstance(error, ImageTooSmall):
        return ApiError(422, f"{name}: {error.message}")
    return ApiError(415, f"{name}: not a readable image: {error.message}")


def read_uploads(uploads: Sequence[UploadFile | None], limit: int, field_name: str = "image") -> list[Decoded]:
    """Each upload read into memory (at most ``limit`` bytes) and decoded, named by its file name;
    nothing is written to disk and a client's file name never becomes a path."""
    present = [u for u in uploads if u is not None and (u.filename or u.size)]
    if len(present) < len(uploads) or not present:
        raise ApiError(400, f"no file uploaded in field {field_name!r}")
    decoded = []
    for upload in present:
        name = upload.filename or field_name
        data = upload.file.read(limit + 1)
        if len(data) > limit:
            raise ApiError(413, f"{name}: upload too large (limit {limit / 2**20:g} MB)")
        try:
            decoded.append(decode(data, name))
        except InputError as error:
            raise _describe_upload(error, name) from None
    return decoded


# ---------------------------------------------------------------------------- the app


# Optional in the schema, so a missing file is answered by read_uploads with a clear 400.
Upload = Annotated[UploadFile | None, File()]
Uploads = Annotated[list[UploadFile] | None, File()]


class EvalRequest(BaseModel):
    folder: str
    split: str | None = None


def create_app(
    gallery: str | Path | None = None,
    embedder: str = "default",
    use_cache: bool = True,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    work_dir: str | Path | None = None,
    api_key: str | None = None,
    eval_roots: Sequence[str | Path] | None = None,
    allowed_hosts: Sequence[str] | None = None,
) -> FastAPI:
    """The API and the dashboard. ``gallery`` is a gallery URI (a folder, ``NAME.db`` for Milvus
    Lite or ``milvus://HOST:PORT/COLLECTION``; default the folder ``$FACESUITE_HOME/gallery``); evaluation
    reports go under ``work_dir`` (default ``$FACESUITE_HOME/serve``). Evaluations may read folders
    under ``eval_roots`` only (default: the data root, ``$FACESUITE_DATA``). ``api_key`` protects
    :data:`MUTATING_ROUTES`; ``allowed_hosts`` restricts the Host header (see :class:`RequestGuard`)."""
    from facesuite.config import data_root

    from facesuite.gallery import display_uri

    service = ModelService(os.fspath(gallery) if gallery else default_gallery(), embedder, use_cache)
    roots = [Path(root) for root in eval_roots] if eval_roots is not None else [data_root()]
    jobs = JobRunner(service, Path(work_dir) if work_dir else user_home() / "serve", roots)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        service.start()
        yield
        service.close()

    # Swagger/ReDoc pages pull their assets from a CDN; offline, the schema itself is the reference.
    app = FastAPI(title="facesuite", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.service, app.state.jobs = service, jobs
    app.add_middleware(BodyLimit, limit=max_upload_bytes)
    # Added last, so it runs first: a refused request's body is never read.
    app.add_middleware(RequestGuard, api_key=api_key, allowed_hosts=allowed_hosts)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, error: ApiError) -> JSONResponse:
        return JSONResponse({"error": error.message}, status_code=error.status)

    @app.exception_handler(InputError)
    async def _input_error(_: Request, error: InputError) -> JSONResponse:
        return JSONResponse({"error": str(error)}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(error.detail)}, status_code=error.status_code)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:]) or 'request'}: {e['msg']}" for e in error.errors())
        return JSONResponse({"error": problems or "invalid request"}, status_code=422)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, error: Exception) -> JSONResponse:
        log.error("unexpected error", exc_info=error)
        return JSONResponse({"error": "internal error (see the server log)"}, status_code=500)

    @app.get("/health")
    def health() -> dict:
        """Liveness and model state; never loads anything."""
        return {"status": "ok", "version": __version__, "models_loaded": service.loaded,
                "analysis": service.analyzer_error or ("ready" if service.loaded else "loading"),
                "gallery": display_uri(service.gallery_uri)}

    @app.post("/analyze")
    def analyze(image: Upload = None, images: bool = Query(False, description="add the aligned crop as a data URI")) -> dict:
        """Box, distortion and route, gender, and identity (when the gallery holds anyone) for one face."""
        (upload,) = read_uploads([image], max_upload_bytes)
        return service.call(service.analyze, upload, images)

    @app.post("/verify")
    def verify(image1: Upload = None, image2: Upload = None,
               images: bool = Query(False, description="add both aligned crops as data URIs")) -> dict:
        """Same person or not: cosine distance against the calibrated threshold."""
        first, second = read_uploads([image1, image2], max_upload_bytes, "image1 and image2")
        return service.call(service.verify, first, second, images)

    @app.post("/explain", response_class=Response, responses={200: {"content": {"image/png": {}}}})
    def explain(image: Upload = None) -> Response:
        """Grad-CAM overlay (PNG) of the gender decision on the aligned face."""
        (upload,) = read_uploads([image], max_upload_bytes)
        png, info = service.call(service.explain, upload)
        return Response(png, media_type="image/png", headers={"X-Gender": info["gender"], "X-P-Female": str(info["p_female"])})

    @app.post("/gallery/enroll")
    def enroll(identity: str = Form(...), image: Uploads = None) -> dict:
        """Add one or more face images of ``identity`` to the gallery (one transaction)."""
        uploads = image or [None]
        if len(uploads) > MAX_ENROLL_FILES:
            raise ApiError(422, f"at most {MAX_ENROLL_FILES} images per request")
        return service.call(service.enroll, identity, read_uploads(uploads, max_upload_bytes))

    @app.post("/gallery/identify")
    def identify(image: Upload = None, top_k: int = Query(3, ge=1, le=50)) -> dict:
        """Who this is: the best match (``unknown`` beyond the threshold) and the nearest candidates."""
        (upload,) = read_uploads([image], max_upload_bytes)
        return service.call(service.identify, upload, top_k)

    @app.get("/gallery")
    def gallery_listing() -> dict:
        """Enrolled identities and their face counts."""
        return service.call(service.gallery_listing)

    @app.post("/jobs/recognition", status_code=202)
    def start_evaluation(request: EvalRequest) -> dict:
        """Start `eval recognition` on a server-side identity folder; poll ``GET /jobs/{id}``."""
        return jobs.start(request.folder, request.split).to_dict()

    @app.get("/jobs/{job_id}")
    def job_status(job_id: str) -> dict:
        return jobs.get(job_id).to_dict()

    @app.get("/jobs/{job_id}/report", response_class=FileResponse)
    def job_report(job_id: str) -> FileResponse:
        job = jobs.get(job_id)
        if job.state != "done":
            raise ApiError(409, f"job {job_id} is {job.state}")
        return FileResponse(job.out / "report.html", media_type="text/html")

    for route, page in (("/", "analyze.html"), ("/pair", "pair.html"), ("/evaluate", "evaluate.html"), ("/gallery-page", "gallery.html")):
        app.add_api_route(route, _page(page), methods=["GET"], include_in_schema=False)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def _page(name: str) -> Callable[[], FileResponse]:
    def page() -> FileResponse:
        return FileResponse(STATIC_DIR / name, media_type="text/html")

    return page
