"""``dmd live``: sources and their guards, the utterance cutter on real speech, a network source that drops
and comes back, and end to end: a real clip streamed at real time over UDP (MPEG-TS on loopback) into
``dmd live --stdout``, stopped by SIGINT, compared with ``dmd analyze`` of the same file.

Tolerances of the comparison (the live path sees one utterance at a time, the file analysis the whole file):
given the live utterances as its transcript, ``dmd analyze`` finds the same segments (start/end within
0.3 s), the same words (times within 0.3 s) and the same sentiment of the words (label7; score within 0.05);
the voice model is not compared segment by segment, because in a file it hears a 4 s window around a short
utterance and live only the utterance itself.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from media_factory import joined_ravdess_clips

from dmd_pipeline import media
from dmd_pipeline.live.source import LiveDecoder, LiveSourceError, ffmpeg_command, parse_source

ROOT = Path(__file__).resolve().parent.parent
DMD = [sys.executable, "-m", "dmd_pipeline.cli.app"]


@pytest.fixture(scope="module")
def three_clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three real RAVDESS audio-video clips (actor 1) joined into one ~10 s file: three utterances."""
    return joined_ravdess_clips(
        tmp_path_factory.mktemp("live") / "three.mp4",
        "-c:v libx264 -preset veryfast -g 25 -c:a aac",
    )


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _send_udp(path: Path, port: int, extra: list[str] | None = None) -> subprocess.Popen:
    """ffmpeg playing ``path`` at real time as MPEG-TS to 127.0.0.1:port."""
    return subprocess.Popen(
        ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-re", *(extra or []), "-i", str(path),
         "-c", "copy", "-f", "mpegts", f"udp://127.0.0.1:{port}?pkt_size=1316"],
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


# ---- sources and their guards (no models) ---------------------------------------------------------
def test_network_sources_get_their_own_protocols_only() -> None:
    for url, protocols in [
        ("udp://127.0.0.1:5000", "udp"),
        ("rtp://127.0.0.1:5004", "rtp,udp"),
        ("rtsp://cam.local/stream", "rtsp,rtp,udp,tcp"),
        ("srt://127.0.0.1:9000", "srt"),
        ("https://example.org/live.ts", "https,http,tls,tcp"),
    ]:
        src = parse_source(url)
        args = src.args
        assert src.kind == "network" and src.reconnects
        assert args[args.index("-protocol_whitelist") + 1] == protocols
        assert "file" not in args[args.index("-protocol_whitelist") + 1].split(",")
        assert args[-2:] == ["-i", url]
        formats = args[args.index("-format_whitelist") + 1].split(",")
        assert "hls" not in formats and "concat" not in formats  # playlists stay refused
        assert ("rtsp" in formats) == url.startswith("rtsp")
    with pytest.raises(LiveSourceError, match="ftp:// scheme is not read"):
        parse_source("ftp://example.org/a.ts")
    stdin = parse_source("-")
    assert stdin.args[stdin.args.index("-protocol_whitelist") + 1] == "pipe"
    mic = parse_source("alsa:default")
    assert mic.has_video is False and mic.args[-4:] == ["-f", "alsa", "-i", "default"]
    with pytest.raises(LiveSourceError, match="file not found"):
        parse_source("/no/such/clip.mp4")


def test_one_ffmpeg_decodes_audio_and_frames(three_clips: Path) -> None:
    src = parse_source(str(three_clips), realtime=False)
    cmd = ffmpeg_command(src, 16000, 2.0, 160, True, 3)
    assert cmd.count("-i") == 1 and "pipe:1" in cmd and "pipe:3" in cmd
    audio: list[np.ndarray] = []
    frames: list[tuple[float, np.ndarray]] = []
    dec = LiveDecoder(
        src, lambda x, _w: audio.append(x), lambda t, f: frames.append((t, f)), fps=2.0, max_side=160
    )
    dec.run()
    whole = media.load_audio(three_clips)
    got = np.concatenate(audio)
    assert abs(got.size - whole.size) <= 0.05 * 16000  # the same track, give or take the resampler's edge
    assert len(frames) == pytest.approx(2.0 * src.info.duration, abs=2)
    assert max(frames[0][1].shape[:2]) == 160 and [t for t, _ in frames] == sorted(t for t, _ in frames)


