"""Transcript sources (sidecars, given text, ASR engines), data types and text normalisation."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dmd_pipeline.errors import InputError
from dmd_pipeline.extractors.transcribe import (
    Segment,
    Transcript,
    Word,
    find_sidecar,
    get_transcript,
    normalize_text,
    read_transcript_file,
    split_words_at_pauses,
    to_16k,
    transcribe,
    whisper_model,
)

SR = 16000
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> np.ndarray:
    """About 3 s of espeak-ng speech with silence around it, 16 kHz."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    path = tmp_path_factory.mktemp("tts") / "s.wav"
    text = "the weather is lovely today and i feel happy"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(path), text], check=True)
    a, sr = sf.read(path, dtype="float32")
    pad = np.zeros(SR // 2, np.float32)
    return np.concatenate([pad, to_16k(a, sr), pad])


def test_dataclass_roundtrip() -> None:
    t = Transcript(
        [Segment(0.5, 1.5, "Hi there!", [Word("hi", 0.5, 0.8, "forced"), Word("there", 0.9, 1.4, "asr")])],
        "whisper",
        ["a note"],
    )
    d = json.loads(json.dumps(t.to_dict()))
    back = Transcript.from_dict(d)
    assert back == t
    assert back.text == "Hi there!" and [w.text for w in back.words] == ["hi", "there"]
    assert back.segments[0].normalized_text == "hi there"


def test_normalize_text() -> None:
    assert normalize_text("Don\u2019t STOP -- believing, OK?!") == "don't stop believing ok"
    assert normalize_text("Don't stop", mosi=True) == "dont stop"
    assert normalize_text("well-known 3D 'quoted'") == "well known 3d quoted"
    assert normalize_text("... !!") == ""


def test_find_sidecar_priority(tmp_path: Path) -> None:
    media = tmp_path / "clip.mp4"
    media.write_bytes(b"")
    assert find_sidecar(media) is None
    (tmp_path / "clip.txt").write_text("hello")
    assert find_sidecar(media) == tmp_path / "clip.txt"
    (tmp_path / "clip.srt").write_text("1\n00:00:00,000 --> 00:00:01,000\nhello\n")
    assert find_sidecar(media) == tmp_path / "clip.srt"
    (tmp_path / "clip.json").write_text('{"words": []}')
    assert find_sidecar(media) == tmp_path / "clip.json"
    assert find_sidecar(None) is None


def test_read_srt_and_vtt(tmp_path: Path) -> None:
    srt = tmp_path / "a.srt"
    srt.write_text(
        "1\r\n00:00:01,000 --> 00:00:02,500\r\n<i>Hello</i> there,\r\nfriend.\r\n\r\n"
        "2\r\n00:00:03,000 --> 00:00:09,000\r\nSecond cue\r\n\r\n"
        "3\r\n00:00:12,000 --> 00:00:13,000\r\nafter the end\r\n",
        newline="",
    )
    t = read_transcript_file(srt, duration=5.0)
    assert [s.text for s in t.segments] == ["Hello there, friend.", "Second cue"]
    assert (t.segments[0].start, t.segments[0].end) == (1.0, 2.5)
    assert t.segments[1].end == 5.0  # clipped to the media duration
    assert any("dropped" in n for n in t.notes)
    vtt = tmp_path / "b.vtt"
    vtt.write_text("WEBVTT\n\nNOTE a comment\n\n00:01.200 --> 00:02.000 align:start\nShort one\n")
    t = read_transcript_file(vtt)
    assert len(t.segments) == 1 and t.segments[0].start == pytest.approx(1.2)
    assert t.source == f"file:{vtt}"


def test_read_json_and_txt(tmp_path: Path) -> None:
    seg_json = tmp_path / "s.json"
    seg_json.write_text(
        json.dumps(
            {
                "version": 1,
                "segments": [
                    {
                        "start": 0.0,
                        "end": 1.0,
                        "text": "Good film.",
                        "words": [{"word": "Good", "start": 0.1, "end": 0.4}],
                    },
                    {"start": 2.0, "end": 3.0, "text": "No words here"},
                ],
            }
        )
    )
    t = read_transcript_file(seg_json)
    assert t.segments[0].words == [Word("good", 0.1, 0.4, "sidecar")]
    assert t.segments[1].words == []
    flat = tmp_path / "f.json"
    words = [{"text": f"w{i}", "start": i * 0.3, "end": i * 0.3 + 0.2} for i in range(5)]
    words += [{"text": "later", "start": 5.0, "end": 5.4}]
    flat.write_text(json.dumps(words))
    t = read_transcript_file(flat)
    assert [len(s.words) for s in t.segments] == [5, 1]  # cut at the 3.6 s pause
    txt = tmp_path / "t.txt"
    txt.write_text("Line one.\nLine two!\n")
    t = read_transcript_file(txt, duration=4.0)
    assert len(t.segments) == 1 and t.segments[0].text == "Line one. Line two!" and t.segments[0].end == 4.0


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("{not json", "not valid JSON"),
        ('{"words": [{"text": "a", "start": 2, "end": 1}]}', "invalid times"),
        ('{"words": [{"text": "a"}]}', "needs 'text'"),
        ('{"other": 1}', "'segments' or 'words'"),
    ],
)
def test_bad_json_names_file(tmp_path: Path, content: str, reason: str) -> None:
    p = tmp_path / "bad.json"
    p.write_text(content)
    with pytest.raises(InputError) as exc:
        read_transcript_file(p)
    assert str(p) in str(exc.value) and reason in str(exc.value)


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        read_transcript_file(tmp_path / "missing.srt")
    doc = tmp_path / "x.docx"
    doc.write_text("x")
    with pytest.raises(InputError, match="unsupported"):
        read_transcript_file(doc)
    bad = tmp_path / "bad.srt"
    bad.write_text("1\n00:00:xx,000 --> 00:00:01,000\nhi\n")
    with pytest.raises(InputError, match="time stamp"):
        read_transcript_file(bad)


