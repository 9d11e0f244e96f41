"""``dmd analyze``: score media files (or folders of them) with DMD; JSON per file, tables, HTML reports.

Several models can run over one extraction per file (``--model A --model B`` or ``--model A,B``); by
default every bundled default model (sentiment from the words, emotion from the voice when bundled), or
``$DMD_MODEL`` (a comma list). Each file's console line is its result's ``headline``.

``--engine ray`` runs the files on Ray actors (``--actors``, ``--address``, ``--gpus-per-actor``; see
:mod:`dmd_pipeline.cli.engine` and docs/cluster.md) instead of ``-j`` local worker processes; this process
still writes every output file.

Exit codes: 0 every file succeeded; 1 some failed (the others are finished and written); 2 usage error
(bad option, nonexistent path, unknown or broken model, no media found, an output folder that cannot be
written or that another run holds).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from pathlib import Path

import typer

from dmd_pipeline.analysis.analysis_options import DEFAULT_FACE_FPS
from dmd_pipeline.analysis.predictions import top_class
from dmd_pipeline.cli.common import (
    ASR_MODEL_HELP,
    LANGUAGE_HELP,
    AsrEngine,
    Device,
    checked_asr_model,
    checked_language,
    device_option,
    quiet_option,
    require_ffmpeg,
    resolve_device,
    safetensors_problem,
    setup_logging,
    usage_error,
    verbose_option,
)
from dmd_pipeline.cli.engine import (
    Engine,
    actors_option,
    address_option,
    cluster_options,
    cpus_per_actor_option,
    engine_option,
    gpus_per_actor_option,
    ray_device,
    terminate_as_interrupt,
)


def _check_formats(value: str) -> str:
    from dmd_pipeline.analysis.export import parse_formats

    try:
        parse_formats(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    return value


def analyze(
    paths: list[Path] = typer.Argument(
        ...,
        metavar="PATH...",
        help="Media files and/or folders (scanned recursively for audio/video files); a missing one among "
        "others is one failed row in errors.csv.",
    ),
    model: list[str] | None = typer.Option(
        None,
        "--model",
        "-m",
        help="Bundled model name or a folder with config.json + model.safetensors; repeat the option or "
        "give a comma list for several models (one extraction per file; the first is the primary). "
        "Default: every bundled default model ($DMD_MODEL overrides).",
    ),
    face_model: str | None = typer.Option(
        None,
        "--face-model",
        metavar="NAME|DIR",
        help="Facial-expression model of the face channel: a bundled face model name or a folder "
        "(default: the bundled fer-face-expression, or the face model --model names).",
    ),
    face: bool = typer.Option(
        True,
        "--face/--no-face",
        help="Read the facial expression from the video (the face channel: 'face' in every result); "
        "--no-face leaves it out (face: null).",
    ),
    face_fps: float = typer.Option(
        DEFAULT_FACE_FPS,
        "--face-fps",
        min=0,
        help="At most this many face frames a second are read by the face model (evenly spaced, at least "
        "one per segment with a face; the visible fraction still counts every frame); 0 = every frame.",
    ),
    out: Path = typer.Option(Path("out"), "--out", "-o", help="Output folder."),
    report: bool = typer.Option(False, "--report", help="Also write an HTML page per file and index.html."),
    workers: int = typer.Option(
        1, "--workers", "-j", "-w", min=1, help="Worker processes (each loads the model once)."
    ),
    fmt: str = typer.Option(
        "json",
        "--format",
        "-f",
        callback=_check_formats,
        help="Comma list of json, csv, tsv, srt, vtt or all. json: <name>.json per file (always written: "
        "it is the resume record); csv/tsv: the segment timeline; srt/vtt: subtitles with each segment's "
        "text and the models' predictions.",
    ),
    to_stdout: bool = typer.Option(
        False,
        "--stdout",
        help="Print each result as one JSON line on stdout (for jq and pipes); messages go to stderr.",
    ),
    force: bool = typer.Option(
        False, "--force", help="Re-analyse files that already have a complete result."
    ),
    asr: AsrEngine = typer.Option(
        AsrEngine.whisper, "--asr", help="Speech recognition when no transcript is given."
    ),
    language: str = typer.Option("auto", "--language", help=LANGUAGE_HELP, callback=checked_language),
    asr_model: str = typer.Option("base", "--asr-model", help=ASR_MODEL_HELP, callback=checked_asr_model),
    transcript: Path | None = typer.Option(
        None,
        "--transcript",
        exists=True,
        dir_okay=False,
        help="Transcript of the (single) input file: .txt, .srt, .vtt or .json.",
    ),
    stream_window: float = typer.Option(
        60.0,
        "--stream-window",
        min=0,
        help="Files longer than 1.5x this many seconds are extracted and scored in windows of about this "
        "length, cut in pauses, so memory stays flat for hour-long files (0 = always whole).",
    ),
    device: Device = device_option(),
    file_timeout: float | None = typer.Option(
        None,
        "--file-timeout",
        min=0,
        help="Seconds one file may take (default 3600 in workers; 0 = no limit); a file over it fails "
        "(errors.csv) and the rest go on. Setting it runs files in a supervised worker process.",
    ),
    max_rss: float | None = typer.Option(
        None,
        "--max-rss",
        min=0,
        help="MiB of memory one worker may use (default 80% of RAM shared by the workers; 0 = no limit); "
        "a file over it fails and the rest go on.",
    ),
    allow_playlists: bool = typer.Option(
        False,
        "--allow-playlists",
        help="Also read HLS playlists and ffconcat lists (ffmpeg then reads the local files they name); "
        "refused by default.",
    ),
    engine: Engine = engine_option(),
    address: str | None = address_option(),
    actors: int | None = actors_option(),
    gpus_per_actor: float = gpus_per_actor_option(),
    cpus_per_actor: float = cpus_per_actor_option(),
    verbose: bool = verbose_option(),
    quiet: bool = quiet_option(
        "No progress, stage messages, warnings or summary: only the files that failed."
    ),
) -> None:
    """Analyse sentiment and emotion over time in media files with one or several DMD models."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from rich.console import Console

    from dmd_pipeline.analysis.batch import BatchOptions, collect_media
    from dmd_pipeline.analysis.registry import resolve_model_refs, with_face_model
    from dmd_pipeline.errors import ConfigError, InputError, ModelFileError, OutputError, os_error_reason

    err = Console(stderr=True)
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
        files = collect_media(paths, out)
    except InputError as exc:
        raise usage_error(str(exc)) from None
    if not files:
        raise usage_error("no media files found in " + ", ".join(map(str, paths)))
    if transcript is not None and len(files) > 1:
        raise usage_error(f"--transcript applies to one file, but {len(files)} were given")
    require_ffmpeg()  # a missing system tool is a usage error, found before any model loads

    if face_model is not None and not face:
        raise usage_error("--face-model and --no-face contradict each other: give one of them")
    try:  # resolved once, here; the weights are loaded only when some file needs analysing
        refs = with_face_model(resolve_model_refs(model or None), face_model or face)
        for ref in refs:
            weights = ref.path / "model.safetensors"
            problem = safetensors_problem(weights)
            if problem is not None:  # checked from its header, before any model loads
                raise ModelFileError(f"{weights} {problem}")
    except (ModelFileError, ConfigError) as exc:
        raise usage_error(str(exc)) from None

    opts = BatchOptions(
        out_dir=out,
        model=refs,
        asr=asr.value,
        language=language,
        asr_model=asr_model,
        face_fps=float(face_fps),
        transcript=str(transcript) if transcript is not None else None,
        stream_window_s=float(stream_window),
        report=report,
        fmt=fmt,
        force=force,
        workers=workers,
        device=(
            ray_device(device.value, gpus_per_actor)
            if cluster is not None  # the actors' device, decided without looking at this machine
            else resolve_device(device)
            if device != Device.cpu
            else "cpu"
        ),
        file_timeout=file_timeout,
        max_rss_mb=max_rss,
        engine=engine.value,
        cluster=cluster,
        allow_playlists=allow_playlists,
    )
    from dmd_pipeline import media
    from dmd_pipeline.ray_executor import ClusterError

    counts = {"done": 0, "total": len(files)}
    try:
        with (
            terminate_as_interrupt() if cluster is not None else contextlib.nullcontext(),
            media.playlists_allowed(allow_playlists),
        ):
            outcome = _run(files, opts, None, err, quiet, verbose, counts)
    except KeyboardInterrupt:  # Ctrl-C (SIGTERM too with --engine ray): finished results are kept
        left = counts["total"] - counts["done"]
        typer.echo(f"interrupted: {counts['done']} done, {left} left (a re-run resumes)", err=True)
        raise typer.Exit(130) from None
    except ClusterError as exc:  # Ray missing, the cluster unreachable or unable to host an actor
        raise usage_error(str(exc)) from None
    except OutputError as exc:  # read-only, full, missing or locked --out: one line, earlier results kept
        raise usage_error(str(exc)) from None
    except (ModelFileError, ConfigError) as exc:
        raise usage_error(f"cannot analyse with {', '.join(map(str, refs))}: {exc}") from None
    except FileNotFoundError as exc:  # ffmpeg vanished between the check and the run
        raise usage_error(str(exc)) from None
    try:
        if to_stdout:
            _print_stdout(outcome, out)
        if not quiet:
            _print_summary(outcome, out, err if to_stdout else Console())
        sys.stdout.flush()
    except OSError as exc:  # a closed pipe (| head), a full device: one line, the results are written
        _stdout_gone()
        raise usage_error(
            f"cannot write to stdout: {os_error_reason(exc)}; the results are in {out}/"
        ) from None
    raise typer.Exit(outcome.exit_code)


