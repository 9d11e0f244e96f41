"""Face crops kept by the visual extractor, per-frame probabilities and their per-span summary."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dmd_pipeline.extractors.visual import VisualExtractor
from dmd_pipeline.face.channel import frame_probabilities, frames_to_score, summarise_span
from dmd_pipeline.face.crop import FER_TEMPLATE
from dmd_pipeline.face.model import FaceExpressionModel
from dmd_pipeline.face.network import FaceExpressionNet, FaceNetConfig

CLASSES = ["a", "b"]


def test_span_summary_weights_visible_frames_by_duration() -> None:
    times = np.arange(10) * 0.1  # 10 fps, 1 s
    probs = np.tile(np.array([[0.8, 0.2]], dtype=np.float32), (10, 1))
    probs[5:] = [0.2, 0.8]
    probs[8:] = np.nan  # the face is gone for the last 0.2 s
    s = summarise_span(probs, times, CLASSES, 0.0, 1.0)
    assert s.n_frames == 10 and s.visible_fraction == pytest.approx(0.8)
    assert s.probs["a"] == pytest.approx((5 * 0.8 + 3 * 0.2) / 8)
    assert s.top[0] == "a" and s.headline().startswith("face: a ")
    half = summarise_span(probs, times, CLASSES, 0.25, 0.55)  # frames at .2 (0.05 s), .3, .4, .5 (0.05 s)
    assert half.probs["a"] == pytest.approx((0.05 * 0.8 + 0.1 * 0.8 + 0.1 * 0.8 + 0.05 * 0.2) / 0.3)


def test_span_without_a_face_is_not_an_answer() -> None:
    times = np.arange(5) * 0.1
    s = summarise_span(np.full((5, 2), np.nan), times, CLASSES, 0.0, 0.5)
    assert s.probs is None and s.visible_fraction == 0.0 and s.top is None
    assert s.headline() == "face: n/a (no face)"
    assert summarise_span(np.zeros((0, 2)), np.zeros(0), CLASSES, 0.0, 1.0).probs is None


def test_face_rate_cap_holds_and_keeps_one_frame_per_segment() -> None:
    times = np.arange(300) * 0.1  # 10 fps, 30 s
    visible = np.ones(300, dtype=bool)
    visible[100:200] = False  # no face from 10 s to 20 s
    visible[150] = True  # but for one frame (a segment [14.9, 15.2) with a face)
    take = frames_to_score(times, visible, 4.0, [(14.9, 15.2)])
    assert not take[~visible].any()
    assert take[150], "a segment with a face got no scored frame"
    for t0 in np.arange(0.0, 30.0, 1.0):  # every second: at most 4 (the cap is 1 frame per 0.25 s)
        assert take[(times >= t0) & (times < t0 + 1.0)].sum() <= 4
    assert np.diff(times[take & (times < 10)]).min() + 1e-9 >= 0.25  # evenly spaced at the cap, no closer
    assert take[times < 10].sum() >= 30  # and not far below it: 10 frames/s kept at 3-4/s
    assert (frames_to_score(times, visible, 0.0) == visible).all()  # 0: every visible frame
    assert (frames_to_score(times, visible, 20.0) == visible).all()  # a cap above the frame rate


def test_visible_fraction_is_unchanged_by_the_rate_cap() -> None:
    rng = np.random.default_rng(0)
    times = np.arange(200) * 0.1
    visible = rng.random(200) > 0.3
    probs = rng.dirichlet([1.0, 1.0], 200).astype(np.float32)
    probs[~visible] = np.nan
    take = frames_to_score(times, visible, 2.0)
    capped = probs.copy()
    capped[~take] = np.nan  # not scored
    for start, end in [(0.0, 20.0), (3.0, 7.5), (12.0, 12.9)]:
        full = summarise_span(probs, times, CLASSES, start, end)
        part = summarise_span(capped, times, CLASSES, start, end, visible)
        assert part.visible_fraction == pytest.approx(full.visible_fraction)
        assert part.n_frames == full.n_frames and part.probs is not None
    # without the visibility mask the unscored frames would read as "no face": the fraction would drop
    whole = summarise_span(probs, times, CLASSES, 0.0, 20.0).visible_fraction
    assert summarise_span(capped, times, CLASSES, 0.0, 20.0).visible_fraction < whole


def test_extractor_settings_unchanged_without_face_crops() -> None:
    plain = VisualExtractor().settings()
    assert "face_crop" not in plain
    assert VisualExtractor(face_crop=FER_TEMPLATE).settings()["face_crop"] == FER_TEMPLATE.to_dict()
    assert VisualExtractor().config_hash() != VisualExtractor(face_crop=FER_TEMPLATE).config_hash()


def test_real_video_face_crops_and_probabilities(shared: Path, tmp_path: Path) -> None:
    from dmd_pipeline.face.model import save_face_model
    from dmd_pipeline.media import iter_frames

    video = shared / "data" / "ravdess" / "video" / "01-01-08-01-01-02-01.mp4"
    if not video.is_file():
        pytest.skip(f"{video} is absent")
    with VisualExtractor(face_crop=FER_TEMPLATE) as ex:
        ff = ex.extract(iter_frames(video, fps=5.0))
    crops = ff.extras["face_crops"]
    present = ff.values[:, ff.names.index("face_present")]
    assert crops.shape == (len(ff.times), 48, 48) and crops.dtype == np.uint8
    assert present.mean() >= 0.95, "the landmarker lost the actor's face"
    assert not crops[present == 0].any()
    torch.manual_seed(0)
    model = FaceExpressionModel.load(
        save_face_model(tmp_path / "tiny", FaceExpressionNet(FaceNetConfig(width=4, hidden=8)).eval())
    )
    probs = frame_probabilities(model, crops, present)
    ok = ~np.isnan(probs).any(axis=1)
    assert (ok == (present > 0)).all()
    assert np.allclose(probs[ok].sum(axis=1), 1.0, atol=1e-5)
    span = summarise_span(probs, ff.times, model.classes, float(ff.times[0]), float(ff.times[-1]) + 0.2)
    assert span.probs is not None and span.visible_fraction >= 0.95
    assert sum(span.probs.values()) == pytest.approx(1.0, abs=1e-5)


def test_a_changed_face_rate_redoes_the_file() -> None:
    from dmd_pipeline.analysis.options import options_difference, result_options

    now = result_options("whisper", None, [], "auto", 2.0)
    assert (
        now["face_fps"] == 2.0
        and options_difference(now, result_options("whisper", None, [], "auto", 2.0)) is None
    )
    assert (
        options_difference(now, result_options("whisper", None, [], "auto", 0.0))
        == "--face-fps changed (2.0 -> 0.0)"
    )
    before = {k: v for k, v in now.items() if k != "face_fps"}  # a result from before: every frame was read
    assert options_difference(before, now) == "--face-fps changed (0.0 -> 2.0)"
