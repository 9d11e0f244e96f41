"""Public Python API: ``analyze(path)`` -> AnalysisResult, and ``load_model(name_or_dir)``.

Example::

    from dmd_pipeline import analyze, load_model
    model = load_model()                       # bundled default, or a folder with config.json + model.safetensors
    result = analyze("talk.mp4", model=model)  # reuse the loaded model for many files
    print(result.overall.score, result.overall.label7)
    open("talk.json", "w").write(result.to_json())
"""

from __future__ import annotations

import os
from pathlib import Path

from dmd_pipeline.analysis.registry import LoadedModel, available_models, load_model
from dmd_pipeline.analysis.result import AnalysisResult

__all__ = ["AnalysisResult", "LoadedModel", "analyze", "available_models", "load_model"]


def analyze(
    path: str | os.PathLike[str],
    model: str | os.PathLike[str] | LoadedModel | None = None,
    *,
    asr: str = "whisper",
    transcript: str | os.PathLike[str] | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    report: bool = False,
    cue_rate_hz: float = 2.0,
) -> AnalysisResult:
    """Analyse one media file: utterance timeline, overall sentiment, graph edges and descriptive cues.

    ``model``: a LoadedModel (fastest for many files), a bundled model name, a model folder, or None for
    the bundled default. ``transcript``: a transcript file (.txt/.srt/.vtt/.json) or literal text; else a
    sidecar beside the media, else ASR (``asr``: whisper | pocketsphinx | none). With ``out_dir`` the
    result is also written to ``<out_dir>/<stem>.json`` (and ``<stem>.html`` with ``report=True``).
    Raises InputError (naming the file, stage and reason) for unreadable media.
    """
    from dmd_pipeline.analysis.analyze import AnalyzeOptions, analyze_clip

    loaded = model if isinstance(model, LoadedModel) else load_model(model)
    opts = AnalyzeOptions(
        asr=asr,
        transcript=Path(transcript) if isinstance(transcript, os.PathLike) else transcript,
        cue_rate_hz=cue_rate_hz,
    )
    result = analyze_clip(path, loaded, opts)
    if out_dir is not None:
        from dmd_pipeline.utils import atomic_write_text

        out = Path(out_dir)
        stem = Path(path).stem
        if report:
            from dmd_pipeline.analysis.report import write_report

            write_report(result, out, stem, media_path=path)
        atomic_write_text(out / f"{stem}.json", result.to_json() + "\n")
    return result