def test_get_transcript_priority(tmp_path: Path) -> None:
    audio = np.zeros(SR * 2, np.float32)
    media = tmp_path / "m.wav"
    t = get_transcript(media, audio, SR, transcript="Given text here.", asr="none")
    assert t.source == "given" and t.segments[0].text == "Given text here." and t.segments[0].end == 2.0
    given_file = tmp_path / "other.srt"
    given_file.write_text("1\n00:00:00,000 --> 00:00:01,000\nfrom file\n")
    t = get_transcript(media, audio, SR, transcript=str(given_file), asr="none")
    assert t.segments[0].text == "from file" and t.source.startswith("file:")
    t = get_transcript(media, audio, SR, transcript=None, asr="none")
    assert t.source == "none" and t.segments == [] and "no transcript" in t.notes[0]
    (tmp_path / "m.txt").write_text("the sidecar wins")
    t = get_transcript(media, audio, SR, transcript="Given text here.", asr="none")
    assert t.source == f"sidecar:{tmp_path / 'm.txt'}" and t.segments[0].text == "the sidecar wins"
    with pytest.raises(InputError):
        get_transcript(None, audio, SR, transcript=tmp_path / "nope.srt")


def test_split_words_at_pauses() -> None:
    words = [Word(f"w{i}", i * 0.5, i * 0.5 + 0.45, "asr") for i in range(60)]  # 30 s, no pause
    segs = split_words_at_pauses(words, pause_s=0.5, max_len_s=10.0)
    assert all(s.duration <= 10.0 for s in segs) and sum(len(s.words) for s in segs) == 60
    words[30] = Word("w30", 16.0, 16.4, "asr")  # pause of 1 s before it
    segs = split_words_at_pauses(words[:31], pause_s=0.5, max_len_s=60.0)
    assert [len(s.words) for s in segs] == [30, 1]
    assert split_words_at_pauses([]) == []


