"""Extractor stages, missing modalities, stage errors, the cache, and the MMSA model-input layout.

The visual extractor is replaced by a small stub here (mediapipe is exercised by the end-to-end tests in
test_extract_cli.py); audio, transcript, alignment and text run for real on generated media.
"""

from __future__ import annotations

import numpy as np
import pytest
from media_factory import DEFAULT_TEXT, MediaFactory, session_factory

from dmd_pipeline.errors import InputError
from dmd_pipeline.extractors.base import FrameFeatures
from dmd_pipeline.features import FeatureBundle
from dmd_pipeline.pipeline import STAGES, ExtractionConfig, Extractor, to_model_inputs
from dmd_pipeline.utils import sha256_file


class StubVisual:
    """Two columns (face flag, brightness) per frame; remembers the timestamps it was given."""

    dim = 2
    feature_names = ["face_present", "brightness"]

    def __init__(self) -> None:
        self.seen: list[float] = []

    def extract(self, frames) -> FrameFeatures:
        ts, vals = [], []
        for t, f in frames:
            ts.append(t)
            vals.append([0.0, float(f.mean()) / 255.0])
        self.seen = ts
        return FrameFeatures(
            np.asarray(vals, np.float32).reshape(-1, 2), np.asarray(ts), list(self.feature_names)
        )

    def config_hash(self) -> str:
        return "stub"


@pytest.fixture(scope="session")
def media(tmp_path_factory) -> MediaFactory:
    return session_factory(tmp_path_factory)


@pytest.fixture(scope="module")
def extractor() -> Extractor:
    """One extractor (models loaded once) with the stub visual and no cache."""
    ex = Extractor(ExtractionConfig(asr="none"))
    ex._visual = StubVisual()
    return ex


def _fresh(extractor: Extractor, cache=None) -> Extractor:
    """A new Extractor sharing the loaded models of ``extractor`` (for counting stage calls)."""
    ex = Extractor(extractor.config, cache=cache)
    ex._acoustic, ex._visual, ex._text = extractor._acoustic, extractor._visual, extractor._text
    return ex


@pytest.mark.slow
def test_audio_only_with_given_transcript(extractor, media) -> None:
    path = media.audio_only("mp3")
    b = extractor.extract_clip(path, transcript=DEFAULT_TEXT)
    assert b.visual is None and b.acoustic is not None and b.text is not None
    assert b.modalities == ["text", "audio"]
    md = b.metadata
    assert md["source"]["sha256"] == sha256_file(path)
    assert md["transcript_source"] == "given"
    assert sum(md["word_sources"].values()) == len(b.words) >= 15
    assert md["word_sources"].get("forced", 0) >= len(b.words) // 2  # espeak speech aligns
    assert {"probe", "audio", "transcript", "align", "acoustic", "text"} <= set(md["timings"])
    assert "visual" not in md["timings"]
    assert md["versions"]["dmd_pipeline"] and md["feature_hash"] == extractor.feature_hash
    assert np.isfinite(b.acoustic.values).all()
    starts = [w.start for w in b.words]
    assert starts == sorted(starts) and b.words[-1].end <= md["source"]["duration"] + 1e-6


@pytest.mark.slow
def test_transcript_that_does_not_match_the_audio_is_noted(extractor, media) -> None:
    path = media.audio_only("wav")
    wrong = "purple elephants negotiate quietly with seventeen bicycles under the frozen lighthouse tonight"
    b = extractor.extract_clip(path, transcript=wrong, use_cache=False)
    fallback = sum(n for src, n in b.metadata["word_sources"].items() if src in ("asr", "proportional"))
    assert fallback > 0
    assert any(f"did not place {fallback} of {len(b.words)} words" in n for n in b.metadata["notes"])


def test_video_without_audio_has_no_audio_or_text(extractor, media) -> None:
    b = extractor.extract_clip(media.no_audio_video(duration=1.0))
    assert b.acoustic is None and b.text is None and b.visual is not None
    assert b.modalities == ["vision"]
    assert any("no audio stream" in n for n in b.metadata["notes"])
    x = to_model_inputs(b, aligned=True, seq_lens=(50, 50, 50), dims={"text": 384, "audio": 25})
    assert x["audio"].shape == (50, 25) and not x["audio"].any() and x["audio_lengths"] == 0
    assert x["text"].shape == (50, 384) and not x["text_bert"].any()
    assert x["vision_lengths"] > 0 and x["vision"][: x["vision_lengths"]].any()  # uniform fallback (no words)


