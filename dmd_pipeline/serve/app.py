"""The HTTP layer of ``dmd serve`` (FastAPI): a versioned JSON API, the report files and one web page.

Endpoints (``/v1/...`` need ``Authorization: Bearer <token>`` when a token is configured; the report and
its images also accept the ``dmd_token`` cookie the page sets, so that an ``<iframe>``/``<img>`` can load
them; ``/``, ``/healthz`` and ``/openapi.json`` hold no data and are open):

* ``POST /v1/analyses`` multipart: ``file`` (the clip), optional ``transcript`` (text) and ``asr``
  (whisper | pocketsphinx | none) -> 202 ``{"id", "status", ...}``; 413 over the size limit (counted while
  the body streams in), 422 not a media file, 429 + ``Retry-After`` when the queue is full;
* ``GET /v1/analyses`` recent jobs; ``GET /v1/analyses/{id}`` status, progress, the result when done or
  the error; ``DELETE /v1/analyses/{id}``;
* ``GET /v1/analyses/{id}/report`` the HTML report; ``GET /v1/analyses/{id}/report/{file}`` its images
  (only from the job's own ``result_files/`` folder);
* ``GET /v1/models``, ``GET /healthz``, ``GET /openapi.json`` (no Swagger UI: it would need a CDN).

Errors are JSON ``{"detail": "..."}`` and never carry a traceback or a server path.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import re
import secrets
import shutil
import time
import urllib.parse
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from dmd_pipeline.serve.jobs import REPORT_ASSETS, RESULT_NAME, Job, JobStore, QueueFull, new_job_id

API_VERSION = "v1"
ASR_CHOICES = ("whisper", "pocketsphinx", "none")
MAX_FIELD_BYTES = 1 << 20  # transcript and other text fields, together
FORM_OVERHEAD = 64 << 10  # multipart boundaries and part headers on top of the file
_CONTENT_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".svg": "image/svg+xml"}
_PAGE_CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' blob: data:; "
    "connect-src 'self'; frame-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
)
_REPORT_CSP = "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; frame-ancestors 'self'"


class ApiError(Exception):
    """An error answer: ``status`` and a client-safe ``detail``."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        self.status, self.detail, self.headers = status, detail, headers or {}
        super().__init__(detail)


def _safe_filename(name: str) -> str:
    """A display name for the client's file name (never used as a path)."""
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = re.sub(r"[\x00-\x1f\x7f]", "", name).strip()[:200]
    return name or "upload"


def _upload_name(filename: str) -> str:
    """A random stored name keeping a known media extension (ffprobe decides the type anyway)."""
    from dmd_pipeline.analysis.batch import MEDIA_EXTS

    ext = Path(filename).suffix.lower().lstrip(".")
    return f"upload-{secrets.token_hex(8)}" + (f".{ext}" if ext in MEDIA_EXTS else "")


