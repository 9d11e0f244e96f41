"""The fusion rule on constructed cases: agreement, conflict, a missing channel, no channel, the words as
valence evidence, contributions, and the derived valence/arousal."""

from __future__ import annotations

import math

import pytest

from dmd_pipeline.fusion import (
    CHANNELS,
    CIRCUMPLEX_DEG,
    FUSED_CLASSES,
    circumplex,
    fuse,
    to_fused_classes,
    words_likelihood,
)

FACE = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
VOICE = ("angry", "calm", "disgust", "fearful", "happy", "neutral", "sad", "surprised")


def peaked(classes: tuple[str, ...], top: str, p: float) -> dict[str, float]:
    """``top`` with probability ``p``, the rest shared equally."""
    rest = (1.0 - p) / (len(classes) - 1)
    return {c: p if c == top else rest for c in classes}


def check_shape(f: dict) -> None:
    assert set(f["contributions"]) == set(CHANNELS)
    if f["probabilities"] is not None:
        assert set(f["probabilities"]) == set(FUSED_CLASSES)
        assert math.isclose(sum(f["probabilities"].values()), 1.0, abs_tol=1e-9)
        assert f["probability"] == max(f["probabilities"].values())
        assert math.isclose(sum(f["contributions"].values()), 1.0, abs_tol=1e-9)
    if f["agreement"] is not None:
        assert 0.0 <= f["agreement"] <= 1.0
    for k in ("valence", "arousal"):
        assert f[k] is None or -1.0 <= f[k] <= 1.0
    assert f["uncertain"] == (f["uncertain_reason"] is not None)


def test_voice_classes_map_onto_the_face_classes_calm_into_neutral() -> None:
    v = {c: 0.0 for c in VOICE} | {"calm": 0.3, "neutral": 0.2, "fearful": 0.4, "surprised": 0.1}
    m = to_fused_classes(v)
    assert m is not None and set(m) == set(FUSED_CLASSES)
    assert m["neutral"] == pytest.approx(0.5) and m["fear"] == pytest.approx(0.4)
    assert m["surprise"] == pytest.approx(0.1)
    assert to_fused_classes({"contempt": 1.0}) is None  # nothing maps: an absent channel
    assert to_fused_classes(None) is None


def test_agreeing_channels_give_a_confident_answer_that_is_not_uncertain() -> None:
    f = fuse(face=peaked(FACE, "happy", 0.7), voice=peaked(VOICE, "happy", 0.6), words_score=1.5)
    check_shape(f)
    assert f["label"] == "happy"
    assert f["probability"] > 0.7  # agreement sharpens
    assert not f["uncertain"] and f["uncertain_reason"] is None
    assert f["agreement"] > 0.8
    assert f["valence"] > 0.5  # happy is pleasant
    assert all(f["contributions"][k] > 0 for k in CHANNELS)


def test_confident_channels_that_disagree_are_a_conflict_named_in_the_detail() -> None:
    f = fuse(face=peaked(FACE, "happy", 0.8), voice=peaked(VOICE, "sad", 0.8))
    check_shape(f)
    assert f["uncertain"] and f["uncertain_reason"] == "conflict"
    assert f["detail"] == "face happy, voice sad"
    assert f["label"] in ("happy", "sad")  # the best guess is still given
    agreeing = fuse(face=peaked(FACE, "happy", 0.8), voice=peaked(VOICE, "happy", 0.8))
    assert f["agreement"] < agreeing["agreement"]


def test_clear_words_against_the_label_are_a_conflict() -> None:
    f = fuse(voice=peaked(VOICE, "happy", 0.7), words_score=-2.5)
    check_shape(f)
    assert f["label"] == "happy"
    assert f["uncertain_reason"] == "conflict" and "words negative" in f["detail"]