def _stdout_gone() -> None:
    """Point stdout at /dev/null, so that the interpreter's final flush of a closed pipe or a full device
    prints no second error."""
    import os

    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _print_stdout(outcome: object, out: Path) -> None:
    """One compact JSON document per finished file on stdout (JSON Lines; ``jq`` reads it as is)."""
    import json

    for oc in outcome.outcomes:
        jp = out / f"{oc.name}.json"
        if oc.status != "failed" and jp.is_file():
            doc = json.loads(jp.read_text(encoding="utf-8"))
            typer.echo(json.dumps(doc, ensure_ascii=False, separators=(",", ":")))


class _LiveHandler(logging.Handler):
    """Stage messages: the progress bar's description (terminal) or plain lines (pipe, nohup)."""

    def __init__(self, show: object, verbose: bool) -> None:
        super().__init__()
        self.show = show
        self.verbose = verbose

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = record.getMessage()
        except Exception:  # a bad log call must never break the run
            return
        stage_line = record.name.startswith("dmd_pipeline.pipeline") and not msg.startswith("loading")
        self.show(msg, record.levelno, stage_line and not self.verbose)


def _done_line(oc: object) -> str:
    """One finished file, for a terminal or a log: ``✓ clip.wav (1.2 s)  words: neutral -0.12``."""
    from rich.markup import escape

    name = escape(Path(oc.file).name)
    if oc.status == "failed":
        return f"[red]✗[/red] {name}: {escape(oc.stage)}: {escape(oc.reason)}"
    when = "already done" if oc.status == "skipped" else f"{oc.seconds:.1f} s"
    line = f"[green]✓[/green] {name} ({when})" + (f"  {escape(oc.headline)}" if oc.headline else "")
    if oc.note and oc.status != "skipped":
        line += f"  [dim]({escape(oc.note)})[/dim]"
    return line


