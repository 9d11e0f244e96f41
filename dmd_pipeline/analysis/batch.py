"""Analysing many files: discovery, output naming, worker processes, resume, summary.csv and errors.csv.

Every file's result is written atomically as ``<out>/<name>.json`` as soon as it is done, so a killed run
loses nothing finished. A re-run skips files whose JSON is complete (valid schema, same source file)
unless ``force``; ``summary.csv`` is regenerated from the JSONs, ``errors.csv`` lists this run's failures.
Workers are spawned processes that load the model once (ProcessPoolExecutor initializer).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import multiprocessing
import os
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dmd_pipeline.errors import ConfigError, InputError, ModelFileError
from dmd_pipeline.utils import atomic_write_text

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
ERROR_COLUMNS = ("file", "stage", "reason")
_RESERVED = frozenset({"summary", "errors", "index"})


@dataclass
class BatchOptions:
    """Everything a worker needs besides the file: model reference and analysis/output options."""

    out_dir: Path
    model: str | None = None
    asr: str = "whisper"
    transcript: str | None = None
    report: bool = False
    fmt: str = "json"
    force: bool = False
    workers: int = 1


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


def collect_media(paths: Iterable[str | os.PathLike[str]], out_dir: str | Path | None = None) -> list[Path]:
    """Media files of the given paths: files as given; folders scanned recursively by extension.

    Skips hidden files/folders, our own output folder and anything under it. Raises InputError for a path
    that does not exist. The order is stable (given order, folders sorted), duplicates removed.
    """
    out = Path(out_dir).resolve() if out_dir is not None else None
    found: list[Path] = []
    seen: set[Path] = set()
    for raw in paths:
        p = Path(raw).expanduser()
        if not p.exists():
            raise InputError(p, "no such file or folder", stage="input")
        if p.is_dir():
            root = p.resolve()
            for dirpath, dirnames, filenames in os.walk(root):
                d = Path(dirpath)
                dirnames[:] = sorted(
                    n for n in dirnames if not n.startswith(".") and (out is None or (d / n).resolve() != out)
                )
                for fn in sorted(filenames):
                    f = d / fn
                    if fn.startswith(".") or _hidden(f, root):
                        continue
                    if f.suffix.lower().lstrip(".") in MEDIA_EXTS:
                        rf = f.resolve()
                        if rf not in seen:
                            seen.add(rf)
                            found.append(rf)
        else:
            rf = p.resolve()
            if rf not in seen:
                seen.add(rf)
                found.append(rf)
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


# ---- resume ---------------------------------------------------------------------------------------
def existing_result(json_path: Path, source: Path) -> dict[str, Any] | None:
    """The stored result document when it is complete (schema-valid, for this source file), else None."""
    from dmd_pipeline.analysis.result import read_result_file

    if not json_path.is_file():
        return None
    doc, problems = read_result_file(json_path)
    if doc is None or problems:
        return None
    try:
        same = Path(doc["file"]).resolve() == source.resolve()
    except (OSError, ValueError):
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


def _init_worker(model_ref: str | None, threads: int) -> None:
    """Process-pool initializer: limit threads and load the model once per worker."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch

    torch.set_num_threads(max(1, threads))
    from dmd_pipeline.analysis.registry import load_model

    try:
        _WORKER["model"] = load_model(model_ref)
    except (ModelFileError, ConfigError) as exc:
        # raised from the first task instead: an initializer error prints a traceback and breaks the pool
        _WORKER["load_error"] = exc


def _segments_csv(doc: dict[str, Any]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["index", "start", "end", "score", "label7", "label2", "predicted_class", "text"])
    for s in doc["segments"]:
        p = s["prediction"]
        w.writerow(
            [
                s["index"],
                s["start"],
                s["end"],
                p["score"],
                p["label7"],
                p["label2"],
                p["predicted_class"],
                s["text"],
            ]
        )
    return buf.getvalue()


def process_file(path: Path, name: str, opts: BatchOptions, model: Any | None = None) -> FileOutcome:
    """Analyse one file and write its outputs; never raises for a bad input (returns a failed outcome)."""
    from dmd_pipeline.analysis.analyze import AnalyzeOptions, analyze_clip
    from dmd_pipeline.analysis.report import write_report

    t0 = time.perf_counter()
    model = model if model is not None else _WORKER.get("model")
    out_dir = Path(opts.out_dir)
    try:
        result = analyze_clip(
            path,
            model,
            AnalyzeOptions(asr=opts.asr, transcript=opts.transcript),
        )
        doc = result.to_dict()
        text = json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    except InputError as exc:
        return FileOutcome(str(path), name, "failed", exc.stage, exc.reason, seconds=time.perf_counter() - t0)
    except Exception as exc:  # keep the batch going; the reason goes to errors.csv
        reason = f"{type(exc).__name__}: {exc}".strip()
        if os.environ.get("DMD_DEBUG"):
            reason += "\n" + traceback.format_exc()
        return FileOutcome(str(path), name, "failed", "analyze", reason, seconds=time.perf_counter() - t0)
    extra: list[tuple[str, str]] = []
    if opts.fmt == "csv":
        atomic_write_text(out_dir / f"{name}.csv", _segments_csv(doc))
    if opts.report:
        try:
            write_report(result, out_dir, name, media_path=path)
        except Exception as exc:
            extra.append(("report", f"{type(exc).__name__}: {exc}"))
    # the JSON goes last: its presence marks the file as done for a resumed run
    atomic_write_text(out_dir / f"{name}.json", text)
    return FileOutcome(str(path), name, "ok", errors=extra, seconds=time.perf_counter() - t0)


