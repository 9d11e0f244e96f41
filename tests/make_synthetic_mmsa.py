"""Make small synthetic pickles in the exact MMSA layout (``aligned_50.pkl`` / ``unaligned_50.pkl``).

The data imitate the real files: ``id`` / ``raw_text`` / ``annotations`` as object arrays of str, ``text``
float32 (N, L, Dt), ``text_bert`` float64 (N, 3, L) [ids, mask, segments] with a [CLS]..[SEP] span,
``audio``/``vision`` float32 with zero padding after their lengths, ``audio_lengths``/``vision_lengths`` as
lists of ints, ``regression_labels`` float32 in [-3, 3] (some exactly 0), ``classification_labels``
(0 negative, 1 neutral, 2 positive) and a few ``-inf`` values in audio, as in real MOSI/MOSEI pickles.
The file is written with plain ``pickle`` (like MMSA) so loading it exercises the restricted unpickler.

Labels depend on the features (text mostly, audio/vision a little), so a model can learn them.

Usage as a script: ``python tests/make_synthetic_mmsa.py OUT.pkl [--unaligned] [--n 24]``.
"""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path
from typing import Any

import numpy as np

ALIGNED_LENS = (12, 12, 12)
UNALIGNED_LENS = (12, 20, 16)
DIMS = (16, 5, 7)  # (text, audio, vision)


def make_split(
    n: int,
    rng: np.random.Generator,
    dims: tuple[int, int, int] = DIMS,
    seq_lens: tuple[int, int, int] = ALIGNED_LENS,
    prefix: str = "vid",
    n_neg_inf: int = 3,
) -> dict[str, Any]:
    """One split with ``n`` samples in the MMSA layout."""
    (dt, da, dv), (lt, la, lv) = dims, seq_lens
    text = rng.normal(size=(n, lt, dt)).astype(np.float32)
    audio = rng.normal(size=(n, la, da)).astype(np.float32)
    vision = rng.normal(size=(n, lv, dv)).astype(np.float32)
    t_len = rng.integers(max(3, lt // 2), lt + 1, size=n)
    a_len = rng.integers(max(2, la // 2), la + 1, size=n)
    v_len = rng.integers(max(2, lv // 2), lv + 1, size=n)
    for i in range(n):  # zero padding after each sequence's length, as MMSA pads
        text[i, t_len[i] :] = 0
        audio[i, a_len[i] :] = 0
        vision[i, v_len[i] :] = 0
    signal = (
        text[:, :, 0].sum(1) / np.sqrt(t_len) + 0.3 * audio[:, :, 0].mean(1) + 0.3 * vision[:, :, 0].mean(1)
    )
    labels = np.clip(np.round(1.5 * signal * 3) / 3, -3, 3).astype(np.float32)  # MOSI-like 1/3 steps
    labels[: max(1, n // 8)] = 0.0  # some exact zeros (neutral)
    cls = np.where(labels < 0, 0, np.where(labels > 0, 2, 1)).astype(np.float64)
    names = np.array(["Negative", "Neutral", "Positive"], dtype=object)
    ids = np.array([f"{prefix}{i // 4}$_${i % 4}" for i in range(n)], dtype=object)
    raw_text = np.array([" ".join(["word"] * int(k - 2)) for k in t_len], dtype=object)
    text_bert = np.zeros((n, 3, lt), dtype=np.float64)
    for i in range(n):
        text_bert[i, 0, : t_len[i]] = rng.integers(1000, 2000, size=t_len[i])
        text_bert[i, 0, 0], text_bert[i, 0, t_len[i] - 1] = 101, 102  # [CLS] ... [SEP]
        text_bert[i, 1, : t_len[i]] = 1
    for _ in range(n_neg_inf):  # real MMSA audio has a few -inf (log of 0 energy)
        i, t = int(rng.integers(n)), int(rng.integers(a_len.min()))
        audio[i, t, int(rng.integers(da))] = -np.inf
    return {
        "id": ids,
        "raw_text": raw_text,
        "text": text,
        "text_bert": text_bert,
        "audio": audio,
        "vision": vision,
        "audio_lengths": [int(x) for x in a_len],
        "vision_lengths": [int(x) for x in v_len],
        "annotations": names[cls.astype(int)],
        "classification_labels": cls,
        "regression_labels": labels,
    }


def make_splits(
    n_train: int = 24,
    n_valid: int = 8,
    n_test: int = 8,
    aligned: bool = True,
    dims: tuple[int, int, int] = DIMS,
    seq_lens: tuple[int, int, int] | None = None,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """train/valid/test splits; aligned: all lengths equal, unaligned: audio/vision longer than text."""
    rng = np.random.default_rng(seed)
    lens = seq_lens or (ALIGNED_LENS if aligned else UNALIGNED_LENS)
    return {
        "train": make_split(n_train, rng, dims, lens, "tr"),
        "valid": make_split(n_valid, rng, dims, lens, "va"),
        "test": make_split(n_test, rng, dims, lens, "te"),
    }


def write_synthetic_pickle(path: str | Path, **kwargs: Any) -> Path:
    """Write :func:`make_splits` output with plain pickle (protocol 4, like MMSA files); return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(make_splits(**kwargs), protocol=4))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--unaligned", action="store_true")
    ap.add_argument("--n", type=int, default=24, help="training samples (valid/test get a third each)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    write_synthetic_pickle(
        args.out,
        n_train=args.n,
        n_valid=max(2, args.n // 3),
        n_test=max(2, args.n // 3),
        aligned=not args.unaligned,
        seed=args.seed,
    )
    print(args.out)


#: preset overrides for a very small DMD (fast tests): d=8, 2 heads, 1 layer, kernel 3
TINY_OVERRIDES: dict[str, Any] = {
    "dst_feature_dim": 8,
    "nheads": 2,
    "nlevels": 1,
    "conv1d_kernel_size": (3, 3, 3),
}


def tiny_config(aligned: bool = True, **overrides: Any) -> Any:
    """A small DMDConfig matching :func:`make_splits` shapes (regression unless num_classes is given)."""
    from dmd_pipeline.config import get_preset

    kw: dict[str, Any] = {
        **TINY_OVERRIDES,
        "feature_dims": DIMS,
        "seq_lens": ALIGNED_LENS if aligned else UNALIGNED_LENS,
        **overrides,
    }
    return get_preset("mosi_aligned" if aligned else "mosi_unaligned", **kw)


if __name__ == "__main__":
    main()
