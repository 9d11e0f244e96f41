"""``dmd extract``: a labelled folder of media -> an MMSA-compatible feature pickle for training.

The command parses its flags into an :class:`~dmd_pipeline.data.extract.ExtractRequest` and runs it with the
library runner (:func:`~dmd_pipeline.data.extract.plan_extract`, :func:`~dmd_pipeline.data.extract.run_extract`:
the steps, resume and item files are described there), showing a progress bar and one line per failed item.

Workers run under :class:`dmd_pipeline.executor.LocalExecutor`: a worker that dies fails only the item it
held (retried once on a fresh worker), ``--file-timeout``/``--max-rss`` bound each item, and the workers
only compute: the driver writes every item file. With ``--engine ray`` the items run on Ray actors
(:class:`dmd_pipeline.ray_executor.RayExecutor`, the same contract; docs/cluster.md). ``--out`` is locked for
the run (a second run on it stops with exit 2), and an output folder that cannot be written is one clear
line, exit 2.

Exit codes: 0 all items ok, 1 some items failed (the rest are in the pickle), 2 usage error (including an
unusable or locked ``--out`` and a label file naming media outside the input folder).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import typer

from dmd_pipeline.cli.common import (
    ASR_MODEL_HELP,
    LANGUAGE_HELP,
    AcousticSetting,
    AsrEngine,
    VisualSetting,
    checked_asr_model,
    checked_language,
)
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
    asr: AsrEngine = typer.Option(
        AsrEngine.whisper, "--asr", help="Speech recognition when no transcript is given."
    ),
    language: str = typer.Option("auto", "--language", help=LANGUAGE_HELP, callback=checked_language),
    asr_model: str = typer.Option("base", "--asr-model", help=ASR_MODEL_HELP, callback=checked_asr_model),
    fps: float = typer.Option(10.0, "--fps", min=0.1, help="Video frames per second for the face features."),
    acoustic: AcousticSetting = typer.Option(
        AcousticSetting.librosa,
        "--acoustic",
        help="Acoustic features: librosa (25-d, 100 Hz) | whisper (384-d Whisper tiny.en encoder states, "
        "50 Hz) | whisper-base (512-d multilingual Whisper base, 50 Hz) | whisper-base-layers (7 x 512 layer "
        "states, 50 Hz; -s2: 25 Hz, -s4: 12.5 Hz, -s5: 10 Hz) | any of them +librosa (the 25 librosa dims pooled to "
        "the same rate). README: columns and cache size per setting.",
    ),
    visual: VisualSetting = typer.Option(
        VisualSetting.landmarks,
        "--visual",
        help="Face features: landmarks (66-d blendshapes, head pose, ratios) | expression (the face-expression "
        "network: face_present + 7 class probabilities + 256-d embedding, 264-d) | expression+landmarks (329-d).",
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

    from dmd_pipeline.data.extract import ExtractRequest, plan_extract, run_extract
    from dmd_pipeline.data.labels import LAYOUTS, TASKS
    from dmd_pipeline.errors import DataError
    from dmd_pipeline.feature_config import ExtractionConfig
    from dmd_pipeline.features import default_cache_dir
    from dmd_pipeline.ray_executor import ClusterError

    err = Console(stderr=True)
    info = Console(stderr=True, quiet=quiet)  # progress notes; errors always go to ``err``
    if layout not in LAYOUTS:
        raise typer.BadParameter(f"choose one of {', '.join(LAYOUTS)}", param_hint="--layout")
    if task not in TASKS:
        raise typer.BadParameter(f"choose one of {', '.join(TASKS)}", param_hint="--task")
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
    config = ExtractionConfig(
        fps=fps,
        asr=asr.value,
        language=language,
        asr_model=asr_model,
        acoustic=acoustic.value,
        visual=visual.value,
        text_model=str(text_model) if text_model else None,
        face_model=str(face_model) if face_model else None,
        aligned=aligned,
        seq_lens=lens,
    )
    request = ExtractRequest(
        input_path=input_path,
        out=out,
        config=config,
        labels=labels,
        layout=layout,
        task=task,
        allow_outside=allow_outside,
        cache_dir=None if no_cache else str(cache_dir or default_cache_dir()),
        force=force,
        workers=workers,
        file_timeout=file_timeout,
        max_rss_mb=max_rss,
        engine=engine.value,
        cluster=cluster,
    )
    try:
        plan = plan_extract(request)
    except DataError as exc:
        err.print(f"Error: {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    label_set = plan.label_set
    if label_set.skipped:
        info.print(
            f"[yellow]note:[/yellow] {len(label_set.skipped)} rows left out ({label_set.skipped[0][1]}): "
            + ", ".join(i for i, _ in label_set.skipped[:5])
            + (" ..." if len(label_set.skipped) > 5 else "")
            + "; choose with --task"
        )
    info.print(
        f"{len(label_set.items)} items ({label_set.layout} layout, {label_set.task}); "
        f"{plan.n_done} already extracted, {len(plan.todo)} to go; "
        + (f"workers={workers}" if cluster is None else f"Ray actors={actors or 'one per CPU'}")
    )
    counts = {"done": plan.n_done}
    try:
        with (
            _progress(err, info, len(label_set.items), counts, quiet) as on_done,
            terminate_as_interrupt() if cluster is not None else contextlib.nullcontext(),
        ):
            outcome = run_extract(plan, on_done)
    except KeyboardInterrupt:  # Ctrl-C (SIGTERM too with --engine ray): finished items are kept
        left = len(label_set.items) - counts["done"]
        typer.echo(f"interrupted: {counts['done']} done, {left} left (a re-run resumes)", err=True)
        raise typer.Exit(130) from None
    except ClusterError as exc:  # Ray missing, the cluster unreachable or unable to host an actor
        err.print(f"Error: {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    _report(outcome, out, err, info)


@contextlib.contextmanager
def _progress(
    err: Any, info: Any, total: int, counts: dict[str, int], quiet: bool
) -> Iterator[Callable[[dict], None]]:
    """A progress bar (and, under a pipe, a plain line every 10 s) over the items; yields the callback that
    advances it, counts the item in ``counts["done"]`` (which starts at the items done before) and prints
    each failure as one line."""
    done = counts["done"]
    from rich.markup import escape

    from dmd_pipeline.cli.common import LineProgress, item_progress

    lines = LineProgress(info, "extract", total, done=done)
    with item_progress("extracting", err, disable=quiet) as progress:
        task = progress.add_task("extract", total=total, completed=done)

        def on_done(res: dict) -> None:
            if not res["ok"]:
                err.print(  # escaped: "[audio]" and paths with brackets are text, not rich markup
                    f"[yellow]failed[/yellow] {escape(res['file'])} {escape('[' + res['stage'] + ']')}: "
                    f"{escape(res['reason'])}",
                    highlight=False,
                    soft_wrap=True,  # one line per failure, whatever the terminal width
                )
            counts["done"] += 1
            progress.advance(task)
            lines.advance()

        yield on_done


def _report(outcome: Any, out: Path, err: Any, info: Any) -> None:
    """The closing lines of a run, and its exit code (1 when an item failed or nothing was extracted)."""
    if outcome.pickle is None:
        err.print(f"Error: no item could be extracted; see {out / 'errors.csv'}", highlight=False)
        raise typer.Exit(1)
    counts = outcome.counts
    timing = ", ".join(f"{k} {v:.2f}s" for k, v in outcome.timings.items())
    info.print(
        f"wrote {outcome.pickle} (train {counts['train']}, valid {counts['valid']}, test {counts['test']}); "
        f"{len(outcome.failures)} failed; cache hits {outcome.cache_hits}"
        + (f"; stage totals: {timing}" if timing else "")
    )
    empty = [s for s in ("train", "valid") if counts[s] == 0]
    if empty:  # dmd train needs both; say so now rather than when training fails
        err.print(
            f"[yellow]warning:[/yellow] the {' and '.join(empty)} split{'s are' if len(empty) > 1 else ' is'} "
            f"empty ({outcome.n_items} item(s) in all): `dmd train` needs train and valid items; give the label "
            "file a split column or more items"
        )
    typer.echo(str(outcome.pickle))
    if outcome.failures:
        raise typer.Exit(1)
