"""Text encoder: MMSA token layout, word ids, truncation, batching, any local BERT-family folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dmd_pipeline.extractors.text import TextEncoder, TextFeatures


@pytest.fixture(scope="module")
def minilm() -> TextEncoder:
    return TextEncoder()


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    """A 2-layer, 32-d BertModel saved like a classic local checkpoint: config.json, weights, vocab.txt."""
    import torch
    from transformers import BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny_bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "movie", "was", "great", "bad", "i", "it"]
    vocab += ["love", "##s", "##ing", "film", "not", "a", "good", "very", "actor", "play", "##ed", "fun", "."]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertModel(cfg).save_pretrained(folder)
    return folder


def _check_layout(f: TextFeatures, enc: TextEncoder, n_words: int, max_len: int) -> None:
    tok = enc.tokenizer
    assert f.features.shape == (max_len, enc.dim) and f.features.dtype == np.float32
    for a in (f.input_ids, f.attention_mask, f.token_type_ids, f.word_index):
        assert a.shape == (max_len,) and a.dtype == np.int64
    n = int(f.attention_mask.sum())
    assert n == f.n_tokens and f.attention_mask[:n].all() and not f.attention_mask[n:].any()
    assert f.input_ids[0] == tok.cls_token_id and f.input_ids[n - 1] == tok.sep_token_id
    assert (f.input_ids[n:] == tok.pad_token_id).all()
    assert f.word_index[0] == -1 and f.word_index[n - 1] == -1 and (f.word_index[n:] == -1).all()
    inner = f.word_index[1 : n - 1]
    assert (inner >= 0).all() and (np.diff(inner) >= 0).all() and inner.max() < n_words
    assert np.isfinite(f.features).all() and not f.features[n:].any()  # zeros at padding
    assert np.abs(f.features[:n]).sum(axis=1).min() > 0
    assert f.text_bert.shape == (3, max_len)


def test_minilm_encode(minilm: TextEncoder) -> None:
    assert minilm.dim == 384
    words = ["I", "loved", "the", "zorblaxian", "spaceship", "!"]
    f = minilm.encode(words)
    _check_layout(f, minilm, len(words), 50)
    assert f.n_words == len(words) and not f.truncated
    # the out-of-vocabulary word is split into several pieces, all pointing at word 3
    assert (f.word_index == 3).sum() >= 2
    pieces = minilm.tokenizer.convert_ids_to_tokens(f.input_ids[f.word_index == 3].tolist())
    assert "".join(p.replace("##", "") for p in pieces) == "zorblaxian"


def test_truncation_and_empty(minilm: TextEncoder) -> None:
    words = [f"word{i}" for i in range(40)]  # more than 48 word pieces
    f = minilm.encode(words, max_len=20)
    _check_layout(f, minilm, len(words), 20)
    assert f.truncated and f.n_tokens == 20 and f.n_words < len(words)
    e = minilm.encode([], max_len=8)
    assert e.n_tokens == 2 and e.n_words == 0 and (e.word_index == -1).all()
    g = minilm.encode(["good", "", "film"])  # an empty word keeps its index (no tokens)
    assert set(g.word_index[g.word_index >= 0].tolist()) == {0, 2}
    with pytest.raises(ValueError):
        minilm.encode(["x"], max_len=1)


def test_batch_matches_single(minilm: TextEncoder) -> None:
    utts = [
        ["a", "very", "good", "movie"],
        ["terrible"],
        [],
        ["i", "did", "not", "like", "the", "ending", "at", "all"],
    ]
    batch = minilm.encode_batch(utts, max_len=16, batch_size=3)
    assert len(batch) == len(utts)
    for u, b in zip(utts, batch, strict=True):
        s = minilm.encode(u, max_len=16)
        assert np.array_equal(s.input_ids, b.input_ids) and np.array_equal(s.word_index, b.word_index)
        np.testing.assert_allclose(s.features, b.features, atol=1e-4)
    assert minilm.encode_batch([]) == []


def test_config_hash_and_cache(minilm: TextEncoder, tiny_bert: Path) -> None:
    again = TextEncoder()
    assert again.model is minilm.model  # loaded once per path
    h = minilm.config_hash()
    assert h == again.config_hash() and len(h) == 16
    assert TextEncoder(tiny_bert).config_hash() != h


def test_any_local_bert_folder(tiny_bert: Path) -> None:
    enc = TextEncoder(model_path=tiny_bert)
    assert enc.dim == 32
    words = ["the", "movie", "was", "great", "playing"]
    f = enc.encode(words, max_len=12)
    _check_layout(f, enc, len(words), 12)
    assert f.n_tokens == 8  # [CLS] the movie was great play ##ing [SEP]
    assert f.word_index[:8].tolist() == [-1, 0, 1, 2, 3, 4, 4, -1]
    batch = enc.encode_batch([words, ["bad", "film"]], max_len=12)
    np.testing.assert_allclose(batch[0].features, f.features, atol=1e-5)
