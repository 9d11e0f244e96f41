"""Only real media containers are read: playlists, concat lists and still images are refused by the probe
(``dmd analyze`` unless ``--allow-playlists``), and ffmpeg may open only local files and pipes.

Each trick is a small text file named ``.mp4`` that would make ffmpeg read another local media file
(``tests/media_factory.py`` ``playlist_tricks``); the same files go through ``dmd serve`` in
``test_serve_attacks.py``.
"""

from __future__ import annotations

import csv
import subprocess
import sys
import time
from pathlib import Path

import pytest
from media_factory import MediaFactory, session_factory

from dmd_pipeline import media
from dmd_pipeline.errors import MediaError
from dmd_pipeline.utils import REPO_ROOT


@pytest.fixture(scope="module")
def factory(tmp_path_factory: pytest.TempPathFactory) -> MediaFactory:
    return session_factory(tmp_path_factory)


@pytest.mark.parametrize(
    "trick", ["hls_absolute", "hls_relative_live", "hls_file_url", "hls_subfile", "hls_data_url", "ffconcat"]
)
def test_probe_refuses_every_playlist_trick_quickly(factory: MediaFactory, trick: str) -> None:
    path = factory.playlist_tricks()[trick]
    t0 = time.monotonic()
    with pytest.raises(MediaError) as info:
        media.probe(path)
    assert time.monotonic() - t0 < 10  # a live playlist used to keep ffprobe waiting for more segments
    assert "playlist or a list of other files" in info.value.reason, info.value.reason
    assert str(factory.ts_segment()) not in info.value.reason


def test_the_segment_itself_is_fine_and_images_are_not_clips(factory: MediaFactory, tmp_path: Path) -> None:
    from dmd_pipeline.analysis.batch import still_image

    assert media.probe(factory.ts_segment()).duration > 1.5
    assert still_image(media.probe(factory.astronaut_png())) is not None  # one file: probed, then refused
    jpg = tmp_path / "photo.jpg"  # the image2 demuxer, which also reads numbered sequences of other files
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(factory.astronaut_png()), str(jpg)], check=True)
    with pytest.raises(MediaError, match="still image or an image sequence"):
        media.probe(jpg)


def test_allowed_playlists_still_open_only_local_files(factory: MediaFactory) -> None:
    tricks = factory.playlist_tricks()
    with media.playlists_allowed():
        info = media.probe(tricks["hls_absolute"])  # the user asked for it: read like the segment
        assert info.format_name == "hls" and info.duration > 1.5
        assert media.load_audio(tricks["hls_file_url"], info=media.probe(tricks["hls_file_url"])).size > 16000
        for trick in ("hls_subfile", "hls_data_url"):  # other protocols stay closed
            with pytest.raises(MediaError):
                media.probe(tricks[trick])
    with pytest.raises(MediaError, match="playlist"):  # the block's end restores the refusal
        media.probe(tricks["hls_absolute"])


def test_decoders_run_with_the_protocol_whitelist(factory: MediaFactory) -> None:
    from dmd_pipeline.media import _audio_command

    cmd = _audio_command(factory.ts_segment(), 16000, {})
    i = cmd.index("-protocol_whitelist")
    assert cmd[i + 1] == "file,pipe" and cmd.index("-i") > i
    wl = cmd[cmd.index("-format_whitelist") + 1].split(",")
    assert "mpegts" in wl and "hls" not in wl and "concat" not in wl and "image2" not in wl


def _analyze(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "dmd_pipeline.cli.app", "analyze", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO_ROOT)


def test_cli_refuses_each_trick_and_reads_a_playlist_only_when_allowed(
    factory: MediaFactory, tmp_path: Path
) -> None:
    tricks = factory.playlist_tricks()
    folder = tmp_path / "in"
    folder.mkdir()
    for path in tricks.values():
        (folder / path.name).write_bytes(path.read_bytes())  # relative entries now point nowhere...
    (folder / factory.ts_segment().name).write_bytes(factory.ts_segment().read_bytes())  # ...but here
    out = tmp_path / "out"
    args = ["--model", "mosi-text-minilm", "--asr", "none", "--out"]
    p = _analyze(*[str(folder / f"{n}.mp4") for n in tricks], *args, str(out))
    assert p.returncode == 1, p.stderr[-2000:]
    with open(out / "errors.csv", newline="", encoding="utf-8") as fh:
        rows = {Path(r["file"]).stem: r for r in csv.DictReader(fh)}
    assert set(rows) == set(tricks), rows
    for name, row in rows.items():
        assert "playlist or a list of other files" in row["reason"], (name, row)
    assert not list(out.glob("*.json"))

    transcript = tmp_path / "t.txt"
    transcript.write_text("I really liked this movie.\n", encoding="utf-8")
    one = str(folder / "hls_absolute.mp4")
    p = _analyze(one, "--allow-playlists", "--transcript", str(transcript), *args, str(tmp_path / "ok"))
    assert p.returncode == 0, p.stderr[-2000:]
    assert (tmp_path / "ok" / "hls_absolute.json").is_file()
