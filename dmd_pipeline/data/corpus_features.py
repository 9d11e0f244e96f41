"""Encoder features of every clip of a :class:`~dmd_pipeline.data.corpora.CorpusTable`, computed once, on disk.

Training and cross-validating a voice-emotion head over ~8,500 clips must not re-run the speech encoder per
experiment, and all encoder layers of every 20 ms frame would be tens of GB. So each clip is encoded once and
stored compactly in the cache (``<cache>/corpus_features/<store id>/``, never in the repository):

* ``mean``, ``std``: per layer, the mean and standard deviation over the clip's frames, float32, shape
  ``(L, D)`` each (what a statistics-pooling head or the logistic-regression baseline needs);
* ``frames``: the states average-pooled over ``pool`` consecutive frames (default 5: 50 Hz -> 10 Hz), float16,
  ``(L, T', D)`` (what an attention-pooling head needs);
* ``n_frames``: T before pooling; ``ok``: False for a clip that failed to decode (its error is in the
  shard's ``errors.json``; a batch goes on past it).

Clips are written in shards of :data:`SHARD` clips (one ``.npz`` each, written atomically), so an interrupted
run resumes at the first missing shard; progress (clips/s, ETA) is printed. The store id hashes the encoder's
identity, the pooling factor, the augmentation and the ordered list of files, so a change to any of them
never reads stale features.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from dmd_pipeline.utils import atomic_open, atomic_write_json, config_hash

__all__ = [
    "SHARD",
    "ClipFeatures",
    "LayerEncoder",
    "FinalStateEncoder",
    "extract_store",
    "load_store",
    "read_audio16",
]

SHARD = 256
_SR = 16000


class LayerEncoder(Protocol):
    """What the store needs of a speech encoder: an identity and per-layer frame states of 16 kHz audio."""

    identity: dict

    def encode(self, audio16: np.ndarray) -> np.ndarray:
        """(L, T, D) float32 states of a mono 16 kHz signal."""
        ...


class FinalStateEncoder:
    """A CTranslate2 Whisper's final encoder state (50 Hz, chunked as the ``whisper`` acoustic setting runs it)
    as a one-layer encoder: tiny.en (the ``whisper`` setting) by default, or the Whisper model at
    ``model_path`` (e.g. :func:`dmd_pipeline.model_files.whisper_base_dir`)."""

    def __init__(self, model_path: str | None = None, name: str = "whisper") -> None:
        from dmd_pipeline.extractors.whisper_encoder import WhisperEncoderExtractor

        self._ext = WhisperEncoderExtractor(model_path)
        self.identity = {"setting": name, "hash": self._ext.config_hash()}

    def encode(self, audio16: np.ndarray) -> np.ndarray:
        """(1, T, D) states."""
        return self._ext.extract(audio16, _SR).values[None]


@dataclass
class ClipFeatures:
    """All clips' stored features (row order = the table's)."""

    mean: np.ndarray  # (n, L, D) float32
    std: np.ndarray  # (n, L, D) float32
    frames: list[np.ndarray]  # n arrays (L, T', D) float16
    n_frames: np.ndarray  # (n,)
    ok: np.ndarray  # (n,) bool

    def pooled(self, layers: Sequence[int] | None = None) -> np.ndarray:
        """(n, 2 * D * len(layers)) mean+std of the chosen layers (all by default), concatenated."""
        sel = slice(None) if layers is None else list(layers)
        m, s = self.mean[:, sel], self.std[:, sel]
        return np.concatenate([m.reshape(len(m), -1), s.reshape(len(s), -1)], axis=1)


def store_dir(
    cache_root: str | Path, encoder: LayerEncoder, files: Sequence[Path], pool: int, augment: str
) -> Path:
    """The folder of one (encoder, pool, augmentation, file list) store."""
    ident = config_hash(
        {"encoder": encoder.identity, "pool": pool, "augment": augment, "files": [str(f) for f in files]}
    )
    return Path(cache_root).expanduser() / "corpus_features" / ident


def _pool_time(x: np.ndarray, k: int) -> np.ndarray:
    """(L, T, D) -> (L, ceil(T / k), D): mean over consecutive groups of ``k`` frames (the last may be short)."""
    L, T, D = x.shape
    n = max(1, -(-T // k))
    pad = n * k - T
    if T == 0:
        return np.zeros((L, 1, D), np.float32)
    xp = np.concatenate([x, np.repeat(x[:, -1:], pad, axis=1)], axis=1) if pad else x
    return xp.reshape(L, n, k, D).mean(axis=2)


def read_audio16(path: Path) -> np.ndarray:
    """Mono float32 16 kHz samples: libsndfile when it reads the file at 16 kHz (FLAC, Ogg/Opus: a few ms),
    else ffmpeg (:func:`dmd_pipeline.media.load_audio`, two processes per file: ~20x slower on short clips)."""
    import soundfile as sf

    try:
        y, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError):
        sr = None
    if sr == _SR:
        return np.ascontiguousarray(y.mean(axis=1), dtype=np.float32)
    from dmd_pipeline import media

    return media.load_audio(path, sr=_SR)


def _encode_one(
    encoder: LayerEncoder,
    path: Path,
    augment: Callable[[np.ndarray, int], np.ndarray] | None,
    seed: int,
    pool: int,
) -> dict:
    audio = read_audio16(path)
    if augment is not None:
        audio = augment(audio, seed)
    x = np.asarray(encoder.encode(audio), dtype=np.float32)
    if x.ndim != 3 or x.shape[1] == 0:
        raise ValueError(f"encoder returned shape {x.shape}, expected (L, T>0, D)")
    return {
        "mean": x.mean(1),
        "std": x.std(1),
        "frames": _pool_time(x, pool).astype(np.float16),
        "n_frames": x.shape[1],
    }


def _write_shard(path: Path, recs: list[dict | None], errors: dict[int, str], dims: tuple[int, int]) -> None:
    L, D = dims
    zero = {
        "mean": np.zeros((L, D), np.float32),
        "std": np.zeros((L, D), np.float32),
        "frames": np.zeros((L, 1, D), np.float16),
        "n_frames": 0,
    }
    full = [r if r is not None else zero for r in recs]
    lens = np.array([r["frames"].shape[1] for r in full], np.int64)
    arrays = {
        "mean": np.stack([r["mean"] for r in full]),
        "std": np.stack([r["std"] for r in full]),
        "frames": np.concatenate([r["frames"] for r in full], axis=1),
        "frame_lens": lens,
        "n_frames": np.array([r["n_frames"] for r in full], np.int64),
        "ok": np.array([r is not None for r in recs]),
    }
    with atomic_open(path, "wb") as fh:
        np.savez(fh, **arrays)
    if errors:
        atomic_write_json(path.with_suffix(".errors.json"), {str(k): v for k, v in errors.items()})


def extract_store(
    files: Sequence[Path],
    encoder: LayerEncoder,
    cache_root: str | Path,
    pool: int = 5,
    augment: str = "none",
    augment_fn: Callable[[np.ndarray, int], np.ndarray] | None = None,
    progress_every: float = 30.0,
) -> Path:
    """Encode every file not yet stored (resumable by shard) and return the store folder."""
    out = store_dir(cache_root, encoder, files, pool, augment)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(
        out / "meta.json",
        {"encoder": encoder.identity, "pool": pool, "augment": augment, "n": len(files), "shard": SHARD},
    )
    n_shards = -(-len(files) // SHARD)
    todo = [s for s in range(n_shards) if not (out / f"shard_{s:04d}.npz").is_file()]
    done0 = len(files) - sum(min(SHARD, len(files) - s * SHARD) for s in todo)
    t0, last, done, dims = time.monotonic(), time.monotonic(), 0, None
    for s in todo:
        recs: list[dict | None] = []
        errors: dict[int, str] = {}
        for i in range(s * SHARD, min(len(files), (s + 1) * SHARD)):
            try:
                r = _encode_one(encoder, files[i], augment_fn, seed=i, pool=pool)
                dims = r["mean"].shape
                recs.append(r)
            except Exception as e:  # noqa: BLE001 - a bad clip is recorded and skipped, the batch goes on
                errors[i - s * SHARD] = f"{files[i]}: {e}"
                print(f"  skipped {files[i]}: {e}", file=sys.stderr, flush=True)
                recs.append(None)
            done += 1
            if time.monotonic() - last >= progress_every:
                last = time.monotonic()
                rate = done / (last - t0)
                left = len(files) - done0 - done
                print(
                    f"  {done0 + done}/{len(files)} clips, {rate:.1f} clips/s, ETA {left / rate / 60:.1f} min",
                    flush=True,
                )
        if dims is None:
            raise RuntimeError(
                f"no clip of shard {s} could be encoded (first error: {next(iter(errors.values()))})"
            )
        _write_shard(out / f"shard_{s:04d}.npz", recs, errors, dims)
    return out


def load_store(folder: str | Path, frames: bool = True) -> ClipFeatures:
    """Read a complete store written by :func:`extract_store` (``frames=False``: the pooled statistics only,
    ``frames`` left empty: much less to read and hold)."""
    want_frames = frames
    folder = Path(folder)
    meta = json.loads((folder / "meta.json").read_text())
    n_shards = -(-int(meta["n"]) // int(meta["shard"]))
    means, stds, clips, nf, ok = [], [], [], [], []
    for s in range(n_shards):
        p = folder / f"shard_{s:04d}.npz"
        if not p.is_file():
            raise FileNotFoundError(f"{p}: shard missing (run the extraction again to finish the store)")
        z = np.load(p, allow_pickle=False)
        means.append(z["mean"])
        stds.append(z["std"])
        if want_frames:
            edges = np.concatenate([[0], np.cumsum(z["frame_lens"])])
            fr = z["frames"]
            clips += [fr[:, a:b] for a, b in zip(edges[:-1], edges[1:], strict=True)]
        nf.append(z["n_frames"])
        ok.append(z["ok"])
    return ClipFeatures(
        np.concatenate(means), np.concatenate(stds), clips, np.concatenate(nf), np.concatenate(ok)
    )
