"""``dmd extract``: a labelled folder of media -> an MMSA-compatible feature pickle for training.

Steps: read the label file (:mod:`dmd_pipeline.data.labels`) -> extract every item (in this process, or in
``--workers`` spawned processes that each load their models once) -> store each finished item atomically as
``OUT/items/<key>.npz`` -> assemble ``OUT/aligned_50.pkl`` (or ``unaligned_50.pkl``) with
:func:`dmd_pipeline.data.mmsa.save_mmsa_pickle`, plus its JSON sidecar and ``OUT/errors.csv``.

The run is resumable: an item whose ``items/*.npz`` exists with the same run hash (features, setting,
lengths, media and span) is not extracted again, so a killed run restarts where it stopped. ``--force``
ignores both the per-item files and the feature cache.

Workers run under :class:`dmd_pipeline.executor.LocalExecutor`: a worker that dies fails only the item it
held (retried once on a fresh worker), ``--file-timeout``/``--max-rss`` bound each item, and the workers
only compute: this driver writes every item file. With ``--engine ray`` the items run on Ray actors
(:class:`dmd_pipeline.ray_executor.RayExecutor`, the same contract; docs/cluster.md). ``--out`` is locked for the run (a second run on it
stops with exit 2), and an output folder that cannot be written is one clear line, exit 2.

Exit codes: 0 all items ok, 1 some items failed (the rest are in the pickle), 2 usage error (including an
unusable or locked ``--out`` and a label file naming media outside the input folder).
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from dmd_pipeline.cli.engine import (
    Engine,
    actors_option,
    address_option,
    cluster_options,
    cpus_per_actor_option,
    engine_option,
    gpus_per_actor_option,
    terminate_as_interrupt,
)

ITEM_FORMAT = 1
_WORKER: dict[str, Any] = {}  # per-process state of a worker: the Extractor and run settings


# ------------------------------------------------------------------------------------------- item files


def item_key(item_id: str) -> str:
    """A file-system safe, unique file stem for an item id (readable prefix + short hash)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", item_id).strip("._")[:80] or "item"
    return f"{safe}-{hashlib.sha256(item_id.encode('utf-8')).hexdigest()[:10]}"


def run_hash(feature_hash: str, aligned: bool, seq_lens: tuple[int, int, int], item: Any) -> str:
    """Hash of everything that determines one item's stored arrays."""
    from dmd_pipeline.utils import config_hash

    spec = {
        "format": ITEM_FORMAT,
        "features": feature_hash,
        "aligned": aligned,
        "seq_lens": list(seq_lens),
        "media": str(item.media),
        "start": item.start,
        "end": item.end,
        "transcript": item.transcript,
    }
    return config_hash(spec)


def write_item(path: Path, arrays: dict, meta: dict) -> None:
    """One item's model inputs (+ JSON meta as a unicode scalar), written atomically; no pickle."""
    import numpy as np

    from dmd_pipeline.utils import atomic_write_bytes

    buf = io.BytesIO()
    np.savez(buf, **arrays, __meta__=np.array(json.dumps(meta)))
    atomic_write_bytes(path, buf.getvalue())


def read_item(path: Path, meta_only: bool = False) -> tuple[dict, dict] | None:
    """(arrays, meta) of a stored item (arrays empty with ``meta_only``), or None when missing/unreadable."""
    import numpy as np

    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {} if meta_only else {k: z[k] for k in z.files if k != "__meta__"}
            meta = json.loads(str(z["__meta__"]))
    except (OSError, ValueError, KeyError):
        return None
    return arrays, meta


# ----------------------------------------------------------------------------------------- processing