def test_engine_none_and_unknown() -> None:
    t = transcribe(np.zeros(SR, np.float32), SR, engine="none")
    assert t.segments == [] and t.notes
    with pytest.raises(ValueError, match="unknown ASR engine"):
        transcribe(np.zeros(SR, np.float32), SR, engine="kaldi")


def _check_asr(t: Transcript, dur: float) -> None:
    assert t.segments
    for s in t.segments:
        assert 0.0 <= s.start <= s.end <= dur
        for w in s.words:
            assert w.source == "asr" and s.start - 1e-6 <= w.start <= w.end <= s.end + 1e-6
            assert w.text == normalize_text(w.text)


@needs_espeak
def test_whisper_on_synth_speech(speech: np.ndarray) -> None:
    t = transcribe(speech, SR, engine="whisper")
    assert t.source == "whisper"
    _check_asr(t, len(speech) / SR)
    heard = set(normalize_text(t.text).split())
    assert len(heard & {"weather", "lovely", "today", "happy"}) >= 2, t.text
    assert whisper_model() is whisper_model()  # loaded once per process


@needs_espeak
def test_pocketsphinx_on_synth_speech(speech: np.ndarray) -> None:
    t = transcribe(speech, SR, engine="pocketsphinx")
    assert t.source == "pocketsphinx"
    _check_asr(t, len(speech) / SR)
    heard = set(normalize_text(t.text).split())
    assert heard & {"weather", "lovely", "today", "happy", "feel"}, t.text


@pytest.mark.shared
def test_whisper_on_real_clip(shared_clips: Path) -> None:
    from dmd_pipeline.media import load_audio

    audio = load_audio(shared_clips / "1001_DFA_ANG_XX.flv")
    t = get_transcript(shared_clips / "1001_DFA_ANG_XX.flv", audio, SR)
    assert t.source == "whisper"
    _check_asr(t, len(audio) / SR)
    words = normalize_text(t.text).split()  # measured: "Don't forget a jacket"
    assert "jacket" in words or "forget" in words, t.text


def test_fitted_window_frames() -> None:
    """The fitted window holds the audio at least 3 times over and is never under 10 s; with too much audio
    for a shorter window, or outside Whisper's decoding, the 30 s window stays."""
    from dmd_pipeline.extractors import transcribe as tx

    def padded(frames: int) -> np.ndarray:
        mel = np.zeros((80, 3000), np.float32)
        mel[:, :frames] = -0.5
        return mel

    assert tx.fitted_frames(padded(200)) is None  # not active on this thread
    tx._WINDOW.active = True
    try:
        assert tx.fitted_frames(padded(200)) == 1000  # 2 s of audio: the 10 s minimum
        assert tx.fitted_frames(padded(501)) == 1504  # 5 s: 3x, even
        assert tx.fitted_frames(padded(1100)) is None  # 11 s: 33 s > 30 s, the usual window
        assert tx.fitted_frames(np.zeros((80, 1200), np.float32)) is None  # not a padded 30 s window
    finally:
        tx._WINDOW.active = False


@pytest.mark.shared
def test_fitted_window_transcribes_a_real_utterance_alike(shared_clips: Path, monkeypatch) -> None:
    """Inside ``fitted_windows()`` Whisper encodes a fitted window (not 30 s) and hears the same words in a
    real clip; outside it, the 30 s window."""
    from dmd_pipeline.extractors import transcribe as tx
    from dmd_pipeline.media import load_audio

    audio = load_audio(shared_clips / "1001_DFA_ANG_XX.flv")
    windows: list[int | None] = []
    real = tx.fitted_frames
    monkeypatch.setattr(tx, "fitted_frames", lambda f: windows.append(real(f)) or windows[-1])
    full = transcribe(audio, SR, language="en")
    assert windows and all(w is None for w in windows)
    windows.clear()
    with tx.fitted_windows():
        fit = transcribe(audio, SR, language="en")
    assert windows and all(w is not None and w < 3000 for w in windows), windows
    assert normalize_text(fit.text) == normalize_text(full.text), (fit.text, full.text)
    assert not getattr(tx._WINDOW, "allowed", False)  # the context ends with the block


