"""The job store of ``dmd serve``: jobs on disk, a bounded queue, and the worker pool that runs them.

One folder per job, ``<data_dir>/jobs/<id>/``, holding ``job.json`` (the job's state, written atomically
on every change), the upload under a random name, the given transcript (``transcript.txt``), and once
done ``result.json`` (the analysis result, the same schema as ``dmd analyze``), ``result.html`` and its
images in ``result_files/``. The worker pool is :class:`dmd_pipeline.executor.LocalExecutor` running
:func:`dmd_pipeline.analysis.batch.worker_task` after :func:`~dmd_pipeline.analysis.batch.init_worker`
(the models load once per worker): the same code as ``dmd analyze``. The workers only compute (and draw
the report); this store writes every job file.

On start, every job that was queued or running is queued again (a restart loses no accepted work), and
finished jobs older than ``ttl_hours`` are removed (also hourly-ish while running). A ``job.json`` that
cannot be read is moved aside to ``<data_dir>/corrupt/`` and logged, never deleted. Folders are 0700 and
files 0600. Each job runs under a wall-clock limit proportional to its media's duration
(:meth:`JobStore.time_limit`). When the disk is full, the job's partial results are removed and it is
marked failed with that reason. This module imports no web framework: the HTTP layer is
:mod:`dmd_pipeline.serve.app`.
"""

from __future__ import annotations

import contextlib
import errno
import html
import json
import logging
import os
import re
import secrets
import shutil
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dmd_pipeline.utils import atomic_write_bytes, atomic_write_json, atomic_write_text

#: Job ids are ``secrets.token_urlsafe(18)`` (24 characters); anything else is never a job.
JOB_ID_RE = re.compile(r"^[A-Za-z0-9_-]{20,64}$")
RESULT_NAME = "result"  # -> result.json, result.html, result_files/
REPORT_ASSETS = f"{RESULT_NAME}_files"
PENDING = ("queued", "running")
FINISHED = ("done", "failed")
JOB_BASE_S = 120.0  # the wall-clock limit of a job: this plus ``time_factor`` x its media duration
log = logging.getLogger("dmd_pipeline.serve")


class QueueFull(Exception):
    """The bounded queue is full: the client should retry later."""

    def __init__(self, retry_after_s: int) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(f"the queue is full; retry in {retry_after_s} s")


@dataclass
class Job:
    """The persisted state of one analysis job (``job.json``)."""

    id: str
    filename: str  # the client's file name, for display only (never used as a path)
    upload: str  # the stored upload's name inside the job folder (random)
    size: int
    asr: str = "whisper"
    language: str = "auto"  # auto | en | a Whisper language code
    asr_model: str = "base"  # the Whisper model that transcribes English: base | tiny.en
    has_transcript: bool = False
    status: str = "queued"  # queued | running | done | failed
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    attempts: int = 0
    headline: str | None = None
    error: dict[str, str] | None = None  # {"stage", "reason"} when failed
    warnings: list[str] = field(default_factory=list)
    duration: float | None = None  # the media's duration (s), from the upload's probe

    def public(self) -> dict[str, Any]:
        """The job as the API shows it (no server paths)."""
        d = asdict(self)
        d.pop("upload")
        return d


def new_job_id() -> str:
    """An unguessable job id."""
    return secrets.token_urlsafe(18)


def valid_job_id(job_id: str) -> bool:
    """True when ``job_id`` has the shape of a job id (no path characters)."""
    return bool(JOB_ID_RE.match(job_id))