def _process_in_worker(path: Path, name: str, opts: BatchOptions) -> FileOutcome:
    if "load_error" in _WORKER:
        raise _WORKER["load_error"]
    return process_file(path, name, opts)


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
        )
    return row


def _write_csv(path: Path, columns: Sequence[str], rows: Iterable[dict[str, Any]]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: r.get(k, "") for k in columns})
    atomic_write_text(path, buf.getvalue())


def write_tables(
    files: Sequence[Path], names: dict[Path, str], outcomes: dict[Path, FileOutcome], out_dir: Path
) -> tuple[Path, Path]:
    """Regenerate summary.csv (from the JSONs on disk) and errors.csv (this run's failures)."""
    from dmd_pipeline.analysis.result import read_result_file

    rows, errs = [], []
    for f in files:
        jp = out_dir / f"{names[f]}.json"
        oc = outcomes.get(f)
        doc = None
        if oc is None or oc.status != "failed":
            doc, _ = read_result_file(jp) if jp.is_file() else (None, [])
        if oc is not None and oc.status == "failed":
            status = "failed"
        elif doc is not None:
            status = "ok"
        else:
            status = "pending"
        rows.append(summary_row(doc, str(f), jp if doc is not None else None, status))
        if oc is not None:
            if oc.status == "failed":
                errs.append({"file": str(f), "stage": oc.stage, "reason": oc.reason})
            errs.extend({"file": str(f), "stage": st, "reason": r} for st, r in oc.errors)
    summary, errors = out_dir / "summary.csv", out_dir / "errors.csv"
    _write_csv(summary, SUMMARY_COLUMNS, rows)
    _write_csv(errors, ERROR_COLUMNS, errs)
    return summary, errors


def _write_index(files: Sequence[Path], names: dict[Path, str], out_dir: Path) -> Path:
    from dmd_pipeline.analysis.report import IndexEntry, write_index
    from dmd_pipeline.analysis.result import read_result_file

    entries = []
    for f in files:
        jp, page = out_dir / f"{names[f]}.json", out_dir / f"{names[f]}.html"
        doc, _ = read_result_file(jp) if jp.is_file() else (None, [])
        o = doc["overall"] if doc else {}
        entries.append(
            IndexEntry(
                file=str(f),
                page=page if page.is_file() else None,
                score=o.get("score"),
                label=o.get("label7") or o.get("predicted_class"),
                status="ok" if doc else "failed",
            )
        )
    return write_index(out_dir, entries)


# ---- the batch ------------------------------------------------------------------------------------
def run_batch(
    files: Sequence[Path],
    opts: BatchOptions,
    model: Any | None = None,
    on_done: Callable[[FileOutcome], None] | None = None,
    on_start: Callable[[int, int], None] | None = None,
) -> BatchOutcome:
    """Analyse ``files`` into ``opts.out_dir``; finished/valid results are skipped unless ``opts.force``.

    ``model`` (a LoadedModel) is used in-process when ``opts.workers <= 1``; otherwise each spawned worker
    loads ``opts.model`` once. ``on_start(n_todo, n_skipped)`` and ``on_done(outcome)`` drive progress.
    """
    out_dir = Path(opts.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(out_dir)
    names = output_names(files)
    outcomes: dict[Path, FileOutcome] = {}
    todo: list[Path] = []
    for f in files:
        jp = out_dir / f"{names[f]}.json"
        done = None if opts.force else existing_result(jp, f)
        if done is not None:
            outcomes[f] = FileOutcome(str(f), names[f], "skipped")
            seg_csv = out_dir / f"{names[f]}.csv"
            if opts.fmt == "csv" and not seg_csv.is_file():  # asked for now, not on the first run
                atomic_write_text(seg_csv, _segments_csv(done))
            if opts.report and not (out_dir / f"{names[f]}.html").is_file():
                todo.append(f)  # result is there but its report is not: redo the file
                del outcomes[f]
        else:
            todo.append(f)
    if on_start is not None:
        on_start(len(todo), len(files) - len(todo))

    def _record(f: Path, oc: FileOutcome) -> None:
        outcomes[f] = oc
        write_tables(files, names, outcomes, out_dir)  # keep the tables current after each file
        if on_done is not None:
            on_done(oc)

    if todo and opts.workers <= 1:
        if model is None:
            from dmd_pipeline.analysis.registry import load_model

            model = load_model(opts.model)
        for f in todo:
            _record(f, process_file(f, names[f], opts, model))
    elif todo:
        n = min(opts.workers, len(todo))
        threads = max(1, (os.cpu_count() or 1) // n)
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(
            n, mp_context=ctx, initializer=_init_worker, initargs=(opts.model, threads)
        ) as ex:
            futs: dict[Future[FileOutcome], Path] = {
                ex.submit(_process_in_worker, f, names[f], opts): f for f in todo
            }
            pending = set(futs)
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fu in done:
                    f = futs[fu]
                    try:
                        oc = fu.result()
                    except (ModelFileError, ConfigError):  # the model does not load: no file can succeed
                        for other in pending:
                            other.cancel()
                        raise
                    except Exception as exc:  # a crashed worker (e.g. out of memory)
                        oc = FileOutcome(str(f), names[f], "failed", "worker", f"{type(exc).__name__}: {exc}")
                    _record(f, oc)
    summary, errors = write_tables(files, names, outcomes, out_dir)
    index = _write_index(files, names, out_dir) if opts.report else None
    return BatchOutcome([outcomes[f] for f in files], summary, errors, index)
