"""Issue 17: the output folder can be trusted.

A result follows its input (media and transcript identity, re-run redoes and says why), no run replaces
another file's result, the tool never reads its own output back as an input, and a bad path among good
ones does not end the run. One test per defect; each failed on the code before the fix.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from media_factory import MediaFactory, session_factory
from test_analyze_cli import make_tiny_model
from typer.testing import CliRunner

from dmd_pipeline.cli.app import app
from dmd_pipeline.extractors.transcribe import find_sidecar

TEXT_A = "I loved every minute of it."
TEXT_B = "This film was a total waste of time."


@pytest.fixture(scope="session")
def media(tmp_path_factory) -> MediaFactory:
    return session_factory(tmp_path_factory)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny_trust")


def _analyze(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(app, ["analyze", *args])
    return res.exit_code, res.output


def _rows(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_changed_media_is_reanalysed_and_says_why(
    tmp_path: Path, media: MediaFactory, tiny_model: Path
) -> None:
    """Defect 1a: ``cp HAP a/talk; analyze; cp ANG a/talk; analyze`` kept the first clip's result."""
    clip = tmp_path / "a" / "talk.wav"
    clip.parent.mkdir()
    shutil.copy(media.speech_wav(TEXT_A), clip)
    out = tmp_path / "o"
    args = (str(clip), "--model", str(tiny_model), "--out", str(out), "--asr", "none")
    code, _ = _analyze(*args)
    assert code == 0
    first = json.loads((out / "talk.json").read_text())
    assert first["options"]["media"]["size"] == clip.stat().st_size
    assert first["options"]["media"]["hashed"] == "whole"
    code, text = _analyze(*args)  # unchanged: kept
    assert code == 0 and "(already done)" in text
    shutil.copy(media.speech_wav(TEXT_B), clip)
    code, text = _analyze(*args)
    assert code == 0 and "(already done)" not in text
    assert "re-analysed: the media changed" in text
    second = json.loads((out / "talk.json").read_text())
    assert second["options"]["media"]["sha256"] != first["options"]["media"]["sha256"]
    assert second["duration"] != first["duration"]


def test_sidecar_transcript_edit_and_removal_redo_the_file(
    tmp_path: Path, media: MediaFactory, tiny_model: Path
) -> None:
    """Defect 1b: editing or deleting ``talk.txt`` beside the clip was not noticed."""
    clip = tmp_path / "talk.wav"
    shutil.copy(media.speech_wav(TEXT_A), clip)
    side = tmp_path / "talk.txt"
    side.write_text(TEXT_A)
    out = tmp_path / "o"
    args = (str(clip), "--model", str(tiny_model), "--out", str(out), "--asr", "none")
    assert _analyze(*args)[0] == 0
    rec = json.loads((out / "talk.json").read_text())["options"]["transcript"]
    assert rec["sidecar"] is True and rec["path"] == str(side) and len(rec["sha256"]) == 16
    side.write_text(TEXT_B)
    code, text = _analyze(*args)
    assert code == 0 and "re-analysed: the transcript talk.txt changed" in text
    assert json.loads((out / "talk.json").read_text())["transcript"]["n_words"] == len(TEXT_B.split())
    side.unlink()
    code, text = _analyze(*args)
    assert code == 0 and "re-analysed: the sidecar transcript talk.txt is gone" in text
    assert json.loads((out / "talk.json").read_text())["options"]["transcript"] is None


def test_same_name_from_another_folder_never_replaces_a_result(
    tmp_path: Path, media: MediaFactory, tiny_model: Path
) -> None:
    """Defect 2: ``analyze a/talk --out o; analyze b/talk --out o`` replaced o/talk.json."""
    a, b = tmp_path / "a" / "talk.wav", tmp_path / "b" / "talk.wav"
    for p, t in ((a, TEXT_A), (b, TEXT_B)):
        p.parent.mkdir()
        shutil.copy(media.speech_wav(t), p)
    out = tmp_path / "o"
    common = ("--model", str(tiny_model), "--out", str(out), "--asr", "none", "--report")
    assert _analyze(str(a), *common)[0] == 0
    first = (out / "talk.json").read_text()
    assert _analyze(str(b), *common)[0] == 0
    assert (out / "talk.json").read_text() == first  # a's result is intact
    results = {json.loads(p.read_text())["file"]: p.name for p in out.glob("talk*.json")}
    assert set(results) == {str(a), str(b)}
    assert results[str(b)].startswith("talk-")
    assert {r["file"] for r in _rows(out / "summary.csv")} == {str(a), str(b)}
    index = (out / "index.html").read_text()
    assert all(f'href="{Path(n).with_suffix(".html").name}"' in index for n in results.values()), index
    # each re-run finds its own result, under its own name
    for p in (a, b):
        code, text = _analyze(str(p), *common)
        assert code == 0 and "(already done)" in text
    assert len(list(out.glob("talk*.json"))) == 2


def test_a_foreign_json_in_out_is_never_overwritten(
    tmp_path: Path, media: MediaFactory, tiny_model: Path
) -> None:
    clip = tmp_path / "talk.wav"
    shutil.copy(media.speech_wav(TEXT_A), clip)
    out = tmp_path / "o"
    out.mkdir()
    (out / "talk.json").write_text('{"mine": true}')
    assert _analyze(str(clip), "--model", str(tiny_model), "--out", str(out), "--asr", "none")[0] == 0
    assert (out / "talk.json").read_text() == '{"mine": true}'
    assert len(list(out.glob("talk-*.json"))) == 1