class JobStore:
    """Jobs on disk plus the executor; thread-safe. Call :meth:`start` then :meth:`close`."""

    def __init__(
        self,
        data_dir: str | Path,
        model: list[str] | None = None,
        workers: int = 1,
        max_queue: int = 16,
        ttl_hours: float = 24.0,
        file_timeout: float | None = None,
        time_factor: float = 10.0,
    ) -> None:
        """``file_timeout``: seconds any job may run (None: :meth:`time_limit` alone);
        ``time_factor``: a job may run ``JOB_BASE_S`` + this x its media duration."""
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.jobs_dir = self.data_dir / "jobs"
        self.incoming_dir = self.data_dir / "incoming"
        self.model = model
        self.workers = max(1, int(workers))
        self.max_queue = max(0, int(max_queue))
        self.ttl_s = max(0.0, float(ttl_hours)) * 3600.0
        self.file_timeout = file_timeout
        self.time_factor = max(0.0, float(time_factor))
        self._lock = threading.RLock()
        self._jobs: dict[str, Job] = {}
        self._futures: dict[str, Future] = {}
        self._reserved = 0
        self._draining: set[str] = set()  # deleted while running: still hold a worker until they end
        self._executor: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._durations: list[float] = []
        self._model_paths: list[tuple[str, str]] = []  # (server folder, public name) of every model

    # ---- life cycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Create the folders, start the worker pool, re-queue unfinished jobs, expire old ones."""
        from dmd_pipeline.analysis.batch import init_worker, worker_task
        from dmd_pipeline.analysis.registry import default_model_names, resolve_model_dir, split_model_refs
        from dmd_pipeline.executor import LocalExecutor, default_max_rss_mb

        refs = split_model_refs(self.model) or default_model_names()
        for ref in refs:
            name, d = resolve_model_dir(ref)
            self._model_paths.append((str(d), name))
            with contextlib.suppress(OSError):
                self._model_paths.append((str(d.resolve()), name))
        self._model_paths.sort(key=lambda t: -len(t[0]))
        self.jobs_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        shutil.rmtree(self.incoming_dir, ignore_errors=True)  # half-received uploads of a killed server
        self.incoming_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        for d in (self.data_dir, self.jobs_dir, self.incoming_dir):  # made earlier with looser modes, maybe
            d.chmod(0o700)
        threads = max(1, (os.cpu_count() or 1) // self.workers)
        self._executor = LocalExecutor(
            worker_task,
            self.workers,
            initializer=init_worker,
            initargs=(self.model, threads),
            file_timeout=self.file_timeout,
            max_rss_mb=default_max_rss_mb(self.workers),
        )
        for job in sorted(self._load_all(), key=lambda j: j.created):
            with self._lock:
                self._jobs[job.id] = job
            if job.status in PENDING:
                job.status, job.started = "queued", None
                self._save(job)
                self._submit(job)
        self.expire()
        self._thread = threading.Thread(target=self._watch, name="dmd-serve-jobs", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the pool now (busy workers are killed; their jobs stay queued on disk for the next start)."""
        self._stop.set()
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel=True)
        if self._thread is not None:
            self._thread.join(timeout=5)

    # ---- paths ----------------------------------------------------------------------------------------
    def job_dir(self, job_id: str) -> Path:
        """The job's folder (``job_id`` must be valid)."""
        if not valid_job_id(job_id):
            raise KeyError(job_id)
        return self.jobs_dir / job_id

    def scrub(self, text: str, job: Job | None = None, html_text: bool = False) -> str:
        """``text`` without server paths: the job folder becomes nothing, the upload its client name
        (HTML-escaped for a page, JSON-escaped otherwise), a model folder the model's name."""
        if job is not None:
            d = str(self.jobs_dir / job.id)
            name = html.escape(job.filename) if html_text else json_str(job.filename)
            for path in (f"{d}/{job.upload}", html.escape(f"{d}/{job.upload}"), job.upload):
                text = text.replace(path, name)
            text = text.replace(d + "/", "").replace(d, "")
        for path, name in self._model_paths:  # model folders become their names
            text = text.replace(path, name)
        return text.replace(str(self.data_dir), "<data-dir>")

    # ---- queue --------------------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        """Jobs per status."""
        with self._lock:
            out = dict.fromkeys((*PENDING, *FINISHED), 0)
            for j in self._jobs.values():
                out[j.status] = out.get(j.status, 0) + 1
            out["draining"] = len(self._draining)
            return out

    def retry_after_s(self) -> int:
        """A guess of when a queue slot frees up: the mean job time so far (at least 1 s)."""
        with self._lock:
            mean = sum(self._durations) / len(self._durations) if self._durations else 10.0
        return max(1, int(round(mean)))

    def _pending(self) -> int:
        with self._lock:
            return (
                sum(j.status in PENDING for j in self._jobs.values()) + self._reserved + len(self._draining)
            )

    def has_room(self) -> bool:
        """True when a job could be queued now (an upload is refused early otherwise)."""
        return self._pending() < self.workers + self.max_queue

    def time_limit(self, job: Job) -> float:
        """The seconds ``job`` may run: ``JOB_BASE_S`` + ``time_factor`` x its duration (a live or endless
        input never reaches a worker, and a stuck job frees its worker), at most ``file_timeout`` when set."""
        if job.duration is None:  # a job accepted by an older version: the executor's default
            from dmd_pipeline.executor import DEFAULT_FILE_TIMEOUT_S

            limit = DEFAULT_FILE_TIMEOUT_S
        else:
            limit = JOB_BASE_S + self.time_factor * float(job.duration)
        return min(limit, self.file_timeout) if self.file_timeout else limit

    @contextlib.contextmanager
    def reservation(self) -> Iterator[None]:
        """Hold a queue slot while a received upload is registered; raises :class:`QueueFull` when none is
        free. The slot is released on leaving the block; :meth:`add` counts the job itself from then on.
        """
        with self._lock:
            if self._pending() >= self.workers + self.max_queue:
                raise QueueFull(self.retry_after_s())
            self._reserved += 1
        try:
            yield
        finally:
            with self._lock:
                self._reserved -= 1

    def add(self, job: Job, folder: Path | None = None, transcript: str = "") -> None:
        """Register a job and queue it. ``folder`` (the received upload, inside this store's data dir) gets
        the transcript and ``job.json`` and then becomes the job's folder in one rename, so that a job
        folder never lacks its state."""
        if folder is not None:
            if transcript:
                atomic_write_text(folder / "transcript.txt", transcript + "\n")
            atomic_write_json(folder / "job.json", asdict(job))
            os.replace(folder, self.jobs_dir / job.id)
        with self._lock:
            self._jobs[job.id] = job
        if folder is None:
            self._save(job)
        self._submit(job)

    def _submit(self, job: Job) -> None:
        from dmd_pipeline.analysis.batch import BatchOptions

        d = self.jobs_dir / job.id
        opts = BatchOptions(
            out_dir=d,
            model=self.model,
            asr=job.asr,
            language=job.language,
            asr_model=job.asr_model,
            transcript=str(d / "transcript.txt") if job.has_transcript else None,
            report=True,
        )
        job.attempts += 1
        fut = self._executor.submit((d / job.upload, RESULT_NAME, opts), timeout=self.time_limit(job))
        with self._lock:
            self._futures[job.id] = fut
        fut.add_done_callback(lambda f, jid=job.id: self._finish(jid, f))

    # ---- reading ------------------------------------------------------------------------------------
    def get(self, job_id: str) -> Job | None:
        """The job, or None for an unknown (or malformed) id."""
        if not valid_job_id(job_id):
            return None
        with self._lock:
            return self._jobs.get(job_id)

    def list(self, limit: int = 50) -> list[Job]:
        """The most recent jobs, newest first."""
        with self._lock:
            jobs = sorted(self._jobs.values(), key=lambda j: j.created, reverse=True)
        return jobs[: max(0, limit)]

    def queue_position(self, job: Job) -> int | None:
        """1 for the next queued job to run, ...; None when not queued."""
        if job.status != "queued":
            return None
        with self._lock:
            queued = sorted((j for j in self._jobs.values() if j.status == "queued"), key=lambda j: j.created)
        return next((i + 1 for i, j in enumerate(queued) if j.id == job.id), None)

    def result(self, job: Job) -> dict[str, Any] | None:
        """The result document of a done job."""
        p = self.jobs_dir / job.id / f"{RESULT_NAME}.json"
        try:
            return json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    # ---- deleting and expiring ------------------------------------------------------------------------
    def delete(self, job_id: str) -> bool:
        """Remove a job and its files (a queued job is cancelled; a running one is dropped when it ends)."""
        with self._lock:
            job = self._jobs.pop(job_id, None) if valid_job_id(job_id) else None
            fut = self._futures.pop(job_id, None)
        if job is None:
            return False
        if fut is not None and not fut.cancel() and not fut.done():
            with self._lock:
                self._draining.add(job_id)
            if fut.done():  # it ended meanwhile (its callback may have run before the add)
                with self._lock:
                    self._draining.discard(job_id)
        shutil.rmtree(self.jobs_dir / job_id, ignore_errors=True)
        return True

    def expire(self) -> int:
        """Delete finished jobs older than the time to live; returns how many."""
        if self.ttl_s <= 0:
            return 0
        now = time.time()
        with self._lock:
            old = [
                j.id
                for j in self._jobs.values()
                if j.status in FINISHED and (j.finished or j.created) + self.ttl_s < now
            ]
        return sum(self.delete(jid) for jid in old)

    # ---- internals ----------------------------------------------------------------------------------
    def _save(self, job: Job) -> bool:
        """Write ``job.json``; False (logged) when it cannot be written (e.g. the disk is full)."""
        d = self.jobs_dir / job.id
        try:
            if d.is_dir():
                atomic_write_json(d / "job.json", asdict(job))
            return True
        except OSError as exc:
            log.error("job %s: cannot write its job.json (status %s): %s", job.id, job.status, exc)
            return False

    def _load_all(self) -> list[Job]:
        jobs = []
        for d in self.jobs_dir.iterdir():
            if not (d.is_dir() and valid_job_id(d.name)):
                continue
            state = d / "job.json"
            if not state.exists():  # a folder of an older version whose job never got registered
                shutil.rmtree(d, ignore_errors=True)
                continue
            try:
                job = Job(**json.loads(state.read_text(encoding="utf-8")))
                if job.id != d.name:
                    raise ValueError(f"its id {job.id!r} is not the folder's name")
            except (OSError, ValueError, TypeError) as exc:
                self._set_aside(d, exc)
                continue
            jobs.append(job)
        return jobs

    def _set_aside(self, d: Path, exc: Exception) -> None:
        """Move a job folder whose ``job.json`` cannot be read to ``<data_dir>/corrupt/`` and log it."""
        aside = self.data_dir / "corrupt" / f"{d.name}-{int(time.time())}"
        try:
            aside.parent.mkdir(mode=0o700, exist_ok=True)
            os.replace(d, aside)
            log.warning("job %s: job.json cannot be read (%s); moved its folder to %s", d.name, exc, aside)
        except OSError as err:
            log.warning("job %s: job.json cannot be read (%s) and the folder cannot be moved (%s); "
                        "left in place", d.name, exc, err)  # fmt: skip

    def _watch(self) -> None:
        """Mark jobs running when a worker takes them; expire old jobs every minute."""
        last_expire = time.monotonic()
        while not self._stop.wait(0.25):
            with self._lock:
                started = [
                    self._jobs[jid]
                    for jid, f in self._futures.items()
                    if f.running() and jid in self._jobs and self._jobs[jid].status == "queued"
                ]
            for job in started:
                job.status, job.started = "running", time.time()
                self._save(job)
            if time.monotonic() - last_expire > 60:
                last_expire = time.monotonic()
                with contextlib.suppress(Exception):
                    self.expire()

    def _finish(self, job_id: str, fut: Future) -> None:
        """Executor callback: write the outcome into the job folder (this store is the only writer)."""
        from dmd_pipeline.executor import WorkerLost

        if fut.cancelled() or self._stop.is_set():
            return  # deleted, or the server is stopping: it stays queued on disk
        with self._lock:
            job = self._jobs.get(job_id)
            if self._futures.get(job_id) is fut:
                del self._futures[job_id]
        d = self.jobs_dir / job_id
        if job is None:  # deleted while it ran: the worker may have re-created the report folder
            with self._lock:
                self._draining.discard(job_id)
            shutil.rmtree(d, ignore_errors=True)
            return
        try:
            oc = fut.result()
            if oc.status == "ok":
                for fname, data in oc.blobs.items():  # the report's page and images, made by the worker
                    rel = Path(fname)
                    if rel.is_absolute() or ".." in rel.parts:
                        raise ValueError(f"unexpected report file name {fname!r}")
                    (d / rel).parent.mkdir(parents=True, exist_ok=True)
                    atomic_write_bytes(d / rel, data)
                for fname, text in oc.outputs.items():
                    atomic_write_text(d / fname, self._public_text(fname, text, job))
                page = d / f"{RESULT_NAME}.html"
                if page.is_file():
                    atomic_write_text(page, self.scrub(page.read_text(encoding="utf-8"), job, html_text=True))
                job.status, job.headline = "done", oc.headline
                job.warnings = [self.scrub(f"{st}: {r}", job) for st, r in oc.errors]
            else:
                job.status = "failed"
                job.error = {"stage": oc.stage, "reason": self.scrub(_first_line(oc.reason), job)}
        except WorkerLost as exc:
            job.status, job.error = "failed", {"stage": "worker", "reason": self.scrub(exc.reason, job)}
        except OSError as exc:  # the results could not be written: none of them stays
            full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
            log.error("job %s: cannot write its results (%s); the partial ones are removed", job_id, exc,
                      exc_info=None if full else exc)  # fmt: skip
            self._remove_results(d)
            job.status, job.headline = "failed", None
            reason = "the server's disk is full" if full else "cannot write the results"
            job.error = {"stage": "server", "reason": reason}
        except Exception as exc:  # the model failed to load, an unwritable folder...
            log.error("job %s failed on the server", job_id, exc_info=exc)
            job.status = "failed"
            job.error = {
                "stage": "server",
                "reason": self.scrub(_first_line(f"{type(exc).__name__}: {exc}"), job),
            }
        job.finished = time.time()
        if job.started is None:
            job.started = job.created
        with self._lock:
            self._durations = (self._durations + [job.finished - job.started])[-20:]
        if not self._save(job) and job.status == "done":  # never "done" in memory while the disk says not
            self._remove_results(d)
            job.status, job.headline = "failed", None
            job.error = {"stage": "server", "reason": "cannot write the results (is the disk full?)"}
            self._save(job)  # if this fails too, the job runs again after a restart

    @staticmethod
    def _remove_results(d: Path) -> None:
        """Remove what a job's result writing left (nothing claims it is done without all of it)."""
        for name in (f"{RESULT_NAME}.json", f"{RESULT_NAME}.html"):
            with contextlib.suppress(OSError):
                (d / name).unlink()
        shutil.rmtree(d / REPORT_ASSETS, ignore_errors=True)

    def _public_text(self, fname: str, text: str, job: Job) -> str:
        if not fname.endswith(".json"):
            return self.scrub(text, job)
        doc = json.loads(text)
        doc["file"] = job.filename  # the client's name, not the server path
        text = json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
        # the same replacement inside JSON strings (paths here have no characters JSON escapes)
        return self.scrub(text, job)


def json_str(text: str) -> str:
    """``text`` escaped for the inside of a JSON string."""
    return json.dumps(text, ensure_ascii=False)[1:-1]


def _first_line(text: str) -> str:
    """The reason without any traceback that ``DMD_DEBUG`` may have appended."""
    return text.split("\nTraceback", 1)[0].strip()
