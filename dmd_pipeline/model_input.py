"""The model-input layout (MMSA): one clip's features as the fixed-length arrays a DMD model takes
(:func:`to_model_inputs`), and the columns a model was trained on picked out of a richer extraction
(:func:`select_columns`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from dmd_pipeline.errors import ConfigError
from dmd_pipeline.extractors.base import FrameFeatures
from dmd_pipeline.feature_config import ALIGNED_SEQ_LENS
from dmd_pipeline.features import FeatureBundle, pad_or_truncate, pool_to_words, resample_to_length


def to_model_inputs(
    bundle: FeatureBundle,
    aligned: bool = True,
    seq_lens: tuple[int, int, int] = ALIGNED_SEQ_LENS,
    dims: dict[str, int] | None = None,
) -> dict[str, np.ndarray]:
    """One clip's model input in the MMSA layout: ``text`` (Lt, Dt) float32, ``text_bert`` (3, Lt) int64,
    ``audio`` (La, Da), ``vision`` (Lv, Dv) float32, ``audio_lengths``/``vision_lengths`` int64 scalars.

    Aligned: audio/vision pooled over each word's span onto the text tokens (see
    :func:`~dmd_pipeline.features.pool_to_words`); lengths = number of real tokens. When a clip has no words
    (no speech) the aligned audio/vision fall back to uniform average pooling onto ``La``/``Lv`` steps, so
    the signal is not lost. Unaligned: :func:`~dmd_pipeline.features.resample_to_length`.
    A missing modality becomes zeros with length 0; its dim comes from ``dims`` or ``bundle.metadata["dims"]``.
    """
    lt, la, lv = (int(x) for x in seq_lens)
    dims = {**bundle.metadata.get("dims", {}), **(dims or {})}
    out: dict[str, np.ndarray] = {}

    tf = bundle.text
    if tf is not None:
        out["text"] = pad_or_truncate(np.asarray(tf.features, dtype=np.float32), lt)
        bert = np.stack(
            [np.asarray(tf.input_ids), np.asarray(tf.attention_mask), np.asarray(tf.token_type_ids)]
        )
        out["text_bert"] = pad_or_truncate(bert.astype(np.int64), lt, axis=1)
        word_index = pad_or_truncate(np.asarray(tf.word_index, dtype=np.int64), lt)
        if len(tf.word_index) < lt:
            word_index[len(tf.word_index) :] = -1
        n_tokens = int(min(lt, np.asarray(tf.attention_mask).sum()))
    else:
        out["text"] = np.zeros((lt, _dim(dims, "text")), dtype=np.float32)
        out["text_bert"] = np.zeros((3, lt), dtype=np.int64)
        word_index = np.full(lt, -1, dtype=np.int64)
        n_tokens = 0
    has_words = bool(bundle.words) and bool((word_index >= 0).any())

    for key, frames, length in (("audio", bundle.acoustic, la), ("vision", bundle.visual, lv)):
        if frames is None:
            out[key] = np.zeros((length, _dim(dims, key)), dtype=np.float32)
            n = 0
        elif aligned and has_words:
            out[key] = pool_to_words(frames, bundle.words, word_index[:length], max_len=length)
            n = min(n_tokens, length)
        else:
            out[key], n = resample_to_length(frames, length)
        out[f"{key}_lengths"] = np.int64(n)
    for key in ("text", "audio", "vision"):
        np.nan_to_num(out[key], copy=False)
    return out


def select_columns(frames: Any, names: list[str] | None, what: str = "features") -> Any:
    """``frames`` (FrameFeatures) restricted to the columns ``names``, in that order.

    Lets one extraction serve several models: a bundle of ``whisper+librosa`` frames gives a model trained
    on ``whisper`` its 384 columns. ``names=None`` or names equal to the frames' returns ``frames`` as is;
    a name the frames lack raises ConfigError (the model needs features this extraction did not make).
    """
    if frames is None or names is None or list(frames.names) == list(names):
        return frames
    index = {n: i for i, n in enumerate(frames.names)}
    missing = [n for n in names if n not in index]
    if missing:
        raise ConfigError(
            f"the model needs {what} columns that this extraction does not produce ({len(missing)} missing, "
            f"e.g. {', '.join(missing[:3])}); it was trained on other feature settings"
        )
    cols = np.array([index[n] for n in names], dtype=np.int64)
    return FrameFeatures(frames.values[:, cols], frames.times, list(names), dict(frames.extras))


def _dim(dims: dict[str, int], key: str) -> int:
    if key not in dims:
        raise ValueError(
            f"the {key} modality is missing and its dimension is unknown; pass dims={{'{key}': D}}"
        )
    return int(dims[key])
