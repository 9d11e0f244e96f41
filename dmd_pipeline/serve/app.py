"""The HTTP layer of ``dmd serve`` (FastAPI): a versioned JSON API, the report files and one web page.

Endpoints (``/v1/...`` need ``Authorization: Bearer <token>`` when a token is configured; the report and
its images also accept the HttpOnly report cookie that ``POST /v1/session`` sets, so that an
``<iframe>``/``<img>`` can load them; ``/``, ``/healthz`` and ``/openapi.json`` hold no data and are open):

* ``POST /v1/analyses`` multipart: ``file`` (the clip, or a photo: read by the face channel only, as
  ``dmd analyze photo.jpg``), optional ``transcript`` (text) and ``asr``
  (whisper | pocketsphinx | none) -> 202 ``{"id", "status", ...}``; 408 a stalled or too slow upload, 413
  over a limit (counted while the body streams in), 422 not a media file (or a playlist, no duration, a
  still image on a server without the face channel), 429 + ``Retry-After`` when the queue is full or the client has too many uploads arriving,
  507 the server's disk is full;
* ``GET /v1/analyses`` recent jobs; ``GET /v1/analyses/{id}`` status, progress, the result when done or
  the error; ``DELETE /v1/analyses/{id}``;
* ``GET /v1/analyses/{id}/report`` the HTML report; ``GET /v1/analyses/{id}/report/{file}`` its images
  (only from the job's own ``result_files/`` folder);
* ``POST /v1/session`` trades the token for the report cookie;
* ``GET /v1/models``, ``GET /healthz``, ``GET /openapi.json`` (no Swagger UI: it would need a CDN).

State-changing requests from another site are refused (403; see :mod:`.deps`). Errors are JSON
``{"detail": "..."}`` and never carry a traceback or a server path; a 500 is logged with its traceback on
the server (logger ``dmd_pipeline.serve``).
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from dmd_pipeline.serve.deps import ApiError, ServeSettings, csrf_problem
from dmd_pipeline.serve.jobs import JobStore
from dmd_pipeline.serve.live import router as live_router
from dmd_pipeline.serve.routes import router
from dmd_pipeline.serve.upload import ClientUploads

log = logging.getLogger("dmd_pipeline.serve")
_PAGE_CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' blob: data:; "
    "connect-src 'self'; media-src 'self' blob: mediastream:; frame-src 'self'; form-action 'none'; "
    "base-uri 'none'; frame-ancestors 'none'"
)


def create_app(store: JobStore, settings: ServeSettings | None = None) -> FastAPI:
    """The FastAPI application over a (not yet started) :class:`JobStore`; the app starts and stops it."""
    from dmd_pipeline import __version__ as version

    settings = settings or ServeSettings()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> Any:
        await asyncio.to_thread(store.start)
        try:
            yield
        finally:
            await asyncio.to_thread(store.close)

    app = FastAPI(
        title="dmd serve",
        version=version,
        description="Sentiment and emotion over time in a clip, with DMD. Results follow the "
        "analysis result schema 1.2 (the same as `dmd analyze`).",
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
        lifespan=lifespan,
    )
    app.state.store = store
    app.state.settings = settings
    app.state.uploads = ClientUploads(settings.max_uploads_per_client)
    app.state.refused_cross_site = 0
    _add_error_handlers(app)
    _add_guards(app, settings)
    _add_pages(app, store, settings, version)
    app.include_router(router)
    app.state.live_sessions = {}  # client address -> live sessions running
    app.state.live_models = None  # loaded on the first live session
    app.include_router(live_router)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else "error"
        return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": "invalid request parameters"}, status_code=422)

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"detail": "internal server error"}, status_code=500)


def _add_guards(app: FastAPI, settings: ServeSettings) -> None:
    @app.middleware("http")
    async def _guard(request: Request, call_next: Any) -> Response:
        hosts = settings.allowed_hosts
        problem = csrf_problem(request)
        if hosts is not None and (request.url.hostname or "").lower() not in hosts:
            resp: Response = JSONResponse({"detail": "unexpected Host header"}, status_code=421)
        elif problem is not None:
            request.app.state.refused_cross_site += 1
            resp = JSONResponse({"detail": problem}, status_code=403)
        else:
            resp = await call_next(request)
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("Referrer-Policy", "no-referrer")
        resp.headers.setdefault("Cache-Control", "no-store")
        return resp


def _add_pages(app: FastAPI, store: JobStore, settings: ServeSettings, version: str) -> None:
    page = (Path(__file__).with_name("page.html")).read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        body = page.replace("__TOKEN_REQUIRED__", "true" if settings.token else "false")
        return HTMLResponse(body, headers={"Content-Security-Policy": _PAGE_CSP})

    @app.get("/healthz", tags=["service"])
    async def healthz(request: Request) -> dict[str, Any]:
        """Liveness: ok, the version, workers, jobs per status, uploads arriving now and how many
        state-changing requests were refused as cross-site since the start."""
        state = request.app.state
        return {"status": "ok", "version": version, "workers": store.workers, "jobs": store.counts(),
                "uploads_in_progress": state.uploads.in_progress,
                "refused_cross_site": state.refused_cross_site}  # fmt: skip
