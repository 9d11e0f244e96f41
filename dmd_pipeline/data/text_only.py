"""Text-only training data from a label CSV with transcripts (MMSA / CMU-MOSI ``label.csv`` layout).

A label CSV has one row per segment with at least ``video_id, clip_id, text, label, mode`` (``mode`` =
``train``/``valid``/``test``; MMSA's files and ``../shared/data/mosi/label.csv`` use this layout). This module
turns it into MMSA-layout splits that :func:`dmd_pipeline.data.datasets.dataset_from_split` accepts:

* ``text_bert`` (N, 3, L): word-piece ids / attention mask / segment ids of the transcript, made with the
  text encoder's tokenizer exactly like :class:`dmd_pipeline.extractors.text.TextEncoder` (words split on
  white space, [CLS] ... [SEP], the tail dropped beyond ``L - 2`` word pieces), for ``use_bert`` models;
* ``text`` (N, L, H): the frozen encoder's last hidden layer (zeros on padding), only when asked for
  (``text_features=True``): the frozen-feature path;
* ``audio`` (N, La, Da) and ``vision`` (N, Lv, Dv): **zeros**. There is no audio/video here; the zeros keep
  the model's input layout, so the same architecture can later take real acoustic/visual features.

A model trained on such data records ``"modalities": ["text"]`` (see :data:`TEXT_ONLY_META`).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np

from dmd_pipeline.errors import DataError
from dmd_pipeline.extractors.text import TextEncoder
from dmd_pipeline.extractors.visual import VisualExtractor
from dmd_pipeline.utils import sha256_file

REQUIRED_COLUMNS = ("video_id", "clip_id", "text", "label", "mode")
SPLIT_NAMES = ("train", "valid", "test")
#: What a checkpoint trained on label-CSV data records about its inputs.
TEXT_ONLY_META: dict[str, Any] = {
    "modalities": ["text"],
    "audio_input": "zeros (trained on transcripts only)",
    "vision_input": "zeros (trained on transcripts only)",
}


def read_label_csv(path: str | Path) -> dict[str, list[dict[str, Any]]]:
    """Rows of a label CSV grouped by split: ``{"train": [{"id", "text", "label"}, ...], ...}``.

    ``id`` is MMSA's ``"<video_id>$_$<clip_id>"``. Raises DataError naming the file and the problem
    (missing columns, a label that is not a finite number, an unknown ``mode``, an empty transcript).
    Splits without rows are absent from the result.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(p, "label CSV not found")
    try:
        with p.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [c.strip() for c in reader.fieldnames or []]
            missing = [c for c in REQUIRED_COLUMNS if c not in header]
            if missing:
                raise DataError(p, f"label CSV lacks column(s) {missing}; found {header}")
            rows = list(reader)
    except UnicodeDecodeError as exc:
        raise DataError(p, f"label CSV is not UTF-8 text: {exc}") from exc
    except csv.Error as exc:
        raise DataError(p, f"malformed CSV: {exc}") from exc
    out: dict[str, list[dict[str, Any]]] = {}
    for line, raw in enumerate(rows, start=2):
        row = {str(k).strip(): (v or "").strip() for k, v in raw.items() if k is not None}
        mode = row["mode"].lower()
        if mode not in SPLIT_NAMES:
            raise DataError(p, f"line {line}: mode {row['mode']!r} is not one of {list(SPLIT_NAMES)}")
        try:
            label = float(row["label"])
        except ValueError:
            raise DataError(p, f"line {line}: label {row['label']!r} is not a number") from None
        if not math.isfinite(label):
            raise DataError(p, f"line {line}: label {row['label']!r} is not finite")
        if not row["text"].split():
            raise DataError(p, f"line {line}: empty transcript")
        out.setdefault(mode, []).append(
            {"id": f"{row['video_id']}$_${row['clip_id']}", "text": row["text"], "label": label}
        )
    if not out:
        raise DataError(p, "label CSV has no rows")
    return out


def tokenize_utterances(tokenizer: Any, texts: list[str], max_len: int = 50) -> np.ndarray:
    """(N, 3, max_len) int64 ids / mask / segment ids, the layout of ``TextEncoder.encode(...).text_bert``.

    Words are split on white space and tokenised with ``is_split_into_words=True``; beyond ``max_len``
    tokens the head is kept and the final [SEP] re-attached, as TextEncoder truncates.
    """
    if max_len < 2:
        raise ValueError("max_len must be >= 2 ([CLS] and [SEP])")
    words = [str(t).split() for t in texts]
    out = np.zeros((len(words), 3, max_len), dtype=np.int64)
    if not words:
        return out
    pad_id = int(tokenizer.pad_token_id or 0)
    out[:, 0, :] = pad_id
    enc = tokenizer(words, is_split_into_words=True, add_special_tokens=True)
    for i in range(len(words)):
        ids = list(enc["input_ids"][i])
        tts = list(enc["token_type_ids"][i]) if "token_type_ids" in enc else [0] * len(ids)
        if len(ids) > max_len:
            ids, tts = ids[: max_len - 1] + ids[-1:], tts[: max_len - 1] + tts[-1:]
        n = len(ids)
        out[i, 0, :n], out[i, 1, :n], out[i, 2, :n] = ids, 1, tts
    return out


def default_side_dims() -> tuple[int, int]:
    """(audio dim, vision dim) of the project's default acoustic and visual extractors (25, 66 today)."""
    from dmd_pipeline.extractors.acoustic import AcousticExtractor

    return AcousticExtractor().dim, VisualExtractor().dim