def test_output_is_never_read_back_as_a_sidecar(
    tmp_path: Path, media: MediaFactory, tiny_model: Path
) -> None:
    """Defect 3: with ``--out .`` a second run took talk.json (our result) as the clip's transcript."""
    from dmd_pipeline.extractors.transcribe import is_tool_output

    clip = tmp_path / "talk.wav"
    shutil.copy(media.speech_wav(TEXT_A), clip)
    args = (str(clip), "--model", str(tiny_model), "--out", str(tmp_path), "--format", "json,srt,vtt")
    assert _analyze(*args, "--asr", "none")[0] == 0
    doc = json.loads((tmp_path / "talk.json").read_text())
    assert doc["generator"] == "dmd-pipeline" and doc["schema_version"] == "1.5"
    assert is_tool_output(tmp_path / "talk.json") and is_tool_output(tmp_path / "talk.srt")
    assert find_sidecar(clip) is None
    assert _analyze(*args, "--asr", "none", "--force")[0] == 0
    doc = json.loads((tmp_path / "talk.json").read_text())
    assert doc["transcript"]["source"] == "none" and doc["options"]["transcript"] is None
    # a real sidecar beside the clip is still read, also beside the result that read it
    user = tmp_path / "u"
    user.mkdir()
    clip = user / "talk.wav"
    shutil.copy(media.speech_wav(TEXT_A), clip)
    (user / "talk.srt").write_text("1\n00:00:00,000 --> 00:00:01,500\nI loved every minute of it.\n")
    args = (str(clip), "--model", str(tiny_model), "--out", str(user), "--asr", "none")
    assert _analyze(*args)[0] == 0
    assert (
        json.loads((user / "talk.json").read_text())["transcript"]["source"] == f"sidecar:{user / 'talk.srt'}"
    )
    assert find_sidecar(clip) == user / "talk.srt"
    code, text = _analyze(*args)
    assert code == 0 and "(already done)" in text


def test_a_missing_path_among_several_is_one_failed_row(
    tmp_path: Path, media: MediaFactory, tiny_model: Path
) -> None:
    """Defect (smaller): one unreadable command-line path aborted the run (exit 2, nothing analysed)."""
    clip = tmp_path / "talk.wav"
    shutil.copy(media.speech_wav(TEXT_A), clip)
    out = tmp_path / "o"
    missing = tmp_path / "gone.mp4"
    code, text = _analyze(
        str(missing), str(clip), "--model", str(tiny_model), "--out", str(out), "--asr", "none"
    )
    assert code == 1, text
    assert (out / "talk.json").is_file()
    errors = _rows(out / "errors.csv")
    assert [(e["file"], e["reason"]) for e in errors] == [(str(missing), "file not found")]
    code, text = _analyze(str(missing), "--model", str(tiny_model), "--out", str(out))
    assert code == 2 and "Error:" in text  # nothing at all to analyse stays a usage error


def test_media_identity_samples_large_files_and_ignores_mtime(tmp_path: Path) -> None:
    from dmd_pipeline.analysis.options import media_identity, options_difference

    big = tmp_path / "big.bin"
    big.write_bytes(bytes(range(256)) * (40 << 12))  # 40 MiB
    ident = media_identity(big)
    assert ident["hashed"] == "sample" and ident["size"] == big.stat().st_size
    # every options record (result_options) has --language since schema 1.3
    record = {"asr": "none", "language": "auto", "transcript": None, "models": []}
    stored = {**record, "media": ident}
    import os

    os.utime(big, ns=(1, 1))  # copied without -p: new mtime, same bytes -> still done
    assert options_difference(stored, {**record, "media": media_identity(big)}) is None
    with big.open("r+b") as fh:  # a byte in the middle sample
        fh.seek(big.stat().st_size // 2)
        fh.write(b"\xff\xfe")
    assert options_difference(stored, {**record, "media": media_identity(big)}) == (
        "the media changed (same size, other content)"
    )
    assert options_difference({**record}, {**record, "media": ident}).startswith(
        "the result does not record its media's identity"
    )


def test_python_api_out_dir_never_replaces_another_files_result(
    tmp_path: Path, media: MediaFactory, tiny_model: Path
) -> None:
    """``dmd_pipeline.analyze(path, out_dir=...)`` wrote ``<stem>.json`` whatever was there."""
    from dmd_pipeline import analyze

    a, b = tmp_path / "a" / "talk.wav", tmp_path / "b" / "talk.wav"
    for p, t in ((a, TEXT_A), (b, TEXT_B)):
        p.parent.mkdir()
        shutil.copy(media.speech_wav(t), p)
    out = tmp_path / "o"
    ra = analyze(a, str(tiny_model), asr="none", out_dir=out)
    rb = analyze(b, str(tiny_model), asr="none", out_dir=out)
    files = {json.loads(p.read_text())["file"] for p in out.glob("talk*.json")}
    assert files == {str(a), str(b)}
    assert ra.options["media"]["sha256"] != rb.options["media"]["sha256"]