def test_a_container_on_a_pipe_loses_nothing_at_its_start(three_clips: Path, tmp_path: Path) -> None:
    """MPEG-TS written into ffmpeg's stdin as fast as it is read (``dmd live -``): the first
    seconds of sound come out as in the file (ffmpeg's ``nobuffer`` flag dropped what it read while probing:
    4.5 s of this clip, its first sentence)."""
    from dmd_pipeline.live.source import Feed, LiveSource

    ts = tmp_path / "three.ts"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(three_clips), "-c", "copy", "-f", "mpegts",
                    str(ts)], check=True, timeout=60)  # fmt: skip
    feed = Feed(64 << 20)
    assert feed.put(ts.read_bytes())
    feed.close()
    audio: list[np.ndarray] = []
    stdin_args = parse_source("-").args  # as `dmd live -` reads (its default probing), through the feed
    src = LiveSource("-", "feed", stdin_args, None, None, feed=feed)
    dec = LiveDecoder(src, lambda x, _w: audio.append(x), lambda *_: None, fps=2.0, max_side=160)
    dec.run()
    got, ref = np.concatenate(audio), media.load_audio(three_clips)

    def rms(x: np.ndarray) -> float:
        return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))

    assert abs(got.size - ref.size) <= 0.1 * 16000
    assert rms(got[: 4 * 16000]) > 0.8 * rms(ref[: 4 * 16000]) > 0  # the first sentence is there


