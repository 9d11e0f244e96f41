"""Issue 17: no answer without evidence, and no timing that speech cannot have.

The voice channel needs detected speech (Silero VAD) of at least ``MIN_VOICE_SPEECH_S``; the words channel
needs words; each says why when it answers ``n/a``. Whisper segments faster than human speech are flagged
and their word times come from alignment. One test per defect; each failed before the fix.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from dmd_pipeline.extractors import transcribe


def _fake_whisper(segments):
    model = SimpleNamespace(
        model=SimpleNamespace(is_multilingual=False),
        transcribe=lambda audio, **kw: (iter(segments), None),
    )
    return lambda path=None: model


def _seg(start, end, words):
    ws = [SimpleNamespace(word=f" w{i}", start=start + i * (end - start) / len(words), end=end, probability=0.9)
          for i, _ in enumerate(words)]  # fmt: skip
    return SimpleNamespace(start=start, end=end, text=" ".join(words), words=ws, avg_logprob=-0.2)


def test_implausible_whisper_timings_are_flagged_and_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: Whisper put 84 words in a 1.02 s segment with no warning, and those times were kept."""
    loop = _seg(3.0, 4.02, ["again"] * 84)
    normal = _seg(0.0, 2.5, ["this", "is", "a", "normal", "sentence", "of", "speech"])
    monkeypatch.setattr(transcribe, "whisper_model", _fake_whisper([normal, loop]))
    tr = transcribe._transcribe_whisper(np.zeros(16000 * 6, np.float32), None, True, 1, None)
    assert [len(s.words) for s in tr.segments] == [7, 0]  # the loop keeps its text, not Whisper's times
    assert tr.quality["implausible_segments"] == [
        {"start": 3.0, "end": 4.02, "n_words": 84, "words_per_s": 82.4}
    ]
    assert any("implausible Whisper timings in 1 segment(s) (e.g. 84 words in 1.02 s" in n for n in tr.notes)

    from dmd_pipeline.extractors.align import align_transcript

    audio = (0.05 * np.random.default_rng(0).standard_normal(16000 * 6)).astype(np.float32)
    aligned = align_transcript(tr, audio, 16000)
    assert len(aligned.segments[1].words) == 84
    assert {w.source for w in aligned.segments[1].words} <= {"forced", "proportional"}


def test_fast_but_human_speech_is_not_flagged() -> None:
    """Real speech rates (CMU-MOSI: at most 8.5 words/s over 6+ words) and short bursts stay as they are."""
    w = transcribe.Word
    fast = transcribe.Segment(
        0.0,
        1.0,
        "one two three four five six seven eight",
        [w(f"w{i}", i / 8, (i + 1) / 8, "asr") for i in range(8)],
    )
    burst = transcribe.Segment(2.0, 2.2, "yes no", [w("yes", 2.0, 2.1, "asr"), w("no", 2.1, 2.2, "asr")])
    segs = [fast, burst]
    assert transcribe.drop_implausible_times(segs) == []
    assert [len(s.words) for s in segs] == [8, 2]
