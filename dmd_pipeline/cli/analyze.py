"""``dmd analyze``: score media files (or folders of them) with DMD; JSON per file, tables, HTML reports.

Exit codes: 0 every file succeeded; 1 some failed (the others are finished and written); 2 usage error
(bad option, nonexistent path, unknown model, no media found).
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer


class OutputFormat(str, Enum):
    json = "json"
    csv = "csv"


class AsrEngine(str, Enum):
    whisper = "whisper"
    pocketsphinx = "pocketsphinx"
    none = "none"


def _usage_error(msg: str) -> typer.Exit:
    typer.echo(f"Error: {msg}", err=True)
    return typer.Exit(2)


def analyze(
    paths: list[Path] = typer.Argument(
        ..., exists=True, help="Media files and/or folders (scanned recursively for audio/video files)."
    ),
    model: str | None = typer.Option(
        None, "--model", "-m", help="Bundled model name or a folder with config.json + model.safetensors."
    ),
    out: Path = typer.Option(Path("out"), "--out", "-o", help="Output folder."),
    report: bool = typer.Option(False, "--report", help="Also write an HTML page per file and index.html."),
    workers: int = typer.Option(
        1, "--workers", "-w", min=1, help="Worker processes (each loads the model once)."
    ),
    fmt: OutputFormat = typer.Option(
        OutputFormat.json,
        "--format",
        help="json: <name>.json per file (always written: it is the resume record); "
        "csv: also <name>.csv with the segment timeline.",
    ),
    force: bool = typer.Option(
        False, "--force", help="Re-analyse files that already have a complete result."
    ),
    asr: AsrEngine = typer.Option(
        AsrEngine.whisper, "--asr", help="Speech recognition when no transcript is given."
    ),
    transcript: Path | None = typer.Option(
        None,
        "--transcript",
        exists=True,
        dir_okay=False,
        help="Transcript of the (single) input file: .txt, .srt, .vtt or .json.",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary."),
) -> None:
    """Analyse sentiment over time in media files with a DMD model."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from rich.console import Console

    from dmd_pipeline.analysis.batch import BatchOptions, collect_media
    from dmd_pipeline.analysis.registry import read_model_meta, resolve_model_dir
    from dmd_pipeline.errors import ConfigError, InputError, ModelFileError

    err = Console(stderr=True)
    try:
        files = collect_media(paths, out)
    except InputError as exc:
        raise _usage_error(str(exc)) from None
    if not files:
        raise _usage_error("no media files found in " + ", ".join(map(str, paths)))
    if transcript is not None and len(files) > 1:
        raise _usage_error(f"--transcript applies to one file, but {len(files)} were given")

    try:  # cheap check here; the weights are loaded only when some file needs analysing
        _, model_dir = resolve_model_dir(model)
        read_model_meta(model_dir)
    except (ModelFileError, ConfigError) as exc:
        raise _usage_error(str(exc)) from None

    opts = BatchOptions(
        out_dir=out,
        model=str(model_dir),
        asr=asr.value,
        transcript=str(transcript) if transcript is not None else None,
        report=report,
        fmt=fmt.value,
        force=force,
        workers=workers,
    )
    try:
        outcome = _run(files, opts, None, err, quiet)
    except (ModelFileError, ConfigError) as exc:
        raise _usage_error(f"cannot load model {model_dir}: {exc}") from None
    if not quiet:
        _print_summary(outcome, out, Console())
    raise typer.Exit(outcome.exit_code)


def _run(files: list[Path], opts: object, loaded: object, err: object, quiet: bool) -> object:
    """Run the batch with a rich progress bar (on stderr) and one line per finished file."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from dmd_pipeline.analysis.batch import run_batch

    if quiet:
        return run_batch(files, opts, model=loaded)
    with Progress(
        TextColumn("[bold]analyze"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
        console=err,
        transient=False,
    ) as progress:
        task = progress.add_task("", total=len(files))

        def on_start(n_todo: int, n_skipped: int) -> None:
            progress.update(
                task, completed=n_skipped, description=f"{n_skipped} already done" if n_skipped else ""
            )

        def on_done(oc: object) -> None:
            if oc.status == "failed":
                progress.console.print(
                    f"[red]✗[/red] {Path(oc.file).name}: {oc.stage}: {oc.reason}",
                    markup=True,
                    highlight=False,
                )
            else:
                progress.console.print(
                    f"[green]✓[/green] {Path(oc.file).name} ({oc.seconds:.1f} s)", highlight=False
                )
            progress.advance(task)

        return run_batch(files, opts, model=loaded, on_done=on_done, on_start=on_start)


def _print_summary(outcome: object, out: Path, console: object) -> None:
    """A short readable summary: per-file overall result (timeline for a single file), then totals."""
    from rich.table import Table

    from dmd_pipeline.analysis.result import AnalysisResult, read_result_file

    docs = []
    for oc in outcome.outcomes:
        jp = out / f"{oc.name}.json"
        doc, _ = read_result_file(jp) if oc.status != "failed" and jp.is_file() else (None, [])
        docs.append((oc, doc))
    if len(docs) == 1 and docs[0][1] is not None:
        r = AnalysisResult.from_dict(docs[0][1])
        o = r.overall
        head = (
            f"{o.score:+.2f} ({o.label7}, {o.label2})"
            if o.score is not None
            else f"{o.predicted_class} ({max((o.probabilities or {'': 0}).values()):.2f})"
        )
        console.print(f"[bold]{Path(r.file).name}[/bold]  {r.duration:.1f} s  overall: [bold]{head}[/bold]")
        console.print(
            f"modalities present: {', '.join(r.modalities.present)}; used: {', '.join(r.modalities.used) or 'none'}"
            + (f"; zeros: {', '.join(r.modalities.zero_filled)}" if r.modalities.zero_filled else ""),
            highlight=False,
        )
        t = Table(show_header=True, header_style="bold")
        for c in ("start", "end", "score" if o.score is not None else "class", "text"):
            t.add_column(c)
        for s in r.segments[:30]:
            p = s.prediction
            val = f"{p.score:+.2f}" if p.score is not None else str(p.predicted_class)
            t.add_row(f"{s.start:.2f}", f"{s.end:.2f}", val, s.text)
        console.print(t)
        if len(r.segments) > 30:
            console.print(f"... {len(r.segments) - 30} more segments in the JSON")
    elif len(docs) > 1:
        t = Table(show_header=True, header_style="bold")
        for c in ("file", "score", "label", "status"):
            t.add_column(c)
        for oc, doc in docs[:50]:
            if doc is None:
                t.add_row(Path(oc.file).name, "", "", f"[red]failed: {oc.stage}[/red]")
                continue
            o = doc["overall"]
            score = "" if o["score"] is None else f"{o['score']:+.2f}"
            t.add_row(Path(oc.file).name, score, o["label7"] or o["predicted_class"] or "", oc.status)
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