def test_video_without_audio_keeps_a_given_transcript(extractor, media) -> None:
    b = extractor.extract_clip(media.no_audio_video(duration=1.0), transcript="hello there friend")
    assert b.text is not None and b.acoustic is None
    assert [w.text for w in b.words] == ["hello", "there", "friend"]
    assert b.metadata["word_sources"] == {"proportional": 3}


def test_video_without_audio_reads_a_sidecar_transcript(extractor, media, tmp_path) -> None:
    clip = tmp_path / "silent film.mp4"
    clip.write_bytes(media.no_audio_video(duration=1.0).read_bytes())
    clip.with_suffix(".txt").write_text("what a lovely day\n", encoding="utf-8")
    b = extractor.extract_clip(clip, use_cache=False)
    assert [w.text for w in b.words] == ["what", "a", "lovely", "day"]
    assert b.metadata["transcript_source"].startswith("sidecar:") and b.text is not None
    assert b.metadata["word_sources"] == {"proportional": 4}


def test_segments_of_one_file_hash_it_once(extractor, media, monkeypatch) -> None:
    import dmd_pipeline.pipeline as pl

    calls = []
    real = pl.sha256_file
    monkeypatch.setattr(pl, "sha256_file", lambda p: calls.append(p) or real(p))
    ex = _fresh(extractor)
    path = media.no_audio_video(duration=1.0)
    a = ex.extract_clip(path, start=0.0, end=0.5, use_cache=False)
    b = ex.extract_clip(path, start=0.5, end=1.0, use_cache=False)
    assert len(calls) == 1 and a.metadata["source"]["sha256"] == b.metadata["source"]["sha256"] == real(path)


@pytest.mark.slow
def test_segment_times_are_relative_to_the_clip(extractor, media) -> None:
    path = media.face_video(duration=3.0)
    b = extractor.extract_clip(path, start=1.0, end=2.5, transcript="the acting was great")
    seen = extractor._visual.seen
    assert seen and abs(seen[0]) < 1e-6 and seen[-1] < 1.5
    assert b.metadata["source"]["duration"] == pytest.approx(1.5)
    assert b.acoustic.times[-1] <= 1.5 + 0.011
    assert all(0.0 <= w.start <= w.end <= 1.5 + 1e-6 for w in b.words)


def test_zero_byte_file_fails_at_probe_naming_the_file(extractor, media) -> None:
    bad = media.zero_byte()
    with pytest.raises(InputError) as info:
        extractor.extract_clip(bad)
    assert info.value.stage == "probe" and str(bad) in str(info.value)


def test_missing_file_fails_at_input(extractor, tmp_path) -> None:
    with pytest.raises(InputError) as info:
        extractor.extract_clip(tmp_path / "nope.mp4")
    assert info.value.stage == "input" and "not found" in info.value.reason


def test_stage_failure_becomes_input_error_with_stage(extractor, media) -> None:
    class Boom:
        dim = 3
        feature_names = ["a", "b", "c"]

        def extract(self, audio, sr):
            raise RuntimeError("kaputt")

    ex = _fresh(extractor)
    ex._acoustic = Boom()
    with pytest.raises(InputError) as info:
        ex.extract_clip(media.audio_only("wav"), transcript="hello")
    assert info.value.stage == "acoustic" and "kaputt" in info.value.reason
    assert info.value.path.endswith(".wav")