def test_cutter_finds_the_utterances_of_real_speech(three_clips: Path) -> None:
    from dmd_pipeline.live.cutter import UtteranceCutter

    audio = media.load_audio(three_clips)
    cutter = UtteranceCutter(pause_s=0.5, max_s=10.0)
    utts = []
    for i in range(0, audio.size, 1024):  # as the decoder hands it out: 64 ms at a time
        utts += cutter.push(audio[i : i + 1024])
    utts += cutter.flush()
    assert len(utts) == 3  # three clips, one sentence each, with silence between
    for u in utts:
        assert u.end - u.start == pytest.approx(u.audio.size / 16000, abs=1e-3)
        assert 0.8 < u.end - u.start < 4.0 and u.speech_s > 0.5
        assert u.wide.size == u.audio.size + round(u.lead_s * 16000)
    assert all(a.end <= b.start for a, b in zip(utts, utts[1:], strict=False))
    # each lies inside its clip (~3.3 s each in the joined file)
    assert [int(u.start // 3.3) for u in utts] == [0, 1, 2]
    short = UtteranceCutter(max_s=0.6)
    cut = [u for i in range(0, audio.size, 1024) for u in short.push(audio[i : i + 1024])]
    assert cut and all(u.end - u.start <= 0.6 + 0.02 for u in cut)


def test_cutter_hands_out_each_utterance_early_while_its_pause_is_confirmed(three_clips: Path) -> None:
    """With ``early`` each utterance ended by a pause comes out twice: tentative, as soon as its samples
    are all known (its padding of silence), then final, once the pause is complete; the finals are those of
    the plain cutter."""
    from dmd_pipeline.live.cutter import UtteranceCutter

    audio = media.load_audio(three_clips)
    plain, early = UtteranceCutter(), UtteranceCutter(early=True)
    got_plain, got_early = [], []
    for i in range(0, audio.size, 1024):
        got_plain += plain.push(audio[i : i + 1024])
        got_early += [(i + 1024, u) for u in early.push(audio[i : i + 1024])]
    got_plain += plain.flush()
    got_early += [(audio.size, u) for u in early.flush()]
    finals = [u for _, u in got_early if not u.tentative]
    assert [(u.start, u.end, u.index) for u in finals] == [(u.start, u.end, u.index) for u in got_plain]
    paused = [k for k, (_, u) in enumerate(got_early) if not u.tentative and u.cut == "pause"]
    assert paused
    for k in paused:
        (t_early, first), (t_final, final) = got_early[k - 1], got_early[k]
        assert first.tentative and not final.tentative
        assert (first.start, first.end, first.index) == (final.start, final.end, final.index)
        assert np.array_equal(first.audio, final.audio)
        assert first.end * 16000 <= t_early <= t_final - 0.2 * 16000  # out at least 0.2 s before the final


def test_a_dropped_stream_is_reconnected_and_its_clock_keeps_pace(three_clips: Path) -> None:
    """Send 3 s, stop for 3 s, send again: the decoder reconnects and fills the gap with silence, so the
    stream's clock stays near the wall clock; after the last send it gives up after its retries."""
    port = _free_udp_port()
    src = parse_source(f"udp://127.0.0.1:{port}", video=False)
    got: list[int] = []
    status: list[str] = []
    dec = LiveDecoder(src, lambda x, _w: got.append(x.size), lambda *_: None, stall_s=1.0, retries=2,
                      on_status=status.append)  # fmt: skip
    runner = threading.Thread(target=dec.run, daemon=True)
    t0 = time.monotonic()
    runner.start()
    time.sleep(0.5)
    for _ in range(2):
        sender = _send_udp(three_clips, port, ["-t", "3"])
        sender.wait(timeout=30)
        time.sleep(3.0)
    runner.join(timeout=60)
    wall = time.monotonic() - t0
    assert not runner.is_alive()
    assert dec.stats.reconnects >= 1 and dec.stats.gap_s > 0.5
    assert any("reconnecting" in s for s in status)
    assert 4.0 < dec.clock <= wall + 0.5  # 2 x 3 s of stream plus the filled gap, never ahead of the wall
    assert any("ended or stopped" in n for n in dec.stats.notes)


def test_an_unreachable_source_exits_2_naming_it() -> None:
    proc = subprocess.run(
        [*DMD, "live", "rtsp://127.0.0.1:9/cam"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert "rtsp://127.0.0.1:9/cam" in proc.stderr and "unreachable" in proc.stderr


# ---- end to end ------------------------------------------------------------------------------------
def _srt(records: list[dict]) -> str:
    def stamp(t: float) -> str:
        ms = int(round(t * 1000))
        return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"

    return "".join(
        f"{k + 1}\n{stamp(r['start'])} --> {stamp(r['end'])}\n{r['text']}\n\n" for k, r in enumerate(records)
    )


def test_udp_stream_live_matches_analyze(three_clips: Path, tmp_path: Path) -> None:
    port = _free_udp_port()
    out = tmp_path / "live"
    env = {**os.environ, "DMD_ASR_THREADS": "1"}
    proc = subprocess.Popen(
        [*DMD, "live", f"udp://127.0.0.1:{port}", "--stdout", "--out", str(out), "--stall-timeout", "30"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
    )  # fmt: skip
    lines: list[str] = []
    errs: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True).start()
    ready = threading.Event()

    def read_err() -> None:
        for line in iter(proc.stderr.readline, ""):
            errs.append(line)
            if "live: reading" in line:
                ready.set()

    threading.Thread(target=read_err, daemon=True).start()
    try:
        assert ready.wait(timeout=400), "dmd live never started reading:\n" + "".join(errs)
        sender = _send_udp(three_clips, port)
        sender.wait(timeout=60)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(lines) < 3:
            time.sleep(0.2)
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)  # flush what is finished, write the final files, exit 0
        assert proc.wait(timeout=120) == 0, "".join(errs)
    finally:
        if proc.poll() is None:
            proc.kill()
    recs = [json.loads(x) for x in lines]
    utts = [r for r in recs if r["type"] == "utterance"]
    assert recs[-1]["type"] == "result"
    assert len(utts) == 3, "".join(errs)
    assert [r["index"] for r in utts] == [0, 1, 2]
    assert all(a["end"] <= b["start"] for a, b in zip(utts, utts[1:], strict=False))  # in order, no overlap
    assert all(0 <= r["live"]["latency_s"] < 60 for r in utts)  # generous: a shared machine (BENCHMARKS.md)
    assert all(r["text"].strip() and set(r["predictions"]) == set(utts[0]["predictions"]) for r in utts)
    # the final files: the JSONL as it went and a valid dmd analyze result
    from dmd_pipeline.analysis.result import validate_result

    jsonl = [json.loads(x) for x in (out / "live.jsonl").read_text().splitlines()]
    doc = json.loads((out / "live.json").read_text())
    assert validate_result(doc) == []
    assert [r["start"] for r in jsonl] == [s["start"] for s in doc["segments"]] == [r["start"] for r in utts]
    assert doc["file"] == f"udp://127.0.0.1:{port}" and doc["options"]["live"]["kind"] == "network"
    # the stream's language: identified on the first utterance, kept once clear (no identification after)
    assert doc["options"]["live"]["asr_window"] == "fit"
    assert all(u["language"]["code"] == "en" for u in utts)
    stream = doc["options"]["live"]["stream_language"]
    assert stream is None or (
        stream["code"] == "en" and stream["probability"] >= 0.8 and stream["source"] == "file"
    )
    assert stream is None or utts[-1]["language"] == stream
    # results computed while the pause was being confirmed are counted, and handed out once each
    assert sum(bool(u["live"]["early"]) for u in utts) == doc["options"]["live"]["early_used"]

    # dmd analyze of the same file, given the live utterances as its transcript
    srt = tmp_path / "live.srt"
    srt.write_text(_srt(utts), encoding="utf-8")
    ref = tmp_path / "ref"
    run = subprocess.run([*DMD, "analyze", str(three_clips), "--transcript", str(srt), "--out", str(ref), "-q"],
                         capture_output=True, text=True, timeout=600, env=env)  # fmt: skip
    assert run.returncode == 0, run.stderr
    segs = json.loads((ref / "three.json").read_text())["segments"]
    assert len(segs) == len(utts)
    text_model = next(n for n in utts[0]["predictions"] if "text" in n)
    for live_seg, file_seg in zip(utts, segs, strict=True):
        assert live_seg["start"] == pytest.approx(file_seg["start"], abs=0.3)
        assert live_seg["end"] == pytest.approx(file_seg["end"], abs=0.3)
        assert [w["text"] for w in live_seg["words"]] == [w["text"] for w in file_seg["words"]]
        for a, b in zip(live_seg["words"], file_seg["words"], strict=True):
            assert a["start"] == pytest.approx(b["start"], abs=0.3)
        p, q = live_seg["predictions"][text_model], file_seg["predictions"][text_model]
        assert p["label7"] == q["label7"] and p["score"] == pytest.approx(q["score"], abs=0.05)


def test_a_backlog_is_joined_and_each_utterance_keeps_its_segment(three_clips: Path) -> None:
    """A file read as fast as it decodes (not --realtime) puts every utterance in the queue at once: the
    scorer joins them into one stretch, says it is behind, and still hands out one record per utterance,
    in order, with its own words; the assembled result is a valid dmd analyze result."""
    from dmd_pipeline.analysis.result import validate_result
    from dmd_pipeline.live import LiveOptions, LiveRunner

    recs: list[dict] = []
    status: list[str] = []
    runner = LiveRunner(parse_source(str(three_clips)), None, LiveOptions(), recs.append, status.append)
    result = runner.run()
    assert [r["index"] for r in recs] == list(range(len(recs))) and len(recs) == 3
    assert all(a["end"] <= b["start"] for a, b in zip(recs, recs[1:], strict=False))
    assert max(r["live"]["joined"] for r in recs) > 1 and any(r["live"]["behind"] for r in recs)
    assert any(s.startswith("behind") for s in status)
    assert all(r["text"].strip() and r["words"] for r in recs)
    doc = result.to_dict()
    assert validate_result(doc) == [] and len(doc["segments"]) == 3
    assert doc["timings"]["live_utterances"] == 3 and doc["options"]["live"]["kind"] == "file"
