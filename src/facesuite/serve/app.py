"""The REST API and the web dashboard, one FastAPI app built by :func:`create_app`.

Routes only parse and format: the models answer on :class:`~facesuite.serve.service.ModelService`'s
thread, evaluations run in :mod:`~facesuite.serve.jobs`, uploads are decoded in memory by
:mod:`~facesuite.serve.uploads`, and :mod:`~facesuite.serve.security` checks every request first.
Every error reaches the client as JSON ``{"error": "..."}`` -- never a traceback; a fault of ours
is a logged 500.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Form, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from facesuite import __version__
from facesuite.config import user_home
from facesuite.errors import InputError
from facesuite.serve.jobs import JobRunner
from facesuite.serve.security import BodyLimit, RequestGuard
from facesuite.serve.service import ApiError, ModelService, default_gallery, log
from facesuite.serve.thumbnails import ThumbnailStore
from facesuite.serve.uploads import (
    DEFAULT_MAX_UPLOAD_BYTES,
    MAX_CLUSTER_FILES,
    MAX_ENROLL_FILES,
    Upload,
    Uploads,
    read_uploads,
)

STATIC_DIR = Path(__file__).resolve().parent / "static"


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
    gender_model: str | Path | None = None,
    age_model: str | Path | None = None,
) -> FastAPI:
    """The API and the dashboard. ``gallery`` is a gallery URI (a folder, ``NAME.db`` for Milvus
    Lite or ``milvus://HOST:PORT/COLLECTION``; default the folder ``$FACESUITE_HOME/gallery``); evaluation
    reports go under ``work_dir`` (default ``$FACESUITE_HOME/serve``). Evaluations may read folders
    under ``eval_roots`` only (default: the data root, ``$FACESUITE_DATA``). ``api_key`` protects
    :data:`MUTATING_ROUTES`; ``allowed_hosts`` restricts the Host header (see :class:`RequestGuard`).
    ``gender_model`` / ``age_model``: model folders trained by ``facesuite train`` (default: the shipped ones)."""
    from facesuite.config import data_root
    from facesuite.gallery import display_uri

    work = Path(work_dir) if work_dir else user_home() / "serve"
    gallery_uri = os.fspath(gallery) if gallery else default_gallery()
    service = ModelService(gallery_uri, embedder, use_cache, ThumbnailStore(work / "thumbnails", gallery_uri),
                           gender_model or "default", age_model or "default")
    roots = [Path(root) for root in eval_roots] if eval_roots is not None else [data_root()]
    jobs = JobRunner(service, work, roots)

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
    def analyze(image: Upload = None, images: bool = Query(False, description="add the aligned crop as a data URI"),
                all_faces: bool = Query(False, description="add `faces`: every face of the image, main face first"),
                preview: bool = Query(False, description="add `preview`: the decoded image as a JPEG data URI "
                                                         "(any upload format), and `size`: its own width and height")) -> dict:
        """Box, distortion and route, gender, and identity (when the gallery holds anyone) for the
        main face; with ``all_faces`` the same for every face, in ``faces``."""
        (upload,) = read_uploads([image], max_upload_bytes)
        return service.call(service.analyze, upload, images, all_faces, preview)

    @app.post("/verify")
    def verify(image1: Upload = None, image2: Upload = None,
               images: bool = Query(False, description="add both aligned crops as data URIs")) -> dict:
        """Same person or not: cosine distance against the calibrated threshold."""
        first, second = read_uploads([image1, image2], max_upload_bytes, ("image1", "image2"))
        return service.call(service.verify, first, second, images)

    @app.post("/explain", response_class=Response, responses={200: {"content": {"image/png": {}}}})
    def explain(image: Upload = None) -> Response:
        """Grad-CAM overlay (PNG) of the gender decision on the aligned face."""
        (upload,) = read_uploads([image], max_upload_bytes)
        png, info = service.call(service.explain, upload)
        return Response(png, media_type="image/png", headers={"X-Gender": info["gender"], "X-P-Female": str(info["p_female"])})

    @app.post("/gallery/enroll")
    def enroll(identity: str = Form(...), image: Uploads = None) -> dict:
        """Add one or more face images of ``identity`` to the gallery (one transaction); an upload
        that is not a readable image is skipped and named in ``skipped``, as a folder's is."""
        uploads = image or [None]
        if len(uploads) > MAX_ENROLL_FILES:
            raise ApiError(422, f"at most {MAX_ENROLL_FILES} images per request")
        unreadable: list[str] = []
        decoded = read_uploads(uploads, max_upload_bytes, skipped=unreadable)
        return service.call(service.enroll, identity, decoded, unreadable)

    @app.post("/gallery/identify")
    def identify(image: Upload = None, top_k: int = Query(3, ge=1, le=50)) -> dict:
        """Who this is: the best match (``unknown`` beyond the threshold) and the nearest candidates."""
        (upload,) = read_uploads([image], max_upload_bytes)
        return service.call(service.identify, upload, top_k)

    @app.post("/cluster")
    def cluster(image: Uploads = None) -> dict:
        """Every face of the uploaded photos grouped by person: clusters largest first (named from
        the gallery when most of a cluster's identified faces are one identity), then the faces
        left unclustered (no face found, or below the quality floor) with their reason."""
        uploads = image or [None]
        if len(uploads) > MAX_CLUSTER_FILES:
            raise ApiError(422, f"at most {MAX_CLUSTER_FILES} images per request (use facesuite cluster for more)")
        return service.call(service.cluster, read_uploads(uploads, max_upload_bytes))

    @app.get("/gallery")
    def gallery_listing() -> dict:
        """Enrolled identities, their face counts and whether the server has a picture of each."""
        return service.call(service.gallery_listing)

    @app.delete("/gallery")
    def gallery_remove(identity: str = Query(..., min_length=1)) -> dict:
        """Remove ``identity`` and every face of it from the gallery (and its picture)."""
        return service.call(service.remove, identity)

    @app.get("/gallery/thumbnail", response_class=Response, responses={200: {"content": {"image/jpeg": {}}}})
    def gallery_thumbnail(identity: str = Query(..., min_length=1)) -> Response:
        """``identity``'s face (JPEG): its first face enrolled through this server, else its first
        enrolled photo's (the CLI's enrolments)."""
        picture = service.call(service.thumbnail, identity)
        if picture is None:
            raise ApiError(404, f"no picture of {identity!r} (not enrolled, or its gallery keeps no photo)")
        return Response(picture, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

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

    for route, page in (("/", "analyze.html"), ("/pair", "pair.html"), ("/evaluate", "evaluate.html"), ("/gallery-page", "gallery.html"),
                        ("/cluster-page", "cluster.html")):
        app.add_api_route(route, _page(page), methods=["GET"], include_in_schema=False)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def _page(name: str) -> Callable[[], FileResponse]:
    def page() -> FileResponse:
        return FileResponse(STATIC_DIR / name, media_type="text/html")

    return page