def test_a_loop_in_the_fitted_window_is_decoded_again_in_the_30_s_window(monkeypatch) -> None:
    """A decoding in the fitted window whose text compresses like a loop (Whisper base on a short live
    utterance: "the door door door ...") is redone in the 30 s window; a clean one is kept."""
    import zlib
    from types import SimpleNamespace

    from dmd_pipeline.extractors import transcribe as tx

    loop = "kids are talking by the" + " door" * 60
    calls: list[bool] = []
    state = {"looping": True}

    def fake_transcribe(audio, **kw):
        fitted = bool(getattr(tx._WINDOW, "active", False))
        calls.append(fitted)
        text = loop if fitted and state["looping"] else "kids are talking by the door"
        seg = SimpleNamespace(
            start=0.1,
            end=1.4,
            text=text,
            avg_logprob=-0.2,
            compression_ratio=len(text) / len(zlib.compress(text.encode())),
            words=[SimpleNamespace(word=w, start=0.1, end=0.2, probability=0.9) for w in text.split()],
        )
        return [seg], None

    model = SimpleNamespace(transcribe=fake_transcribe, model=SimpleNamespace(is_multilingual=False))
    monkeypatch.setattr(tx, "whisper_model", lambda *a, **k: model)
    audio = np.zeros(SR * 2, np.float32)
    for looping, want_calls in [(True, [True, False]), (False, [True])]:
        calls.clear()
        state["looping"] = looping
        with tx.fitted_windows():
            t = tx._transcribe_whisper(audio, None, False, 1, "en", "tiny.en")
        assert calls == want_calls and t.text == "kids are talking by the door"
    calls.clear()
    state["looping"] = True
    tx._transcribe_whisper(audio, None, False, 1, "en", "tiny.en")  # outside live: the 30 s window, once
    assert calls == [False]


def test_faster_whisper_entry_points_imported_from_several_threads_at_once() -> None:
    """The pipeline's stage threads reach faster-whisper through different submodules at the same moment (the
    speech recogniser, language identification, the Whisper-base layer features). In a fresh process, four
    threads released together take those paths; none may fail (Python raised ``_DeadlockError`` for
    ``faster_whisper.feature_extractor`` in a test run before the imports went through one lock)."""
    import subprocess
    import sys

    code = """
import threading
import numpy as np
from dmd_pipeline.extractors import language, transcribe, whisper_layers
go = threading.Barrier(4)
errors = []
def run(f):
    go.wait()
    try:
        f()
    except BaseException as e:  # noqa: BLE001
        errors.append(repr(e))
jobs = [
    lambda: transcribe._model_class(),
    lambda: language.language_codes(),
    lambda: whisper_layers.log_mel(np.zeros(1600, np.float32)),
    lambda: language._speech(np.zeros(1600, np.float32)),
]
threads = [threading.Thread(target=run, args=(f,)) for f in jobs]
[t.start() for t in threads]
[t.join() for t in threads]
print("errors:", errors)
raise SystemExit(1 if errors else 0)
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr


def test_every_faster_whisper_import_goes_through_the_import_lock() -> None:
    """The threaded test above cannot force the unlucky interleaving; this one checks the rule that prevents
    it: in the package, every ``import``/``from`` of faster-whisper follows a call of
    :func:`~dmd_pipeline.extractors.faster_whisper_import.faster_whisper_module` in the lines just above."""
    from pathlib import Path

    import dmd_pipeline

    root = Path(dmd_pipeline.__file__).parent
    unguarded = []
    for path in root.rglob("*.py"):
        if path.name == "faster_whisper_import.py":
            continue
        lines = path.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            code = line.strip()
            guarded = any("faster_whisper_module()" in prev for prev in lines[max(0, i - 3) : i])
            if code.startswith(("from faster_whisper", "import faster_whisper")) and not guarded:
                unguarded.append(f"{path.relative_to(root)}:{i + 1}: {code}")
    assert not unguarded, unguarded