@pytest.mark.slow
def test_cache_hit_runs_no_stage(extractor, media, tmp_path) -> None:
    path = media.face_video(duration=2.0)
    ex = _fresh(extractor, cache=tmp_path / "cache")
    first = ex.extract_clip(path, transcript="the acting was great")
    calls = {k: ex.calls[k] for k in STAGES}  # "input" (hashing the file) always runs
    assert calls["acoustic"] == 1 and calls["visual"] == 1 and first.metadata["cache"]["hit"] is False
    second = ex.extract_clip(path, transcript="the acting was great")
    assert {k: ex.calls[k] for k in STAGES} == calls  # no stage ran again
    assert second.metadata["cache"]["hit"] is True and second.metadata["cache"]["read_s"] < 0.5
    np.testing.assert_array_equal(second.acoustic.values, first.acoustic.values)
    np.testing.assert_array_equal(second.text.features, first.text.features)
    assert second.words == first.words
    # a new process-like extractor on the same cache loads no model at all
    cold = Extractor(extractor.config, cache=tmp_path / "cache")
    assert cold.extract_clip(path, transcript="the acting was great").metadata["cache"]["hit"]
    assert cold._text is None and cold._acoustic is None and cold._visual is None and not cold.calls["probe"]
    # a different transcript is a different entry
    ex.extract_clip(path, transcript="something else entirely")
    assert ex.calls["acoustic"] == 2


def _bundle_with_words() -> FeatureBundle:
    from dmd_pipeline.extractors.text import TextFeatures
    from dmd_pipeline.extractors.transcribe import Word

    words = [Word("good", 0.0, 0.5, "forced"), Word("film", 0.5, 1.0, "forced")]
    n = 6
    text = TextFeatures(
        features=np.ones((n, 4), np.float32),
        input_ids=np.array([101, 5, 6, 7, 102, 0]),
        attention_mask=np.array([1, 1, 1, 1, 1, 0]),
        token_type_ids=np.zeros(n, np.int64),
        word_index=np.array([-1, 0, 1, 1, -1, -1]),
    )
    ac = FrameFeatures(np.arange(200, dtype=np.float32).reshape(100, 2), np.arange(100) * 0.01, ["a", "b"])
    vi = FrameFeatures(np.ones((10, 3), np.float32), np.arange(10) * 0.1, ["x", "y", "z"])
    return FeatureBundle(text=text, acoustic=ac, visual=vi, words=words)


def test_to_model_inputs_aligned_layout() -> None:
    x = to_model_inputs(_bundle_with_words(), aligned=True, seq_lens=(8, 8, 8))
    assert x["text"].shape == (8, 4) and x["text_bert"].shape == (3, 8) and x["text_bert"].dtype == np.int64
    assert x["audio"].shape == (8, 2) and x["vision"].shape == (8, 3)
    assert x["audio_lengths"] == 5 and x["vision_lengths"] == 5  # real tokens incl. [CLS]/[SEP]
    assert not x["audio"][0].any() and not x["audio"][4:].any()
    np.testing.assert_allclose(x["audio"][1], np.arange(200).reshape(100, 2)[:50].mean(axis=0))
    np.testing.assert_array_equal(x["audio"][2], x["audio"][3])


def test_to_model_inputs_unaligned_keeps_true_lengths() -> None:
    x = to_model_inputs(_bundle_with_words(), aligned=False, seq_lens=(8, 375, 500))
    assert x["audio"].shape == (375, 2) and x["audio_lengths"] == 100
    assert x["vision"].shape == (500, 3) and x["vision_lengths"] == 10
    assert not x["audio"][100:].any() and not x["vision"][10:].any()
    short = to_model_inputs(_bundle_with_words(), aligned=False, seq_lens=(8, 40, 5))
    assert short["audio_lengths"] == 40 and short["vision_lengths"] == 5


def test_missing_modality_needs_a_dim() -> None:
    b = _bundle_with_words()
    b.visual = None
    with pytest.raises(ValueError, match="vision"):
        to_model_inputs(b, aligned=True, seq_lens=(8, 8, 8))
    x = to_model_inputs(b, aligned=True, seq_lens=(8, 8, 8), dims={"vision": 7})
    assert x["vision"].shape == (8, 7) and x["vision_lengths"] == 0


def test_config_hash_tracks_content_settings_only() -> None:
    a = ExtractionConfig()
    assert a.feature_hash() == ExtractionConfig(aligned=False, seq_lens=(50, 375, 500)).feature_hash()
    assert a.feature_hash() != ExtractionConfig(fps=5).feature_hash()
    assert a.feature_hash() != ExtractionConfig(asr="pocketsphinx").feature_hash()
    with pytest.raises(ValueError, match="ASR"):
        ExtractionConfig(asr="siri")
