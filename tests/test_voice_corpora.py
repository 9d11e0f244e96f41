"""The corpus layer of the voice-emotion model: the five-corpus table, partial label sets, the
speaker/corpus-out splits, feature normalisation and the resumable feature store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dmd_pipeline.data.corpora import CLASSES, Clip, CorpusTable, read_corpora
from dmd_pipeline.data.corpus_features import extract_store, load_store
from dmd_pipeline.data.feature_norm import RunningStats, frame_stats, normalise_stats
from dmd_pipeline.errors import DataError
from dmd_pipeline.training.partial_labels import (
    balanced_sample_weights,
    masked_cross_entropy,
    per_corpus_reports,
)


def _table() -> CorpusTable:
    """Two corpora: A has angry/happy/sad (speakers a1..a3), B has angry/calm (speakers b1, b2)."""
    clips = []
    for spk, split in (("a1", "train"), ("a2", "train"), ("a3", "valid")):
        for lab in ("angry", "happy", "sad"):
            clips.append(Clip(Path(f"/x/{spk}_{lab}.wav"), lab, "A", "xx", f"A:{spk}", split))
    for spk, split in (("b1", "train"), ("b2", "valid")):
        for lab in ("angry", "calm", "calm"):
            clips.append(Clip(Path(f"/x/{spk}_{lab}.wav"), lab, "B", "yy", f"B:{spk}", split))
    clips.append(Clip(Path("/x/a9_sad.wav"), "sad", "A", "xx", "A:a9", "test"))
    return CorpusTable(clips)


def test_class_masks_follow_each_corpus() -> None:
    t = _table()
    assert t.classes_of("A") == ["angry", "happy", "sad"]
    assert t.classes_of("B") == ["angry", "calm"]
    m = t.class_mask()
    assert m.shape == (len(t), len(CLASSES))
    assert m[t.corpus == "B"][:, CLASSES.index("calm")].all()
    assert not m[t.corpus == "A"][:, CLASSES.index("calm")].any()
    assert (m[np.arange(len(t)), t.y]).all()  # every clip's own label is allowed


def test_masked_loss_ignores_classes_the_corpus_lacks() -> None:
    torch = pytest.importorskip("torch")
    logits = torch.tensor([[2.0, 5.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]], requires_grad=True)
    target = torch.tensor([0])
    mask = torch.zeros(1, 8, dtype=torch.bool)
    mask[0, [0, 4]] = True  # the corpus has angry and happy only
    loss = masked_cross_entropy(logits, target, mask)
    expect = -torch.log_softmax(torch.tensor([2.0, 1.0]), 0)[0]
    assert float(loss.detach()) == pytest.approx(float(expect), rel=1e-6)
    loss.backward()
    assert torch.all(logits.grad[0, ~mask[0]] == 0)  # a big logit on an absent class (calm=5) is not pushed
    unmasked = torch.nn.functional.cross_entropy(logits.detach(), target)
    assert float(unmasked) > float(loss) + 1.0
    with pytest.raises(ValueError, match="outside"):
        masked_cross_entropy(logits, torch.tensor([1]), mask)


def test_sample_weights_balance_classes_within_corpus() -> None:
    t = _table()
    w = balanced_sample_weights(t.y, t.corpus, corpus_power=0.0)
    assert w.mean() == pytest.approx(1.0)
    b = t.corpus == "B"
    calm, angry = b & (t.y == CLASSES.index("calm")), b & (t.y == CLASSES.index("angry"))
    assert w[calm].sum() == pytest.approx(w[angry].sum())
    assert w[b].sum() == pytest.approx(w[~b].sum())  # power 0: both corpora count the same


def test_per_corpus_reports_score_own_classes() -> None:
    y = np.array([0, 4, 0, 4])
    corpus = np.array(["A", "A", "A", "A"])
    scores = np.zeros((4, 8))
    scores[:, 1] = 9.0  # the model prefers calm, which corpus A does not have
    scores[[0, 2], 0] = 5.0
    scores[[1, 3], 4] = 5.0
    masks = {"A": np.isin(np.arange(8), [0, 4])}
    open_ = per_corpus_reports(y, scores, corpus, masks)["A"]
    restricted = per_corpus_reports(y, scores, corpus, masks, restrict=True)["A"]
    assert open_["uar"] == 0.0
    assert restricted["uar"] == 1.0


def test_splits_never_leak_a_speaker_or_corpus() -> None:
    t = _table()
    sv = t.speaker_valid_fold()
    assert not set(t.speaker[sv.train]) & set(t.speaker[sv.valid])
    folds = list(t.loco_folds())
    assert [f.held_out for f in folds] == ["A", "B"]
    for f in folds:
        assert set(t.corpus[f.valid]) == {f.held_out}
        assert f.held_out not in set(t.corpus[f.train])
        assert not set(t.speaker[f.train]) & set(t.speaker[f.valid])
        assert "test" not in set(t.split[f.train]) | set(t.split[f.valid])
        assert len(f.valid) == ((t.corpus == f.held_out) & (t.split != "test")).sum()


def test_bad_labels_are_refused_with_the_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not one of"):
        CorpusTable([Clip(tmp_path / "a.wav", "bored", "A", "xx", "A:1", "train")])
    (tmp_path / "speech").mkdir()
    (tmp_path / "speech" / "labels.csv").write_text("file,label\na.opus,angry\n")
    with pytest.raises(DataError, match="labels.csv: missing column"):
        read_corpora(tmp_path, corpora=("nemo",))
    with pytest.raises(DataError, match="unknown corpus"):
        read_corpora(tmp_path, corpora=("crema",))


def test_speaker_norm_equals_zscoring_the_frames() -> None:
    rng = np.random.default_rng(0)
    frames = [rng.normal(3.0 + i % 2, 2.0, size=(50, 4)) for i in range(6)]  # equal lengths
    mean = np.stack([f.mean(0) for f in frames])
    std = np.stack([f.std(0) for f in frames])
    speaker = np.array(["s1", "s2"] * 3)
    m, s = normalise_stats(mean, std, speaker, "speaker", train_rows=np.arange(6))
    for spk in ("s1", "s2"):
        rows = np.flatnonzero(speaker == spk)
        allf = np.concatenate([frames[i] for i in rows])
        mu, sd = allf.mean(0), allf.std(0)
        for i in rows:
            z = (frames[i] - mu) / sd
            np.testing.assert_allclose(m[i], z.mean(0), atol=1e-3)
            np.testing.assert_allclose(s[i], z.std(0), atol=1e-3)
    mu, sd = frame_stats(mean, std)
    np.testing.assert_allclose(mu, np.concatenate(frames).mean(0), atol=1e-9)
    np.testing.assert_allclose(sd, np.concatenate(frames).std(0), atol=1e-3)


def test_running_stats_start_at_the_prior_and_move_to_the_speaker() -> None:
    rs = RunningStats(np.zeros(2), np.ones(2), prior_clips=2.0)
    mu, _ = rs.current()
    np.testing.assert_allclose(mu, 0.0, atol=1e-9)
    for _ in range(98):
        rs.update(np.full(2, 5.0), np.ones(2))
    mu, _ = rs.current()
    np.testing.assert_allclose(mu, 4.9, atol=1e-6)
    with pytest.raises(ValueError, match="unknown normalisation"):
        normalise_stats(np.zeros((2, 1)), np.ones((2, 1)), np.array(["a", "b"]), "cmvn", np.arange(2))


class _FakeEncoder:
    identity = {"fake": 1}

    def __init__(self) -> None:
        self.calls = 0

    def encode(self, audio16: np.ndarray) -> np.ndarray:
        self.calls += 1
        t = max(1, len(audio16) // 320)
        base = np.arange(t, dtype=np.float32)[None, :, None]
        return np.concatenate([base, base * 2], axis=0).repeat(3, axis=2)  # (2 layers, T, 3)


def test_feature_store_resumes_and_records_bad_clips(tmp_path: Path, monkeypatch) -> None:
    sf = pytest.importorskip("soundfile")
    import dmd_pipeline.data.corpus_features as cf

    monkeypatch.setattr(cf, "SHARD", 2)
    files = []
    for i in range(3):
        p = tmp_path / f"c{i}.wav"
        sf.write(p, np.zeros(16000 + 3200 * i, np.float32), 16000)
        files.append(p)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio")
    files.insert(1, bad)
    enc = _FakeEncoder()
    out = extract_store(files, enc, tmp_path / "cache", pool=5)
    assert enc.calls == 3
    feats = load_store(out)
    assert feats.ok.tolist() == [True, False, True, True]
    assert feats.mean.shape == (4, 2, 3)
    assert feats.frames[0].shape == (2, 10, 3)  # 50 frames pooled by 5
    np.testing.assert_allclose(feats.mean[0, 1], 2 * feats.mean[0, 0])
    assert feats.n_frames[2] == 60
    (out / "shard_0001.npz").unlink()
    extract_store(files, enc, tmp_path / "cache", pool=5)
    assert enc.calls == 5  # only the missing shard (2 clips) was encoded again
    assert load_store(out).ok.tolist() == [True, False, True, True]
    stats_only = load_store(out, frames=False)
    assert stats_only.frames == [] and stats_only.mean.shape == (4, 2, 3)


def test_real_corpus_table(shared: Path) -> None:
    t = read_corpora(shared / "data")
    summary = {s["corpus"]: s for s in t.summary()}
    assert list(summary) == ["ravdess", "nemo", "emovo", "turev", "urdu"]
    assert summary["ravdess"]["classes"] == list(CLASSES)
    assert "calm" not in summary["emovo"]["classes"]
    assert summary["turev"]["classes"] == ["angry", "calm", "happy", "sad"]
    assert summary["ravdess"]["test"] > 0 and all(
        s["test"] == 0 for k, s in summary.items() if k != "ravdess"
    )
    for s in ("train", "valid", "test"):
        others = set(t.speaker[t.split != s])
        assert not set(t.speaker[t.split == s]) & others
    for f in t.loco_folds():
        assert not set(t.speaker[f.train]) & set(t.speaker[f.valid])
        assert set(t.corpus[f.valid]) == {f.held_out}
    assert all(c.path.is_file() for c in t.clips[::500])


def test_augmentations_are_deterministic_per_seed() -> None:
    from dmd_pipeline.data.audio_augment import augmenter

    y = np.sin(np.arange(16000) / 10.0).astype(np.float32)
    noisy = augmenter("noise")
    np.testing.assert_array_equal(noisy(y, 3), noisy(y, 3))
    assert not np.array_equal(noisy(y, 3), noisy(y, 4))
    snr = 10 * np.log10(np.mean(y**2) / np.mean((noisy(y, 3) - y) ** 2))
    assert 4.5 < snr < 20.5
    fast = augmenter("speed")(y, 1)
    assert 0.89 * len(y) <= len(fast) <= 1.12 * len(y) and len(fast) != len(y)
    assert augmenter("none") is None
    with pytest.raises(ValueError, match="unknown augmentation"):
        augmenter("reverb")