def test_a_missing_channel_leaves_the_others_and_gets_no_contribution() -> None:
    voice = peaked(VOICE, "angry", 0.7)
    alone = fuse(voice=voice)
    check_shape(alone)
    assert alone["label"] == "angry"
    assert alone["probability"] == pytest.approx(0.7)  # one channel, weight 1: its own calibrated answer
    assert alone["contributions"] == {"face": 0.0, "voice": 1.0, "words": 0.0}
    assert alone["agreement"] is None  # nothing to compare with
    no_face = fuse(face=peaked(FACE, "sad", 0.9), face_weight=0.0, voice=voice)  # face never visible
    assert no_face["probabilities"] == pytest.approx(alone["probabilities"])
    assert no_face["contributions"]["face"] == 0.0


def test_a_face_seen_briefly_counts_less_and_alone_is_a_missing_channel() -> None:
    face = peaked(FACE, "happy", 0.7)
    brief, full = fuse(face=face, face_weight=0.3), fuse(face=face, face_weight=1.0)
    check_shape(brief)
    assert brief["probability"] < full["probability"]
    assert brief["uncertain_reason"] == "missing channel"
    assert not full["uncertain"]


def test_no_channel_at_all_gives_no_answer() -> None:
    f = fuse()
    assert f["label"] is None and f["probabilities"] is None and f["probability"] is None
    assert f["uncertain"] and f["uncertain_reason"] == "missing channel"
    assert f["contributions"] == {"face": 0.0, "voice": 0.0, "words": 0.0}
    assert f["valence"] is None and f["arousal"] is None


def test_words_alone_give_a_valence_but_no_emotion() -> None:
    f = fuse(words_score=1.8)
    assert f["label"] is None and f["uncertain_reason"] == "missing channel"
    assert f["valence"] == pytest.approx(0.6) and f["arousal"] is None
    assert f["contributions"] == {"face": 0.0, "voice": 0.0, "words": 1.0}
    assert "derived" in f["derived_note"]


def test_words_are_bounded_valence_evidence() -> None:
    lik = words_likelihood(2.0, accuracy=0.8)
    assert lik["happy"] > lik["neutral"] == 0.5 > lik["sad"]
    assert all(0.2 - 1e-9 <= v <= 0.8 + 1e-9 for v in lik.values())
    assert words_likelihood(0.0, 0.8) == {c: 0.5 for c in FUSED_CLASSES}  # neutral words: no evidence
    # the words tip a voice torn between happy and sad, and cannot tell anger from fear
    torn = {c: 0.0 for c in VOICE} | {"happy": 0.45, "sad": 0.45, "angry": 0.05, "fearful": 0.05}
    assert fuse(voice=torn, words_score=2.0)["label"] == "happy"
    assert fuse(voice=torn, words_score=-2.0)["label"] == "sad"
    assert lik["angry"] < 0.5 and lik["fear"] < 0.5


def test_contributions_follow_how_far_each_channel_moved_the_answer() -> None:
    strong_face = fuse(face=peaked(FACE, "surprise", 0.9), voice=peaked(VOICE, "surprised", 0.3))
    check_shape(strong_face)
    assert strong_face["contributions"]["face"] > strong_face["contributions"]["voice"]
    flat = {c: 1 / 7 for c in VOICE} | {"calm": 1 / 14, "neutral": 1 / 14}  # flat once calm joins neutral
    f = fuse(face=peaked(FACE, "angry", 0.6), voice=flat)
    assert f["contributions"]["voice"] == pytest.approx(0.0, abs=1e-9)  # a flat distribution moves nothing
    assert f["probabilities"] == pytest.approx(to_fused_classes(peaked(FACE, "angry", 0.6)))


def test_circumplex_positions() -> None:
    v, a = circumplex({"neutral": 1.0})
    assert (v, a) == (0.0, 0.0)
    v, a = circumplex({"sad": 1.0})
    assert v < 0 and a < 0
    v, a = circumplex({"angry": 1.0})
    assert a > 0.9 and v < 0
    assert set(CIRCUMPLEX_DEG) == set(FUSED_CLASSES) - {"neutral"}
