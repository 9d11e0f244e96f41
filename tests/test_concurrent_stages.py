"""The pipelined extractor (issue 11): the face and acoustic stages run on stage threads beside the speech
path; the bundle is the same as a serial run's, and a failing stage stops the others cleanly."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from media_factory import MediaFactory, session_factory

from dmd_pipeline.errors import InputError
from dmd_pipeline.pipeline import ExtractionConfig, Extractor


@pytest.fixture(scope="session")
def media(tmp_path_factory) -> MediaFactory:
    return session_factory(tmp_path_factory)


@pytest.fixture(scope="module")
def clip(media: MediaFactory):
    return media.face_video(duration=4.0, size=(320, 240), fps=25)


def _stage_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("dmd-stage") and t.is_alive()]


def _busy_stage_threads() -> int:
    """Stage threads that are running a task now (idle pool threads wait in their queue)."""
    import sys
    import traceback

    busy = 0
    frames = sys._current_frames()
    for t in _stage_threads():
        stack = "".join(traceback.format_stack(frames[t.ident])) if t.ident in frames else ""
        busy += "_stage" in stack or "extract" in stack
    return busy


@pytest.mark.slow
def test_concurrent_and_serial_stages_give_the_same_bundle(clip) -> None:
    cfg = ExtractionConfig(asr="whisper", fps=5.0)
    before = set(_stage_threads())  # other tests' extractors may keep idle stage threads
    serial = Extractor(cfg, concurrent=False)
    concurrent = Extractor(cfg, concurrent=True)
    try:
        a = serial.extract_clip(clip)
        b = concurrent.extract_clip(clip)
    finally:
        serial.close()
        concurrent.close()
    assert a.modalities == b.modalities == ["text", "audio", "vision"]
    assert [w.to_dict() for w in a.words] == [w.to_dict() for w in b.words] and a.words
    assert [s.to_dict() for s in a.segments] == [s.to_dict() for s in b.segments]
    np.testing.assert_array_equal(a.acoustic.values, b.acoustic.values)
    np.testing.assert_array_equal(a.visual.values, b.visual.values)
    np.testing.assert_array_equal(a.visual.times, b.visual.times)
    np.testing.assert_array_equal(a.text.features, b.text.features)
    assert a.metadata["notes"] == b.metadata["notes"]
    assert set(a.metadata["timings"]) == set(b.metadata["timings"])
    assert set(_stage_threads()) <= before  # close() stopped this extractor's stage threads


@pytest.mark.slow
def test_a_failing_speech_stage_stops_the_face_stage(clip, monkeypatch) -> None:
    ex = Extractor(ExtractionConfig(asr="none", fps=25.0), concurrent=True)
    seen: list[int] = []
    real = ex.visual.extract

    def counting(frames):
        def counted():
            for i, item in enumerate(frames):
                seen.append(i)
                time.sleep(0.05)  # 100 frames would take 5 s: far longer than the failing speech path
                yield item

        return real(counted())

    monkeypatch.setattr(ex.visual, "extract", counting)

    def broken(*_a, **_k):
        # Fail once the face stage is under way (landmarker loaded, a first frame seen): a fixed sleep raced
        # the landmarker's load on a busy machine and failed before any frame had been seen.
        deadline = time.monotonic() + 60.0
        while not seen and time.monotonic() < deadline:
            time.sleep(0.02)
        raise RuntimeError("simulated recogniser crash")

    monkeypatch.setattr(ex, "_transcript", broken)
    try:
        with pytest.raises(InputError) as info:
            ex.extract_clip(clip, use_cache=False)
        assert info.value.stage == "transcript" and "simulated recogniser crash" in str(info.value)
        assert 0 < len(seen) < 100  # 4 s at 25 fps: it stopped early, not after all 100 frames
        assert _busy_stage_threads() == 0  # nothing still running after the call returned
    finally:
        ex.close()


@pytest.mark.slow
def test_a_failing_face_stage_is_reported_as_the_visual_stage(clip, monkeypatch) -> None:
    ex = Extractor(ExtractionConfig(asr="none"), concurrent=True)

    def broken(frames):
        next(iter(frames))
        raise ValueError("simulated landmarker failure")

    monkeypatch.setattr(ex.visual, "extract", broken)
    try:
        with pytest.raises(InputError) as info:
            ex.extract_clip(clip, use_cache=False)
        assert info.value.stage == "visual" and "simulated landmarker failure" in str(info.value)
    finally:
        ex.close()
