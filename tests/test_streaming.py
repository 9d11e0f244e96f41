"""Streaming long files (issue 11): the file is extracted and scored in windows, memory bounded by the
window; the streamed features equal the whole file's frame for frame, and a timed transcript gives each
window its words (no speech recognition)."""

from __future__ import annotations

import numpy as np
import pytest
from media_factory import DEFAULT_TEXT, MediaFactory, require_tools, session_factory

from dmd_pipeline import media
from dmd_pipeline.pipeline import ExtractionConfig, Extractor
from dmd_pipeline.streaming import cut_point, spans_in


@pytest.fixture(scope="session")
def factory(tmp_path_factory) -> MediaFactory:
    require_tools("ffmpeg", "ffprobe", "espeak-ng")
    return session_factory(tmp_path_factory)


@pytest.fixture(scope="module")
def clip(factory: MediaFactory):
    return factory.face_video(duration=12.0, size=(320, 240), fps=25)


def test_audio_stream_equals_the_whole_decode(clip) -> None:
    whole = media.load_audio(clip)
    with media.AudioStream(clip) as stream:
        pieces = [stream.read(7919) for _ in range(len(whole) // 7919 + 2)]
        assert stream.read(10).size == 0  # after the end
    np.testing.assert_array_equal(np.concatenate(pieces), whole)


def test_window_cut_lies_in_a_pause_on_the_grid() -> None:
    sr = 16000
    rng = np.random.default_rng(0)
    buf = rng.normal(0, 0.3, 20 * sr).astype(np.float32)
    buf[int(10.3 * sr) : int(10.5 * sr)] = 0.0  # the only pause near 11 s
    assert cut_point(buf, 0, sr, 11.0, 2.0, None) == pytest.approx(10.4)

    class Seg:
        def __init__(self, a: float, b: float) -> None:
            self.start, self.end = a, b

    spans = [Seg(0, 9.0), Seg(9.9, 12.0), Seg(12.5, 20.0)]  # pauses at 9.45 and 12.25
    assert cut_point(buf, 0, sr, 11.5, 2.0, spans) == pytest.approx(12.2)  # the closer pause, on the grid
    assert [s.start for s in spans_in(spans, 9.0, 12.2)] == [9.9]


@pytest.mark.slow
def test_streamed_features_equal_the_whole_file(clip) -> None:
    ex = Extractor(ExtractionConfig(asr="none", fps=5.0))
    try:
        whole = ex.extract_clip(clip, use_cache=False)
        parts = list(ex.extract_stream(clip, window_s=4.0, search_s=1.0))
    finally:
        ex.close()
    spans = [(b.metadata["source"]["start"], b.metadata["source"]["end"]) for b in parts]
    assert len(parts) >= 2 and spans[0][0] == 0.0
    assert all(a[1] == b[0] for a, b in zip(spans[:-1], spans[1:], strict=True))  # windows tile the file
    assert spans[-1][1] == pytest.approx(whole.metadata["source"]["duration"])
    assert all(abs(a * 5 - round(a * 5)) < 1e-6 for a, _ in spans)  # boundaries on the 0.2 s grid
    for name in ("acoustic", "visual"):
        ref = getattr(whole, name)
        times = np.concatenate([getattr(b, name).times + b.metadata["source"]["start"] for b in parts])
        values = np.concatenate([getattr(b, name).values for b in parts])
        np.testing.assert_allclose(times, ref.times, atol=1e-9)
        np.testing.assert_array_equal(values, ref.values)  # frame for frame, edges included


@pytest.mark.slow
def test_a_long_file_is_analysed_in_windows_from_its_timed_transcript(factory, tmp_path, monkeypatch) -> None:
    import shutil

    from dmd_pipeline import analyze, load_model
    from dmd_pipeline.extractors import transcribe

    src = factory.face_video(duration=12.0, size=(320, 240), fps=25)
    clip = tmp_path / "long.mp4"
    shutil.copy(src, clip)
    words = DEFAULT_TEXT.split()
    cues = [(0.2, 3.6), (4.1, 7.8), (8.3, 11.6)]
    srt = "".join(
        f"{i + 1}\n00:00:{a:06.3f} --> 00:00:{b:06.3f}\n{' '.join(words[:6])}\n\n".replace(".", ",")
        for i, (a, b) in enumerate(cues)
    )
    clip.with_suffix(".srt").write_text(srt)

    def no_asr(*_a, **_k):
        raise AssertionError("speech recognition must not run when a timed transcript is given")

    monkeypatch.setattr(transcribe, "transcribe", no_asr)
    model = load_model("mosi-text-minilm")
    streamed = analyze(clip, model=model, stream_window_s=4.0).to_dict()
    assert any("streaming windows" in w for w in streamed["warnings"])
    assert streamed["transcript"]["source"].startswith("sidecar:")
    assert streamed["transcript"]["n_words"] == 18
    segs = streamed["segments"]
    assert [s["index"] for s in segs] == list(range(len(segs))) and len(segs) >= 3
    starts = [s["start"] for s in segs]
    assert starts == sorted(starts) and segs[-1]["end"] <= streamed["duration"] + 1e-6
    assert segs[-1]["start"] > 8.0  # the last window's segment carries file times
    assert all(w["start"] >= s["start"] - 1e-6 for s in segs for w in s["words"])
    assert len(streamed["cues"]["times"]) == int(np.ceil(streamed["duration"] * 2))
    assert streamed["overall"]["score"] is not None
