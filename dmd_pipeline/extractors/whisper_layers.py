"""The Whisper encoder in plain torch, from a CTranslate2 model folder, with every intermediate layer.

CTranslate2 (what faster-whisper runs) returns only the encoder's final output; emotion lives more in the
middle layers, so this module runs the same encoder in torch from the same weights and keeps each layer.

Weights: :func:`read_ct2_variables` parses CTranslate2's ``model.bin`` (binary format version 5/6: a header
with the spec name and revision, then per variable its name, rank, dims, dtype id and raw bytes, then
aliases; the layout ``ctranslate2.specs.ModelSpec`` writes) and returns the ``encoder/*`` arrays as numpy, in
their stored dtype (float16 for Whisper base). :class:`WhisperTorchEncoder` casts them to float32 once.

Network (Whisper's encoder, ``n`` = 6 blocks and width 512 for base; 4 and 384 for tiny):

- ``x = gelu(conv1(mel))`` (80 -> d, kernel 3, padding 1), ``x = gelu(conv2(x))`` (kernel 3, stride 2,
  padding 1): one frame per 20 ms; ``x += sinusoidal_position[:T]`` (the stored 1500 x d table).
- ``n`` pre-LayerNorm blocks: ``x += attn(LN(x))`` (8 heads, no mask), ``x += mlp(LN(x))`` (d -> 4d, GELU,
  -> d); then the final LayerNorm.

:meth:`WhisperTorchEncoder.forward` returns ``n + 2`` states, each (B, T, d): index 0 the input embedding
(convolutions + positions), ``1..n`` the output of each block, ``n + 1`` the final LayerNorm of block ``n``'s
output (= CTranslate2's ``encode`` output). :data:`LAYER_STATES` (HF's ``output_hidden_states``
convention: the embedding, blocks 1..n-1, the final LN output; ``n + 1`` states) is what the
``whisper-base-layers`` settings store.

:class:`WhisperLayersExtractor` turns a mono 16 kHz signal into those states at 50 Hz, over the clip's own
length (no 30 s padding) in the same chunks as :mod:`~dmd_pipeline.extractors.whisper_encoder` (equal
chunks of about 4 s on the 20 ms grid, each chunk's log-mel normalised on its own), optionally mean-pooled
over ``stride`` frames. Cost per clip and bytes per second of audio: README ("Acoustic settings") and
BENCHMARKS.md.
"""

from __future__ import annotations

import struct
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = [
    "WhisperLayersExtractor",
    "WhisperTorchEncoder",
    "chunk_ranges",
    "load_torch_encoder",
    "read_ct2_variables",
]

_SR = 16000
_HOP = 320  # samples per encoder frame (20 ms)
_MAX_CHUNK_S = 30.0
_CT2_DTYPES = ("float32", "int8", "int16", "int32", "float16", "bfloat16")  # CTranslate2's type ids