def build_text_only_splits(
    rows: dict[str, list[dict[str, Any]]],
    encoder_dir: str | Path,
    seq_lens: tuple[int, int, int] = (50, 50, 50),
    side_dims: tuple[int, int] | None = None,
    text_features: bool = False,
    batch_size: int = 64,
) -> dict[str, dict[str, Any]]:
    """MMSA-layout splits (see module docstring) from :func:`read_label_csv` rows.

    ``encoder_dir`` is a local BERT-family folder (tokenizer, and the frozen features when
    ``text_features``); ``seq_lens`` = (text, audio, vision) lengths; ``side_dims`` = (audio dim, vision
    dim), by default those of the project's extractors.
    """
    from transformers import AutoTokenizer

    lt, la, lv = (int(x) for x in seq_lens)
    da, dv = side_dims if side_dims is not None else default_side_dims()
    tokenizer = AutoTokenizer.from_pretrained(str(encoder_dir), local_files_only=True)
    model = None
    if text_features:
        model = TextEncoder(encoder_dir)
    splits: dict[str, dict[str, Any]] = {}
    for name, items in rows.items():
        texts = [r["text"] for r in items]
        n = len(items)
        split: dict[str, Any] = {
            "id": np.array([r["id"] for r in items], dtype=object),
            "raw_text": np.array(texts, dtype=object),
            "text_bert": tokenize_utterances(tokenizer, texts, lt),
            "audio": np.zeros((n, la, da), dtype=np.float32),
            "vision": np.zeros((n, lv, dv), dtype=np.float32),
            "audio_lengths": [0] * n,
            "vision_lengths": [0] * n,
            "regression_labels": np.array([r["label"] for r in items], dtype=np.float32),
        }
        if model is not None:
            feats = model.encode_batch([t.split() for t in texts], max_len=lt, batch_size=batch_size)
            split["text"] = np.stack([f.features for f in feats]).astype(np.float32)
        splits[name] = split
    return splits


def describe_text_only(splits: dict[str, dict[str, Any]], encoder_ref: str, text_features: bool) -> dict:
    """The ``feature_spec`` a checkpoint records for label-CSV data (JSON-able)."""
    any_split = next(iter(splits.values()))
    return {
        "source": "label CSV (transcripts only)",
        "text": (
            f"frozen last hidden layer of {encoder_ref}"
            if text_features
            else f"word-piece ids of {encoder_ref} (text_bert)"
        ),
        "seq_lens": [
            int(any_split["text_bert"].shape[2]),
            int(any_split["audio"].shape[1]),
            int(any_split["vision"].shape[1]),
        ],
        "audio_dim": int(any_split["audio"].shape[2]),
        "vision_dim": int(any_split["vision"].shape[2]),
        "splits": {k: len(v["regression_labels"]) for k, v in splits.items()},
        **TEXT_ONLY_META,
    }


def load_label_source(
    path: str | Path,
    encoder_dir: str | Path,
    seq_lens: tuple[int, int, int] = (50, 50, 50),
    side_dims: tuple[int, int] | None = None,
    text_features: bool = False,
    only_splits: list[str] | None = None,
) -> Any:
    """A :class:`~dmd_pipeline.data.datasets.DataSource` (kind ``label-csv``) built from a label CSV.

    ``only_splits`` limits the work to those splits (e.g. ``["test"]`` for evaluation).
    """
    from dmd_pipeline.data.datasets import DataSource

    p = Path(path)
    rows = read_label_csv(p)
    if only_splits is not None:
        rows = {k: v for k, v in rows.items() if k in only_splits}
    splits = build_text_only_splits(rows, encoder_dir, seq_lens, side_dims, text_features)
    return DataSource(splits, str(p.resolve()), sha256_file(p), "label-csv", None)


def model_inputs_for_texts(system: Any, meta: dict, texts: list[str]) -> tuple[Any, Any, Any]:
    """(text, audio, vision) tensors for transcripts, encoded the way a text-only checkpoint was trained.

    ``text`` is (N, 3, L) token ids when the model has its encoder inside (``use_bert``), else the frozen
    encoder's (N, L, H) features (``meta["text_features_encoder"]``, default the bundled MiniLM); audio and
    vision are zeros of the model's shapes.
    """
    import torch

    from dmd_pipeline.models.checkpoint import BUNDLED_TEXT_ENCODER, resolve_text_encoder

    cfg = system.config
    if not texts or any(not str(t).split() for t in texts):
        raise DataError(None, "every transcript must hold at least one word")
    rows = {"test": [{"id": str(i), "text": str(t), "label": 0.0} for i, t in enumerate(texts)]}
    ref = cfg.text_encoder if cfg.use_bert else meta.get("text_features_encoder") or BUNDLED_TEXT_ENCODER
    split = build_text_only_splits(
        rows,
        resolve_text_encoder(ref),
        tuple(int(x) for x in cfg.seq_lens),  # type: ignore[arg-type]
        (int(cfg.feature_dims[1]), int(cfg.feature_dims[2])),
        text_features=not cfg.use_bert,
    )["test"]
    text = torch.from_numpy(split["text_bert"] if cfg.use_bert else split["text"])
    return text, torch.from_numpy(split["audio"]), torch.from_numpy(split["vision"])


def predict_texts(system: Any, meta: dict, texts: list[str], batch_size: int = 64) -> np.ndarray:
    """Model outputs (N, num_classes) for raw transcripts (text only; audio/vision zeros)."""
    text, audio, vision = model_inputs_for_texts(system, meta, texts)
    device = next(system.parameters()).device
    was_training = system.training
    system.eval()
    try:
        outs = [
            system.predict(
                text[i : i + batch_size].to(device),
                audio[i : i + batch_size].to(device),
                vision[i : i + batch_size].to(device),
            )
            .float()
            .cpu()
            .numpy()
            for i in range(0, len(texts), batch_size)
        ]
    finally:
        system.train(was_training)
    return np.concatenate(outs)
