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


# ---- the voice channel needs speech ---------------------------------------------------------------
@pytest.fixture(scope="module")
def media(tmp_path_factory):
    from media_factory import session_factory

    return session_factory(tmp_path_factory)


@pytest.fixture(scope="module")
def voice_model(tmp_path_factory):
    from test_analyze_cli import make_tiny_model

    return make_tiny_model(
        tmp_path_factory.mktemp("models") / "tiny_voice", modalities=("audio",), num_classes=4
    )


@pytest.fixture(scope="module")
def text_model(tmp_path_factory):
    from test_analyze_cli import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny_words")


def _analyze(path, *models, **kw):
    from dmd_pipeline.analysis.analyze import AnalyzeOptions, analyze_clip
    from dmd_pipeline.analysis.registry import load_model

    return analyze_clip(path, [load_model(str(m)) for m in models], AnalyzeOptions(asr="none", **kw))


def _cut(src, seconds, out):
    import subprocess

    subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-v",
            "error",
            "-y",
            "-ss",
            "0.8",
            "-i",
            str(src),
            "-t",
            str(seconds),
            str(out),
        ],
        check=True,
    )
    return out


def test_voice_is_na_for_tones(media, voice_model) -> None:
    """Before: 30 s of synthetic tones gave ``voice: surprised 0.66`` (here 5 s of a 220 Hz tone)."""
    from dmd_pipeline.analysis.analyze import MIN_VOICE_SPEECH_S

    r = _analyze(media.audio_only("wav", duration=5.0, speech=False), voice_model)
    run = r.models[0]
    assert not run.has_prediction and r.overall.probabilities is None
    assert run.note.startswith(
        f"no speech detected (0.00 s; a voice needs at least {MIN_VOICE_SPEECH_S:g} s)"
    )
    assert r.headline == "voice: n/a (no speech)"
    assert all(not s.prediction.probabilities for s in r.segments)


def test_voice_is_na_for_a_tenth_of_a_second(tmp_path, media, voice_model) -> None:
    """Before: a 0.1 s clip gave ``voice: disgust 0.58``."""
    clip = _cut(media.speech_wav("I loved every minute of it."), 0.1, tmp_path / "short.wav")
    r = _analyze(clip, voice_model)
    assert r.headline == "voice: n/a (no speech)" and not r.models[0].has_prediction


def test_voice_answers_with_speech(media, voice_model) -> None:
    r = _analyze(media.speech_wav("I loved every minute of it."), voice_model)
    assert r.models[0].has_prediction and r.headline.startswith("voice: ")
    assert not any("no speech detected" in w for w in r.warnings)


def test_model_build_notes_are_not_per_file_warnings(media, text_model) -> None:
    """Before: "the model was trained with text only ..." and "no video stream" were warnings of every file."""

    r = _analyze(
        media.speech_wav("I loved every minute of it."), text_model, transcript="I loved every minute of it."
    )
    assert "trained with text only" in r.models[0].note and "trained with text only" in r.modalities.note
    assert not any("trained with" in w or "no video stream" in w for w in r.warnings), r.warnings


def test_warnings_are_deduplicated_and_ranked() -> None:
    from dmd_pipeline.analysis.messages import rank_warnings

    align = "forced alignment did not place {} of {} words (does the transcript match the audio?)"
    got = rank_warnings(
        [
            "analysed in 20 streaming windows of about 60 s (cut in pauses); features and scores are per window",
            *(align.format(k, 40 + k) for k in range(1, 20)),
            "low speech-recognition confidence (Whisper mean word probability 0.41, average log-probability -1.02)",
            "decoding stopped early: the file says 4.00 s but only 1.73 s of audio could be decoded",
            "decoding stopped early: the file says 4.00 s but only 1.73 s of audio could be decoded",
        ]
    )
    assert got == [
        "decoding stopped early: the file says 4.00 s but only 1.73 s of audio could be decoded (the first of 2 such notes)",
        "low speech-recognition confidence (Whisper mean word probability 0.41, average log-probability -1.02)",
        align.format(1, 41) + " (the first of 19 such notes)",
        "analysed in 20 streaming windows of about 60 s (cut in pauses); features and scores are per window",
    ]


def test_a_window_that_decodes_short_names_the_window_not_the_file() -> None:
    """Before: a window's note said "the file says 78.43 s" of a 1,200 s file."""
    from dmd_pipeline.pipeline import _early_note

    note = _early_note("audio", 20.0, 78.43, (600.0, 678.43))
    assert note.startswith("decoding stopped early in the window 600.00-678.43 s: only 20.00 of its 78.43 s")
    assert "the file says" not in note


def test_a_silent_clip_gets_few_distinct_warnings(media, voice_model, text_model) -> None:
    """Before: 6 warnings per silent clip, several saying the same thing."""
    r = _analyze(media.silence(duration=2.0), text_model, voice_model)
    assert r.headline == "words: n/a (no words) · voice: n/a (no audio)"
    assert len(r.warnings) <= 3, r.warnings
    assert sum("audio track is silent" in w for w in r.warnings) == 1
    assert r.warnings[0].startswith("tiny_words: no words") or r.warnings[0].startswith(
        "tiny_voice: the audio"
    )