def read_ct2_variables(model_bin: str | Path, prefix: str = "encoder/") -> dict[str, np.ndarray]:
    """The variables of a CTranslate2 ``model.bin`` whose names start with ``prefix`` (name -> array in the
    stored dtype; bfloat16 is returned as float32). Others are skipped without being read. Raises
    ValueError naming the file on a format this reader does not know or a truncated file."""
    path = Path(model_bin)
    out: dict[str, np.ndarray] = {}
    with open(path, "rb") as fh:

        def unpack(fmt: str) -> int:
            size = struct.calcsize(fmt)
            raw = fh.read(size)
            if len(raw) != size:
                raise ValueError(f"{path}: truncated CTranslate2 model file")
            return struct.unpack(fmt, raw)[0]

        def string() -> str:
            n = unpack("<H")
            raw = fh.read(n)
            if len(raw) != n:
                raise ValueError(f"{path}: truncated CTranslate2 model file")
            return raw[:-1].decode("utf-8")

        version = unpack("<I")
        if version not in (5, 6):
            raise ValueError(f"{path}: CTranslate2 binary version {version} is not supported (5 or 6)")
        string()  # spec name (e.g. WhisperSpec)
        unpack("<I")  # spec revision
        for _ in range(unpack("<I")):
            name = string()
            dims = [unpack("<I") for _ in range(unpack("<B"))]
            type_id = unpack("<B")
            n_bytes = unpack("<I")
            if not name.startswith(prefix):
                fh.seek(n_bytes, 1)
                continue
            if type_id >= len(_CT2_DTYPES):
                raise ValueError(f"{path}: variable {name} has an unknown dtype id {type_id}")
            raw = fh.read(n_bytes)
            if len(raw) != n_bytes:
                raise ValueError(f"{path}: truncated CTranslate2 model file (in {name})")
            dtype = _CT2_DTYPES[type_id]
            if dtype == "bfloat16":
                arr = (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
            else:
                arr = np.frombuffer(raw, np.dtype(dtype))
            out[name] = arr.reshape(dims) if dims else arr.reshape(())
    return out


class WhisperTorchEncoder:
    """Whisper's audio encoder in float32 torch from CTranslate2 ``encoder/*`` variables (module docstring).

    Not an ``nn.Module`` subclass on purpose: inference only, no autograd, no state to train; ``dim``,
    ``n_blocks``, ``n_heads`` describe it.
    """

    def __init__(self, variables: dict[str, np.ndarray], prefix: str = "encoder/") -> None:
        import torch

        def t(name: str) -> torch.Tensor:
            key = prefix + name
            if key not in variables:
                raise ValueError(f"the CTranslate2 model lacks the variable {key}")
            return torch.from_numpy(np.asarray(variables[key], dtype=np.float32).copy())

        self.conv1_w, self.conv1_b = t("conv1/weight"), t("conv1/bias")
        self.conv2_w, self.conv2_b = t("conv2/weight"), t("conv2/bias")
        self.positions = t("position_encodings/encodings")
        self.final_ln = (t("layer_norm/gamma"), t("layer_norm/beta"))
        self.dim = int(self.conv1_w.shape[0])
        self.n_mels = int(self.conv1_w.shape[1])
        heads = variables.get(prefix + "num_heads")
        self.n_heads = int(np.asarray(heads).reshape(-1)[0]) if heads is not None else max(1, self.dim // 64)
        self.blocks: list[dict[str, torch.Tensor]] = []
        while f"{prefix}layer_{len(self.blocks)}/ffn/linear_0/weight" in variables:
            b = f"layer_{len(self.blocks)}/"
            self.blocks.append(
                {
                    "ln1_g": t(b + "self_attention/layer_norm/gamma"),
                    "ln1_b": t(b + "self_attention/layer_norm/beta"),
                    "qkv_w": t(b + "self_attention/linear_0/weight"),
                    "qkv_b": t(b + "self_attention/linear_0/bias"),
                    "out_w": t(b + "self_attention/linear_1/weight"),
                    "out_b": t(b + "self_attention/linear_1/bias"),
                    "ln2_g": t(b + "ffn/layer_norm/gamma"),
                    "ln2_b": t(b + "ffn/layer_norm/beta"),
                    "fc1_w": t(b + "ffn/linear_0/weight"),
                    "fc1_b": t(b + "ffn/linear_0/bias"),
                    "fc2_w": t(b + "ffn/linear_1/weight"),
                    "fc2_b": t(b + "ffn/linear_1/bias"),
                }
            )
        if not self.blocks:
            raise ValueError("the CTranslate2 model has no encoder blocks")
        self.n_blocks = len(self.blocks)
        self.max_frames = int(self.positions.shape[0])

    def forward(self, mel: np.ndarray | torch.Tensor) -> list[torch.Tensor]:
        """``n_blocks + 2`` float32 states (B, T, dim) of a log-mel batch (B, n_mels, 2T) or (n_mels, 2T):
        embedding, each block's output, final LayerNorm (module docstring). ``T <= max_frames``."""
        import torch  # noqa: F811 (imported for type checking above)
        import torch.nn.functional as F  # noqa: N812

        x = torch.as_tensor(np.asarray(mel, dtype=np.float32) if isinstance(mel, np.ndarray) else mel)
        x = x.float()
        if x.ndim == 2:
            x = x[None]
        if x.ndim != 3 or x.shape[1] != self.n_mels:
            raise ValueError(f"mel must be (B, {self.n_mels}, frames), got {tuple(x.shape)}")
        with torch.inference_mode():
            x = F.gelu(F.conv1d(x, self.conv1_w, self.conv1_b, padding=1))
            x = F.gelu(F.conv1d(x, self.conv2_w, self.conv2_b, stride=2, padding=1))
            x = x.transpose(1, 2)  # (B, T, d)
            n_t = x.shape[1]
            if n_t > self.max_frames:
                raise ValueError(f"{n_t} encoder frames exceed the position table ({self.max_frames}, 30 s)")
            x = x + self.positions[:n_t]
            states = [x]
            bsz, d, h = x.shape[0], self.dim, self.n_heads
            for blk in self.blocks:
                y = F.layer_norm(x, (d,), blk["ln1_g"], blk["ln1_b"], eps=1e-5)
                q, k, v = F.linear(y, blk["qkv_w"], blk["qkv_b"]).split(d, dim=-1)
                q, k, v = (z.reshape(bsz, n_t, h, d // h).transpose(1, 2) for z in (q, k, v))
                a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(bsz, n_t, d)
                x = x + F.linear(a, blk["out_w"], blk["out_b"])
                y = F.layer_norm(x, (d,), blk["ln2_g"], blk["ln2_b"], eps=1e-5)
                x = x + F.linear(F.gelu(F.linear(y, blk["fc1_w"], blk["fc1_b"])), blk["fc2_w"], blk["fc2_b"])
                states.append(x)
            states.append(F.layer_norm(x, (d,), self.final_ln[0], self.final_ln[1], eps=1e-5))
        return states

    __call__ = forward


_ENCODERS: dict[str, WhisperTorchEncoder] = {}
_ENCODERS_LOCK = threading.Lock()


def load_torch_encoder(model_dir: str | Path | None = None) -> WhisperTorchEncoder:
    """The torch encoder of a CTranslate2 Whisper folder (default: the bundled Whisper base,
    :func:`~dmd_pipeline.model_files.whisper_base_dir`), loaded once per process."""
    from dmd_pipeline.model_files import whisper_base_dir

    folder = whisper_base_dir(model_dir)
    key = str(folder)
    with _ENCODERS_LOCK:
        if key not in _ENCODERS:
            _ENCODERS[key] = WhisperTorchEncoder(read_ct2_variables(folder / "model.bin"))
        return _ENCODERS[key]


def chunk_ranges(n_samples: int, chunk_s: float = 4.0) -> list[tuple[int, int]]:
    """Sample ranges ``[a, b)`` of the equal chunks a 16 kHz signal of ``n_samples`` is encoded in:
    ``n = max(1, round(d / chunk_s))`` chunks (more while one would exceed 30 s), inner edges on the 20 ms
    grid so the chunks' frames tile the time axis."""
    if n_samples <= 0:
        return []
    dur = n_samples / _SR
    n = max(1, int(round(dur / chunk_s)))
    while dur / n > _MAX_CHUNK_S:
        n += 1
    edges = np.round(np.linspace(0, n_samples, n + 1)).astype(np.int64)
    edges[1:-1] = (edges[1:-1] // _HOP) * _HOP
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]


_MEL: dict[int, object] = {}


def log_mel(y: np.ndarray, n_mels: int = 80) -> np.ndarray:
    """(n_mels, 2T) Whisper log-mel of one chunk, T = ceil(len / 320): faster-whisper's feature extractor
    over the chunk's own samples (zero-padded to whole 20 ms frames plus 10 ms, so the last frame is whole),
    normalised over the chunk as Whisper does."""
    if n_mels not in _MEL:
        from dmd_pipeline.extractors.faster_whisper_import import faster_whisper_module

        faster_whisper_module()
        from faster_whisper.feature_extractor import FeatureExtractor

        _MEL[n_mels] = FeatureExtractor(feature_size=n_mels)
    n_out = max(1, -(-len(y) // _HOP))
    need = n_out * _HOP + _HOP // 2
    y = np.pad(np.asarray(y, dtype=np.float32), (0, max(0, need - len(y))))
    mel = _MEL[n_mels](y, padding=0)  # type: ignore[operator]
    return np.ascontiguousarray(np.asarray(mel, dtype=np.float32)[:, : 2 * n_out])


class WhisperLayersExtractor:
    """Whisper encoder states of a signal at 50 Hz (or pooled over ``stride`` frames), chunked as in the
    module docstring. ``states`` picks which of the encoder's ``n_blocks + 2`` states to return (default
    :meth:`layer_states`: the embedding, blocks ``1..n-1``, the final LN output)."""

    def __init__(self, model_dir: str | Path | None = None, chunk_s: float = 4.0) -> None:
        if not 0.5 <= float(chunk_s) <= _MAX_CHUNK_S:
            raise ValueError(f"chunk_s must be in [0.5, {_MAX_CHUNK_S}] s, got {chunk_s}")
        self.model_dir = model_dir
        self.chunk_s = float(chunk_s)
        self.encoder = load_torch_encoder(model_dir)
        self.dim = self.encoder.dim
        self.identity: dict = self._identity()

    def _identity(self) -> dict:
        """What identifies :meth:`encode`'s output (``data.corpus_features.LayerEncoder``): the encoder code
        version, the chunking, the states kept and the model (recorded sha256, or a user folder's path)."""
        from dmd_pipeline.model_files import WHISPER_BASE_SHA256

        model = (
            WHISPER_BASE_SHA256["model.bin"]
            if self.model_dir is None
            else str(Path(self.model_dir).resolve())
        )
        return {
            "setting": "whisper-base-layers",
            "encoder": "whisper-base-torch-v1",
            "chunk_s": self.chunk_s,
            "states": self.layer_states(),
            "model": model,
        }

    def encode(self, audio16: np.ndarray) -> np.ndarray:
        """(7, T, 512) float32 layer states at 50 Hz (:meth:`hidden_states` with the defaults): the
        ``LayerEncoder`` interface of :mod:`dmd_pipeline.data.corpus_features`."""
        return self.hidden_states(audio16)

    def layer_states(self) -> list[int]:
        """Indices of the states the layers settings keep: 0 (embedding), 1..n-1 (blocks), n+1 (final LN)."""
        n = self.encoder.n_blocks
        return [*range(n), n + 1]

    def hidden_states(
        self, audio16: np.ndarray, states: list[int] | None = None, stride: int = 1
    ) -> np.ndarray:
        """(L, T, dim) float32 states of a mono 16 kHz signal; ``T = ceil(len / 320)`` frames of 20 ms at
        ``stride`` 1, else ``ceil(T / stride)`` means of ``stride`` consecutive frames (the last of fewer).
        Empty audio gives (L, 0, dim). NaN/inf in the input are zeroed."""
        import torch

        states = self.layer_states() if states is None else list(states)
        y = np.nan_to_num(np.asarray(audio16, dtype=np.float32).reshape(-1), nan=0.0, posinf=1.0, neginf=-1.0)
        parts = []
        for a, b in chunk_ranges(len(y), self.chunk_s):
            n_out = max(1, -(-(b - a) // _HOP))
            hs = self.encoder(log_mel(y[a:b], self.encoder.n_mels))
            parts.append(torch.stack([hs[i][0, :n_out] for i in states]).numpy())
        if not parts:
            return np.zeros((len(states), 0, self.dim), np.float32)
        out = np.concatenate(parts, axis=1)
        out = pool_time(out, stride)
        return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32, copy=False)


def pool_time(x: np.ndarray, stride: int) -> np.ndarray:
    """Mean over each run of ``stride`` frames on axis -2 (the last run may be shorter); stride 1: as is."""
    if stride <= 1:
        return x
    n_t = x.shape[-2]
    n_out = -(-n_t // stride)
    full = n_t // stride
    out = np.empty((*x.shape[:-2], n_out, x.shape[-1]), np.float32)
    if full:
        out[..., :full, :] = (
            x[..., : full * stride, :].reshape(*x.shape[:-2], full, stride, x.shape[-1]).mean(-2)
        )
    if n_out > full:
        out[..., full, :] = x[..., full * stride :, :].mean(-2)
    return out