#: Warnings printed per file (the rest are in its JSON, ranked the same way).
MAX_PRINTED_WARNINGS = 3


def _warning_lines(oc: object) -> list[str]:
    """The first few of a result's warnings (already deduplicated and ranked by the analysis), plus a line
    saying how many more its JSON holds."""
    from rich.markup import escape

    name = escape(Path(oc.file).name)
    shown = [f"  [yellow]![/yellow] {name}: {escape(w)}" for w in oc.warnings[:MAX_PRINTED_WARNINGS]]
    more = len(oc.warnings) - MAX_PRINTED_WARNINGS
    if more > 0:
        shown.append(f"  [yellow]![/yellow] {name}: {more} more warning(s) in {escape(oc.name)}.json")
    return shown


class _Heartbeat:
    """Under a pipe or nohup, a line at least every ``every_s`` seconds while a long file is analysed
    (``analyze: still working on talk.mp4 (transcript), 2/5 done, 95 s``), so a log never looks hung."""

    def __init__(self, err: object, counts: dict[str, int], every_s: float) -> None:
        self.err, self.counts, self.every_s = err, counts, every_s
        self.t0 = self.last = time.monotonic()
        self.file, self.stage = "", ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="dmd-heartbeat", daemon=True)

    def touch(self) -> None:
        self.last = time.monotonic()

    def note(self, msg: str) -> None:
        """A stage message (``talk.mp4: transcript``): remember what is being worked on."""
        head, sep, tail = msg.partition(": ")
        if sep and tail and " " not in tail:  # "talk.mp4: analysing" starts a file, "talk.mp4: align" a stage
            self.file, self.stage = head, "" if tail == "analysing" else tail

    def _loop(self) -> None:
        while not self._stop.wait(min(1.0, self.every_s / 4)):
            now = time.monotonic()
            if now - self.last >= self.every_s:
                what = f" on {self.file}" + (f" ({self.stage})" if self.stage else "") if self.file else ""
                self.err.print(
                    f"analyze: still working{what}, {self.counts['done']}/{self.counts['total']} done, "
                    f"{now - self.t0:.0f} s",
                    highlight=False,
                    soft_wrap=True,
                )
                self.last = now

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2)


