"""Forced alignment (pocketsphinx), its fallbacks, and cutting transcripts into utterances."""

from __future__ import annotations

import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dmd_pipeline.extractors.align import (
    align_transcript,
    align_words,
    pronounce,
    segment_transcript,
    speech_regions,
)
from dmd_pipeline.extractors.transcribe import Segment, Transcript, Word, to_16k

SR = 16000
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


def _speak(text: str, path: Path) -> np.ndarray:
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "160", "-w", str(path), text], check=True)
    audio, sr = sf.read(path, dtype="float32")
    return to_16k(audio, sr)


def _trimmed_word(word: str, folder: Path) -> np.ndarray:
    """One synthesized word with leading/trailing silence removed by an energy threshold (true bounds)."""
    a = _speak(word, folder / f"{word}.wav")
    env = np.abs(a)
    idx = np.flatnonzero(env > 0.02 * env.max())
    return a[idx[0] : idx[-1] + 1]


def _known_boundaries(
    words: list[str], folder: Path, seed: int = 0
) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Concatenate separately synthesized words with random silent gaps; return audio and true spans."""
    rng = np.random.default_rng(seed)
    lead = np.zeros(int(0.3 * SR), np.float32)
    chunks, truth, n = [lead], [], len(lead)
    for w in words:
        a = _trimmed_word(w, folder)
        truth.append((n / SR, (n + len(a)) / SR))
        gap = np.zeros(int(rng.uniform(0.05, 0.3) * SR), np.float32)
        chunks += [a, gap]
        n += len(a) + len(gap)
    chunks.append(lead)
    return np.concatenate(chunks), truth


def _check_invariants(words: list[Word], start: float, end: float) -> None:
    for w in words:
        assert math.isfinite(w.start) and math.isfinite(w.end)
        assert start - 1e-9 <= w.start <= w.end <= end + 1e-9
        assert w.source in ("forced", "asr", "proportional", "sidecar")
    for a, b in zip(words, words[1:], strict=False):
        assert a.end <= b.start + 1e-9


@pytest.fixture(scope="module")
def known(tmp_path_factory) -> list[tuple[str, np.ndarray, list[tuple[float, float]]]]:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    folder = tmp_path_factory.mktemp("words")
    out = []
    for k, sentence in enumerate(
        ["the quick brown fox jumps over the lazy dog", "i really enjoyed this movie it was a great film"]
    ):
        audio, truth = _known_boundaries(sentence.split(), folder, seed=k)
        out.append((sentence, audio, truth))
    return out


@needs_espeak
def test_boundary_error_on_known_boundaries(known) -> None:
    errs_refined, errs_raw = [], []
    for sentence, audio, truth in known:
        for refine, errs in ((True, errs_refined), (False, errs_raw)):
            words = align_words(audio, SR, sentence, refine=refine)
            assert [w.text for w in words] == sentence.split()
            assert all(w.source == "forced" for w in words)
            _check_invariants(words, 0.0, len(audio) / SR)
            for w, (a, b) in zip(words, truth, strict=True):
                errs += [abs(w.start - a), abs(w.end - b)]
    mean_refined, mean_raw = float(np.mean(errs_refined)), float(np.mean(errs_raw))
    print(
        f"\nmean word-boundary error: refined {mean_refined * 1000:.1f} ms, raw aligner {mean_raw * 1000:.1f} ms"
    )
    assert mean_refined < 0.040  # measured ~7 ms
    assert mean_raw < 0.080  # measured ~40 ms


@needs_espeak
def test_out_of_dictionary_word_is_aligned(tmp_path: Path) -> None:
    phones = pronounce("zorblaxian")
    assert phones and all(p.isupper() for p in phones.split())
    audio, truth = _known_boundaries(["the", "zorblaxian", "ship"], tmp_path)
    words = align_words(audio, SR, "the zorblaxian ship")
    assert [w.source for w in words] == ["forced"] * 3
    z = words[1]
    assert abs(z.start - truth[1][0]) < 0.08 and abs(z.end - truth[1][1]) < 0.08


def test_pronounce_variants() -> None:
    assert pronounce("didnt") == pronounce("didn't")  # MOSI writes contractions without apostrophe
    assert pronounce("42") and len(pronounce("42").split()) >= 5  # forty two
    assert pronounce("fbi") == "EH F B IY AY"  # dictionary entry
    assert pronounce("xkcd")  # spelled letters


@needs_espeak
def test_wrong_transcript_falls_back(tmp_path: Path) -> None:
    audio = _speak("the quick brown fox jumps over the lazy dog", tmp_path / "s.wav")
    wrong = "my cat sleeps on a warm sofa all day long"
    words = align_words(audio, SR, wrong)
    assert [w.text for w in words] == wrong.split()
    assert {w.source for w in words} == {"proportional"}
    _check_invariants(words, 0.0, len(audio) / SR)
    # with ASR word times: matching words take them, the rest are proportional
    asr = [Word("my", 0.30, 0.50, "asr"), Word("sofa", 1.40, 1.80, "asr"), Word("long", 2.5, 2.9, "asr")]
    words = align_words(audio, SR, wrong, asr_words=asr)
    by = {w.text: w for w in words}
    assert by["sofa"].source == "asr" and (by["sofa"].start, by["sofa"].end) == (1.40, 1.80)
    assert by["cat"].source == "proportional" and 0.5 <= by["cat"].start <= by["sofa"].start
    _check_invariants(words, 0.0, len(audio) / SR)


def test_invariants_on_silence_and_short_audio() -> None:
    silence = np.zeros(SR * 2, np.float32)
    for audio in (silence, np.zeros(400, np.float32)):
        dur = len(audio) / SR
        words = align_words(audio, SR, "hello there, world!")
        assert [w.text for w in words] == ["hello", "there", "world"]
        _check_invariants(words, 0.0, dur)
    assert align_words(silence, SR, "...") == []
    words = align_words(silence, SR, "a b c", start=0.5, end=1.0)
    _check_invariants(words, 0.5, 1.0)
    words = align_words(silence, SR, "a b", start=5.0, end=9.0)  # window past the end is clipped
    _check_invariants(words, 0.0, 2.0)


@needs_espeak
def test_window_and_sample_rate(tmp_path: Path) -> None:
    speech = _speak("hello world", tmp_path / "h.wav")
    audio = np.concatenate([np.zeros(SR, np.float32), speech, np.zeros(SR, np.float32)])
    start, end = 0.8, 1.0 + len(speech) / SR + 0.2
    words = align_words(audio, SR, "Hello, world.", start=start, end=end)
    assert [w.source for w in words] == ["forced", "forced"]
    _check_invariants(words, start, end)
    assert words[0].start >= 0.95  # speech starts at 1.0 s
    # 44.1 kHz input gives the same times
    from scipy.signal import resample_poly

    a44 = resample_poly(audio, 441, 160).astype(np.float32)
    words44 = align_words(a44, 44100, "hello world", start=start, end=end)
    for a, b in zip(words, words44, strict=True):
        assert abs(a.start - b.start) < 0.03 and abs(a.end - b.end) < 0.03


@needs_espeak
def test_speech_regions(tmp_path: Path) -> None:
    s1 = _speak("good morning", tmp_path / "a.wav")
    s2 = _speak("good night", tmp_path / "b.wav")
    audio = np.concatenate([np.zeros(SR, np.float32), s1, np.zeros(2 * SR, np.float32), s2])
    regs = speech_regions(audio, SR)
    assert len(regs) == 2
    assert regs[0][0] >= 0.8 and regs[1][0] >= 1.0 + len(s1) / SR + 1.5
    assert speech_regions(np.zeros(SR, np.float32), SR) == []


def _timed(texts_times: list[tuple[str, float, float]]) -> list[Word]:
    return [Word(t, a, b, "sidecar") for t, a, b in texts_times]


def test_segment_transcript_caps_and_merges() -> None:
    audio = np.zeros(60 * SR, np.float32)
    # one 40 s segment of words every 0.5 s, with a longer pause at 20 s; one tiny segment after it
    words = _timed([(f"w{i}", i * 0.5, i * 0.5 + 0.4) for i in range(80) if i != 40])
    long_seg = Segment(0.0, 39.9, " ".join(w.text for w in words), words)
    tiny = Segment(40.5, 40.9, "ok", _timed([("ok", 40.5, 40.9)]))
    far = Segment(50.0, 50.3, "bye", _timed([("bye", 50.0, 50.3)]))
    segs = segment_transcript(Transcript([long_seg, tiny, far], "given"), audio, SR, max_len_s=15.0)
    assert all(s.duration <= 15.0 + 1e-6 for s in segs)
    assert sum(len(s.words) for s in segs) == len(words) + 2
    texts = [s.text for s in segs]
    assert any(t.endswith("ok") for t in texts)  # tiny one merged into its neighbour (gap 0.6 s)
    assert texts[-1] == "bye"  # too far from anything to merge (gap > 1 s)
    for s in segs:
        assert s.text.split() == [w.text for w in s.words]
        assert s.start <= s.words[0].start and s.words[-1].end <= s.end
    starts = [s.start for s in segs]
    assert starts == sorted(starts)


@needs_espeak
def test_align_transcript_fills_words(tmp_path: Path) -> None:
    audio = _speak("this film was wonderful", tmp_path / "f.wav")
    t = Transcript([Segment(0.0, len(audio) / SR, "This film was WONDERFUL!", [])], "given")
    out = align_transcript(t, audio, SR)
    assert out.source == "given" and out.segments[0].text == "This film was WONDERFUL!"
    assert [w.text for w in out.segments[0].words] == ["this", "film", "was", "wonderful"]
    assert {w.source for w in out.segments[0].words} == {"forced"}


@pytest.mark.shared
def test_real_clip_alignment(shared_clips: Path) -> None:
    from dmd_pipeline.media import load_audio

    audio = load_audio(shared_clips / "1001_DFA_ANG_XX.flv")
    dur = len(audio) / SR
    words = align_words(audio, SR, "Don't forget a jacket")
    assert [w.text for w in words] == ["don't", "forget", "a", "jacket"]
    assert all(w.source == "forced" for w in words)
    _check_invariants(words, 0.0, dur)
    assert words[0].start > 0.1 and words[-1].end < dur - 0.2  # clip has silence at both ends
    assert words[-1].end - words[-1].start > 0.2  # "jacket" is a two-syllable word
