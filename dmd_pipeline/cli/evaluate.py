"""``dmd evaluate``: metrics of a trained model on one split of labelled data (rich tables or JSON).

The model is a checkpoint folder or a bundled model name (``dmd_pipeline/assets/models/<name>``). The data:

* ``--data X.pkl``: an MMSA feature pickle;
* ``--labels X.csv`` with media (any layout :func:`dmd_pipeline.data.labels.read_labels` understands, e.g.
  ``file,label[,transcript,split]`` with paths relative to the CSV's folder): every item is extracted with
  the settings the model was trained with (through the feature cache) and scored
  (:mod:`dmd_pipeline.evaluation`);
* ``--labels X.csv`` of transcripts (MMSA/CMU-MOSI ``label.csv``: video_id, clip_id, text, label, mode) for a
  text model: the transcripts are encoded the way the model was trained, audio and vision are zeros.

Classification models report accuracy, UAR, macro-F1, weighted-F1, per-class recall/precision/F1/support,
the confusion matrix and their calibration (ECE over 15 bins and NLL of the raw softmax and after the model's
temperature; ``--report FILE.png`` draws the reliability diagram); regression models the MMSA metrics. Exit codes: 0 ok, 1 some items failed extraction
(they are listed and left out), 2 usage error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from dmd_pipeline.cli.common import Device, device_option
from dmd_pipeline.cli.tables import print_classification, print_metrics
from dmd_pipeline.utils import json_safe, quiet_transformers


def evaluate(
    model: str = typer.Option(
        ..., "--model", help="Checkpoint folder written by `dmd train`, or a bundled model name."
    ),
    data: Path | None = typer.Option(None, "--data", help="MMSA feature pickle."),
    labels: Path | None = typer.Option(
        None,
        "--labels",
        help="Label CSV: media (file,label[,transcript,split], paths relative to the CSV, or any "
        "`dmd extract` layout), or transcripts (video_id, clip_id, text, label, mode) for a text model.",
    ),
    split: str = typer.Option(
        "test",
        "--split",
        help="test, valid, train or all (all: every row; the only choice without a split column).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document instead of tables."),
    report: Path | None = typer.Option(
        None,
        "--report",
        help="Write the reliability diagram of a classifier's calibration (raw softmax and after its "
        "temperature; 15 bins) to this PNG file.",
    ),
    device: Device = device_option(),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Evaluation batch size."),
    cache_dir: Path | None = typer.Option(
        None, "--cache-dir", help="Feature cache (default $DMD_CACHE_DIR or ~/.cache/dmd-pipeline)."
    ),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not read or write the feature cache."),
    quiet: bool = typer.Option(
        False, "--quiet", "-q", help="No progress bar or notes; errors and results only."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Stage messages and debug logs."),
) -> None:
    """Evaluate a model on one split: classification report (accuracy, UAR, F1s, confusion matrix) or the
    MMSA regression metrics."""
    from dmd_pipeline.cli.common import setup_logging

    setup_logging(verbose, quiet or as_json)
    device = device.value if isinstance(device, Device) else str(device)
    from rich.console import Console
    from rich.markup import escape

    from dmd_pipeline.errors import DMDError

    err = Console(stderr=True)
    import torch

    from dmd_pipeline.utils import choose_threads

    torch.set_num_threads(choose_threads())  # fewer threads when other processes hold the cores
    try:
        if report is not None:
            check_report_target(model, report)
        metrics, info = run_evaluation(
            model,
            data,
            split,
            device,
            batch_size,
            labels=labels,
            cache_dir=cache_dir,
            use_cache=not no_cache,
            progress=not quiet,
            console=err,
        )
    except DMDError as exc:
        err.print(f"Error: {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from exc
    failed = info.get("failed") or []
    if report is not None and info.get("calibration"):
        from dmd_pipeline.calibration_plot import save_reliability_diagram

        title = f"{info.get('model_name') or info['model']} on {info['split']} (n={info['n']})"
        save_reliability_diagram(info["calibration"], report, title)
        err.print(f"reliability diagram: {escape(str(report))}", highlight=False)
    if as_json:
        typer.echo(json.dumps(json_safe({**info, "metrics": metrics}), indent=2))
    elif info["n"] == 0:
        pass
    elif info.get("report") is not None:
        print_classification(info)
    else:
        print_metrics({f"{info['split']} (n={info['n']})": metrics})
    if failed:
        err.print(
            f"[yellow]{len(failed)} of {info['n_items']} items failed[/yellow] and are left out of the metrics",
            highlight=False,
        )
    if info["n"] == 0:
        err.print("Error: no item could be evaluated", highlight=False)
        raise typer.Exit(1)
    if failed:
        raise typer.Exit(1)


def check_report_target(model: str | Path, report: Path) -> None:
    """``--report`` before anything runs: a ``.png`` file in an existing folder, for a DMD classifier (a
    regression model has no class probabilities to calibrate)."""
    from dmd_pipeline.analysis.registry import read_model_meta
    from dmd_pipeline.errors import ConfigError
    from dmd_pipeline.face.model import is_face_model

    if Path(report).suffix.lower() != ".png":
        raise ConfigError(f"--report {report}: the reliability diagram is a PNG file (name it *.png)")
    if not Path(report).expanduser().resolve().parent.is_dir():
        raise ConfigError(f"--report {report}: the folder {Path(report).parent} does not exist")
    if is_face_model(model):
        return  # a classifier of images: its calibration is measured like a DMD classifier's
    meta = read_model_meta(resolve_model(model))
    n_classes = (meta.get("config") or {}).get("num_classes", 1)
    task = meta.get("task") or ("classification" if n_classes > 1 else "regression")
    if task != "classification":
        raise ConfigError(
            f"--report: model {str(model)!r} is a regression model; a reliability diagram needs class probabilities"
        )


def resolve_model(model: str | Path) -> Path:
    """A checkpoint folder/file as given, else a bundled model name (``dmd_pipeline/assets/models/<name>``)."""
    p = Path(model).expanduser()
    if p.exists():
        return p
    from dmd_pipeline.analysis.registry import resolve_model_dir
    from dmd_pipeline.errors import ModelFileError

    try:
        return resolve_model_dir(str(model))[1]
    except ModelFileError as exc:
        if "/" in str(model) or "\\" in str(model):
            return p  # a missing folder: loading says "not found"
        raise exc


def load_evaluation_model(model: str | Path, device: Any = "cpu") -> Any:
    """The :class:`~dmd_pipeline.analysis.registry.LoadedModel` of a checkpoint folder or bundled name."""
    from dmd_pipeline.analysis.registry import load_model
    from dmd_pipeline.errors import ModelFileError

    path = resolve_model(model)
    if not path.exists():
        raise ModelFileError(
            f"{path}: model not found (neither a checkpoint folder nor a bundled model name)"
        )
    return load_model(path, device=device)


def label_source_for_model(labels: Path, model: Any, split: str) -> Any:
    """Encode one split (or ``"all"``) of a transcript CSV the way ``model`` (a LoadedModel) was trained."""
    from dmd_pipeline.data.text_only import load_label_source

    cfg = model.config
    side = (int(cfg.feature_dims[1]), int(cfg.feature_dims[2]))
    return load_label_source(
        labels,
        model.text_encoder_folder(),
        tuple(cfg.seq_lens),
        side,
        text_features=not cfg.use_bert,
        only_splits=None if split == "all" else [split],
    )


def _split_size(split: dict[str, Any]) -> int:
    for key in ("regression_labels", "classification_labels", "id"):
        if key in split:
            return len(split[key])
    return 0


def _evaluate_splits(
    model: Any, splits: dict[str, dict], names: list[str], batch_size: int, dev: Any
) -> tuple[Any, Any, float]:
    """Predictions, labels and size-weighted task loss over the named splits (concatenated)."""
    import numpy as np

    from dmd_pipeline.data.datasets import dataset_from_split
    from dmd_pipeline.training.trainer import predict_dataset

    preds, trues, losses, sizes = [], [], [], []
    for name in names:
        dataset = dataset_from_split(model.config, splits[name], name)
        p, t, loss = predict_dataset(model.system, dataset, batch_size, dev)
        preds.append(p)
        trues.append(t)
        losses.append(loss)
        sizes.append(len(dataset))
    loss = float(np.average(losses, weights=sizes))
    return np.concatenate(preds), np.concatenate(trues), loss


def run_evaluation(
    model: str | Path,
    data: Path | None,
    split: str,
    device: str = "cpu",
    batch_size: int = 64,
    labels: Path | None = None,
    cache_dir: Path | None = None,
    use_cache: bool = True,
    progress: bool = False,
    console: Any = None,
) -> tuple[dict[str, float], dict[str, Any]]:
    """Load the model and data, return (metrics, info about what was evaluated).

    ``info`` holds the model, data/label file, split, ``n`` (items scored), ``n_items``, ``n_failed`` and
    ``failed`` (id, file, stage, reason), and for classification ``class_names``, ``report``
    (:func:`~dmd_pipeline.training.metrics.classification_report`) and ``calibration``
    (:func:`~dmd_pipeline.evaluation.calibration_of`: ECE/NLL of the raw logits and after the model's
    temperature). ``progress`` shows a rich progress bar
    (on ``console``, default stderr) while media are extracted.
    """
    from dmd_pipeline.device import resolve_device
    from dmd_pipeline.errors import ConfigError, DataError
    from dmd_pipeline.evaluation import label_file_kind

    if (data is None) == (labels is None):
        raise ConfigError("give exactly one of --data FILE.pkl or --labels FILE.csv")
    from dmd_pipeline.face.model import is_face_model

    if is_face_model(model):
        if labels is None:
            raise ConfigError("a face model is evaluated on images: give --labels FILE.csv (file,label)")
        return _run_face_images(model, Path(labels), split, batch_size, progress, console)
    dev = resolve_device(device)
    quiet_transformers()
    loaded = load_evaluation_model(model, device=dev)
    info: dict[str, Any] = {
        "model": str(model),
        "model_name": loaded.name,
        "task": loaded.task,
        "preset": loaded.preset,
        "num_classes": int(loaded.config.num_classes),
        "class_names": loaded.class_names,
        "modalities": list(loaded.modalities),
        "labels": None,
        "data": None,
        "data_sha256": None,
    }
    if labels is not None:
        labels = Path(labels)
        if not labels.is_file():
            raise DataError(labels, "label file not found")
        kind = label_file_kind(labels, loaded.modalities)
        info["labels"] = str(labels.resolve())
        if kind == "media":
            return _run_media(
                loaded, labels, split, dev, batch_size, cache_dir, use_cache, progress, console, info
            )
    else:
        kind = "pickle"
    return _run_arrays(loaded, kind, data, labels, split, dev, batch_size, info)


def _run_face_images(
    model: str | Path, labels: Path, split: str, batch_size: int, progress: bool, console: Any
) -> tuple[dict[str, float], dict[str, Any]]:
    """A label CSV of images for a face-expression model (:func:`dmd_pipeline.face.evaluate.evaluate_images`)."""
    from rich.console import Console
    from rich.markup import escape

    from dmd_pipeline.cli.common import LineProgress
    from dmd_pipeline.face.evaluate import evaluate_images, read_image_labels
    from dmd_pipeline.face.model import FaceExpressionModel
    from dmd_pipeline.utils import sha256_file

    err = console or Console(stderr=True)
    face = FaceExpressionModel.load(model)
    items, split_name = read_image_labels(labels, split)
    n_items = len(items)
    lines = LineProgress(err, "evaluate", n_items)

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("evaluating"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=err, disable=not progress,
    ) as bar:  # fmt: skip
        task = bar.add_task("evaluate", total=n_items)

        def on_item(item: Any, failure: str | None) -> None:
            if failure is not None:
                err.print(f"[yellow]failed[/yellow] {escape(str(item.path))}: {escape(failure)}", highlight=False)
            bar.advance(task)
            if progress:
                lines.advance()

        res = evaluate_images(face, labels, split, batch_size=batch_size, on_item=on_item)
    rep = res.report
    metrics = {k: rep[k] for k in ("accuracy", "uar", "macro_f1", "weighted_f1")} if rep else {}
    info = {
        "model": str(model),
        "model_name": face.name,
        "task": "classification",
        "kind": "images",
        "class_names": res.class_names,
        "labels": str(labels.resolve()),
        "data": str(labels.resolve()),
        "data_sha256": sha256_file(labels),
        "split": split_name,
        "n": len(res.files),
        "n_items": res.n_items,
        "n_failed": len(res.failed),
        "failed": res.failed,
        "faces_found": res.faces_found,
        "used_whole": res.used_whole,
        "report": rep,
        "calibration": res.calibration,
    }
    return metrics, info


def _run_arrays(
    loaded: Any,
    kind: str,
    data: Path | None,
    labels: Path | None,
    split: str,
    dev: Any,
    batch_size: int,
    info: dict[str, Any],
) -> tuple[dict[str, float], dict[str, Any]]:
    """An MMSA pickle or a transcript CSV: arrays in memory, scored split by split."""
    from dmd_pipeline.data.datasets import load_data_source
    from dmd_pipeline.data.text_only import read_label_csv
    from dmd_pipeline.errors import DataError
    from dmd_pipeline.evaluation import (
        SPLITS,
        calibration_of,
        check_split,
        remap_pickle_labels,
        score_outputs,
    )
    from dmd_pipeline.training.metrics import compute_metrics

    if kind == "transcripts":
        assert labels is not None
        if "text" not in loaded.modalities:
            raise DataError(
                labels,
                f"a label CSV of transcripts without media cannot evaluate model {loaded.name!r}, which does "
                f"not read text (it uses {', '.join(loaded.modalities)}); give a label file of media",
            )
        counts = {k: len(v) for k, v in read_label_csv(labels).items()}
        key = check_split(split, counts, labels)
        source = label_source_for_model(labels, loaded, key)
    else:
        assert data is not None
        source = load_data_source(data)
        key = check_split(split, {k: _split_size(v) for k, v in source.splits.items()}, data)
    names = [s for s in SPLITS if s in source.splits] + [s for s in source.splits if s not in SPLITS]
    names = names if key == "all" else [key]
    splits = {}
    data_names = ((source.sidecar or {}).get("meta") or {}).get("class_names")
    for name in names:
        sp = loaded.zero_fill(source.splits[name])
        if loaded.task == "classification" and "classification_labels" in sp:
            sp["classification_labels"] = remap_pickle_labels(sp["classification_labels"], data_names, loaded)
        splits[name] = sp
    pred, true, loss = _evaluate_splits(loaded, splits, names, batch_size, dev)
    n_cls = int(loaded.config.num_classes)
    metrics = compute_metrics(pred, true, n_cls)
    metrics["Loss"] = loss
    report = None
    if n_cls > 1:
        extra, report = score_outputs(loaded, pred, true)
        metrics = {**extra, **metrics}
    info.update(
        kind=kind,
        data=source.path,
        data_sha256=source.sha256,
        split=key,
        n=int(len(true)),
        n_items=int(len(true)),
        n_failed=0,
        failed=[],
        report=report,
        calibration=calibration_of(loaded, pred, true) if n_cls > 1 else None,
    )
    return metrics, info


def _run_media(
    loaded: Any,
    labels: Path,
    split: str,
    dev: Any,
    batch_size: int,
    cache_dir: Path | None,
    use_cache: bool,
    progress: bool,
    console: Any,
    info: dict[str, Any],
) -> tuple[dict[str, float], dict[str, Any]]:
    """A label file of media: extract each item the way the model was trained, score, report."""
    from rich.console import Console
    from rich.markup import escape

    from dmd_pipeline.evaluation import calibration_of, evaluate_media, score_outputs, select_media_items
    from dmd_pipeline.features import FeatureCache, default_cache_dir
    from dmd_pipeline.pipeline import Extractor
    from dmd_pipeline.utils import sha256_file

    err = console or Console(stderr=True)
    sel = select_media_items(labels, loaded, split)
    config = loaded.extraction_config(device=str(dev))
    cache = FeatureCache(cache_dir or default_cache_dir()) if use_cache else None
    if progress:
        if sel.skipped:
            err.print(
                f"[yellow]note:[/yellow] {len(sel.skipped)} rows not evaluated ({escape(sel.skipped[0][1])}): "
                + ", ".join(escape(i) for i, _ in sel.skipped[:5])
                + (" ..." if len(sel.skipped) > 5 else ""),
                highlight=False,
            )
        err.print(
            f"{len(sel.items)} items of split {sel.split} ({sel.layout} layout); model uses "
            f"{'+'.join(loaded.modalities)}; features: acoustic {config.acoustic}, "
            f"{'aligned' if config.aligned else 'unaligned'} {tuple(config.seq_lens)}; cache: "
            f"{escape(str(cache.root)) if cache is not None else 'off'}",
            highlight=False,
        )
    extractor = Extractor(config, cache=cache)
    from dmd_pipeline.cli.common import LineProgress, item_progress

    lines = LineProgress(err, "evaluate", len(sel.items))
    try:
        with item_progress("evaluating", err, disable=not progress) as bar:
            task = bar.add_task("evaluate", total=len(sel.items))

            def on_item(item: Any, failure: dict | None) -> None:
                if failure is not None:
                    err.print(
                        f"[yellow]failed[/yellow] {escape(failure['id'])} ({escape(failure['file'])}) "
                        f"{escape('[' + failure['stage'] + ']')}: {escape(failure['reason'])}",
                        highlight=False,
                        soft_wrap=True,
                    )
                bar.advance(task)
                if progress:
                    lines.advance()

            res = evaluate_media(
                loaded, sel.items, sel.targets, extractor, batch_size, use_cache=use_cache, on_item=on_item
            )
    finally:
        extractor.close()
    metrics: dict[str, float] = {}
    report = None
    if len(res.ids):
        metrics, report = score_outputs(loaded, res.outputs, res.targets)
    calibration = calibration_of(loaded, res.outputs, res.targets)
    info.update(
        kind="media",
        data=str(labels.resolve()),
        data_sha256=sha256_file(labels),
        split=sel.split,
        layout=sel.layout,
        n=len(res.ids),
        n_items=len(sel.items),
        n_failed=len(res.failures),
        failed=res.failures,
        skipped=[{"id": i, "reason": r} for i, r in sel.skipped],
        report=report,
        calibration=calibration,
        extraction=config.to_dict(),
        cache_hits=res.cache_hits,
    )
    return metrics, info
