"""Feature bundles: what extraction produces for one clip, how it becomes fixed-length model input, and
the on-disk cache that makes a re-run free.

* :class:`FeatureBundle` holds the raw per-clip features (text tokens, acoustic frames at 100 Hz, visual
  frames at N fps), the timed words, the transcript segments and provenance metadata. It is saved as a
  ``.npz`` (arrays, loaded with ``allow_pickle=False``) plus a ``.json`` (everything else); never pickle.
* :func:`pool_to_words` builds the *aligned* setting: frames averaged over each word's ``[start, end)`` span,
  repeated on the word's sub-tokens, zeros on [CLS]/[SEP]/padding, padded/truncated to ``max_len``.
* :func:`resample_to_length` builds the *unaligned* setting: a sequence padded at the end with zeros (as
  MMSA does) or, when longer than the target, **average-pooled** over ``length`` uniform bins (every frame
  contributes, unlike subsampling, so short events are not skipped). The true length is returned.
* :class:`FeatureCache` stores bundles content-addressed by media sha256 + extraction-config hash.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dmd_pipeline import __version__
from dmd_pipeline.errors import DataError
from dmd_pipeline.extractors.base import FrameFeatures
from dmd_pipeline.extractors.transcribe import Segment, Word
from dmd_pipeline.utils import atomic_write_bytes, atomic_write_json, json_safe

BUNDLE_FORMAT = 1
_EPS = 1e-6  # seconds; time comparisons tolerate float noise


@dataclass
class FeatureBundle:
    """Everything extracted from one clip (or one segment of a file).

    ``text``/``acoustic``/``visual`` are ``None`` when that modality is missing (no speech, no audio track,
    no video track). Word and frame times are seconds relative to the clip start.
    """

    text: Any | None  # dmd_pipeline.extractors.text.TextFeatures
    acoustic: Any | None  # dmd_pipeline.extractors.base.FrameFeatures
    visual: Any | None  # dmd_pipeline.extractors.base.FrameFeatures
    words: list = field(default_factory=list)  # list[transcribe.Word]
    segments: list = field(default_factory=list)  # list[transcribe.Segment] (the transcript)
    metadata: dict = field(default_factory=dict)

    @property
    def modalities(self) -> list[str]:
        """Names of the modalities present, in (text, audio, vision) order."""
        out = []
        for name, value in (("text", self.text), ("audio", self.acoustic), ("vision", self.visual)):
            if value is not None:
                out.append(name)
        return out

    @property
    def raw_text(self) -> str:
        """The transcript as one string (words joined by spaces)."""
        if self.segments:
            return " ".join(s.text.strip() for s in self.segments if s.text.strip())
        return " ".join(w.text for w in self.words)

    def save(self, path: str | Path) -> Path:
        """Write ``<path>.npz`` (arrays) then ``<path>.json`` (the rest), each atomically.

        The JSON is written last and acts as the commit marker: a bundle whose JSON is missing is incomplete.
        Returns the JSON path.
        """
        base = _base(path)
        arrays: dict[str, np.ndarray] = {}
        meta: dict[str, Any] = {"format": BUNDLE_FORMAT}
        for key, obj in (("text", self.text), ("acoustic", self.acoustic), ("visual", self.visual)):
            meta[key] = None if obj is None else _encode_dataclass(obj, key, arrays)
        meta["words"] = [dataclasses.asdict(w) for w in self.words]
        meta["segments"] = [dataclasses.asdict(s) for s in self.segments]
        meta["metadata"] = json_safe(self.metadata)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        atomic_write_bytes(base.with_suffix(".npz"), buf.getvalue())
        json_path = base.with_suffix(".json")
        atomic_write_json(json_path, meta)
        return json_path

    @classmethod
    def load(cls, path: str | Path) -> FeatureBundle:
        """Read a bundle written by :meth:`save` (``allow_pickle=False``); raises DataError if malformed."""
        base = _base(path)
        npz_path, json_path = base.with_suffix(".npz"), base.with_suffix(".json")
        try:
            meta = json.loads(json_path.read_text(encoding="utf-8"))
            with np.load(npz_path, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
        except (OSError, ValueError) as exc:
            raise DataError(base, f"cannot read feature bundle: {exc}") from exc
        if meta.get("format") != BUNDLE_FORMAT:
            raise DataError(json_path, f"unsupported bundle format {meta.get('format')!r}")

        if meta.get("text") is not None:
            from dmd_pipeline.extractors.text import TextFeatures
        else:
            TextFeatures = None  # noqa: N806 (nothing to decode; avoids importing the text stack)

        try:
            words = [Word(**w) for w in meta["words"]]
            segments = [
                Segment(**{**s, "words": [Word(**w) for w in s.get("words", [])]}) for s in meta["segments"]
            ]
            return cls(
                text=_decode_dataclass(TextFeatures, meta["text"], arrays),
                acoustic=_decode_dataclass(FrameFeatures, meta["acoustic"], arrays),
                visual=_decode_dataclass(FrameFeatures, meta["visual"], arrays),
                words=words,
                segments=segments,
                metadata=meta["metadata"],
            )
        except (KeyError, TypeError) as exc:
            raise DataError(json_path, f"malformed feature bundle: {exc}") from exc


def _base(path: str | Path) -> Path:
    p = Path(path)
    return p.with_suffix("") if p.suffix in (".npz", ".json") else p


def _encode_dataclass(obj: Any, prefix: str, arrays: dict[str, np.ndarray]) -> dict:
    """Split a dataclass into JSON fields and arrays (stored in ``arrays`` under ``prefix.name``)."""
    out: dict[str, Any] = {"__prefix__": prefix, "__arrays__": [], "__dicts__": {}}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, np.ndarray):
            arrays[f"{prefix}.{f.name}"] = value
            out["__arrays__"].append(f.name)
        elif isinstance(value, dict):
            # dicts (e.g. FrameFeatures.extras) may hold arrays: store those in the npz, the rest in JSON
            plain, arr_keys = {}, []
            for k, v in value.items():
                if isinstance(v, np.ndarray):
                    arrays[f"{prefix}.{f.name}.{k}"] = v
                    arr_keys.append(k)
                else:
                    plain[k] = json_safe(v)
            out["__dicts__"][f.name] = arr_keys
            out[f.name] = plain
        else:
            out[f.name] = json_safe(value)
    return out


def _decode_dataclass(cls: type, meta: dict | None, arrays: dict[str, np.ndarray]) -> Any:
    """Inverse of :func:`_encode_dataclass`; unknown JSON fields are ignored (forward compatibility)."""
    if meta is None:
        return None
    prefix = meta["__prefix__"]
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for name, value in meta.items():
        if not name.startswith("__") and name in names:
            kwargs[name] = value
    for name in meta.get("__arrays__", []):
        kwargs[name] = arrays[f"{prefix}.{name}"]
    for name, arr_keys in meta.get("__dicts__", {}).items():
        d = dict(meta.get(name) or {})
        for k in arr_keys:
            d[k] = arrays[f"{prefix}.{name}.{k}"]
        kwargs[name] = d
    return cls(**kwargs)


# ----------------------------------------------------------------------------------------------------------
# Aligned setting: word-level pooling
# ----------------------------------------------------------------------------------------------------------


def word_vectors(frames: Any, words: list) -> np.ndarray:
    """One vector per word: mean of the frames whose time lies in ``[start, end)``.

    A word whose span holds no frame (shorter than the frame hop, or outside the frames) takes the frame
    nearest to the span centre, so the result never holds NaN. With no frames at all the vectors are zeros.
    """
    values = np.asarray(frames.values, dtype=np.float32)
    times = np.asarray(frames.times, dtype=np.float64)
    dim = values.shape[1] if values.ndim == 2 else 0
    out = np.zeros((len(words), dim), dtype=np.float32)
    if len(times) == 0 or dim == 0:
        return out
    order = np.argsort(times, kind="stable")
    times, values = times[order], values[order]
    # prefix sums give every span mean in O(1); float64 keeps long sums exact enough
    csum = np.concatenate([np.zeros((1, dim)), np.cumsum(values, axis=0, dtype=np.float64)])
    for i, w in enumerate(words):
        start, end = float(w.start), float(w.end)
        # a small tolerance keeps frames exactly on a boundary (4.8 vs 4.800000000000001) on the right side
        lo = int(np.searchsorted(times, start - _EPS, side="left"))
        hi = int(np.searchsorted(times, end - _EPS, side="left"))
        if hi > lo:
            out[i] = (csum[hi] - csum[lo]) / (hi - lo)
        else:
            centre = 0.5 * (start + end)
            j = int(np.argmin(np.abs(times - centre)))
            out[i] = values[j]
    return np.nan_to_num(out, copy=False)


def pool_to_words(frames: Any | None, words: list, word_index: np.ndarray, max_len: int = 50) -> np.ndarray:
    """Aligned features ``(max_len, D)``: per-word frame means repeated on each word's sub-tokens.

    ``word_index[t]`` is the word of token ``t`` (-1 for [CLS]/[SEP]/padding -> zeros). Tokens past
    ``max_len`` are dropped; missing tokens are zero-padded. ``frames=None`` is an error (the caller decides
    what a missing modality becomes).
    """
    values = np.asarray(frames.values)
    dim = values.shape[1] if values.ndim == 2 else 0
    out = np.zeros((max_len, dim), dtype=np.float32)
    idx = np.asarray(word_index, dtype=np.int64)[:max_len]
    valid = (idx >= 0) & (idx < len(words))
    if not valid.any():
        return out
    vecs = word_vectors(frames, words)
    out[: len(idx)][valid] = vecs[idx[valid]]
    return out


# ----------------------------------------------------------------------------------------------------------
# Unaligned setting: fixed-length sequences
# ----------------------------------------------------------------------------------------------------------


def resample_to_length(frames: Any, length: int) -> tuple[np.ndarray, int]:
    """Fixed-length ``(length, D)`` sequence and its true length.

    Shorter sequences are copied and zero-padded at the end (MMSA layout), true length = T.
    Longer sequences are average-pooled over ``length`` uniform bins (bin ``i`` covers frames
    ``floor(i*T/length) .. floor((i+1)*T/length)``), true length = ``length``.
    """
    values = np.asarray(frames.values, dtype=np.float32)
    if values.ndim != 2:
        values = values.reshape(len(values), -1)
    n, dim = values.shape
    out = np.zeros((length, dim), dtype=np.float32)
    if n <= length:
        out[:n] = values
        return np.nan_to_num(out, copy=False), n
    edges = np.floor(np.arange(length + 1) * n / length).astype(np.int64)
    csum = np.concatenate([np.zeros((1, dim)), np.cumsum(values, axis=0, dtype=np.float64)])
    counts = np.maximum(edges[1:] - edges[:-1], 1)[:, None]
    out[:] = (csum[edges[1:]] - csum[edges[:-1]]) / counts
    return np.nan_to_num(out, copy=False), length


def pad_or_truncate(x: np.ndarray, length: int, axis: int = 0) -> np.ndarray:
    """Zero-pad at the end or cut ``x`` along ``axis`` to ``length``."""
    x = np.asarray(x)
    n = x.shape[axis]
    if n >= length:
        return np.take(x, np.arange(length), axis=axis)
    pad = [(0, 0)] * x.ndim
    pad[axis] = (0, length - n)
    return np.pad(x, pad)


# ----------------------------------------------------------------------------------------------------------
# Provenance
# ----------------------------------------------------------------------------------------------------------


def word_source_counts(words: list) -> dict[str, int]:
    """How the word times were obtained: counts per ``Word.source`` (forced/asr/proportional/sidecar)."""
    return dict(Counter(str(getattr(w, "source", "unknown")) for w in words))


def package_versions(names: tuple[str, ...] | None = None) -> dict[str, str | None]:
    """Installed versions of the packages whose behaviour shapes the features."""
    from importlib import metadata


    names = names or (
        "numpy",
        "librosa",
        "mediapipe",
        "transformers",
        "torch",
        "pocketsphinx",
        "faster-whisper",
    )
    out: dict[str, str | None] = {"dmd_pipeline": __version__}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            out[n] = None
    return out


# ----------------------------------------------------------------------------------------------------------
# Cache
# ----------------------------------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """``$DMD_CACHE_DIR`` or ``~/.cache/dmd-pipeline``."""
    env = os.environ.get("DMD_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "dmd-pipeline"


class FeatureCache:
    """Content-addressed bundle store: ``key(media sha256, config hash, clip span, given transcript)``.

    Entries live in ``<root>/bundles/<k[:2]>/<k>.{npz,json}``; both are written atomically and the JSON last,
    so a killed writer leaves at worst an orphan ``.npz`` that is overwritten next time.
    """

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()

    @staticmethod
    def key(
        media_sha256: str,
        config_hash: str,
        start: float | None = None,
        end: float | None = None,
        transcript: str | None = None,
        sidecar: str | None = None,
    ) -> str:
        """The cache key: sha256 over everything that determines the bundle's content.

        ``sidecar`` identifies the transcript file read beside the media (its type and content sha256,
        :meth:`dmd_pipeline.pipeline.Extractor.sidecar_identity`): a byte-identical copy of a clip with
        another (or a malformed) sidecar must not get the first clip's features. Keys without a sidecar
        are unchanged, so earlier caches stay valid.
        """
        span = f"{start!r}:{end!r}"
        tx = hashlib.sha256(transcript.encode("utf-8")).hexdigest() if transcript is not None else "-"
        blob = f"v{BUNDLE_FORMAT}|{media_sha256}|{config_hash}|{span}|{tx}"
        if sidecar is not None:
            blob += f"|sidecar:{sidecar}"
        return hashlib.sha256(blob.encode()).hexdigest()

    def path(self, key: str) -> Path:
        """Base path (no suffix) of an entry."""
        return self.root / "bundles" / key[:2] / key

    def get(self, key: str) -> FeatureBundle | None:
        """The cached bundle, or None on a miss (or an unreadable entry, which is treated as a miss)."""
        base = self.path(key)
        if not base.with_suffix(".json").is_file() or not base.with_suffix(".npz").is_file():
            return None
        try:
            return FeatureBundle.load(base)
        except DataError:
            return None

    def put(self, key: str, bundle: FeatureBundle) -> Path:
        """Store a bundle (atomic)."""
        return bundle.save(self.path(key))

    def __contains__(self, key: str) -> bool:
        return self.path(key).with_suffix(".json").is_file()