class _Upload:
    """Streams a multipart body into the job folder, counting bytes as they arrive."""

    def __init__(self, boundary: bytes, folder: Path, max_bytes: int) -> None:
        from python_multipart.multipart import MultipartParser

        self.folder, self.max_bytes = folder, max_bytes
        self.fields: dict[str, bytearray] = {}
        self.filename: str | None = None
        self.stored: str | None = None
        self.size = 0
        self.field_bytes = 0
        self.n_files = 0
        self._headers: dict[str, bytes] = {}
        self._hname = bytearray()
        self._hvalue = bytearray()
        self._fh: Any = None
        self._field: str | None = None
        self.error: ApiError | None = None
        self.parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._part_begin,
                "on_header_field": lambda b, s, e: self._hname.extend(b[s:e]),
                "on_header_value": lambda b, s, e: self._hvalue.extend(b[s:e]),
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": self._part_data,
                "on_part_end": self._part_end,
            },
        )

    def _part_begin(self) -> None:
        self._headers, self._field = {}, None

    def _header_end(self) -> None:
        self._headers[bytes(self._hname).decode("latin-1").lower()] = bytes(self._hvalue)
        self._hname.clear()
        self._hvalue.clear()

    def _headers_finished(self) -> None:
        from python_multipart.multipart import parse_options_header

        _, params = parse_options_header(self._headers.get("content-disposition", b""))
        name = params.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" in params and name == "file":
            self.n_files += 1
            if self.n_files > 1:
                raise ApiError(400, "send one file per analysis")
            self.filename = _safe_filename(params[b"filename"].decode("utf-8", "replace"))
            self.stored = _upload_name(self.filename)
            self._fh = open(self.folder / self.stored, "wb")  # noqa: SIM115 - closed in _part_end/close
        elif b"filename" in params:
            raise ApiError(400, f"unexpected file field {name!r}: the clip goes in the field 'file'")
        else:
            self._field = name
            self.fields.setdefault(name, bytearray())

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        n = end - start
        if self._fh is not None:
            self.size += n
            if self.size > self.max_bytes:
                raise ApiError(413, f"the file is larger than the limit of {self.max_bytes // (1 << 20)} MB")
            self._fh.write(data[start:end])
        elif self._field is not None:
            self.field_bytes += n
            if self.field_bytes > MAX_FIELD_BYTES:
                raise ApiError(413, "the text fields are larger than 1 MB")
            self.fields[self._field].extend(data[start:end])

    def _part_end(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def write(self, chunk: bytes) -> None:
        """Feed one chunk of the body."""
        self.parser.write(chunk)

    def close(self) -> None:
        """Close the file being written, if any."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def text(self, name: str) -> str | None:
        """A text field's value, or None when it was not sent."""
        v = self.fields.get(name)
        return None if v is None else v.decode("utf-8", "replace")


def _token_ok(expected: str | None, given: str | None) -> bool:
    if expected is None:
        return True
    if not given:
        return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def create_app(
    store: JobStore,
    token: str | None = None,
    max_upload_mb: float = 500.0,
    model_names: list[str] | None = None,
    allowed_hosts: set[str] | None = None,
) -> FastAPI:
    """The FastAPI application over a (not yet started) :class:`JobStore`; the app starts and stops it.

    ``allowed_hosts``: host names the ``Host`` header may carry (None: any). ``dmd serve`` on a loopback
    address without a token sets the loopback names, so that a web page elsewhere cannot reach the API by
    DNS rebinding."""
    from dmd_pipeline import __version__ as version

    max_bytes = int(max_upload_mb * (1 << 20))
    page = (Path(__file__).with_name("page.html")).read_text(encoding="utf-8")

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

    def auth(request: Request, cookie_ok: bool = False) -> None:
        if token is None:
            return
        h = request.headers.get("authorization", "")
        given = h[7:].strip() if h[:7].lower() == "bearer " else None
        if given is None and cookie_ok:
            c = request.cookies.get("dmd_token")
            given = urllib.parse.unquote(c) if c else None
        if not _token_ok(token, given):
            raise ApiError(401, "missing or wrong token (send Authorization: Bearer <token>)",
                           {"WWW-Authenticate": "Bearer"})  # fmt: skip

    def job_or_404(job_id: str) -> Job:
        job = store.get(job_id)
        if job is None:
            raise ApiError(404, "no such analysis (unknown id, deleted or expired)")
        return job

    def view(job: Job, full: bool = True) -> dict[str, Any]:
        d = job.public()
        base = f"/{API_VERSION}/analyses/{job.id}"
        stage = {"queued": "queued", "running": "analysing", "done": "done", "failed": "failed"}[job.status]
        progress: dict[str, Any] = {"stage": stage}
        if job.status == "queued":
            progress["queue_position"] = store.queue_position(job)
        if job.status == "running" and job.started:
            progress["elapsed_s"] = round(time.time() - job.started, 1)
        d["progress"] = progress
        d["links"] = {"self": base}
        if job.status == "done":
            d["links"]["report"] = f"{base}/report"
            d["links"]["timeline"] = f"{base}/report/{REPORT_ASSETS}/timeline.png"
            if full:
                d["result"] = store.result(job)
        return d

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
    async def _internal_error(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": "internal server error"}, status_code=500)

    @app.middleware("http")
    async def _headers(request: Request, call_next: Any) -> Response:
        if allowed_hosts is not None and (request.url.hostname or "").lower() not in allowed_hosts:
            resp: Response = JSONResponse({"detail": "unexpected Host header"}, status_code=421)
        else:
            resp = await call_next(request)
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("Referrer-Policy", "no-referrer")
        resp.headers.setdefault("Cache-Control", "no-store")
        return resp

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        body = page.replace("__TOKEN_REQUIRED__", "true" if token else "false")
        return HTMLResponse(body, headers={"Content-Security-Policy": _PAGE_CSP})

    @app.get("/healthz", tags=["service"])
    async def healthz() -> dict[str, Any]:
        """Liveness: ok, the version, workers and jobs per status."""
        return {"status": "ok", "version": version, "workers": store.workers, "jobs": store.counts()}

    @app.get(f"/{API_VERSION}/models", tags=["service"])
    async def models(request: Request) -> dict[str, Any]:
        """The models every analysis runs (name, role, task, class names, modalities)."""
        auth(request)
        from dmd_pipeline.analysis.registry import read_model_meta, resolve_model_dir
        from dmd_pipeline.analysis.result import model_role

        out = []
        for ref in model_names or []:
            name, d = resolve_model_dir(ref)
            meta = read_model_meta(d)
            task = str(meta.get("task") or "regression")
            out.append(
                {
                    "name": name,
                    "role": model_role(task),
                    "task": task,
                    "class_names": meta.get("class_names"),
                    "modalities": meta.get("modalities"),
                    "description": meta.get("description"),
                }
            )
        return {"models": out}

    upload_schema = {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {
                            "file": {"type": "string", "format": "binary", "description": "the clip"},
                            "transcript": {"type": "string", "description": "what is said (skips ASR)"},
                            "asr": {"type": "string", "enum": list(ASR_CHOICES), "default": "whisper"},
                        },
                    }
                }
            },
        }
    }

    @app.post(f"/{API_VERSION}/analyses", status_code=202, tags=["analyses"], openapi_extra=upload_schema)
    async def create(request: Request) -> JSONResponse:
        """Upload a clip (multipart field ``file``; optional ``transcript`` text and ``asr``) for analysis."""
        from dmd_pipeline.errors import InputError
        from dmd_pipeline.media import probe

        auth(request)
        ctype = request.headers.get("content-type", "")
        from python_multipart.multipart import parse_options_header

        kind, params = parse_options_header(ctype)
        boundary = params.get(b"boundary")
        if kind != b"multipart/form-data" or not boundary:
            raise ApiError(415, "send multipart/form-data with the clip in the field 'file'")
        clen = request.headers.get("content-length")
        if clen is not None and clen.isdigit() and int(clen) > max_bytes + MAX_FIELD_BYTES + FORM_OVERHEAD:
            raise ApiError(413, f"the upload is larger than the limit of {max_upload_mb:g} MB")
        try:
            slot = store.reservation()
            slot.__enter__()
        except QueueFull as exc:
            raise ApiError(429, str(exc), {"Retry-After": str(exc.retry_after_s)}) from None
        job_id = new_job_id()
        tmp = store.incoming_dir / job_id
        up: _Upload | None = None
        try:
            tmp.mkdir(parents=True)
            up = _Upload(boundary, tmp, max_bytes)
            total = 0
            async for chunk in request.stream():
                total += len(chunk)
                if total > max_bytes + MAX_FIELD_BYTES + FORM_OVERHEAD:
                    raise ApiError(413, f"the upload is larger than the limit of {max_upload_mb:g} MB")
                up.write(chunk)
            up.parser.finalize()
            up.close()
            if up.stored is None:
                raise ApiError(400, "no file: send the clip in the multipart field 'file'")
            if up.size == 0:
                raise ApiError(422, "the file is empty")
            asr = (up.text("asr") or "whisper").strip().lower()
            if asr not in ASR_CHOICES:
                raise ApiError(422, f"asr must be one of {', '.join(ASR_CHOICES)}")
            transcript = (up.text("transcript") or "").strip()
            try:
                info = await asyncio.to_thread(probe, tmp / up.stored)
            except InputError as exc:
                raise ApiError(422, f"not a media file we can analyse: {store.scrub(exc.reason)}") from None
            if transcript:
                (tmp / "transcript.txt").write_text(transcript + "\n", encoding="utf-8")
            job = Job(
                id=job_id,
                filename=up.filename or "upload",
                upload=up.stored,
                size=up.size,
                asr=asr,
                has_transcript=bool(transcript),
            )
            os.replace(tmp, store.jobs_dir / job_id)
            store.add(job)
        except ApiError:
            raise
        except Exception as exc:
            from python_multipart.exceptions import MultipartParseError

            if isinstance(exc, MultipartParseError):
                raise ApiError(400, "malformed multipart body") from None
            raise
        finally:
            if up is not None:
                up.close()
            shutil.rmtree(tmp, ignore_errors=True)
            slot.__exit__(None, None, None)
        body = view(job, full=False)
        body["media"] = {"duration": round(info.duration, 3), "has_audio": info.has_audio,
                         "has_video": info.has_video}  # fmt: skip
        return JSONResponse(body, status_code=202, headers={"Location": body["links"]["self"]})

    @app.get(f"/{API_VERSION}/analyses", tags=["analyses"])
    async def list_jobs(request: Request, limit: int = 50) -> dict[str, Any]:
        """Recent jobs, newest first (without their results)."""
        auth(request)
        return {"jobs": [view(j, full=False) for j in store.list(min(max(limit, 0), 500))]}

    @app.get(f"/{API_VERSION}/analyses/{{job_id}}", tags=["analyses"])
    async def get_job(request: Request, job_id: str) -> dict[str, Any]:
        """A job: status (queued/running/done/failed), progress, and the result or the error."""
        auth(request)
        return view(job_or_404(job_id))

    @app.delete(f"/{API_VERSION}/analyses/{{job_id}}", tags=["analyses"])
    async def delete_job(request: Request, job_id: str) -> dict[str, Any]:
        """Remove a job and every file of it."""
        auth(request)
        job_or_404(job_id)
        await asyncio.to_thread(store.delete, job_id)
        return {"id": job_id, "deleted": True}

    @app.get(f"/{API_VERSION}/analyses/{{job_id}}/report", tags=["analyses"], response_class=HTMLResponse)
    async def report(request: Request, job_id: str) -> HTMLResponse:
        """The job's HTML report (its images load from ``report/result_files/...``)."""
        auth(request, cookie_ok=True)
        job = job_or_404(job_id)
        page_path = store.job_dir(job.id) / f"{RESULT_NAME}.html"
        if job.status != "done" or not page_path.is_file():
            raise ApiError(404, f"no report: the analysis is {job.status}")
        text = page_path.read_text(encoding="utf-8")
        base = f'<base href="/{API_VERSION}/analyses/{job.id}/report/">'
        text = text.replace("<head>", "<head>" + base, 1)
        return HTMLResponse(text, headers={"Content-Security-Policy": _REPORT_CSP})

    @app.get(f"/{API_VERSION}/analyses/{{job_id}}/report/{{file:path}}", tags=["analyses"])
    async def report_file(request: Request, job_id: str, file: str) -> FileResponse:
        """One image of the job's report, only from its own ``result_files/`` folder."""
        auth(request, cookie_ok=True)
        job = job_or_404(job_id)
        root = (store.job_dir(job.id) / REPORT_ASSETS).resolve()
        parts = file.split("/")
        bad = (
            not file
            or "\\" in file
            or "\x00" in file
            or file.startswith("/")
            or any(p in ("", ".", "..") for p in parts)
            or parts[0] != REPORT_ASSETS
            or len(parts) < 2
        )
        if bad:
            raise ApiError(404, "no such report file")
        target = root.joinpath(*parts[1:])
        try:
            real = target.resolve(strict=True)
        except (OSError, RuntimeError):
            raise ApiError(404, "no such report file") from None
        if target.is_symlink() or not real.is_relative_to(root) or not real.is_file():
            raise ApiError(404, "no such report file")
        ctype = _CONTENT_TYPES.get(real.suffix.lower(), "application/octet-stream")
        return FileResponse(real, media_type=ctype, headers={"Content-Security-Policy": "default-src 'none'"})

    return app
