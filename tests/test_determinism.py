"""The same file, options and models give the same result on every run (issue 11): no sampling fallback in
the speech recogniser, so two fresh extractions of one clip agree on segments, words and scores."""

from __future__ import annotations

from pathlib import Path

import pytest


def _strip(doc: dict) -> dict:
    """The result without what legitimately differs between runs (timings, creation time)."""
    doc = dict(doc)
    for key in ("timings", "created_at"):
        doc.pop(key, None)
    return doc


@pytest.mark.slow
def test_one_clip_analysed_twice_gives_the_same_json(shared_clips: Path) -> None:
    from dmd_pipeline import analyze, load_model
    from dmd_pipeline.extractors import transcribe

    clip = shared_clips / "0h-zjBukYpk_1.mp4"
    models = load_model(["mosi-text-minilm", "ravdess-voice-emotion"])
    first = analyze(clip, model=models)
    for m in models:  # a fresh extractor: nothing is reused from the first run
        m.extra.pop("extractors", None)
    transcribe._MODEL_CACHE.clear()  # and a freshly loaded Whisper
    second = analyze(clip, model=models)
    assert _strip(first.to_dict()) == _strip(second.to_dict())
    assert first.to_dict()["transcript"]["n_words"] > 0
