"""Text features: BERT-family token features of a word sequence (MMSA/DMD text layout).

:class:`TextEncoder` runs a local BERT-family model (default: the bundled all-MiniLM-L6-v2, 384-d; any
folder loadable with ``AutoModel``/``AutoTokenizer``, e.g. bert-base-uncased, 768-d) on words that were
already split (``is_split_into_words=True``), so every token knows which word it came from (used to pool
acoustic/visual frames over each word's time span).

Layout of one utterance, fixed length ``L = max_len``::

    [CLS] tok tok ... [SEP] [PAD] ...     features (L, dim) = last hidden layer, zeros at [PAD]
    input_ids / attention_mask / token_type_ids (L,) int64   -> MMSA ``text_bert`` = np.stack of the 3
    word_index (L,) int64: word of each token, -1 on [CLS]/[SEP]/[PAD]

Truncation: when the words need more than ``max_len - 2`` word pieces, the tail is dropped (the last
kept token is followed by [SEP]); ``TextFeatures.truncated`` is then True and ``n_words`` counts the words
that kept at least one token (an empty word gets no token but keeps its index). The model runs only on the real tokens (dynamic padding inside a batch), so
batched and single encodes agree to float rounding.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dmd_pipeline import model_files
from dmd_pipeline.model_files import text_encoder_dir
from dmd_pipeline.utils import config_hash as _hash
from dmd_pipeline.utils import sha256_file

__all__ = ["TextEncoder", "TextFeatures"]

_CACHE: dict[tuple[str, str], tuple[Any, Any]] = {}
_HASHES: dict[tuple[str, int, int], str] = {}
_LOCK = threading.Lock()
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "tf_model.h5", "flax_model.msgpack")


@dataclass
class TextFeatures:
    """Token-level features of one utterance, padded/truncated to a fixed length."""

    features: np.ndarray  # (L, dim) float32
    input_ids: np.ndarray  # (L,) int64
    attention_mask: np.ndarray  # (L,) int64
    token_type_ids: np.ndarray  # (L,) int64
    word_index: np.ndarray  # (L,) int64, -1 for special tokens and padding
    n_tokens: int = 0  # real tokens incl. [CLS]/[SEP]
    n_words: int = 0  # words that kept at least one token
    truncated: bool = False

    @property
    def text_bert(self) -> np.ndarray:
        """MMSA ``text_bert`` layout: (3, L) = ids, mask, segment ids."""
        return np.stack([self.input_ids, self.attention_mask, self.token_type_ids]).astype(np.int64)


def _load(folder: str, device: str) -> tuple[Any, Any]:
    with _LOCK:
        key = (folder, device)
        if key not in _CACHE:
            from dmd_pipeline.extractors import bert_lite

            if bert_lite.supported(folder):  # a plain BERT: no transformers import (~3 s cold)
                _CACHE[key] = bert_lite.load(folder, device)
                return _CACHE[key]
            from transformers import AutoModel, AutoTokenizer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # no "Loading weights" bar on every load of a local model
            tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            if not getattr(tok, "is_fast", False):
                raise ValueError(
                    f"{folder}: a fast tokenizer (tokenizer.json or vocab.txt) is needed for word ids"
                )
            model = AutoModel.from_pretrained(folder, local_files_only=True)
            model.eval().to(device)
            _CACHE[key] = (tok, model)
        return _CACHE[key]


def _weights_hash(folder: Path) -> str:
    """sha256 of the weight file (the recorded one for the bundled model), cached by size and mtime."""
    for name in _WEIGHT_FILES:
        p = folder / name
        if p.is_file():
            st = p.stat()
            key = (str(p.resolve()), st.st_size, int(st.st_mtime_ns))
            with _LOCK:
                if key in _HASHES:
                    return _HASHES[key]
            bundled = model_files.TEXT_ENCODER_SHA256.get(name)
            # the bundled folder was sha-verified by text_encoder_dir(); reuse its recorded digest
            digest = bundled if bundled and _is_bundled(folder) else sha256_file(p)
            with _LOCK:
                _HASHES[key] = digest
            return digest
    return "no-weight-file"


def _is_bundled(folder: Path) -> bool:
    try:
        return text_encoder_dir().resolve() == folder.resolve()
    except Exception:
        return False


class TextEncoder:
    """Encode word sequences with a local BERT-family model (loaded once per path and device)."""

    def __init__(self, model_path: str | Path | None = None, device: str = "cpu") -> None:
        self.model_dir: Path = Path(text_encoder_dir(model_path))
        self.device = device
        self.tokenizer, self.model = _load(str(self.model_dir), device)
        self.dim: int = int(self.model.config.hidden_size)
        self.name: str = str(getattr(self.model.config, "_name_or_path", "") or self.model_dir.name)

    def config_hash(self) -> str:
        """Hash of everything that changes the features: weight file sha256, dim, class, lower-casing."""
        return _hash(
            {
                "extractor": "text",
                "layout": "last_hidden_state,cls_sep,zero_pad,word_ids:v1",
                "weights_sha256": _weights_hash(self.model_dir),
                "vocab_size": int(getattr(self.tokenizer, "vocab_size", 0)),
                "lower_case": bool(getattr(self.tokenizer, "do_lower_case", False)),
                "model_type": str(getattr(self.model.config, "model_type", "")),
                "dim": self.dim,
            }
        )

    def encode(self, words: list[str], max_len: int = 50) -> TextFeatures:
        """Features of one utterance given as a list of words (see module docstring for the layout)."""
        return self.encode_batch([words], max_len=max_len)[0]

    def encode_batch(
        self, utterances: list[list[str]], max_len: int = 50, batch_size: int = 64
    ) -> list[TextFeatures]:
        """Features of many utterances; batched forward passes over length-sorted groups (fast export)."""
        import torch

        if max_len < 2:
            raise ValueError("max_len must be >= 2 ([CLS] and [SEP])")
        utts = [[str(w) for w in u] for u in utterances]
        if not utts:
            return []
        enc = self.tokenizer(utts, is_split_into_words=True, add_special_tokens=True)
        rows = []  # (ids, token types, word ids, truncated) per utterance, cut to max_len
        for i in range(len(utts)):
            ids = list(enc["input_ids"][i])
            tts = list(enc["token_type_ids"][i]) if "token_type_ids" in enc else [0] * len(ids)
            wids = [-1 if w is None else int(w) for w in enc.word_ids(i)]
            truncated = len(ids) > max_len
            if truncated:  # keep the head, end with the final special token ([SEP])
                ids = ids[: max_len - 1] + ids[-1:]
                tts = tts[: max_len - 1] + tts[-1:]
                wids = wids[: max_len - 1] + [-1]
            rows.append((ids, tts, wids, truncated))
        order = sorted(range(len(rows)), key=lambda i: len(rows[i][0]))
        out: list[TextFeatures | None] = [None] * len(rows)
        pad_id = int(self.tokenizer.pad_token_id or 0)
        use_tt = "token_type_ids" in self.tokenizer.model_input_names
        for b0 in range(0, len(order), batch_size):
            idx = order[b0 : b0 + batch_size]
            longest = max(len(rows[i][0]) for i in idx)
            ids = np.full((len(idx), longest), pad_id, dtype=np.int64)
            mask = np.zeros((len(idx), longest), dtype=np.int64)
            tt = np.zeros((len(idx), longest), dtype=np.int64)
            for r, i in enumerate(idx):
                n = len(rows[i][0])
                ids[r, :n], mask[r, :n], tt[r, :n] = rows[i][0], 1, rows[i][1]
            with torch.inference_mode():
                kwargs = {
                    "input_ids": torch.from_numpy(ids).to(self.device),
                    "attention_mask": torch.from_numpy(mask).to(self.device),
                }
                if use_tt:
                    kwargs["token_type_ids"] = torch.from_numpy(tt).to(self.device)
                hidden = self.model(**kwargs).last_hidden_state.float().cpu().numpy()
            for r, i in enumerate(idx):
                out[i] = self._pack(rows[i], hidden[r], max_len, pad_id)
        return [o for o in out if o is not None]

    def _pack(self, row: tuple, hidden: np.ndarray, max_len: int, pad_id: int) -> TextFeatures:
        ids, tts, wids, truncated = row
        n = len(ids)
        feats = np.zeros((max_len, self.dim), dtype=np.float32)
        feats[:n] = hidden[:n]

        def fixed(vals: list[int], fill: int) -> np.ndarray:
            b = np.full(max_len, fill, dtype=np.int64)
            b[:n] = vals
            return b

        wid = fixed(wids, -1)
        kept = len({w for w in wids if w >= 0})
        return TextFeatures(
            features=feats,
            input_ids=fixed(ids, pad_id),
            attention_mask=fixed([1] * n, 0),
            token_type_ids=fixed(tts, 0),
            word_index=wid,
            n_tokens=n,
            n_words=kept,
            truncated=bool(truncated),
        )
