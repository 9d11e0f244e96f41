"""The library runner of ``dmd extract``: a labelled folder of media -> an MMSA-compatible feature pickle.

Steps: read the label file (:mod:`dmd_pipeline.data.labels`) and see which items are already stored
(:func:`plan_extract`) -> extract every remaining item (in this process, or on supervised workers that each
load their models once) -> store each finished item atomically as ``OUT/items/<key>.npz`` -> assemble
``OUT/aligned_50.pkl`` (or ``unaligned_50.pkl``) with :func:`dmd_pipeline.data.mmsa.save_mmsa_pickle`, plus
its JSON sidecar, ``OUT/feature_spec.json`` and ``OUT/errors.csv`` (:func:`run_extract`).

The run is resumable: an item whose ``items/*.npz`` exists with the same run hash (features, setting,
lengths, media and span) is not extracted again, so a killed run restarts where it stopped. ``force``
ignores both the per-item files and the feature cache. Workers only compute; this driver writes every file.
The command (:mod:`dmd_pipeline.cli.extract`) parses flags into an :class:`ExtractRequest` and prints.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dmd_pipeline.data.labels import LabelItem, LabelSet, read_labels
from dmd_pipeline.data.mmsa import save_mmsa_pickle
from dmd_pipeline.errors import DMDError, InputError
from dmd_pipeline.executor import WorkerLost
from dmd_pipeline.feature_config import ExtractionConfig
from dmd_pipeline.features import FeatureCache
from dmd_pipeline.pipeline import Extractor, to_model_inputs
from dmd_pipeline.runner import Limits, Workers, run_supervised
from dmd_pipeline.utils import (
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    config_hash,
)

ITEM_FORMAT = 1
_WORKER: dict[str, Any] = {}  # per-process state of a worker: the Extractor and run settings


# ------------------------------------------------------------------------------------------- item files


def item_key(item_id: str) -> str:
    """A file-system safe, unique file stem for an item id (readable prefix + short hash)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", item_id).strip("._")[:80] or "item"
    return f"{safe}-{hashlib.sha256(item_id.encode('utf-8')).hexdigest()[:10]}"


def run_hash(feature_hash: str, aligned: bool, seq_lens: tuple[int, int, int], item: LabelItem) -> str:
    """Hash of everything that determines one item's stored arrays."""
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
    buf = io.BytesIO()
    np.savez(buf, **arrays, __meta__=np.array(json.dumps(meta)))
    atomic_write_bytes(path, buf.getvalue())


def read_item(path: Path, meta_only: bool = False) -> tuple[dict, dict] | None:
    """(arrays, meta) of a stored item (arrays empty with ``meta_only``), or None when missing/unreadable."""
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


def init_worker(
    config: ExtractionConfig,
    cache_dir: str | None,
    items_dir: str,
    aligned: bool,
    seq_lens: tuple,
    threads: int,
) -> None:
    """Process-pool initializer: one Extractor per process, models loaded on first use and kept."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if threads > 0:
        import torch  # here: the driver itself never needs torch

        torch.set_num_threads(threads)
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


def process_item(item: LabelItem, use_cache: bool = True, write: bool = True) -> dict:
    """Extract one item in the current worker; store its arrays; return a small status dict.

    With ``write=False`` (in a worker) the arrays and meta come back under ``"_item"`` for the driver to
    store (:func:`write_item`). A bad input, or any unexpected failure of one item, is a failed status.
    """
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


def worker_task(task: tuple[Any, bool]) -> dict:
    """The executor's task function: (item, use_cache) -> status, the item's arrays returned, not written."""
    item, use_cache = task
    return process_item(item, use_cache, write=False)


def run_items(
    items: list,
    config: ExtractionConfig,
    items_dir: Path,
    cache_dir: str | None,
    limits: Limits,
    use_cache: bool = True,
    on_done: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Extract ``items`` and return their statuses: in this process when one local worker without limits
    would do, else on the supervised workers of ``limits`` (:func:`~dmd_pipeline.runner.run_supervised`).

    ``on_done(status)`` is called as each item completes. A worker that dies (signal, out of memory), runs
    past its time or over its memory limit fails only its item with stage ``"worker"``; the item is retried
    once when the worker died unexplained; everything else keeps going. This driver writes every item file.
    """
    results: list[dict] = []
    args = (config, cache_dir, str(items_dir), config.aligned, tuple(config.seq_lens))

    def done(res: dict) -> None:
        results.append(res)
        if on_done:
            on_done(res)

    if (
        limits.engine == "local"
        and limits.workers <= 1
        and limits.file_timeout is None
        and limits.max_rss_mb is None
    ):
        init_worker(*args, 0)
        for item in items:
            done(process_item(item, use_cache))
        return results

    def commit(item: LabelItem, res: dict) -> None:
        stored = res.pop("_item", None)
        if stored is not None:  # the driver writes: workers only compute
            write_item(Path(items_dir) / f"{item_key(item.id)}.npz", *stored)
        done(res)

    def fail(item: LabelItem, exc: BaseException) -> None:
        if not isinstance(exc, WorkerLost):
            raise exc  # the installation or configuration: no item can succeed
        done({"id": item.id, "ok": False, "file": str(item.media), "stage": "worker", "reason": exc.reason})

    workers = Workers(worker_task, init_worker, lambda threads: (*args, threads))
    run_supervised(workers, limits, items, lambda it: (it, use_cache), commit, fail)
    return results


