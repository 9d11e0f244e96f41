"""``dmd live SOURCE``: emotion as it happens. A thin command over :class:`dmd_pipeline.live.LiveRunner`:
parses the source, prints one line per utterance (``--stdout``: one JSON line), appends to
``OUT/<name>.jsonl`` and writes the ``dmd analyze`` result (and ``--report``) when the stream ends or on
SIGINT/SIGTERM (exit 0). An unreadable or unreachable source exits 2 with its reason."""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Any

import typer

from dmd_pipeline.cli.common import (
    ASR_MODEL_HELP,
    LANGUAGE_HELP,
    AsrEngine,
    checked_asr_model,
    checked_language,
    quiet_option,
    require_ffmpeg,
    usage_error,
)


class AsrWindow(str, Enum):
    """Whisper's encoder window in ``dmd live`` (:func:`dmd_pipeline.extractors.transcribe.fitted_windows`)."""

    fit = "fit"
    full = "full"


def live(
    source: str = typer.Argument(
        ...,
        metavar="SOURCE",
        help="A media file (with --realtime: played at its own pace), a network stream (udp://, rtp://, "
        "rtsp://, srt://, http(s)://), a camera (/dev/video0, with --mic for its sound), a microphone "
        "(alsa:DEVICE or pulse:DEVICE) or - (a container on stdin).",
    ),
    model: list[str] | None = typer.Option(
        None,
        "--model",
        "-m",
        help="Model name or folder (repeat or comma list); default: the bundled defaults.",
    ),
    realtime: bool = typer.Option(
        False, "--realtime", help="Read a file at its own pace (as if it were live)."
    ),
    to_stdout: bool = typer.Option(
        False, "--stdout", help="One JSON line per finished utterance on stdout; messages go to stderr."
    ),
    out: Path | None = typer.Option(
        None,
        "--out",
        "-o",
        help="Folder: <name>.jsonl as it goes, <name>.json (the dmd analyze result) at the end.",
    ),
    report: bool = typer.Option(False, "--report", help="With --out: also write the HTML report at the end."),
    mic: str | None = typer.Option(
        None, "--mic", help="With a camera: the microphone (alsa:DEVICE or pulse:DEVICE)."
    ),
    no_video: bool = typer.Option(False, "--no-video", help="Decode no frames (audio only)."),
    asr: AsrEngine = typer.Option(AsrEngine.whisper, "--asr", help="Speech recognition."),
    language: str = typer.Option("auto", "--language", help=LANGUAGE_HELP, callback=checked_language),
    asr_model: str = typer.Option(  # live.runner.LIVE_ASR_MODEL (not imported here: the CLI starts light)
        "tiny.en",
        "--asr-model",
        help=ASR_MODEL_HELP + " dmd live: tiny.en by default.",
        callback=checked_asr_model,
    ),
    asr_window: AsrWindow = typer.Option(
        AsrWindow.fit,
        "--asr-window",
        help="fit: Whisper's encoder window fitted to each utterance (at least 10 s and 3x the audio; much "
        "faster); full: the 30 s window dmd analyze uses.",
    ),
    pause: float = typer.Option(0.5, "--pause", min=0.1, help="Seconds of silence that end an utterance."),
    max_utterance: float = typer.Option(10.0, "--max-utterance", min=1.0, help="Longest utterance (s)."),
    fps: float | None = typer.Option(
        None, "--fps", min=0.5, max=30, help="Face frames per second decoded (default: the models' rate)."
    ),
    stall: float = typer.Option(
        10.0,
        "--stall-timeout",
        min=0.5,
        help="Seconds without data after which a network stream is reconnected.",
    ),
    retries: int = typer.Option(3, "--retries", min=0, help="Reconnection attempts of a network stream."),
    duration: float | None = typer.Option(
        None, "--duration", min=0.1, help="Stop after this much stream time (s)."
    ),
    quiet: bool = quiet_option(
        "No live lines or messages on the console (JSON lines and files still written)."
    ),
) -> None:
    """Analyse a live source utterance by utterance, with the same models and scoring as dmd analyze."""
    import os
    import signal

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    require_ffmpeg()
    if report and out is None:
        raise usage_error("--report needs --out DIR")
    from dmd_pipeline.analysis.registry import load_models
    from dmd_pipeline.errors import ConfigError, ModelFileError, OutputError, os_error_reason
    from dmd_pipeline.live import LiveOptions, LiveRunner, LiveSourceError, parse_source
    from dmd_pipeline.live.source import check_reachable

    def say(msg: str) -> None:
        if not quiet:
            typer.echo(msg, err=True)

    try:
        src = parse_source(source, realtime=realtime, mic=mic, video=not no_video)
        check_reachable(src)
    except LiveSourceError as exc:
        raise usage_error(f"cannot read the live source {exc}") from None
    if src.has_audio is False:
        raise usage_error(
            f"{source} has no audio: dmd live cuts utterances by voice (a camera needs --mic alsa:DEVICE)"
        )
    jsonl = None
    if out is not None:
        try:
            out.mkdir(parents=True, exist_ok=True)
            jsonl = (out / f"{src.stem}.jsonl").open("a", encoding="utf-8")
        except OSError as exc:
            raise usage_error(f"cannot write to {out}: {os_error_reason(exc)}") from None
    models = [m for ref in model for m in ref.split(",") if m.strip()] if model else None
    say(f"live: loading models for {source} ...")
    try:
        runner = LiveRunner(
            src,
            load_models(models),
            LiveOptions(
                asr=asr.value, language=language, asr_model=asr_model, pause_s=pause, max_utterance_s=max_utterance, fps=fps, stall_s=stall,
                retries=retries, max_duration_s=duration, asr_window=asr_window.value,
            ),
            on_result=lambda rec: _emit(rec, to_stdout, jsonl, quiet, runner),
            on_status=lambda msg: say(f"live: {msg}"),
        )  # fmt: skip
        runner.warm_up()
    except (ModelFileError, ConfigError) as exc:
        raise usage_error(str(exc)) from None
    except KeyboardInterrupt:  # Ctrl-C while the models load: nothing was heard yet
        typer.echo("interrupted before the stream was read", err=True)
        raise typer.Exit(130) from None

    signals: list[int] = []

    def _stop(signum: int, _frame: Any) -> None:
        signals.append(signum)
        if len(signals) > 1:  # a second Ctrl-C: stop now, without the final files
            say("live: interrupted again: exiting without the final files")
            os._exit(130)
        say(f"live: {signal.Signals(signum).name}: finishing the utterances already heard (again: abort) ...")
        runner.stop()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    say(f"live: reading {source} (Ctrl-C ends it and writes the results)")
    try:
        result = runner.run()
    except LiveSourceError as exc:
        if jsonl is not None:
            jsonl.close()
        raise usage_error(f"cannot read the live source {exc}") from None
    finally:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if jsonl is not None:
        jsonl.close()
    summary = runner.stats.summary()
    if "live_latency_p50" in summary:
        say(
            f"live: {runner.stats.utterances} utterances over {runner.duration:.1f} s; latency p50 "
            f"{summary['live_latency_p50']:.2f} s, p95 {summary['live_latency_p95']:.2f} s; "
            f"behind on {runner.stats.behind}"
        )
    if result is None:
        say("live: no utterance was heard: no result written")
        raise typer.Exit(0)
    if to_stdout:
        _write_line({"type": "result", "headline": result.headline, "duration": result.duration,
                     "timings": {k: v for k, v in result.timings.items() if k.startswith("live_")}})  # fmt: skip
    if out is not None:
        from dmd_pipeline.analysis.batch import write_output

        try:
            write_output(out / f"{src.stem}.json", result.to_json() + "\n")
            if report:
                from dmd_pipeline.analysis.report import write_report

                write_report(result, out, src.stem, media_path=source if src.kind == "file" else None)
        except OutputError as exc:
            raise usage_error(str(exc)) from None
        say(f"live: wrote {out / (src.stem + '.json')}")
    say(f"live: {result.headline}")
    raise typer.Exit(0)


