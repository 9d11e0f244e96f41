"""A small BERT encoder in plain torch plus the ``tokenizers`` tokenizer: the text encoder without importing
``transformers`` (about 3 s of every cold ``dmd analyze`` on a 2-core machine).

It reads a standard BERT folder (``config.json`` with ``model_type: bert``, absolute positions, ``gelu``;
``model.safetensors``; ``tokenizer.json``) and gives the same ``last_hidden_state`` as
``transformers.BertModel`` (eval mode; checked to float rounding in ``tests/test_first_run.py``). The
interface is the subset :class:`~dmd_pipeline.extractors.text.TextEncoder` uses. Other folders, or
``DMD_TEXT_BACKEND=transformers``, use transformers as before (:func:`supported`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn


def supported(folder: str | Path) -> bool:
    """Whether ``folder`` is a plain BERT this module can run (else use transformers)."""
    import os

    if os.environ.get("DMD_TEXT_BACKEND", "").lower() == "transformers":
        return False
    d = Path(folder)
    try:
        cfg = json.loads((d / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        cfg.get("model_type") == "bert"
        and cfg.get("hidden_act") == "gelu"
        and cfg.get("position_embedding_type", "absolute") == "absolute"
        and (d / "model.safetensors").is_file()
        and (d / "tokenizer.json").is_file()
    )


class _Encoding(dict):
    """What ``tokenizer(...)`` returns: input_ids / token_type_ids / attention_mask lists and word_ids(i)."""

    def __init__(self, encodings: list[Any]) -> None:
        super().__init__(
            input_ids=[e.ids for e in encodings],
            token_type_ids=[e.type_ids for e in encodings],
            attention_mask=[e.attention_mask for e in encodings],
        )
        self._enc = encodings

    def word_ids(self, i: int) -> list[int | None]:
        return list(self._enc[i].word_ids)


class LiteTokenizer:
    """``tokenizers.Tokenizer`` from ``tokenizer.json`` with the attributes TextEncoder reads."""

    model_input_names = ("input_ids", "token_type_ids", "attention_mask")
    is_fast = True

    def __init__(self, folder: str | Path) -> None:
        from tokenizers import Tokenizer

        d = Path(folder)
        self._tok = Tokenizer.from_file(str(d / "tokenizer.json"))
        self._tok.no_truncation()  # as transformers does for a call without truncation/padding
        self._tok.no_padding()
        try:
            tcfg = json.loads((d / "tokenizer_config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            tcfg = {}
        self.do_lower_case = bool(tcfg.get("do_lower_case", True))
        self.vocab_size = int(self._tok.get_vocab_size(with_added_tokens=False))

        def tid(key: str, default: str) -> int | None:
            tok = tcfg.get(key, default)
            return self._tok.token_to_id(tok if isinstance(tok, str) else default)

        self.pad_token_id = tid("pad_token", "[PAD]")
        self.cls_token_id = tid("cls_token", "[CLS]")
        self.sep_token_id = tid("sep_token", "[SEP]")
        self.unk_token_id = tid("unk_token", "[UNK]")

    def convert_ids_to_tokens(self, ids: list[int]) -> list[str | None]:
        """Token strings of ids (as transformers' tokenizers give them)."""
        return [self._tok.id_to_token(int(i)) for i in ids]

    def __call__(
        self, utterances: list[list[str]], is_split_into_words: bool = True, add_special_tokens: bool = True
    ) -> _Encoding:
        if not is_split_into_words:
            raise ValueError("LiteTokenizer takes words (is_split_into_words=True)")
        return _Encoding(
            self._tok.encode_batch(utterances, is_pretokenized=True, add_special_tokens=add_special_tokens)
        )


class _Linear(nn.Linear):
    """``nn.Linear`` left uninitialised: :meth:`LiteBert._load` overwrites every parameter with the stored
    one, so the random initialisation (most of the build's time) would be thrown away."""

    def reset_parameters(self) -> None:
        pass


class _Embedding(nn.Embedding):
    """``nn.Embedding`` left uninitialised, for the same reason as :class:`_Linear`."""

    def reset_parameters(self) -> None:
        pass


class _Layer(nn.Module):
    def __init__(self, h: int, heads: int, inter: int, eps: float) -> None:
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.o = (_Linear(h, h) for _ in range(4))
        self.ln1 = nn.LayerNorm(h, eps=eps)
        self.up, self.down = _Linear(h, inter), _Linear(inter, h)
        self.ln2 = nn.LayerNorm(h, eps=eps)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, t, h = x.shape
        d = h // self.heads

        def split(y: torch.Tensor) -> torch.Tensor:
            return y.view(b, t, self.heads, d).transpose(1, 2)

        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d) + bias, dim=-1)
        ctx = (att @ v).transpose(1, 2).reshape(b, t, h)
        x = self.ln1(x + self.o(ctx))
        return self.ln2(x + self.down(nn.functional.gelu(self.up(x))))