# ------------------------------------------------------------------------------------------- assembling


def assemble(
    label_set: LabelSet, items_dir: Path, out_path: Path, spec: dict, aligned: bool, seq_lens: tuple
) -> dict:
    """Build the MMSA splits from the stored items (label-file order), save the pickle + sidecar.

    Returns per-split counts. Items without a stored file (failed) are left out.
    """
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
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["id", "file", "stage", "reason"])
    for f in failures:
        w.writerow([f["id"], f["file"], f["stage"], f["reason"]])
    atomic_write_text(path, buf.getvalue())


# ------------------------------------------------------------------------------------------------ runner
@dataclass(frozen=True)
class ExtractRequest:
    """Everything ``dmd extract`` was asked to do (its flags, parsed and checked)."""

    input_path: Path
    out: Path
    config: ExtractionConfig
    labels: Path | None = None
    layout: str = "auto"
    task: str = "auto"
    allow_outside: bool = False
    cache_dir: str | None = None  # None: no feature cache
    force: bool = False
    workers: int = 1
    file_timeout: float | None = None
    max_rss_mb: float | None = None
    engine: str = "local"
    cluster: Any = None  # a RayOptions for engine "ray"


@dataclass
class ExtractPlan:
    """The label set of a request and the items still to extract (the others are stored already)."""

    request: ExtractRequest
    label_set: LabelSet
    todo: list[Any]

    @property
    def n_done(self) -> int:
        """Items stored by an earlier run with the same settings."""
        return len(self.label_set.items) - len(self.todo)


@dataclass
class ExtractOutcome:
    """What :func:`run_extract` did: the pickle (None when no item could be extracted), its split sizes,
    the failed items (id, file, stage, reason), cache hits and the summed stage timings of this run."""

    pickle: Path | None
    counts: dict[str, int]
    failures: list[dict] = field(default_factory=list)
    n_items: int = 0
    cache_hits: int = 0
    timings: dict[str, float] = field(default_factory=dict)


def plan_extract(request: ExtractRequest) -> ExtractPlan:
    """Read the label file (DataError on a bad one) and find the items that are not stored yet."""
    label_set = read_labels(
        request.input_path, request.labels, request.layout, request.task, allow_outside=request.allow_outside
    )
    cfg = request.config
    items_dir = request.out / "items"
    items_dir.mkdir(parents=True, exist_ok=True)
    fhash = cfg.feature_hash()
    todo = []
    for item in label_set.items:
        got = None if request.force else read_item(items_dir / f"{item_key(item.id)}.npz", meta_only=True)
        if got is None or got[1].get("run_hash") != run_hash(fhash, cfg.aligned, tuple(cfg.seq_lens), item):
            todo.append(item)
    return ExtractPlan(request, label_set, todo)


def run_extract(plan: ExtractPlan, on_done: Callable[[dict], None] | None = None) -> ExtractOutcome:
    """Extract the plan's remaining items (``on_done(status)`` after each), write the feature spec and
    ``errors.csv``, and assemble the pickle from every stored item. ClusterError when Ray cannot run."""
    req = plan.request
    cfg = req.config
    items_dir = req.out / "items"
    outcome = ExtractOutcome(pickle=None, counts={})
    spec: dict | None = None

    def done(res: dict) -> None:
        nonlocal spec
        if res["ok"]:
            outcome.n_items += 1
            outcome.cache_hits += int(res.get("cache_hit", False))
            if res.get("spec") is not None and spec is None:
                spec = res["spec"]
            if not res.get("cache_hit"):
                for k, v in res.get("timings", {}).items():
                    outcome.timings[k] = outcome.timings.get(k, 0.0) + float(v)
        else:
            outcome.failures.append(res)
        if on_done is not None:
            on_done(res)

    if plan.todo:
        limits = Limits(req.engine, req.workers, req.file_timeout, req.max_rss_mb, req.cluster)
        run_items(plan.todo, cfg, items_dir, req.cache_dir, limits, use_cache=not req.force, on_done=done)
    spec_path = req.out / "feature_spec.json"
    if spec is not None:
        atomic_write_json(spec_path, spec)
    elif spec_path.is_file():
        spec = json.loads(spec_path.read_text(encoding="utf-8"))
    else:  # every item was done by an older run that left no spec: compute it here
        spec = Extractor(cfg).feature_spec()
        atomic_write_json(spec_path, spec)
    write_errors(req.out / "errors.csv", outcome.failures)
    outcome.n_items += plan.n_done
    if outcome.n_items == 0:
        return outcome
    lens = tuple(cfg.seq_lens)
    outcome.pickle = req.out / f"{'aligned' if cfg.aligned else 'unaligned'}_{lens[0]}.pkl"
    outcome.counts = assemble(plan.label_set, items_dir, outcome.pickle, spec, cfg.aligned, lens)
    return outcome
