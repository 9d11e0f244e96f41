"""Public Python API: ``analyze(path)`` -> AnalysisResult, and ``load_model(name_or_dir)``.

Example::

    from dmd_pipeline import analyze, load_model
    models = load_model(["mosi-text-minilm", "runs/voice"])  # a name, a folder, or a list of them
    result = analyze("talk.mp4", model=models)  # reuse the loaded models for many files
    print(result.headline)                      # e.g. "voice: angry 0.71 · words: neutral -0.12"
    print(result.overall.score, result.overall.label7)   # the first (primary) model
    open("talk.json", "w").write(result.to_json())
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from dmd_pipeline.analysis.analyze import AnalyzeOptions, analyze_clip
from dmd_pipeline.analysis.batch import claim_names
from dmd_pipeline.analysis.options import file_options, result_options
from dmd_pipeline.analysis.registry import LoadedModel, available_models, load_models
from dmd_pipeline.analysis.registry import load_model as _load_one
from dmd_pipeline.analysis.report import write_report
from dmd_pipeline.analysis.result import AnalysisResult
from dmd_pipeline.utils import atomic_write_text

__all__ = ["AnalysisResult", "LoadedModel", "analyze", "available_models", "load_model"]

ModelRefs = str | os.PathLike[str] | LoadedModel | Sequence[str | os.PathLike[str] | LoadedModel] | None


def load_model(name_or_dir: ModelRefs = None, device: str = "cpu") -> LoadedModel | list[LoadedModel]:
    """Load a bundled model by name or a model folder; a LoadedModel is returned as is.

    A list (or a comma-separated string) loads each and returns a list; None loads the bundled default
    model (the first of the defaults; ``analyze(path)`` without a model runs all of them).
    """
    if isinstance(name_or_dir, LoadedModel):
        return name_or_dir
    if name_or_dir is None:
        return _load_one(None, device=device)
    if isinstance(name_or_dir, (str, os.PathLike)) and "," not in str(name_or_dir):
        return _load_one(name_or_dir, device=device)
    return load_models(name_or_dir, device=device)


def analyze(
    path: str | os.PathLike[str],
    model: ModelRefs = None,
    *,
    asr: str = "whisper",
    language: str = "auto",
    asr_model: str = "base",
    transcript: str | os.PathLike[str] | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    report: bool = False,
    cue_rate_hz: float = 2.0,
    stream_window_s: float = 60.0,
) -> AnalysisResult:
    """Analyse one media file: utterance timeline, overall sentiment/emotion, graph edges, descriptive cues.

    ``model``: a LoadedModel (fastest for many files), a bundled model name, a model folder, a list of
    these (several models, one extraction; the first is the primary one), or None for every bundled
    default model. ``transcript``: a transcript file (.txt/.srt/.vtt/.json) or literal text; else a
    sidecar beside the media, else ASR (``asr``: whisper | pocketsphinx | none). ``language``: ``auto``
    (identified by Whisper base), ``en`` or a Whisper language code; words in a language the text model does
    not read are not scored (README, "Speech in other languages"). ``asr_model``: the Whisper model that
    transcribes English, ``base`` (Whisper base) or ``tiny.en`` (faster, more errors). With ``out_dir`` the
    result is also written to ``<out_dir>/<stem>.json`` (and ``<stem>.html`` with ``report=True``), or to
    ``<stem>-<hash of the path>.json`` when ``<stem>.json`` there is another file's result (as
    ``dmd analyze`` names it: no result is ever replaced by another source's).
    A file longer than 1.5 x ``stream_window_s`` is extracted and scored in windows of about that length,
    so memory stays flat however long it is (0: always whole).
    Raises InputError (naming the file, stage and reason) for unreadable media.
    """
    from dmd_pipeline.extractors.language import check_asr_model, check_language

    language, asr_model = check_language(language), check_asr_model(asr_model)  # before any model loads
    loaded = load_models(model)
    opts = AnalyzeOptions(
        asr=asr,
        language=language,
        asr_model=asr_model,
        transcript=Path(transcript) if isinstance(transcript, os.PathLike) else transcript,
        cue_rate_hz=cue_rate_hz,
        stream_window_s=stream_window_s,
    )
    result = analyze_clip(path, loaded, opts)

    record = result_options(asr, transcript, [m.path for m in loaded], language, asr_model=asr_model)
    result.options = file_options(record, path)
    if out_dir is not None:
        out = Path(out_dir)
        source = Path(os.path.abspath(path))
        stem = claim_names([source], {source: Path(path).stem}, out)[source]
        if report:
            write_report(result, out, stem, media_path=path)
        atomic_write_text(out / f"{stem}.json", result.to_json() + "\n")
    return result
