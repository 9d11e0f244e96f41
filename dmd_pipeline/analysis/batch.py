"""Analysing many files: discovery, output naming, worker processes, resume, summary.csv and errors.csv.

Every file's result is written atomically as ``<out>/<name>.json`` as soon as it is done, so a killed run
loses nothing finished. A re-run skips files whose JSON is complete (valid schema, same source file, same
media content and transcript, same options: :mod:`dmd_pipeline.analysis.options`)
unless ``force``; ``summary.csv`` is regenerated from the JSONs, ``errors.csv`` lists this run's failures
(both as files finish, taking at most ~10% of the driver's time: a folder of 10k results is rewritten
every few seconds, a small one after every file; and at the end). The engine (``--engine local|ray``,
:func:`dmd_pipeline.runner.run_supervised`) only decides where files run; with either, at most two
files per worker are in flight and this driver writes every file.
Workers are spawned processes that load the models once, supervised by
:class:`dmd_pipeline.executor.LocalExecutor`: a worker that dies (a signal, out of memory) fails only the
file it held (retried once on a fresh worker), per-file time and memory limits apply, and the workers
only compute: this driver writes every result file. The output folder is locked (``fcntl.flock``) for
the run, and an unusable one (missing, read-only, full) raises :class:`~dmd_pipeline.errors.OutputError`.

``summary.csv`` has the columns of :data:`SUMMARY_COLUMNS` (the primary model's overall result, as in
schema 1.0) then ``headline``, the fused answer (``fused:label``, ``fused:p``, ``fused:uncertain``,
``fused:reason``, the derived ``fused:valence``/``fused:arousal``) and one group per model that ran: ``<name>:score`` for a regression model,
``<name>:label`` and ``<name>:p`` (top class and its probability) for a classification model.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dmd_pipeline.analysis.analysis_options import DEFAULT_FACE_FPS
from dmd_pipeline.analysis.predictions import (
    FACE_COLUMNS,
    FUSED_COLUMNS,
    face_cells,
    fused_cells,
    is_face_run,
    prediction_cells,
)
from dmd_pipeline.errors import ConfigError, InputError, ModelFileError, OutputError, os_error_reason
from dmd_pipeline.executor import WorkerLost
from dmd_pipeline.runner import Limits, Workers, run_supervised
from dmd_pipeline.utils import atomic_write_bytes, atomic_write_text, output_lock, path_problem

#: Stage messages at INFO (probing, loading models, analysing a file); the CLI shows them live.
logger = logging.getLogger("dmd_pipeline.batch")

#: Extensions picked up when scanning folders (files given explicitly are analysed whatever their name).
VIDEO_EXTS = frozenset(
    [
        "mp4",
        "m4v",
        "mov",
        "mkv",
        "avi",
        "webm",
        "flv",
        "f4v",
        "wmv",
        "asf",
        "mpg",
        "mpeg",
        "mpe",
        "ts",
        "mts",
        "m2ts",
        "3gp",
        "3g2",
        "ogv",
        "vob",
        "divx",
        "mxf",
    ]
)
AUDIO_EXTS = frozenset(
    [
        "wav",
        "mp3",
        "m4a",
        "aac",
        "flac",
        "ogg",
        "oga",
        "opus",
        "wma",
        "aif",
        "aiff",
        "aifc",
        "amr",
        "au",
        "caf",
        "mka",
        "ac3",
        "ape",
        "wv",
    ]
)
MEDIA_EXTS = VIDEO_EXTS | AUDIO_EXTS

SUMMARY_COLUMNS = (
    "file",
    "duration",
    "score",
    "label7",
    "label2",
    "n_segments",
    "modalities_used",
    "status",
    "predicted_class",
    "json",
)
#: Written after :data:`SUMMARY_COLUMNS`, before the per-model columns: the headline and the file's fused
#: answer (schema 1.3; empty for an older result).
SUMMARY_EXTRA_COLUMNS = ("headline", *FUSED_COLUMNS)
ERROR_COLUMNS = ("file", "stage", "reason")
_RESERVED = frozenset({"summary", "errors", "index"})


@dataclass
class BatchOptions:
    """Everything a worker needs besides the file: model reference and analysis/output options."""

    out_dir: Path
    # resolved models (registry.resolve_model_refs), or one reference, a comma list or a list; None: the defaults
    model: Any = None
    asr: str = "whisper"
    language: str = "auto"  # auto | en | a Whisper language code
    asr_model: str = "base"  # the Whisper model that transcribes English: base | tiny.en
    face_fps: float = DEFAULT_FACE_FPS  # face frames the face model reads per second (0: every frame)
    transcript: str | None = None
    report: bool = False
    fmt: str | list[str] = "json"  # json, csv, tsv, srt, vtt, all (a comma list or a list)
    force: bool = False
    workers: int = 1
    device: str = "cpu"
    #: what results are made with (analysis/options.py); None: derived from asr/transcript/model
    record: dict[str, Any] | None = None
    file_timeout: float | None = None  # seconds per file (None: executor default); set -> runs in a worker
    max_rss_mb: float | None = None  # MiB per worker (None: executor default); set -> runs in a worker
    stream_window_s: float = 60.0  # longer files (x1.5) are analysed in windows of about this length
    engine: str = "local"  # "local" (worker processes, ``workers``) | "ray" (Ray actors, ``cluster``)
    cluster: Any = None  # a dmd_pipeline.ray_executor.RayOptions for engine "ray" (None: its defaults)
    allow_playlists: bool = False  # read HLS/concat playlists (media.playlists_allowed); never for uploads


@dataclass
class FileOutcome:
    """What happened to one input file."""

    file: str
    name: str
    status: str  # "ok" | "skipped" | "failed"
    stage: str = ""
    reason: str = ""
    errors: list[tuple[str, str]] = field(default_factory=list)  # extra (stage, reason), e.g. report
    seconds: float = 0.0
    headline: str = ""  # the result's headline (ok files)
    note: str = ""  # why a file was redone or kept (e.g. "--asr changed (whisper -> none)")
    warnings: list[str] = field(default_factory=list)  # the result's warnings (ok files)
    outputs: dict[str, str] = field(default_factory=dict)  # files for the driver to write (worker mode)
    blobs: dict[str, bytes] = field(default_factory=dict)  # binary files (the HTML report's), worker mode


@dataclass
class BatchOutcome:
    """The whole run: per-file outcomes and where the tables went."""

    outcomes: list[FileOutcome]
    summary_csv: Path
    errors_csv: Path
    index_html: Path | None = None

    @property
    def n_failed(self) -> int:
        return sum(o.status == "failed" or bool(o.errors) for o in self.outcomes)

    @property
    def exit_code(self) -> int:
        """0 when every file succeeded, 1 when some failed."""
        return 1 if self.n_failed else 0


# ---- discovery and naming -------------------------------------------------------------------------
def _hidden(p: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in p.relative_to(root).parts)


def _safe_resolve(p: Path) -> Path:
    """``p.resolve()``, or the absolute unresolved path when resolving fails (a symlink loop)."""
    try:
        return p.resolve()
    except (OSError, RuntimeError):
        return Path(os.path.abspath(p))


def collect_media(paths: Iterable[str | os.PathLike[str]], out_dir: str | Path | None = None) -> list[Path]:
    """Media files of the given paths: files as given; folders scanned recursively by extension.

    Skips hidden files/folders, our own output folder and anything under it. Raises InputError when no
    given path exists; a missing path among others is returned as given (the batch reports it as a
    failed file, ``file not found``) so the others are still analysed. The order is stable (given order,
    folders sorted), duplicates removed.
    Walking a folder never fails on what it finds: a symlink loop, a dangling link, a device, a FIFO or a
    socket with a media extension (and a sub-folder that cannot be read) is returned by its name in the
    folder, unresolved, and the batch reports it as a failed file (:func:`dmd_pipeline.utils.path_problem`).
    """
    out = _safe_resolve(Path(out_dir)) if out_dir is not None else None
    found: list[Path] = []
    seen: set[Path] = set()

    def add(f: Path) -> None:
        key = _safe_resolve(f)  # duplicates by what they point to; the path is kept as the user gave it
        if key not in seen:
            seen.add(key)
            found.append(f)

    given = [Path(raw).expanduser() for raw in paths]
    if given and not any(os.path.lexists(p) for p in given):
        raise InputError(given[0], "no such file or folder", stage="input")
    for p in given:
        if not p.exists():  # one bad path among others is one failed row, not the end of the run
            add(Path(os.path.abspath(p)))
            continue
        if p.is_dir():
            root = Path(os.path.abspath(p))
            unreadable: list[OSError] = []
            for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable.append):
                d = Path(dirpath)
                dirnames[:] = sorted(
                    n
                    for n in dirnames
                    if not n.startswith(".") and (out is None or _safe_resolve(d / n) != out)
                )
                for fn in sorted(filenames):
                    f = d / fn
                    if fn.startswith(".") or _hidden(f, root):
                        continue
                    if f.suffix.lower().lstrip(".") in MEDIA_EXTS:
                        add(f)
            for exc in unreadable:  # reported as a failed entry, not silently skipped
                if exc.filename:
                    add(Path(exc.filename))
        else:
            add(Path(os.path.abspath(p)))
    return found


def output_names(files: Sequence[Path]) -> dict[Path, str]:
    """A unique, deterministic output name per file: the stem; ``stem.ext`` or a path hash on clashes."""
    by_stem: dict[str, list[Path]] = {}
    for f in files:
        # our own tables/pages must never be overwritten by a clip called summary/errors/index
        stem = f"{f.stem}_clip" if f.stem.lower() in _RESERVED else f.stem
        by_stem.setdefault(stem, []).append(f)
    names: dict[Path, str] = {}
    for stem, group in by_stem.items():
        if len(group) == 1:
            names[group[0]] = stem
            continue
        for f in group:
            with_ext = f"{stem}.{f.suffix.lstrip('.')}" if f.suffix else stem
            clash = sum(g.suffix == f.suffix for g in group) > 1
            names[f] = f"{with_ext}-{hashlib.sha256(str(f).encode()).hexdigest()[:8]}" if clash else with_ext
    return names


# ---- options record, formats, probing ---------------------------------------------------------------
def batch_formats(opts: BatchOptions) -> list[str]:
    """The output formats of a batch (json first); raises ValueError for an unknown one."""
    from dmd_pipeline.analysis.export import parse_formats

    return parse_formats(opts.fmt)


def batch_record(opts: BatchOptions) -> dict[str, Any]:
    """The ``options`` record results of this batch carry (see :mod:`dmd_pipeline.analysis.options`)."""
    if opts.record is not None:
        return opts.record
    from dmd_pipeline.analysis.options import result_options
    from dmd_pipeline.analysis.registry import resolve_model_refs, split_model_refs

    try:
        dirs = [str(r.path) for r in resolve_model_refs(opts.model)]
    except (ModelFileError, ConfigError):
        dirs = split_model_refs(opts.model)
    return result_options(opts.asr, opts.transcript, dirs, opts.language, opts.face_fps, opts.asr_model)


def still_image(info: Any) -> str | None:
    """Why a probed file is a still image rather than a clip, else None (:func:`dmd_pipeline.media.still_image`)."""
    from dmd_pipeline import media

    return media.still_image(info)


def probe_problem(path: Path, photos: bool = False) -> tuple[str, str] | None:
    """(stage, reason) when ffprobe cannot read the file, else None; checked before any model loads.

    A missing ffmpeg/ffprobe raises :class:`~dmd_pipeline.media.FFmpegNotFoundError` (a usage error).
    """
    from dmd_pipeline import media

    try:
        info = media.probe(path)
    except media.FFmpegNotFoundError:
        raise
    except InputError as exc:
        return exc.stage, exc.reason
    if not (info.has_audio or info.has_video):
        return "media", "no audio or video stream"
    image = still_image(info)
    if image is not None and not photos:
        return "media", f"{image} (a photo is read by the face channel only, which is off here: --no-face)"
    return None


# ---- resume ---------------------------------------------------------------------------------------
def _same_file(a: str | Path, b: str | Path) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except (OSError, ValueError, RuntimeError):  # RuntimeError: a symlink loop (Python < 3.13)
        return os.path.abspath(a) == os.path.abspath(b)


def may_write_result(json_path: Path, source: Path) -> bool:
    """Whether ``source``'s result may be written to ``json_path``: nothing is there, or a result of
    ``source`` itself, or a damaged result of ours (it starts like one but does not parse: redone in
    place). Never over another file's result, nor over a JSON that is not a result of ours."""
    from dmd_pipeline.extractors.transcribe import is_tool_output

    if not os.path.lexists(json_path):
        return True
    try:
        doc = json.loads(Path(json_path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return is_tool_output(json_path)
    if isinstance(doc, dict) and isinstance(doc.get("file"), str) and "schema_version" in doc:
        return _same_file(doc["file"], source)
    return False


def claim_names(files: Sequence[Path], names: dict[Path, str], out_dir: Path) -> dict[Path, str]:
    """``names`` with every name whose result in ``out_dir`` belongs to another source (an earlier run of
    ``a/talk.mp4`` when this one is ``b/talk.mp4``, or a JSON that is not ours) replaced by a unique one
    (``talk-<hash of the path>``), so no run ever replaces another file's result; deterministic, so a
    re-run of the same file finds its own result again."""
    taken = set(names.values())
    out = dict(names)
    for f in files:
        name = names[f]
        if may_write_result(out_dir / f"{name}.json", f):
            continue
        digest = hashlib.sha256(str(f).encode()).hexdigest()
        for k in range(8, 65, 4):
            cand = f"{name}-{digest[:k]}"
            if cand not in taken and may_write_result(out_dir / f"{cand}.json", f):
                break
        taken.add(cand)
        out[f] = cand
    return out


def existing_result(json_path: Path, source: Path) -> dict[str, Any] | None:
    """The stored result document when it is complete (schema-valid, for this source file), else None."""
    from dmd_pipeline.analysis.result import read_result_file

    if not json_path.is_file():
        return None
    doc, problems = read_result_file(json_path)
    if doc is None or problems:
        return None
    try:
        same = _same_file(doc["file"], source)
    except TypeError:
        same = False
    return doc if same else None


def clean_stale_temps(out_dir: Path) -> int:
    """Remove temp files left by a killed run (``.<name>.<random>.tmp`` from utils.atomic_open)."""
    n = 0
    if out_dir.is_dir():
        for p in out_dir.rglob(".*.tmp"):
            with suppress(OSError):
                p.unlink()
                n += 1
    return n


# ---- per-file work (runs in the main process or in a worker) ---------------------------------------
_WORKER: dict[str, Any] = {}


def init_worker(model_ref: str | list[str] | None, threads: int, device: str = "cpu") -> None:
    """Process-pool initializer: limit threads and load the models once per worker."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch

    torch.set_num_threads(max(1, threads))
    from dmd_pipeline.analysis.registry import load_models

    try:
        _WORKER["model"] = load_models(model_ref, device=device)
    except (ModelFileError, ConfigError) as exc:
        # raised from the first task instead: an initializer error prints a traceback and breaks the pool
        _WORKER["load_error"] = exc


def per_model_columns(doc: dict[str, Any]) -> list[str]:
    """The per-model columns of a result: ``<name>:score`` (regression) or ``<name>:label``, ``<name>:p``;
    then, when a face model ran, the face channel's ``face:label``, ``face:p``, ``face:visible``."""
    cols: list[str] = []
    for m in doc.get("models") or []:
        if not is_face_run(m):
            cols.extend(summary_cells(m["name"], m["task"], None))
    if doc.get("face") is not None:
        cols.extend(FACE_COLUMNS)
    return cols


def summary_cells(name: str, task: str, p: dict[str, Any] | None) -> dict[str, str]:
    """The per-model cells of one prediction in summary.csv (4 decimals; empty strings when it is null)."""
    return prediction_cells(name, task, p, lambda x: f"{x:.4f}")


def write_output(path: Path, text: str) -> None:
    """Write one output file atomically; an OSError becomes an OutputError naming the file and the cause."""
    try:
        atomic_write_text(path, text)
    except OSError as exc:
        raise OutputError(
            path, f"cannot write the result: {os_error_reason(exc)}; results written before are kept"
        ) from None


def commit_outputs(out_dir: Path, outcome: FileOutcome) -> None:
    """Write the files an outcome carries: the report's files first, then the texts in order (the JSON,
    which marks the file done, comes last)."""
    for fname, data in outcome.blobs.items():
        path = Path(out_dir) / fname
        try:
            atomic_write_bytes(path, data)
        except OSError as exc:
            raise OutputError(path, f"cannot write the report: {os_error_reason(exc)}") from None
    outcome.blobs = {}
    for fname, text in outcome.outputs.items():
        write_output(Path(out_dir) / fname, text)
    outcome.outputs = {}


def _render_report(result: Any, name: str, media_path: Path) -> dict[str, bytes]:
    """The HTML report of one result as ``{relative path: bytes}`` (``<name>.html``, ``<name>_files/*``),
    made in a private temporary folder: a worker (a Ray actor on another node) never writes ``--out``."""
    import tempfile

    from dmd_pipeline.analysis.report import write_report

    with tempfile.TemporaryDirectory(prefix="dmd-report-") as tmp:
        write_report(result, tmp, name, media_path=media_path)
        root = Path(tmp)
        return {
            p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
        }


def process_file(
    path: Path, name: str, opts: BatchOptions, model: Any | None = None, write: bool = True
) -> FileOutcome:
    """Analyse one file and write its outputs; never raises for a bad input (returns a failed outcome).

    With ``write=False`` (in a worker) the JSON/CSV texts are returned in ``outcome.outputs`` and the HTML
    report's files in ``outcome.blobs``, for the driver to write (:func:`commit_outputs`).
    """
    from dmd_pipeline.analysis.analyze import AnalyzeOptions, analyze_clip
    from dmd_pipeline.analysis.options import file_options
    from dmd_pipeline.analysis.report import write_report

    t0 = time.perf_counter()
    model = model if model is not None else _WORKER.get("model")
    out_dir = Path(opts.out_dir)
    try:
        result = analyze_clip(
            path,
            model,
            AnalyzeOptions(
                asr=opts.asr,
                language=opts.language,
                asr_model=opts.asr_model,
                transcript=opts.transcript,
                stream_window_s=opts.stream_window_s,
                face_fps=opts.face_fps,
            ),
        )
        result.options = file_options(batch_record(opts), path)
        doc = result.to_dict()
        text = json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    except InputError as exc:
        return FileOutcome(str(path), name, "failed", exc.stage, exc.reason, seconds=time.perf_counter() - t0)
    except (ConfigError, ModelFileError):  # the models cannot be served at all: no file can succeed
        raise
    except Exception as exc:  # keep the batch going; the reason goes to errors.csv
        reason = f"{type(exc).__name__}: {exc}".strip()
        if os.environ.get("DMD_DEBUG"):
            reason += "\n" + traceback.format_exc()
        return FileOutcome(str(path), name, "failed", "analyze", reason, seconds=time.perf_counter() - t0)
    from dmd_pipeline.analysis.export import output_files

    extra: list[tuple[str, str]] = []
    outputs: dict[str, str] = output_files(doc, name, batch_formats(opts))
    blobs: dict[str, bytes] = {}
    if opts.report:
        try:
            if write:
                write_report(result, out_dir, name, media_path=path)
            else:
                blobs = _render_report(result, name, path)
        except Exception as exc:
            extra.append(("report", f"{type(exc).__name__}: {exc}"))
    # the JSON goes last: its presence marks the file as done for a resumed run
    outputs[f"{name}.json"] = text
    outcome = FileOutcome(
        str(path),
        name,
        "ok",
        errors=extra,
        seconds=time.perf_counter() - t0,
        headline=result.headline,
        warnings=list(result.warnings),
    )
    outcome.outputs = outputs
    outcome.blobs = blobs
    if write:
        commit_outputs(out_dir, outcome)
    return outcome


def _process_in_worker(path: Path, name: str, opts: BatchOptions) -> FileOutcome:
    from dmd_pipeline import media

    if "load_error" in _WORKER:
        raise _WORKER["load_error"]
    with media.playlists_allowed(opts.allow_playlists):  # the driver runs under the caller's policy
        return process_file(path, name, opts, write=False)


def worker_task(task: tuple[Path, str, BatchOptions]) -> FileOutcome:
    """The executor's task function: one (path, name, options) item -> its outcome (files unwritten)."""
    return _process_in_worker(*task)


# ---- tables ---------------------------------------------------------------------------------------
def summary_row(doc: dict[str, Any] | None, file: str, json_path: Path | None, status: str) -> dict[str, Any]:
    """A summary.csv row from a result document (or an empty row for a failed file)."""
    row: dict[str, Any] = dict.fromkeys(SUMMARY_COLUMNS, "")
    row.update(file=file, status=status)
    if doc is not None:
        o = doc["overall"]
        row.update(
            duration=f"{doc['duration']:.3f}",
            score="" if o["score"] is None else f"{o['score']:.4f}",
            label7=o["label7"] or "",
            label2=o["label2"] or "",
            n_segments=len(doc["segments"]),
            modalities_used="+".join(doc["modalities"]["used"]),
            predicted_class=o["predicted_class"] or "",
            json=json_path.name if json_path is not None else "",
            headline=doc.get("headline", ""),
        )
        row.update(fused_cells(doc.get("fused"), lambda x: f"{x:.4f}"))
        for m in doc.get("models") or []:
            if not is_face_run(m):
                row.update(summary_cells(m["name"], m["task"], m.get("overall")))
        if doc.get("face") is not None:
            row.update(face_cells(doc["face"], lambda x: f"{x:.4f}"))
    return row


def _write_csv(path: Path, columns: Sequence[str], rows: Iterable[dict[str, Any]]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: r.get(k, "") for k in columns})
    write_output(path, buf.getvalue())


_DOCS: dict[Path, tuple[tuple[int, int], dict[str, Any] | None]] = {}


def _table_fields(doc: dict[str, Any] | None) -> dict[str, Any] | None:
    """What the tables and the index read of a result (file, duration, overall, segment count, modalities
    used, headline, each model's name/task/overall, the face and the fused answer): the driver keeps this, not whole documents, in
    memory for every result in the folder (3.9 KB per result instead of 32 KB for a 2 s clip, and more
    for long files)."""
    if doc is None:
        return None
    return {
        "file": doc["file"],
        "duration": doc["duration"],
        "overall": doc["overall"],
        "segments": [None] * len(doc["segments"]),  # only counted
        "modalities": {"used": list(doc["modalities"]["used"])},
        "headline": doc.get("headline", ""),
        "models": [
            {"name": m["name"], "task": m["task"], "role": m.get("role"), "overall": m.get("overall")}
            for m in doc.get("models") or []
        ],
        "face": doc.get("face"),
        # the fused answer's table cells only (its class probabilities are not in any table)
        "fused": {k: v for k, v in (doc.get("fused") or {}).items() if k in _FUSED_TABLE_KEYS} or None,
    }


#: The keys of a result's ``fused`` dict that summary.csv reads (:func:`~dmd_pipeline.analysis.predictions.fused_cells`).
_FUSED_TABLE_KEYS = frozenset({"label", "probability", "uncertain", "uncertain_reason", "valence", "arousal"})


def _read_doc(jp: Path) -> dict[str, Any] | None:
    """The table fields (:func:`_table_fields`) of a valid result document on disk (None otherwise),
    re-read only when the file changed."""
    from dmd_pipeline.analysis.result import read_result_file

    try:
        st = jp.stat()
    except OSError:
        return None
    key = (st.st_mtime_ns, st.st_size)
    hit = _DOCS.get(jp)
    if hit is None or hit[0] != key:
        hit = (key, _table_fields(read_result_file(jp)[0]))
        _DOCS[jp] = hit
    return hit[1]


def other_results(
    out_dir: Path, names: Iterable[str], files: Iterable[Path] = ()
) -> list[tuple[Path, dict[str, Any]]]:
    """Results in ``out_dir`` from earlier runs (not named in this run, nor of one of this run's
    ``files`` under an older name): (json path, document)."""
    taken = {f"{n}.json" for n in names}
    ours = {os.path.abspath(f) for f in files}
    out = []
    for jp in sorted(Path(out_dir).glob("*.json")):
        if jp.name in taken or jp.name.startswith("."):
            continue
        doc = _read_doc(jp)
        if doc is not None and os.path.abspath(str(doc["file"])) not in ours:
            out.append((jp, doc))
    return out


def write_tables(
    files: Sequence[Path], names: dict[Path, str], outcomes: dict[Path, FileOutcome], out_dir: Path
) -> tuple[Path, Path]:
    """Regenerate summary.csv (from every result JSON in the folder: this run's files first, then the
    results of earlier runs) and errors.csv (this run's failures)."""
    rows, errs = [], []
    columns = [*SUMMARY_COLUMNS, *SUMMARY_EXTRA_COLUMNS]
    for f in files:
        jp = out_dir / f"{names[f]}.json"
        oc = outcomes.get(f)
        doc = None
        if oc is None or oc.status != "failed":
            doc = _read_doc(jp)
        if oc is not None and oc.status == "failed":
            status = "failed"
        elif doc is not None:
            status = "ok"
        else:
            status = "pending"
        rows.append(summary_row(doc, str(f), jp if doc is not None else None, status))
        if doc is not None:
            columns.extend(c for c in per_model_columns(doc) if c not in columns)
        if oc is not None:
            if oc.status == "failed":
                errs.append({"file": str(f), "stage": oc.stage, "reason": oc.reason})
            errs.extend({"file": str(f), "stage": st, "reason": r} for st, r in oc.errors)
    for jp, doc in other_results(out_dir, names.values(), files):
        rows.append(summary_row(doc, str(doc["file"]), jp, "ok"))
        columns.extend(c for c in per_model_columns(doc) if c not in columns)
    summary, errors = out_dir / "summary.csv", out_dir / "errors.csv"
    _write_csv(summary, columns, rows)
    _write_csv(errors, ERROR_COLUMNS, errs)
    return summary, errors


def _write_index(files: Sequence[Path], names: dict[Path, str], out_dir: Path) -> Path:
    from dmd_pipeline.analysis.report import IndexEntry, write_index

    entries = []
    items: list[tuple[str, Path, dict[str, Any] | None]] = [
        (str(f), out_dir / f"{names[f]}.json", _read_doc(out_dir / f"{names[f]}.json")) for f in files
    ]
    items += [(str(doc["file"]), jp, doc) for jp, doc in other_results(out_dir, names.values(), files)]
    for f, jp, doc in items:
        page = jp.with_suffix(".html")
        o = doc["overall"] if doc else {}
        entries.append(
            IndexEntry(
                file=str(f),
                page=page if page.is_file() else None,
                score=o.get("score"),
                label=o.get("label7") or o.get("predicted_class"),
                status="ok" if doc else "failed",
                headline=(doc or {}).get("headline", ""),
            )
        )
    return write_index(out_dir, entries)


# ---- the batch ------------------------------------------------------------------------------------
def _probe_all(files: Sequence[Path], photos: bool = False) -> list[tuple[str, str] | None]:
    """:func:`probe_problem` of every file, in order; several ffprobe processes at a time (one per core,
    at most 16): ~90 ms each, 100k inputs would take hours one after the other on the driver. ``photos``:
    still images are analysed (a face model runs), not refused."""
    if len(files) < 2:
        return [probe_problem(f, photos) for f in files]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(
        max_workers=max(1, min(16, os.cpu_count() or 1)), thread_name_prefix="probe"
    ) as pool:
        return list(pool.map(lambda f: probe_problem(f, photos), files))


def runs_face_model(refs: Any) -> bool:
    """Whether the models of a batch include a face model (then a photo is analysed, not refused)."""
    from dmd_pipeline.analysis.registry import default_face_model, resolve_model_refs

    if refs is None:
        return default_face_model() is not None
    if any(getattr(r, "kind", None) == "face" for r in (refs if isinstance(refs, list) else [refs])):
        return True
    try:
        return any(r.kind == "face" for r in resolve_model_refs(refs))
    except (ModelFileError, ConfigError):
        return False


def _limits(opts: BatchOptions) -> Limits:
    """Where and how the files of ``opts`` run (engine, local workers, per-file limits, Ray options)."""
    return Limits(opts.engine, opts.workers, opts.file_timeout, opts.max_rss_mb, opts.cluster)


def run_batch(
    files: Sequence[Path],
    opts: BatchOptions,
    model: Any | None = None,
    on_done: Callable[[FileOutcome], None] | None = None,
    on_start: Callable[[int, int], None] | None = None,
) -> BatchOutcome:
    """Analyse ``files`` into ``opts.out_dir``; finished/valid results are skipped unless ``opts.force``.

    ``model`` (a LoadedModel or a list of them) is used in-process when ``opts.workers <= 1``; otherwise each
    spawned worker loads ``opts.model`` (one reference or several) once. ``on_start(n_todo, n_skipped)`` and ``on_done(outcome)`` drive progress.
    With ``opts.file_timeout`` or ``opts.max_rss_mb`` set, even one worker runs in a supervised process.

    Raises :class:`~dmd_pipeline.errors.OutputError` when the output folder cannot be created or written
    (read-only, full, permission) or another run holds its lock; files finished before stay intact.
    """
    out_dir = Path(opts.out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(out_dir, f"cannot create the output folder: {os_error_reason(exc)}") from None
    if not out_dir.is_dir():
        raise OutputError(out_dir, "the output path exists and is not a folder")
    with output_lock(out_dir, "dmd analyze"):
        try:
            return _run_batch_locked(files, opts, model, on_done, on_start)
        except OSError as exc:  # anything else that touches the folder (stale temps, the index page)
            where = exc.filename or out_dir
            raise OutputError(where, f"cannot write the results: {os_error_reason(exc)}") from None


def _run_batch_locked(
    files: Sequence[Path],
    opts: BatchOptions,
    model: Any | None,
    on_done: Callable[[FileOutcome], None] | None,
    on_start: Callable[[int, int], None] | None,
) -> BatchOutcome:
    from dataclasses import replace

    from dmd_pipeline.analysis.export import output_files
    from dmd_pipeline.analysis.options import file_options, options_difference

    out_dir = Path(opts.out_dir)
    clean_stale_temps(out_dir)
    formats = batch_formats(opts)
    opts = replace(opts, record=batch_record(opts))  # computed once, carried to the workers
    names = claim_names(files, output_names(files), out_dir)
    outcomes: dict[Path, FileOutcome] = {}
    notes: dict[Path, str] = {}
    todo: list[Path] = []
    for f in files:
        problem = path_problem(f)  # never opened: a FIFO would block, a loop would raise
        if problem is not None:
            outcomes[f] = FileOutcome(str(f), names[f], "failed", "input", problem)
            continue
        jp = out_dir / f"{names[f]}.json"
        done = None if opts.force else existing_result(jp, f)
        if done is not None:
            why = options_difference(done.get("options"), file_options(opts.record, f))
            if why is not None:  # made with other options or models: redo it, and say why
                done, notes[f] = None, f"re-analysed: {why}"
        if done is not None:
            outcomes[f] = FileOutcome(
                str(f),
                names[f],
                "skipped",
                headline=str(done.get("headline", "")),
                note="already done with the same options and models (--force redoes it)",
                warnings=list(done.get("warnings") or []),
            )
            for fname, text in output_files(done, names[f], formats).items():
                if not (out_dir / fname).is_file():  # asked for now, not on the first run
                    write_output(out_dir / fname, text)
            if opts.report and not (out_dir / f"{names[f]}.html").is_file():
                todo.append(f)  # result is there but its report is not: redo the file
                del outcomes[f]
        else:
            todo.append(f)
    if on_start is not None:
        on_start(len(todo), sum(oc.status == "skipped" for oc in outcomes.values()))

    tables = {"last": -1e18, "cost": 0.0, "stale": False}

    def _tables(force: bool = False) -> None:
        """Rewrite summary.csv/errors.csv, at most 10% of the time: each rewrite reads every result in
        the folder, so after a rewrite that took t seconds the next waits 10 t (10k results: ~0.6 s
        each, refreshed every ~6 s; a small folder: after every file). The run ends with one rewrite."""
        now = time.perf_counter()
        if not force and now - tables["last"] < 10 * tables["cost"]:
            tables["stale"] = True
            return
        write_tables(files, names, outcomes, out_dir)
        tables["last"], tables["stale"] = time.perf_counter(), False
        tables["cost"] = tables["last"] - now

    def _record(f: Path, oc: FileOutcome) -> None:
        if f in notes and not oc.note:
            oc.note = notes[f]
        outcomes[f] = oc
        _tables()  # keep the tables current as files finish
        if on_done is not None:
            on_done(oc)

    for f, oc in list(outcomes.items()):  # unreadable entries (loops, dangling links, FIFOs) are reported now
        if oc.status == "failed":
            _record(f, oc)
        elif on_done is not None:  # kept results: the display says why they were not redone
            on_done(oc)

    # fail fast: every input is probed before any model loads
    if todo:
        logger.info("checking %d file(s)", len(todo))
    problems = _probe_all(todo, photos=runs_face_model(opts.model))
    for f, bad in zip(list(todo), problems, strict=True):
        if bad is not None:
            todo.remove(f)
            _record(f, FileOutcome(str(f), names[f], "failed", bad[0], bad[1]))

    try:
        supervised = (
            opts.engine != "local"
            or opts.workers > 1
            or opts.file_timeout is not None
            or opts.max_rss_mb is not None
        )
        if todo and not supervised:
            if model is None:
                import torch

                from dmd_pipeline.analysis.registry import load_models
                from dmd_pipeline.utils import choose_threads

                torch.set_num_threads(choose_threads())  # fewer threads when other processes hold the cores

                logger.info("loading the models")
                model = load_models(opts.model, device=opts.device)
            for f in todo:
                logger.info("%s: analysing", f.name)
                _record(f, process_file(f, names[f], opts, model))
        elif todo:

            def commit(f: Path, oc: FileOutcome) -> None:
                if oc.status == "ok":
                    commit_outputs(out_dir, oc)  # the driver writes; workers only compute
                _record(f, oc)

            def fail(f: Path, exc: BaseException) -> None:
                if isinstance(
                    exc, (ModelFileError, ConfigError)
                ):  # the model does not load: no file can succeed
                    raise exc  # this cancels the rest and stops the workers
                reason = exc.reason if isinstance(exc, WorkerLost) else f"{type(exc).__name__}: {exc}"
                _record(
                    f, FileOutcome(str(f), names[f], "failed", "worker", reason)
                )  # died, timed out, too big

            if opts.engine == "ray":
                logger.info("starting Ray actors (each loads the models)")
            else:
                logger.info(
                    "starting %d worker(s) (each loads the models)", max(1, min(opts.workers, len(todo)))
                )
            workers = Workers(worker_task, init_worker, lambda threads: (opts.model, threads, opts.device))
            run_supervised(workers, _limits(opts), todo, lambda f: (f, names[f], opts), commit, fail)
    except BaseException:  # Ctrl-C, SIGTERM (--engine ray), an unwritable folder: tables as of now
        if tables["stale"]:
            with suppress(Exception):
                write_tables(files, names, outcomes, out_dir)
        raise
    summary, errors = write_tables(files, names, outcomes, out_dir)
    index = _write_index(files, names, out_dir) if opts.report else None
    return BatchOutcome([outcomes[f] for f in files], summary, errors, index)