def _init_worker(
    config: Any, cache_dir: str | None, items_dir: str, aligned: bool, seq_lens: tuple, threads: int
):
    """Process-pool initializer: one Extractor per process, models loaded on first use and kept."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if threads > 0:
        try:
            import torch

            torch.set_num_threads(threads)
        except ImportError:  # pragma: no cover
            pass
    from dmd_pipeline.features import FeatureCache
    from dmd_pipeline.pipeline import Extractor

    prev = _WORKER.get("extractor")
    if prev is not None and prev.config == config:
        extractor = prev  # same settings in the same process (repeated in-process runs): keep the models
        extractor.cache = FeatureCache(cache_dir) if cache_dir else None
    else:
        if prev is not None:
            prev.close()  # free mediapipe deterministically, not from a GC finaliser
        extractor = Extractor(config, cache=cache_dir)
    _WORKER.clear()
    _WORKER.update(
        extractor=extractor,
        items_dir=Path(items_dir),
        aligned=aligned,
        seq_lens=tuple(seq_lens),
        spec=None,
    )


def _process(item: Any, use_cache: bool = True, write: bool = True) -> dict:
    """Extract one item in the current worker; store its arrays; return a small status dict.

    With ``write=False`` (in a worker) the arrays and meta come back under ``"_item"`` for the driver to
    store (:func:`write_item`). A bad input, or any unexpected failure of one item, is a failed status.
    """
    from dmd_pipeline.errors import DMDError, InputError
    from dmd_pipeline.pipeline import to_model_inputs

    ex = _WORKER["extractor"]
    if _WORKER["spec"] is None:
        _WORKER["spec"] = ex.feature_spec()  # loads every model once, and gives dims for missing modalities
    dims = _WORKER["spec"]["dims"]
    try:
        bundle = ex.extract_clip(
            item.media, start=item.start, end=item.end, transcript=item.transcript, use_cache=use_cache
        )
        arrays = to_model_inputs(bundle, aligned=_WORKER["aligned"], seq_lens=_WORKER["seq_lens"], dims=dims)
    except InputError as exc:
        return {"id": item.id, "ok": False, "file": str(item.media), "stage": exc.stage, "reason": exc.reason}
    except DMDError:  # the installation or configuration: no item can succeed
        raise
    except Exception as exc:  # one item's unexpected failure never stops the run
        reason = f"{type(exc).__name__}: {exc}"
        return {"id": item.id, "ok": False, "file": str(item.media), "stage": "extract", "reason": reason}
    meta = {
        "format": ITEM_FORMAT,
        "id": item.id,
        "run_hash": run_hash(ex.feature_hash, _WORKER["aligned"], _WORKER["seq_lens"], item),
        "raw_text": item.transcript if item.transcript else bundle.raw_text,
        "modalities": bundle.modalities,
        "word_sources": bundle.metadata.get("word_sources", {}),
        "timings": bundle.metadata.get("timings", {}),
        "cache_hit": bool(bundle.metadata.get("cache", {}).get("hit")),
    }
    status = {
        "id": item.id,
        "ok": True,
        "timings": meta["timings"],
        "cache_hit": meta["cache_hit"],
        "spec": _WORKER["spec"],
    }
    if write:
        write_item(_WORKER["items_dir"] / f"{item_key(item.id)}.npz", arrays, meta)
    else:
        status["_item"] = (arrays, meta)
    return status


def _worker_task(task: tuple[Any, bool]) -> dict:
    """The executor's task function: (item, use_cache) -> status, the item's arrays returned, not written."""
    item, use_cache = task
    return _process(item, use_cache, write=False)


def run_items(
    items: list,
    config: Any,
    items_dir: Path,
    cache_dir: str | None,
    workers: int = 1,
    use_cache: bool = True,
    on_done: Any = None,
    file_timeout: float | None = None,
    max_rss_mb: float | None = None,
    engine: str = "local",
    cluster: Any = None,
) -> list[dict]:
    """Extract ``items`` (in-process when ``workers <= 1`` and no limit is set, else supervised worker
    processes, :class:`~dmd_pipeline.executor.LocalExecutor`; with ``engine="ray"`` Ray actors,
    :class:`~dmd_pipeline.ray_executor.RayExecutor`, ``cluster`` its
    :class:`~dmd_pipeline.ray_executor.RayOptions`) and return statuses.

    ``on_done(status)`` is called as each item completes. A worker that dies (signal, out of memory), runs
    past ``file_timeout`` or over ``max_rss_mb`` fails only its item with stage ``"worker"``; the item is
    retried once when the worker died unexplained; everything else keeps going. At most two items per
    worker are in flight (back-pressure), and this driver writes every item file.
    """
    results: list[dict] = []
    args = (config, cache_dir, str(items_dir), config.aligned, tuple(config.seq_lens))
    if engine == "local" and workers <= 1 and file_timeout is None and max_rss_mb is None:
        _init_worker(*args, 0)
        for item in items:
            res = _process(item, use_cache)
            results.append(res)
            if on_done:
                on_done(res)
        return results
    from dmd_pipeline.executor import DEFAULT_FILE_TIMEOUT_S, WorkerLost, default_max_rss_mb
    from dmd_pipeline.runner import bounded_completion, make_executor
    from dmd_pipeline.utils import choose_threads

    timeout = file_timeout if file_timeout is not None else DEFAULT_FILE_TIMEOUT_S
    if engine == "ray":
        from dmd_pipeline.ray_executor import RayOptions

        cluster = cluster or RayOptions()
        n: int | None = cluster.actors
        threads = max(1, int(cluster.cpus_per_actor))  # the CPUs each actor reserves on its node
        limit_mb = max_rss_mb  # None: no limit of ours (Ray's memory monitor still acts)
    else:
        n = max(1, workers)
        threads = choose_threads(share=n)  # per worker; fewer when other processes hold the cores
        limit_mb = max_rss_mb if max_rss_mb is not None else default_max_rss_mb(n)
    with make_executor(
        engine,
        _worker_task,
        n,
        initializer=_init_worker,
        initargs=(*args, threads),
        file_timeout=timeout,
        max_rss_mb=limit_mb,
        cluster=cluster,
        at_most=len(items),
    ) as pool:
        for item, fut in bounded_completion(pool, items, lambda it: (it, use_cache), 2 * pool.n_workers):
            try:
                res = fut.result()
            except WorkerLost as exc:
                res = {
                    "id": item.id,
                    "ok": False,
                    "file": str(item.media),
                    "stage": "worker",
                    "reason": exc.reason,
                }
            stored = res.pop("_item", None)
            if stored is not None:  # the driver writes: workers only compute
                write_item(Path(items_dir) / f"{item_key(item.id)}.npz", *stored)
            results.append(res)
            if on_done:
                on_done(res)
    return results


# ------------------------------------------------------------------------------------------- assembling


def assemble(
    label_set: Any, items_dir: Path, out_path: Path, spec: dict, aligned: bool, seq_lens: tuple
) -> dict:
    """Build the MMSA splits from the stored items (label-file order), save the pickle + sidecar.

    Returns per-split counts. Items without a stored file (failed) are left out.
    """
    import numpy as np

    from dmd_pipeline.data.mmsa import save_mmsa_pickle

    lt, la, lv = seq_lens
    dims = spec["dims"]
    shapes = {
        "text": (lt, dims["text"]),
        "text_bert": (3, lt),
        "audio": (la, dims["audio"]),
        "vision": (lv, dims["vision"]),
    }
    classify = label_set.task == "classification"
    splits: dict[str, dict[str, Any]] = {}
    for split in ("train", "valid", "test"):
        rows: dict[str, list] = {
            k: [] for k in ("id", "raw_text", *shapes, "audio_lengths", "vision_lengths")
        }
        reg, cls = [], []
        for item in label_set.items:
            if item.split != split:
                continue
            got = read_item(items_dir / f"{item_key(item.id)}.npz")
            if got is None:
                continue
            arrays, meta = got
            rows["id"].append(item.id)
            rows["raw_text"].append(meta.get("raw_text") or "")
            for k in (*shapes, "audio_lengths", "vision_lengths"):
                rows[k].append(arrays[k])
            reg.append(label_set.regression_value(item.label))
            if classify:
                cls.append(label_set.class_index(item.label))
        out: dict[str, Any] = {"id": rows["id"], "raw_text": rows["raw_text"]}
        for k, shp in shapes.items():
            dtype = np.int64 if k == "text_bert" else np.float32
            out[k] = np.stack(rows[k]).astype(dtype) if rows[k] else np.zeros((0, *shp), dtype=dtype)
        for k in ("audio_lengths", "vision_lengths"):
            out[k] = np.asarray(rows[k], dtype=np.int64).reshape(-1)
        out["regression_labels"] = np.asarray(reg, dtype=np.float32).reshape(-1)
        if classify:
            out["classification_labels"] = np.asarray(cls, dtype=np.int64).reshape(-1)
        splits[split] = out
    meta = {
        "feature_spec": spec,
        "aligned": aligned,
        "seq_lens": list(seq_lens),
        "task": label_set.task,
        "class_names": list(label_set.class_names),
        "class_to_index": {n: i for i, n in enumerate(label_set.class_names)},
        "labels": {"file": str(label_set.source), "layout": label_set.layout},
        "skipped": [{"id": i, "reason": r} for i, r in label_set.skipped],
        "regression_labels_note": "NaN where a label is categorical" if classify else "label value",
    }
    save_mmsa_pickle(out_path, splits, meta=meta)
    return {s: len(splits[s]["id"]) for s in splits}


def write_errors(path: Path, failures: list[dict]) -> None:
    """``errors.csv`` (id, file, stage, reason), always written (header only when nothing failed)."""
    from dmd_pipeline.utils import atomic_write_text

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["id", "file", "stage", "reason"])
    for f in failures:
        w.writerow([f["id"], f["file"], f["stage"], f["reason"]])
    atomic_write_text(path, buf.getvalue())


# ------------------------------------------------------------------------------------------------ command


def _parse_seq_lens(text: str | None, aligned: bool) -> tuple[int, int, int]:
    from dmd_pipeline.pipeline import ALIGNED_SEQ_LENS, UNALIGNED_SEQ_LENS

    if not text:
        return ALIGNED_SEQ_LENS if aligned else UNALIGNED_SEQ_LENS
    try:
        vals = tuple(int(x) for x in text.split(","))
    except ValueError:
        vals = ()
    if len(vals) != 3 or min(vals) <= 0:
        raise typer.BadParameter(
            f"expected three positive integers T,A,V, got {text!r}", param_hint="--seq-lens"
        )
    if aligned and len(set(vals)) != 1:
        raise typer.BadParameter(
            "the aligned setting needs equal lengths (audio/vision follow the text tokens)",
            param_hint="--seq-lens",
        )
    return vals  # type: ignore[return-value]


def _locked_output(fn: Callable[..., None]) -> Callable[..., None]:
    """Run a command holding the lock of its ``--out`` folder; an unusable folder is one line, exit 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        from dmd_pipeline.errors import OutputError, os_error_reason
        from dmd_pipeline.utils import output_lock

        out = Path(kwargs["out"])
        try:
            try:
                out.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise OutputError(out, f"cannot create the output folder: {os_error_reason(exc)}") from None
            with output_lock(out, "dmd extract"):
                return fn(*args, **kwargs)
        except OutputError as exc:
            typer.echo(f"Error: {exc}", err=True)
            raise typer.Exit(2) from None
        except OSError as exc:  # e.g. the disk filled up: items stored before are kept (atomic writes)
            typer.echo(f"Error: {exc.filename or out}: {os_error_reason(exc)}", err=True)
            raise typer.Exit(2) from None

    return wrapper