def _write_line(doc: dict[str, Any]) -> None:
    try:
        sys.stdout.write(json.dumps(doc, ensure_ascii=False, allow_nan=False) + "\n")
        sys.stdout.flush()
    except OSError:  # a closed pipe: the files are still written
        pass


def _line(rec: dict[str, Any], runner: Any) -> str:
    """``  3.2- 5.9 s  "text"  model: label (latency 1.2 s)``: one console line per utterance."""
    from dmd_pipeline.analysis.export import prediction_label

    tasks = {n: m.task for n, m in zip(runner.names, runner.models, strict=True)}
    preds = rec.get("predictions") or {}
    labels = [f"{n}: {prediction_label(tasks.get(n, ''), p) or 'n/a'}" for n, p in preds.items()]
    for key in ("fused",):  # the face channel is among the predictions already
        ch = rec.get(key)
        if isinstance(ch, dict) and ch.get("label"):
            prob = ch.get("probability")
            labels.append(
                f"{key}: {ch['label']}" + (f" {prob:.2f}" if isinstance(prob, (int, float)) else "")
            )
    text = (rec.get("text") or "").strip()
    text = text if len(text) <= 60 else text[:57] + "..."
    lv = rec.get("live") or {}
    flag = "  BEHIND" if lv.get("behind") else ""
    return (
        f'{rec["start"]:7.1f}-{rec["end"]:6.1f} s  "{text}"  '
        + " | ".join(labels)
        + f"  (latency {lv.get('latency_s', 0):.1f} s){flag}"
    )


def _emit(rec: dict[str, Any], to_stdout: bool, jsonl: Any, quiet: bool, runner: Any) -> None:
    line = json.dumps(rec, ensure_ascii=False, allow_nan=False)
    if jsonl is not None:
        jsonl.write(line + "\n")
        jsonl.flush()
    if to_stdout:
        _write_line(rec)
    if not quiet:
        typer.echo(_line(rec, runner), err=to_stdout)
