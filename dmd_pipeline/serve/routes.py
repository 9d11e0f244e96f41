"""The routes of ``dmd serve``'s ``/v1`` API, as one FastAPI :class:`~fastapi.APIRouter`.

Each route takes the job store and the settings as dependencies (:mod:`.deps`) and answers JSON; errors are
:class:`~dmd_pipeline.serve.deps.ApiError`. The upload route streams the body to disk under the limits of
:mod:`.upload`; an upload counts against the job queue only once its body has arrived and been probed.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse

from dmd_pipeline.serve.deps import (
    API_VERSION,
    REPORT_COOKIE,
    REPORT_COOKIE_PATH,
    ApiError,
    ServeSettings,
    get_settings,
    get_store,
    require_report_access,
    require_token,
)
from dmd_pipeline.serve.jobs import REPORT_ASSETS, RESULT_NAME, Job, JobStore, QueueFull, new_job_id
from dmd_pipeline.serve.upload import (
    DISK_FULL,
    FORM_OVERHEAD,
    MAX_FIELD_BYTES,
    MultipartUpload,
    is_disk_full,
    timed_chunks,
)

ASR_CHOICES = ("whisper", "pocketsphinx", "none")
_CONTENT_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".svg": "image/svg+xml"}
_REPORT_CSP = "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; frame-ancestors 'self'"
UPLOAD_SCHEMA = {
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
                        "language": {
                            "type": "string",
                            "default": "auto",
                            "description": "spoken language: auto, en or a Whisper language code (pl, de, ...)",
                        },
                        "asr_model": {
                            "type": "string",
                            "enum": ["base", "tiny.en"],
                            "default": "base",
                            "description": "the Whisper model that transcribes English (other languages: base)",
                        },
                    },
                }
            }
        },
    }
}

router = APIRouter(prefix=f"/{API_VERSION}")


def job_or_404(store: JobStore, job_id: str) -> Job:
    """The job, or 404."""
    job = store.get(job_id)
    if job is None:
        raise ApiError(404, "no such analysis (unknown id, deleted or expired)")
    return job


def view(store: JobStore, job: Job, full: bool = True) -> dict[str, Any]:
    """A job as the API shows it: its public fields, progress, links and (``full``, when done) the result."""
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
        if job.duration is None or job.duration > 0:  # a photo has no timeline
            d["links"]["timeline"] = f"{base}/report/{REPORT_ASSETS}/timeline.png"
        if full:
            d["result"] = store.result(job)
    return d


@router.get("/models", tags=["service"], dependencies=[Depends(require_token)])
async def models(settings: ServeSettings = Depends(get_settings)) -> dict[str, Any]:
    """The models every analysis runs (name, role, task, class names, modalities; the face model too)."""
    from dmd_pipeline.analysis.registry import describe_model, resolve_model_refs

    if not settings.model_names:
        return {"models": []}
    return {"models": [describe_model(r) for r in resolve_model_refs(list(settings.model_names))]}


@router.post("/session", tags=["service"], status_code=204, dependencies=[Depends(require_token)])
async def session(request: Request, settings: ServeSettings = Depends(get_settings)) -> Response:
    """Trade the token for the report cookie (HttpOnly, SameSite=Strict, only the report files accept it)."""
    resp = Response(status_code=204)
    key = settings.report_key()
    if key is not None:
        resp.set_cookie(
            REPORT_COOKIE,
            key,
            path=REPORT_COOKIE_PATH,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
    return resp


def _boundary(request: Request, settings: ServeSettings) -> bytes:
    """The multipart boundary, after the checks that need no body (type, declared length)."""
    from python_multipart.multipart import parse_options_header

    kind, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise ApiError(415, "send multipart/form-data with the clip in the field 'file'")
    clen = request.headers.get("content-length")
    limit = settings.max_upload_bytes + MAX_FIELD_BYTES + FORM_OVERHEAD
    if clen is not None and clen.isdigit() and int(clen) > limit:
        raise ApiError(
            413, f"the upload is larger than the limit of {settings.max_upload_bytes / (1 << 20):g} MB"
        )
    return boundary


async def _receive(request: Request, settings: ServeSettings, up: MultipartUpload) -> None:
    """Stream the body into ``up`` under the size and time limits."""
    limit = settings.max_upload_bytes + MAX_FIELD_BYTES + FORM_OVERHEAD
    total = 0
    chunks = timed_chunks(
        request.stream(), settings.read_timeout_s, settings.min_upload_bytes_s, settings.rate_grace_s
    )
    async for chunk in chunks:
        total += len(chunk)
        if total > limit:
            raise ApiError(
                413, f"the upload is larger than the limit of {settings.max_upload_bytes / (1 << 20):g} MB"
            )
        up.write(chunk)
    up.finish()


def _fields(up: MultipartUpload) -> tuple[str, str, str, str]:
    """(asr, transcript, language, asr_model) of a complete upload, or 400/422."""
    from dmd_pipeline.extractors.language import check_asr_model, check_language

    if up.stored is None:
        raise ApiError(400, "no file: send the clip in the multipart field 'file'")
    if up.size == 0:
        raise ApiError(422, "the file is empty")
    asr = (up.text("asr") or "whisper").strip().lower()
    if asr not in ASR_CHOICES:
        raise ApiError(422, f"asr must be one of {', '.join(ASR_CHOICES)}")
    try:
        language = check_language(up.text("language") or "auto")
        asr_model = check_asr_model(up.text("asr_model") or None)
    except ValueError as exc:
        raise ApiError(422, str(exc)) from None
    return asr, (up.text("transcript") or "").strip(), language, asr_model


async def _accept(
    request: Request, store: JobStore, settings: ServeSettings, boundary: bytes
) -> dict[str, Any]:
    """Receive, check and register one upload; returns the 202 body."""
    from python_multipart.exceptions import MultipartParseError

    from dmd_pipeline.analysis.batch import runs_face_model, still_image
    from dmd_pipeline.errors import InputError
    from dmd_pipeline.media import check_duration, probe

    job_id = new_job_id()
    tmp = store.incoming_dir / job_id
    up: MultipartUpload | None = None
    try:
        tmp.mkdir(mode=0o700)
        up = MultipartUpload(boundary, tmp, settings.max_upload_bytes)
        await _receive(request, settings, up)
        asr, transcript, language, asr_model = _fields(up)
        try:
            info = await asyncio.to_thread(probe, tmp / up.stored)  # no playlist, no list of other files
            image = still_image(info)
            if image is None:
                check_duration(info)  # nothing without an end reaches a worker
        except InputError as exc:
            raise ApiError(422, f"not a media file we can analyse: {store.scrub(exc.reason)}") from None
        if image is not None and not await asyncio.to_thread(runs_face_model, store.model):
            raise ApiError(
                422,
                f"not a media file we can analyse: {image} (a photo is read by the face channel only, which "
                "is off on this server: --no-face)",
            )
        duration = 0.0 if image is not None else round(info.duration, 3)  # a photo: the face channel only
        job = Job(id=job_id, filename=up.filename or "upload", upload=up.stored or "", size=up.size, asr=asr,
                  language=language, asr_model=asr_model, has_transcript=bool(transcript),
                  duration=duration)  # fmt: skip
        try:
            with store.reservation():  # counted against the queue only now that the body is here
                store.add(job, tmp, transcript)
        except QueueFull as exc:
            raise ApiError(429, str(exc), {"Retry-After": str(exc.retry_after_s)}) from None
    except MultipartParseError as exc:  # also python-multipart's own limits (header line size, count)
        raise ApiError(400, f"malformed multipart body ({str(exc)[:100]})") from None
    except OSError as exc:
        if is_disk_full(exc):
            raise ApiError(507, DISK_FULL) from None
        raise
    finally:
        if up is not None:
            up.close()
        shutil.rmtree(tmp, ignore_errors=True)
    body = view(store, job, full=False)
    body["media"] = {
        "duration": round(info.duration, 3),
        "has_audio": info.has_audio,
        "has_video": info.has_video,
    }
    return body


@router.post(
    "/analyses",
    status_code=202,
    tags=["analyses"],
    openapi_extra=UPLOAD_SCHEMA,
    dependencies=[Depends(require_token)],
)
async def create(
    request: Request, store: JobStore = Depends(get_store), settings: ServeSettings = Depends(get_settings)
) -> JSONResponse:
    """Upload a clip (multipart field ``file``; optional ``transcript`` text and ``asr``) for analysis."""
    boundary = _boundary(request, settings)
    if not store.has_room():  # refused before reading: the queue would refuse it after the body anyway
        exc = QueueFull(store.retry_after_s())
        raise ApiError(429, str(exc), {"Retry-After": str(exc.retry_after_s)})
    client = request.client.host if request.client else "unknown"
    with request.app.state.uploads.slot(client):
        body = await _accept(request, store, settings, boundary)
    return JSONResponse(body, status_code=202, headers={"Location": body["links"]["self"]})


@router.get("/analyses", tags=["analyses"], dependencies=[Depends(require_token)])
async def list_jobs(limit: int = 50, store: JobStore = Depends(get_store)) -> dict[str, Any]:
    """Recent jobs, newest first (without their results)."""
    return {"jobs": [view(store, j, full=False) for j in store.list(min(max(limit, 0), 500))]}


@router.get("/analyses/{job_id}", tags=["analyses"], dependencies=[Depends(require_token)])
async def get_job(job_id: str, store: JobStore = Depends(get_store)) -> dict[str, Any]:
    """A job: status (queued/running/done/failed), progress, and the result or the error."""
    return view(store, job_or_404(store, job_id))


@router.delete("/analyses/{job_id}", tags=["analyses"], dependencies=[Depends(require_token)])
async def delete_job(job_id: str, store: JobStore = Depends(get_store)) -> dict[str, Any]:
    """Remove a job and every file of it."""
    job_or_404(store, job_id)
    await asyncio.to_thread(store.delete, job_id)
    return {"id": job_id, "deleted": True}


def _no_links(root: Path, parts: list[str]) -> Path | None:
    """``root`` joined with ``parts`` when no component (the root included) is a symlink and the last is a
    regular file; else None."""
    path = root
    for part in ["", *parts]:
        path = path / part if part else path
        try:
            mode = os.lstat(path).st_mode
        except OSError:
            return None
        if stat.S_ISLNK(mode):
            return None
    return path if stat.S_ISREG(mode) else None


@router.get(
    "/analyses/{job_id}/report",
    tags=["analyses"],
    response_class=HTMLResponse,
    dependencies=[Depends(require_report_access)],
)
async def report(job_id: str, store: JobStore = Depends(get_store)) -> HTMLResponse:
    """The job's HTML report (its images load from ``report/result_files/...``)."""
    job = job_or_404(store, job_id)
    page_path = _no_links(store.job_dir(job.id), [f"{RESULT_NAME}.html"])
    if job.status != "done" or page_path is None:
        raise ApiError(404, f"no report: the analysis is {job.status}")
    text = page_path.read_text(encoding="utf-8")
    base = f'<base href="/{API_VERSION}/analyses/{job.id}/report/">'
    text = text.replace("<head>", "<head>" + base, 1)
    return HTMLResponse(text, headers={"Content-Security-Policy": _REPORT_CSP})


@router.get(
    "/analyses/{job_id}/report/{file:path}", tags=["analyses"], dependencies=[Depends(require_report_access)]
)
async def report_file(job_id: str, file: str, store: JobStore = Depends(get_store)) -> FileResponse:
    """One image of the job's report, only from its own ``result_files/`` folder (no symlink on the way)."""
    job = job_or_404(store, job_id)
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
    real = None if bad else _no_links(store.job_dir(job.id), parts)
    if real is None:
        raise ApiError(404, "no such report file")
    ctype = _CONTENT_TYPES.get(real.suffix.lower(), "application/octet-stream")
    return FileResponse(real, media_type=ctype, headers={"Content-Security-Policy": "default-src 'none'"})