@_locked_output
def extract(
    input_path: Path = typer.Argument(
        ..., metavar="INPUT", help="Dataset folder (media, or Raw/ + label.csv)."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (pickle, sidecar, errors.csv, items/)."),
    labels: Path | None = typer.Option(
        None, "--labels", help="Label CSV (default: INPUT/label.csv or labels.csv)."
    ),
    layout: str = typer.Option("auto", "--layout", help="auto | mmsa | mosi | folder."),
    task: str = typer.Option(
        "auto",
        "--task",
        help="auto | regression | classification: which labels to keep when a file mixes numbers and "
        "categories (auto: the kind with more rows).",
    ),
    aligned: bool = typer.Option(
        True, "--aligned/--unaligned", help="Word-aligned (50,50,50) or unaligned setting."
    ),
    seq_lens: str | None = typer.Option(
        None, "--seq-lens", help="T,A,V lengths (default 50,50,50 / 50,375,500)."
    ),
    workers: int = typer.Option(
        1, "--workers", "-j", "-w", min=1, help="Worker processes (each loads its models once)."
    ),
    asr: str = typer.Option(
        "whisper", "--asr", help="whisper | pocketsphinx | none (when no transcript is given)."
    ),
    fps: float = typer.Option(10.0, "--fps", min=0.1, help="Video frames per second for the face features."),
    acoustic: str = typer.Option(
        "librosa",
        "--acoustic",
        help="Acoustic features: librosa (25-d, 100 Hz) | whisper (384-d Whisper encoder states, 50 Hz) | "
        "whisper+librosa (409-d, 50 Hz).",
    ),
    text_model: Path | None = typer.Option(
        None, "--text-model", help="Local BERT-family folder (default MiniLM)."
    ),
    face_model: Path | None = typer.Option(
        None, "--face-model", help="face_landmarker.task (default bundled)."
    ),
    cache_dir: Path | None = typer.Option(
        None, "--cache-dir", help="Feature cache (default $DMD_CACHE_DIR or ~/.cache/dmd-pipeline)."
    ),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not read or write the feature cache."),
    force: bool = typer.Option(False, "--force", help="Re-extract everything (ignore items/ and the cache)."),
    allow_outside: bool = typer.Option(
        False,
        "--allow-outside",
        help="Accept label-file media paths that resolve outside INPUT (absolute paths, '..').",
    ),
    file_timeout: float | None = typer.Option(
        None,
        "--file-timeout",
        min=0,
        help="Seconds one item may take (default 3600 in workers; 0 = no limit); an item over it fails.",
    ),
    max_rss: float | None = typer.Option(
        None,
        "--max-rss",
        min=0,
        help="MiB of memory one worker may use (default 80% of RAM shared by the workers; 0 = no limit).",
    ),
    engine: Engine = engine_option(),
    address: str | None = address_option(),
    actors: int | None = actors_option(),
    gpus_per_actor: float = gpus_per_actor_option(),
    cpus_per_actor: float = cpus_per_actor_option(),
    quiet: bool = typer.Option(
        False, "--quiet", "-q", help="No progress bar or notes; errors and the pickle path only."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Stage messages and debug logs."),
) -> None:
    """Extract features of a labelled dataset into an MMSA-compatible pickle for `dmd train`."""
    from dmd_pipeline.cli.common import setup_logging

    setup_logging(verbose, not verbose)  # the progress bar is the feedback; -v adds every stage
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from dmd_pipeline.data.labels import LAYOUTS, TASKS, read_labels
    from dmd_pipeline.errors import DataError
    from dmd_pipeline.features import default_cache_dir
    from dmd_pipeline.pipeline import ASR_ENGINES, ExtractionConfig

    err = Console(stderr=True)
    info = Console(stderr=True, quiet=quiet)  # progress notes; errors always go to ``err``
    if layout not in LAYOUTS:
        raise typer.BadParameter(f"choose one of {', '.join(LAYOUTS)}", param_hint="--layout")
    if task not in TASKS:
        raise typer.BadParameter(f"choose one of {', '.join(TASKS)}", param_hint="--task")
    if asr not in ASR_ENGINES:
        raise typer.BadParameter(f"choose one of {', '.join(ASR_ENGINES)}", param_hint="--asr")
    from dmd_pipeline.extractors.whisper_encoder import ACOUSTIC_SETTINGS

    if acoustic not in ACOUSTIC_SETTINGS:
        raise typer.BadParameter(f"choose one of {', '.join(ACOUSTIC_SETTINGS)}", param_hint="--acoustic")
    lens = _parse_seq_lens(seq_lens, aligned)
    cluster = cluster_options(
        engine,
        workers=workers,
        address=address,
        actors=actors,
        gpus_per_actor=gpus_per_actor,
        cpus_per_actor=cpus_per_actor,
        verbose=verbose,
    )
    try:
        label_set = read_labels(input_path, labels, layout, task, allow_outside=allow_outside)
    except DataError as exc:
        err.print(f"Error: {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    if label_set.skipped:
        info.print(
            f"[yellow]note:[/yellow] {len(label_set.skipped)} rows left out ({label_set.skipped[0][1]}): "
            + ", ".join(i for i, _ in label_set.skipped[:5])
            + (" ..." if len(label_set.skipped) > 5 else "")
            + "; choose with --task"
        )

    config = ExtractionConfig(
        fps=fps,
        asr=asr,
        acoustic=acoustic,
        text_model=str(text_model) if text_model else None,
        face_model=str(face_model) if face_model else None,
        aligned=aligned,
        seq_lens=lens,
    )
    cache = None if no_cache else str(cache_dir or default_cache_dir())
    items_dir = out / "items"
    items_dir.mkdir(parents=True, exist_ok=True)
    fhash = config.feature_hash()

    todo = []
    for item in label_set.items:
        got = None if force else read_item(items_dir / f"{item_key(item.id)}.npz", meta_only=True)
        if got is None or got[1].get("run_hash") != run_hash(fhash, aligned, lens, item):
            todo.append(item)
    n_done = len(label_set.items) - len(todo)
    info.print(
        f"{len(label_set.items)} items ({label_set.layout} layout, {label_set.task}); "
        f"{n_done} already extracted, {len(todo)} to go; "
        + (f"workers={workers}" if cluster is None else f"Ray actors={actors or 'one per CPU'}")
    )

    failures: list[dict] = []
    spec_path = out / "feature_spec.json"
    stats: dict[str, Any] = {"timings": {}, "cache_hits": 0, "ok": 0}

    def on_done(res: dict) -> None:
        if res["ok"]:
            stats["ok"] += 1
            stats["cache_hits"] += int(res.get("cache_hit", False))
            if res.get("spec") is not None and "spec" not in stats:
                stats["spec"] = res["spec"]
            if not res.get("cache_hit"):
                for k, v in res.get("timings", {}).items():
                    stats["timings"][k] = stats["timings"].get(k, 0.0) + float(v)
        else:
            failures.append(res)
            err.print(  # escaped: "[audio]" and paths with brackets are text, not rich markup
                f"[yellow]failed[/yellow] {escape(res['file'])} {escape('[' + res['stage'] + ']')}: "
                f"{escape(res['reason'])}",
                highlight=False,
                soft_wrap=True,  # one line per failure, whatever the terminal width
            )
        progress.advance(task)
        lines.advance()

    from dmd_pipeline.cli.common import LineProgress

    lines = LineProgress(info, "extract", len(label_set.items), done=n_done)
    with Progress(
        TextColumn("extracting"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=False,
        disable=quiet,
    ) as progress:
        task = progress.add_task("extract", total=len(label_set.items), completed=n_done)
        import contextlib

        from dmd_pipeline.ray_executor import ClusterError

        try:
            with terminate_as_interrupt() if cluster is not None else contextlib.nullcontext():
                if todo:
                    run_items(
                        todo,
                        config,
                        items_dir,
                        cache,
                        workers=workers,
                        use_cache=not force,
                        on_done=on_done,
                        file_timeout=file_timeout,
                        max_rss_mb=max_rss,
                        engine=engine.value,
                        cluster=cluster,
                    )
        except ClusterError as exc:  # Ray missing, the cluster unreachable or unable to host an actor
            err.print(f"Error: {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    from dmd_pipeline.utils import atomic_write_json

    spec = stats.get("spec")
    if spec is not None:
        atomic_write_json(spec_path, spec)
    elif spec_path.is_file():
        spec = json.loads(spec_path.read_text(encoding="utf-8"))
    else:  # every item was done by an older run that left no spec: compute it here
        from dmd_pipeline.pipeline import Extractor

        spec = Extractor(config).feature_spec()
        atomic_write_json(spec_path, spec)

    write_errors(out / "errors.csv", failures)
    n_items = n_done + stats["ok"]
    if n_items == 0:
        err.print(f"Error: no item could be extracted; see {out / 'errors.csv'}", highlight=False)
        raise typer.Exit(1)
    name = f"{'aligned' if aligned else 'unaligned'}_{lens[0]}.pkl"
    counts = assemble(label_set, items_dir, out / name, spec, aligned, lens)
    timing = ", ".join(f"{k} {v:.2f}s" for k, v in stats["timings"].items())
    info.print(
        f"wrote {out / name} (train {counts['train']}, valid {counts['valid']}, test {counts['test']}); "
        f"{len(failures)} failed; cache hits {stats['cache_hits']}"
        + (f"; stage totals: {timing}" if timing else "")
    )
    empty = [s for s in ("train", "valid") if counts[s] == 0]
    if empty:  # dmd train needs both; say so now rather than when training fails
        err.print(
            f"[yellow]warning:[/yellow] the {' and '.join(empty)} split{'s are' if len(empty) > 1 else ' is'} "
            f"empty ({n_items} item(s) in all): `dmd train` needs train and valid items; give the label file "
            "a split column or more items"
        )
    typer.echo(str(out / name))
    if failures:
        raise typer.Exit(1)