class LiteBert(nn.Module):
    """BERT embeddings + encoder; ``model(input_ids=, attention_mask=, token_type_ids=).last_hidden_state``."""

    def __init__(self, folder: str | Path) -> None:
        super().__init__()
        d = Path(folder)
        c = json.loads((d / "config.json").read_text(encoding="utf-8"))
        h, eps = int(c["hidden_size"]), float(c.get("layer_norm_eps", 1e-12))
        self.config = SimpleNamespace(**{**c, "_name_or_path": str(folder)})
        self.word = _Embedding(int(c["vocab_size"]), h)
        self.pos = _Embedding(int(c["max_position_embeddings"]), h)
        self.token_type = _Embedding(int(c.get("type_vocab_size", 2)), h)
        self.ln = nn.LayerNorm(h, eps=eps)
        self.layers = nn.ModuleList(
            _Layer(h, int(c["num_attention_heads"]), int(c["intermediate_size"]), eps)
            for _ in range(int(c["num_hidden_layers"]))
        )
        self._load(d / "model.safetensors")

    def _load(self, path: Path) -> None:
        from safetensors.torch import load_file

        w = load_file(str(path))
        w = {k.removeprefix("bert."): v for k, v in w.items()}
        names = {
            "word.weight": "embeddings.word_embeddings.weight",
            "pos.weight": "embeddings.position_embeddings.weight",
            "token_type.weight": "embeddings.token_type_embeddings.weight",
            "ln.weight": "embeddings.LayerNorm.weight",
            "ln.bias": "embeddings.LayerNorm.bias",
        }
        parts = {
            "q": "attention.self.query",
            "k": "attention.self.key",
            "v": "attention.self.value",
            "o": "attention.output.dense",
            "ln1": "attention.output.LayerNorm",
            "up": "intermediate.dense",
            "down": "output.dense",
            "ln2": "output.LayerNorm",
        }
        for i in range(len(self.layers)):
            for ours, theirs in parts.items():
                for p in ("weight", "bias"):
                    names[f"layers.{i}.{ours}.{p}"] = f"encoder.layer.{i}.{theirs}.{p}"
        self.load_state_dict({ours: w[theirs] for ours, theirs in names.items()}, strict=True)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> SimpleNamespace:
        b, t = input_ids.shape
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        pos = torch.arange(t, device=input_ids.device).unsqueeze(0)
        x = self.ln(self.word(input_ids) + self.pos(pos) + self.token_type(token_type_ids))
        bias = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * torch.finfo(x.dtype).min
        for layer in self.layers:
            x = layer(x, bias)
        return SimpleNamespace(last_hidden_state=x)


def load(folder: str | Path, device: str = "cpu") -> tuple[LiteTokenizer, LiteBert]:
    """(tokenizer, model in eval mode on ``device``) of a supported BERT folder."""
    model = LiteBert(folder).eval().to(device)
    return LiteTokenizer(folder), model
