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


@pytest.mark.slow
def test_forced_alignment_does_not_depend_on_what_was_aligned_before(tmp_path: Path) -> None:
    """pocketsphinx keeps noise and cepstral-mean statistics between utterances; the aligner resets them, so
    a file in a batch gets the same word times as when it is aligned first in a fresh process."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from media_factory import MediaFactory, require_tools

    from dmd_pipeline.extractors import align
    from dmd_pipeline.extractors.transcribe import to_16k

    require_tools("espeak-ng", "ffmpeg")
    import soundfile as sf

    factory = MediaFactory(tmp_path)
    first, sr = sf.read(str(factory.speech_wav("i really liked this movie")), dtype="float32")
    other, sr2 = sf.read(str(factory.speech_wav("the weather was cold and grey all week")), dtype="float32")
    a16, o16 = to_16k(first, sr), to_16k(other, sr2)
    words = ["i", "really", "liked", "this", "movie"]
    align._DECODERS.clear()  # fresh decoders, as in a new process
    alone = align._forced(a16, words)
    for _ in range(2):
        align._forced(o16, ["the", "weather", "was", "cold", "and", "grey", "all", "week"])
        assert align._forced(a16, words) == alone
    assert alone is not None
