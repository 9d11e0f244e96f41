"""Hostile inputs: a folder with symlink loops, dangling links, devices and FIFOs; huge, deep and malformed
sidecar transcripts; a byte-identical copy with its own sidecar (cache key); truncated media; non-English
speech through the English-only Whisper."""

from __future__ import annotations

import csv
import json
import os
import resource
import subprocess
from pathlib import Path

import pytest
from fault_helpers import no_temp_files, silent_folder
from typer.testing import CliRunner

from dmd_pipeline.cli.app import app
from dmd_pipeline.errors import InputError

MIB = 2**20


def _rows(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_a_folder_of_traps_is_walked_and_every_trap_is_one_line(tmp_path: Path, media, tiny_model) -> None:
    d = tmp_path / "in"
    silent_folder(media, d, ["ok.wav", "big.wav", "bad.wav", "deep.wav"])
    (d / "big.txt").write_bytes(b"word " * (42 * MIB // 5))  # 42 MB "transcript"
    (d / "bad.json").write_text("{not json", encoding="utf-8")
    (d / "deep.json").write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    os.symlink("b.mp4", d / "a.mp4")  # a symlink loop
    os.symlink("a.mp4", d / "b.mp4")
    os.symlink("missing.mp4", d / "gone.mp4")  # dangling
    os.symlink("/dev/zero", d / "zero.wav")  # a device
    os.mkfifo(d / "pipe.wav")  # opening it would block forever
    out = tmp_path / "out"
    before = _maxrss_mb()
    res = CliRunner().invoke(
        app, ["analyze", str(d), "--model", str(tiny_model), "--out", str(out), "--asr", "none", "-q"]
    )
    assert res.exit_code == 1, res.output
    assert _maxrss_mb() - before < 1500  # the 42 MB sidecar once grew a worker past 11 GB
    errors = {r["file"]: (r["stage"], r["reason"]) for r in _rows(out / "errors.csv")}
    expected = {
        str(d / "a.mp4"): ("input", "symbolic link loop (the link leads back to itself)"),
        str(d / "b.mp4"): ("input", "symbolic link loop (the link leads back to itself)"),
        str(d / "gone.mp4"): ("input", "broken symbolic link (its target missing.mp4 does not exist)"),
        str(d / "zero.wav"): ("input", "a character device, not a regular file"),
        str(d / "pipe.wav"): ("input", "a named pipe (FIFO), not a regular file"),
        str(d / "big.wav"): (
            "transcript",
            "transcript file big.txt is 42.0 MiB, over the limit of 8.0 MiB for a transcript",
        ),
        str(d / "deep.wav"): ("transcript", "deep.json: JSON nested deeper than 32 levels"),
    }
    bad = errors.pop(str(d / "bad.wav"))
    assert errors == expected
    assert bad[0] == "transcript" and bad[1].startswith("bad.json: not valid JSON")
    status = {r["file"]: r["status"] for r in _rows(out / "summary.csv")}
    assert status.pop(str(d / "ok.wav")) == "ok" and set(status.values()) == {"failed"}
    assert not no_temp_files(out)


def test_sidecar_reads_are_bounded(tmp_path: Path) -> None:
    from dmd_pipeline.extractors.transcribe import read_transcript_file

    big = tmp_path / "big.txt"
    with big.open("wb") as fh:  # sparse: 3 GiB on paper, nothing read
        fh.truncate(3 * 2**30)
    before = _maxrss_mb()
    with pytest.raises(InputError, match=r"big.txt is 3.0 GiB, over the limit of 8.0 MiB"):
        read_transcript_file(big, duration=2.0)
    assert _maxrss_mb() - before < 50
    wordy = tmp_path / "wordy.txt"
    wordy.write_text("word " * 5000)
    with pytest.raises(InputError, match=r"more than 10 words per second"):
        read_transcript_file(wordy, duration=2.0)


def test_the_cache_key_covers_the_sidecar(tmp_path: Path, media) -> None:
    """A byte-identical copy of an extracted clip reads its own sidecar (a malformed one fails), instead of
    getting the first clip's cached features."""
    from dmd_pipeline.pipeline import ExtractionConfig, Extractor

    src = media.speech_wav("I loved every minute of it.")
    a, b, c = tmp_path / "a.wav", tmp_path / "b.wav", tmp_path / "c.wav"
    for f in (a, b, c):
        f.write_bytes(src.read_bytes())
    a.with_suffix(".txt").write_text("I loved every minute of it.")
    b.with_suffix(".json").write_text("{broken", encoding="utf-8")
    c.with_suffix(".txt").write_text("I hated every minute of it.")
    ex = Extractor(ExtractionConfig(asr="none"), cache=tmp_path / "cache")
    first = ex.extract_clip(a)
    assert first.metadata["cache"]["hit"] is False and first.raw_text == "I loved every minute of it."
    assert ex.extract_clip(a).metadata["cache"]["hit"] is True
    with pytest.raises(InputError, match=r"b.json: not valid JSON") as err:
        ex.extract_clip(b)
    assert err.value.stage == "transcript"
    other = ex.extract_clip(c)
    assert other.metadata["cache"]["hit"] is False and other.raw_text == "I hated every minute of it."
    given = ex.extract_clip(b, transcript="I loved every minute of it.")  # a given text skips the sidecar
    assert given.metadata["cache"]["hit"] is False and given.raw_text == "I loved every minute of it."


def test_media_whose_decoding_stops_early_is_flagged(tmp_path: Path, media, tiny_model) -> None:
    from dmd_pipeline.analysis.analyze import AnalyzeOptions, analyze_clip
    from dmd_pipeline.analysis.registry import load_model
    from dmd_pipeline.pipeline import ExtractionConfig, Extractor

    flac = tmp_path / "whole.flac"
    subprocess.run(  # noise: it does not compress away, so half the file is half the audio
        ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", "anoisesrc=d=4:a=0.1:r=16000",
         "-c:a", "flac", str(flac)],
        check=True,
    )  # fmt: skip
    cut = tmp_path / "cut.flac"
    cut.write_bytes(flac.read_bytes()[: flac.stat().st_size // 2])  # STREAMINFO still says 4 s
    ex = Extractor(ExtractionConfig(asr="none"))
    whole = ex.extract_clip(flac)
    assert whole.metadata["decode"]["stopped_early"] is False
    assert not any("stopped early" in n for n in whole.metadata["notes"])
    bundle = ex.extract_clip(cut)
    dec = bundle.metadata["decode"]
    assert dec["stopped_early"] is True and dec["expected_s"] == pytest.approx(4.0, abs=0.1)
    assert dec["audio_s"] < 3.0
    assert any(n.startswith("decoding stopped early: the file says 4.00 s") for n in bundle.metadata["notes"])
    result = analyze_clip(cut, load_model(tiny_model), AnalyzeOptions(asr="none"))  # "ok", but it says so
    assert any(w.startswith("decoding stopped early: the file says 4.00 s") for w in result.warnings)


def test_non_english_speech_is_flagged_low_confidence(media) -> None:
    import soundfile as sf

    from dmd_pipeline.extractors.transcribe import transcribe

    german = media.speech_wav(
        "Ich habe heute einen sehr schönen Film gesehen, aber das Ende war leider ziemlich langweilig.",
        voice="de",
    )
    english = media.speech_wav(
        "I watched a really nice film today, but the ending was unfortunately quite boring.", voice="en-us"
    )
    # decoded as English without identification (--language en), by either English model
    for model, why in (("tiny.en", "the model is English-only"), ("base", "it was decoded as English, as given")):
        got = {}
        for name, path in (("de", german), ("en", english)):
            audio, sr = sf.read(path, dtype="float32")
            got[name] = transcribe(audio, sr, engine="whisper", language="en", asr_model=model)
        de, en = got["de"], got["en"]
        assert de.quality["low_confidence"] is True and de.quality["probably_not_english"] is True, model
        assert any(f"probably not English ({why})" in n for n in de.notes), de.notes
        assert en.quality["low_confidence"] is False and not any("probably not English" in n for n in en.notes)
        assert json.dumps(de.quality)  # JSON-able, goes to bundle.metadata["asr_quality"]
    # with the default language=auto, the German is identified and transcribed by Whisper base instead
    audio, sr = sf.read(german, dtype="float32")
    auto = transcribe(audio, sr, engine="whisper")
    assert auto.language["code"] == "de" and auto.asr_model == "whisper-base"
    assert not auto.quality.get("probably_not_english")