def _run(
    files: list[Path],
    opts: object,
    loaded: object,
    err: object,
    quiet: bool,
    verbose: bool = False,
    counts: dict[str, int] | None = None,
) -> object:
    """Run the batch with live feedback on stderr: a progress bar with the current stage on a terminal,
    plain lines (one per stage message and per finished file, and a heartbeat at least every 30 s) under
    a pipe or nohup; each file's first warnings shown. ``-q``: only the files that failed. ``counts``
    (done, total) is kept current for the interrupted line."""
    import os

    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from dmd_pipeline.analysis.batch import run_batch

    total = len(files)
    counts = counts if counts is not None else {"done": 0, "total": total}
    state = {"done": 0}

    def count(oc: object) -> None:
        counts["done"] += 1

    if quiet:
        setup_logging(verbose=False, quiet=True)

        def on_done_quiet(oc: object) -> None:
            count(oc)
            if oc.status == "failed":
                err.print(_done_line(oc), highlight=False, soft_wrap=True)

        return run_batch(files, opts, model=loaded, on_done=on_done_quiet)

    def report(oc: object) -> None:
        if oc.status == "skipped" and oc.note and verbose:
            err.print(f"  {escape(Path(oc.file).name)}: {escape(oc.note)}", highlight=False, soft_wrap=True)
        for line in _warning_lines(oc) if oc.status == "ok" else []:
            err.print(line, highlight=False, soft_wrap=True)

    if not err.is_terminal:  # a pipe, a file, nohup: plain lines, flushed as they come
        beat = _Heartbeat(err, counts, float(os.environ.get("DMD_HEARTBEAT_S") or 30.0))

        def show(msg: str, level: int, minor: bool) -> None:
            beat.note(msg)
            if not minor:
                err.print(escape(msg), highlight=False, soft_wrap=True)
                beat.touch()

        setup_logging(verbose, False, _LiveHandler(show, verbose))

        def on_start(n_todo: int, n_skipped: int) -> None:
            err.print(
                f"analyze: {total} file(s), {n_todo} to analyse"
                + (f", {n_skipped} already done (same options and models)" if n_skipped else ""),
                highlight=False,
            )
            beat.touch()

        def on_done(oc: object) -> None:
            count(oc)
            state["done"] += 1  # kept files too: they are reported one by one after the start line
            err.print(f"[{state['done']}/{total}] " + _done_line(oc), highlight=False, soft_wrap=True)
            report(oc)
            beat.touch()

        with beat:
            return run_batch(files, opts, model=loaded, on_done=on_done, on_start=on_start)

    with Progress(
        TextColumn("[bold]analyze"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
        console=err,
        transient=False,
    ) as progress:
        task = progress.add_task("starting…", total=total)

        def show(msg: str, level: int, minor: bool) -> None:
            if level >= logging.WARNING or (verbose and not minor):
                progress.console.print(escape(msg), highlight=False)
            progress.update(task, description=escape(msg) + "…")

        setup_logging(verbose, False, _LiveHandler(show, verbose))

        def on_start(n_todo: int, n_skipped: int) -> None:
            progress.update(
                task,
                completed=n_skipped,
                description=f"{n_skipped} already done (same options and models)" if n_skipped else "",
            )

        def on_done(oc: object) -> None:
            count(oc)
            progress.console.print(_done_line(oc), highlight=False)
            if oc.status != "skipped":  # kept files were counted at the start
                progress.advance(task)
            report(oc)

        return run_batch(files, opts, model=loaded, on_done=on_done, on_start=on_start)


def _print_summary(outcome: object, out: Path, console: object) -> None:
    """A short readable summary: per-file overall result (timeline for a single file), then totals."""
    from rich.markup import escape
    from rich.table import Table

    from dmd_pipeline.analysis.export import fused_label
    from dmd_pipeline.analysis.result import AnalysisResult, read_result_file

    docs = []
    for oc in outcome.outcomes:
        jp = out / f"{oc.name}.json"
        doc, _ = read_result_file(jp) if oc.status != "failed" and jp.is_file() else (None, [])
        docs.append((oc, doc))
    if len(docs) == 1 and docs[0][1] is not None:
        r = AnalysisResult.from_dict(docs[0][1])
        console.print(
            f"[bold]{escape(Path(r.file).name)}[/bold]  {r.duration:.1f} s  [bold]{escape(r.headline)}[/bold]"
        )
        for run in r.models:
            console.print(
                f"{run.name} ({run.role}): used {', '.join(run.modalities_used) or 'none'}"
                + (f"; zeros: {', '.join(run.zero_filled)}" if run.zero_filled else "")
                + (f" — {run.note}" if not run.has_prediction and run.note else ""),
                highlight=False,
                markup=False,
            )
        t = Table(show_header=True, header_style="bold")
        t.add_column("start")
        t.add_column("end")
        fused = any(s.fused and s.fused.get("label") for s in r.segments)
        if fused:  # the fused answer leads, as in the headline
            t.add_column("fused")
        for run in r.models:
            t.add_column(
                run.name if len(r.models) > 1 else ("score" if run.task == "regression" else "class")
            )
        t.add_column("text")
        for s in r.segments[:30]:
            cells = [_cell(s.predictions.get(run.name, s.prediction)) for run in r.models]
            if fused:
                cells.insert(0, fused_label(s.fused) or "–")
            t.add_row(f"{s.start:.2f}", f"{s.end:.2f}", *cells, s.text)
        console.print(t)
        if len(r.segments) > 30:
            console.print(f"... {len(r.segments) - 30} more segments in the JSON")
    elif len(docs) > 1:
        t = Table(show_header=True, header_style="bold")
        for c in ("file", "headline", "status"):
            t.add_column(c)
        for oc, doc in docs[:50]:
            if doc is None:
                t.add_row(Path(oc.file).name, "", f"[red]failed: {escape(oc.stage)}[/red]")
                continue
            status = "ok (already done)" if oc.status == "skipped" else oc.status
            t.add_row(Path(oc.file).name, escape(doc.get("headline", "")), status)
        console.print(t)
    n_fail = sum(oc.status == "failed" for oc in outcome.outcomes)
    n_skip = sum(oc.status == "skipped" for oc in outcome.outcomes)
    console.print(
        f"{len(outcome.outcomes)} file(s): {len(outcome.outcomes) - n_fail - n_skip} analysed, {n_skip} already done, "
        f"{n_fail} failed. Results in {out}/ (summary.csv, errors.csv"
        + (", index.html" if outcome.index_html else "")
        + ")",
        highlight=False,
    )


def _cell(p: object) -> str:
    """A segment prediction in a table cell: ``+1.23`` (score), ``angry 0.71`` (class), ``–`` (none)."""
    if getattr(p, "score", None) is not None:
        return f"{p.score:+.2f}"
    probs = getattr(p, "probabilities", None)
    if probs:
        best = top_class(probs, p.predicted_class)
        return f"{best} {probs[best]:.2f}"
    return "–"
