"""Typed DMD configuration and the named presets (official hyper-parameters).

Values marked "official" come from the DMD authors' ``config/config.json`` (``dmd`` entry; MOSI/MOSEI
``datasetParams`` + ``commonParams``), the fixed sequence lengths from their model (aligned 50/50/50;
unaligned MOSI text 50, audio 375, vision 500; MOSEI 50/500/500, the MMSA ``unaligned_50.pkl`` layout) and the
trainer (Adam, ``ReduceLROnPlateau(mode='min', factor=0.5)``). Every value the official config does not hold is
marked "not from the official config".

Orders: ``feature_dims``, ``seq_lens`` and ``conv1d_kernel_size`` are always (text, audio, vision).

Validation (:meth:`DMDConfig.from_dict`, :meth:`DMDConfig.validate`) runs before any tensor is built, so a
hostile or broken ``config.json`` cannot make the model allocate terabytes or loop forever: every field has
a type (:data:`FIELD_TYPES`) and a range (:data:`INT_RANGES`, :data:`FLOAT_RANGES`), and the estimated
parameter count (:meth:`DMDConfig.estimated_parameters`) must stay under :data:`MAX_PARAMETERS`.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from dmd_pipeline.errors import ConfigError, ModelConfigError, ModelFileError, os_error_reason
from dmd_pipeline.utils import TooLargeError, format_bytes, json_depth, read_bytes_bounded

#: Inclusive ranges of the integer hyper-parameters (the official presets sit far inside them).
INT_RANGES: dict[str, tuple[int, int]] = {
    "num_classes": (1, 10_000),
    "dst_feature_dim": (1, 4096),
    "nheads": (1, 256),
    "nlevels": (1, 48),
    "gd_size_homo": (1, 8192),
    "gd_size_hetero": (1, 8192),
    "audio_layers": (1, 64),
}
#: The homo-head options (``DMDConfig.head``).
HEADS: tuple[str, ...] = ("flatten", "attention", "stats")
#: Inclusive ranges of each entry of the (text, audio, vision) integer triples.
TRIPLE_RANGES: dict[str, tuple[int, int]] = {
    "feature_dims": (1, 65_536),
    "seq_lens": (1, 4096),  # attention memory grows with the square of the length
    "conv1d_kernel_size": (1, 4096),
}
#: Inclusive ranges of the float hyper-parameters.
_DROPOUTS: tuple[str, ...] = (
    "text_dropout",
    "embed_dropout",
    "attn_dropout",
    "attn_dropout_a",
    "attn_dropout_v",
    "relu_dropout",
    "res_dropout",
    "output_dropout",
)
FLOAT_RANGES: dict[str, tuple[float, float]] = {
    **dict.fromkeys(_DROPOUTS, (0.0, 1.0)),
    "gd_prior_temperature": (1e-6, 1e6),
    "gd_reg": (0.0, 1e9),
    "gd_alpha": (0.0, 1e6),
    "w_gd": (0.0, 1e6),
    "w_rec_cyc": (0.0, 1e6),
    "w_mar_ort": (0.0, 1e6),
    "mar_margin_scale": (0.0, 1e6),
}
#: JSON type of every field: "int", "float", "bool", "str", "str?" (or null), "int3" (three ints),
#: "floats" (a list of floats), "dict".
FIELD_TYPES: dict[str, str] = {
    "name": "str",
    "feature_dims": "int3",
    "seq_lens": "int3",
    "conv1d_kernel_size": "int3",
    "num_classes": "int",
    "use_bert": "bool",
    "text_encoder": "str?",
    "finetune_text_encoder": "bool",
    "ort_variant": "str",
    "keep_dead_layers": "bool",
    "head": "str",
    "audio_layers": "int",
    "audio_layer_norm": "bool",
    "dst_feature_dim": "int",
    "nheads": "int",
    "nlevels": "int",
    "attn_mask": "bool",
    **dict.fromkeys(
        (
            *_DROPOUTS,
            "gd_prior_temperature",
            "gd_reg",
            "gd_alpha",
            "w_gd",
            "w_rec_cyc",
            "w_mar_ort",
            "mar_margin_scale",
        ),
        "float",
    ),
    "gd_size_homo": "int",
    "gd_size_hetero": "int",
    "gd_prior_homo": "floats",
    "gd_prior_hetero": "floats",
    "gd_w_losses": "floats",
    "train": "dict",
}
#: Types of the ``train`` entries.
TRAIN_TYPES: dict[str, str] = {
    "learning_rate": "float",
    "weight_decay": "float",
    "batch_size": "int",
    "update_epochs": "int",
    "grad_clip": "float",
    "early_stop": "int",
    "patience": "int",
    "lr_factor": "float",
    "learning_rate_bert": "float",
    "weight_decay_bert": "float",
    "key_eval": "str",
}
#: Upper bound of :meth:`DMDConfig.estimated_parameters` (float32: 1 GB), far above the official models.
MAX_PARAMETERS = 250_000_000
MAX_STR_LEN = 4096


def _check_value(where: str, kind: str, value: Any) -> None:
    """Raise ConfigError unless ``value`` has JSON type ``kind`` (see :data:`FIELD_TYPES`)."""
    import math

    def is_int(v: Any) -> bool:
        return (isinstance(v, int) and not isinstance(v, bool)) or (
            isinstance(v, float) and math.isfinite(v) and v.is_integer() and abs(v) < 2**53
        )

    def is_float(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))

    ok = {
        "int": lambda v: is_int(v),
        "float": lambda v: is_float(v),
        "bool": lambda v: isinstance(v, bool),
        "str": lambda v: isinstance(v, str) and len(v) <= MAX_STR_LEN,
        "str?": lambda v: v is None or (isinstance(v, str) and len(v) <= MAX_STR_LEN),
        "int3": lambda v: isinstance(v, (list, tuple)) and len(v) == 3 and all(is_int(x) for x in v),
        "floats": lambda v: isinstance(v, (list, tuple)) and len(v) <= 64 and all(is_float(x) for x in v),
        "dict": lambda v: isinstance(v, dict),
    }[kind](value)
    if not ok:
        want = {
            "int": "an integer",
            "float": "a finite number",
            "bool": "true or false",
            "str": f"a string (at most {MAX_STR_LEN} characters)",
            "str?": "a string or null",
            "int3": "a list of three integers (text, audio, vision)",
            "floats": "a list of finite numbers",
            "dict": "an object",
        }[kind]
        shown = repr(value)
        raise ConfigError(
            f"config {where} must be {want}, got {shown[:60] + '...' if len(shown) > 60 else shown}"
        )


def check_config_dict(d: Any) -> None:
    """Check the types of a config dict (as read from JSON) before any value is used; ConfigError if wrong."""
    if not isinstance(d, dict):
        raise ConfigError(f"config must be an object, got {type(d).__name__}")
    for key, value in d.items():
        kind = FIELD_TYPES.get(str(key))
        if kind is not None:
            _check_value(str(key), kind, value)
    train = d.get("train")
    if isinstance(train, dict):
        for key, value in train.items():
            kind = TRAIN_TYPES.get(str(key))
            if kind is not None:
                _check_value(f"train.{key}", kind, value)


#: Text feature widths for ``get_preset(..., feature_dims=(TEXT_DIM_MINILM, d_audio, d_vision))``.
TEXT_DIM_MINILM = 384  # bundled all-MiniLM-L6-v2

#: Keys of :attr:`DMDConfig.train` (what the trainer reads) and what each means.
TRAIN_KEYS: dict[str, str] = {
    "learning_rate": "Adam learning rate of the DMD model and both GD kernels (official 1e-4)",
    "weight_decay": (
        "official config value (MOSI 5e-3, MOSEI 1e-3); NOTE the official trainer builds Adam with lr only, "
        "so this value was never applied there; the trainer decides whether to apply it"
    ),
    "batch_size": "mini-batch size (official 16)",
    "update_epochs": (
        "gradient-accumulation count: the official trainer steps the optimiser every 10 mini-batches (official 10)"
    ),
    "grad_clip": "clip_grad_value_ threshold after every backward; -1 disables (official 0.6)",
    "early_stop": "stop after this many epochs without a better validation loss (official 10)",
    "patience": "ReduceLROnPlateau patience in epochs, mode='min', factor 0.5 (official 5)",
    "lr_factor": "ReduceLROnPlateau factor (official trainer: 0.5)",
    "learning_rate_bert": (
        "learning rate of a fine-tuned text encoder; not from the official config (the official trainer puts "
        "BERT in the same Adam group at learning_rate); 5e-5 is the usual BERT fine-tuning rate"
    ),
    "weight_decay_bert": "weight decay of the text-encoder group; not from the official config (0.001)",
    "key_eval": "model selection metric (official 'Loss' = validation L1, lower is better)",
    "augment_time_mask": (
        "not from the official config: training-time masking of up to this fraction of the audio frames "
        "(2 random spans; 0 = off, the default)"
    ),
    "augment_noise": "not from the official config: Gaussian noise std added to real audio frames in training (0 = off)",
}


def _train(weight_decay: float) -> dict[str, Any]:
    return {
        "learning_rate": 1e-4,  # official
        "weight_decay": weight_decay,  # official value (unused by the official optimiser, see TRAIN_KEYS)
        "batch_size": 16,  # official
        "update_epochs": 10,  # official
        "grad_clip": 0.6,  # official
        "early_stop": 10,  # official
        "patience": 5,  # official
        "lr_factor": 0.5,  # official trainer
        "learning_rate_bert": 5e-5,  # not from the official config
        "weight_decay_bert": 1e-3,  # not from the official config
        "key_eval": "Loss",  # official
    }


@dataclass
class DMDConfig:
    """All hyper-parameters of the DMD network, its two GD kernels, the losses and training.

    Faithfulness options:
      * ``keep_dead_layers`` (default True): build the official ``proj_cosine_{l,v,a}`` layers, which feed only
        the unused ``proj_s_*`` outputs and never get a gradient. Kept so parameter counts and checkpoints
        match the official ones; False drops them (and the ``proj_s_*`` outputs).
      * ``ort_variant``: "fixed" (default) = per (time step, sample) cosine over channels; "legacy" = what
        torch 1.9 computed for the official 3-D call (cosine over the batch axis, batch-size dependent).

    Options that are not from the official model (defaults = official):
      * ``head``: how the modality-common sequence ``c_m`` (T' positions after the temporal convolution) is
        turned into one vector for the homo heads (``proj1_m_low``/``out_layer_m_low``), ``align_c_m`` and the
        dead ``proj_cosine_m``. "flatten" (official, the default of every preset): time-major flatten, so
        each of the T' positions has its own weights (a clip whose speech sits at other positions looks
        different). "attention": attention pooling, a learned score per position (``pool_m_low``, d -> 1),
        softmax over the clip's real positions, the weighted mean (d). "stats": statistics pooling, the
        mean and standard deviation over the real positions (2d). Padded positions are masked: the inputs
        are zero-padded at the end (``model_input.to_model_inputs``), so a modality's real length is the
        index of its last non-zero frame + 1 (BERT text: its attention mask); after the kernel-k
        convolution ``max(1, length - k + 1)`` positions are real.
      * ``audio_layers`` (default 1: the audio input is used as it is): L > 1 reads the audio input as L
        stacked encoder layers, layer-major (``whisper-base-layers*`` settings: (B, T, L * D)), and feeds
        the model their learned softmax-weighted sum (B, T, D): the parameter ``audio_layer_weights`` (L
        logits, zero-initialised = the plain mean; ``model.audio_layer_weights`` in the checkpoint). With
        ``audio_layer_norm`` (default True) each layer is first LayerNorm-ed over its D dims (no affine),
        because Whisper's layers differ in scale by two orders of magnitude.
    """

    name: str
    feature_dims: tuple[int, int, int]  # (text, audio, vision) input dims; 768 official text, 384 MiniLM
    seq_lens: tuple[int, int, int]  # fixed (text, audio, vision) lengths; the homo heads flatten time
    num_classes: int = 1  # 1 = regression (L1), N>1 = classification (CE)
    use_bert: bool = False  # True: text input is (B, 3, L) ids/mask/segments fed to a BERT-family encoder
    text_encoder: str | None = None  # local BERT-family folder (never downloaded) when use_bert
    finetune_text_encoder: bool = True  # official use_finetune
    ort_variant: str = "fixed"  # "fixed" | "legacy"
    keep_dead_layers: bool = True
    head: str = "flatten"  # "flatten" (official) | "attention" | "stats": see the class docstring
    audio_layers: int = 1  # L > 1: the audio input is L stacked layers, fed as their learned weighted sum
    audio_layer_norm: bool = True  # with audio_layers > 1: LayerNorm each layer before the weighted sum
    # --- network (official) ---
    dst_feature_dim: int = 50  # d
    nheads: int = 10
    nlevels: int = 4  # layers per encoder; the mem encoders use max(nlevels, 3)
    conv1d_kernel_size: tuple[int, int, int] = (5, 5, 5)  # (text, audio, vision)
    attn_mask: bool = True
    text_dropout: float = 0.5
    embed_dropout: float = 0.2
    attn_dropout: float = 0.3  # encoders whose key/value is text, self_attentions_c_l and the mem encoders
    attn_dropout_a: float = 0.2  # encoders whose key/value is audio (incl. self_attentions_c_a)
    attn_dropout_v: float = 0.0  # encoders whose key/value is vision (incl. self_attentions_c_v)
    relu_dropout: float = 0.0
    res_dropout: float = 0.0
    output_dropout: float = 0.5
    # --- graph distillation (official trainer arguments) ---
    gd_size_homo: int = 64
    gd_size_hetero: int = 32
    gd_prior_homo: tuple[float, ...] = (0.0, 0.0, 1.0, 0.0, 1.0, 0.0)  # softmax(x / T)
    gd_prior_hetero: tuple[float, ...] = (0.0, 0.0, 1.0, 0.0, 1.0, 1.0)
    gd_prior_temperature: float = 0.25
    gd_reg: float = 10.0
    gd_w_losses: tuple[float, float] = (1.0, 10.0)  # (logit, repr)
    gd_alpha: float = 1.0 / 8.0  # edge-score scale before the softmax
    # --- loss weights (official trainer) ---
    w_gd: float = 0.05  # GD logit, regulariser and hetero repr terms
    w_rec_cyc: float = 0.1  # recon and cyc
    w_mar_ort: float = 0.1  # inside w_rec_cyc: mar and ort get 0.1 * 0.1 = 0.01
    mar_margin_scale: float = 0.15  # margin = 0.15 * |y_anchor - y_negative|
    train: dict[str, Any] = field(default_factory=lambda: _train(0.005))

    def __post_init__(self) -> None:
        self.feature_dims = tuple(int(v) for v in self.feature_dims)  # type: ignore[assignment]
        self.seq_lens = tuple(int(v) for v in self.seq_lens)  # type: ignore[assignment]
        self.conv1d_kernel_size = tuple(int(v) for v in self.conv1d_kernel_size)  # type: ignore[assignment]
        self.gd_prior_homo = tuple(float(v) for v in self.gd_prior_homo)
        self.gd_prior_hetero = tuple(float(v) for v in self.gd_prior_hetero)
        self.gd_w_losses = tuple(float(v) for v in self.gd_w_losses)  # type: ignore[assignment]
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError on inconsistent values: wrong lengths, out-of-range values (:data:`INT_RANGES`,
        :data:`TRIPLE_RANGES`, :data:`FLOAT_RANGES`), too-short sequences, a bad variant, or a model whose
        estimated size is over :data:`MAX_PARAMETERS`. Cheap: nothing is allocated."""
        for key in ("feature_dims", "seq_lens", "conv1d_kernel_size"):
            if len(getattr(self, key)) != 3:
                raise ConfigError(f"DMDConfig.{key} must have 3 entries (text, audio, vision)")
            lo, hi = TRIPLE_RANGES[key]
            for v, m in zip(getattr(self, key), ("text", "audio", "vision"), strict=True):
                if not lo <= v <= hi:
                    raise ConfigError(f"DMDConfig.{key} ({m}) = {v} is outside [{lo}, {hi}]")
        for key, (lo, hi) in INT_RANGES.items():
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise ConfigError(f"DMDConfig.{key} = {v!r} is outside [{lo}, {hi}]")
        for key, (flo, fhi) in FLOAT_RANGES.items():
            v = getattr(self, key)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not flo <= float(v) <= fhi:
                raise ConfigError(f"DMDConfig.{key} = {v!r} is outside [{flo:g}, {fhi:g}]")
        for n, k, m in zip(self.seq_lens, self.conv1d_kernel_size, "tav", strict=True):
            if k < 1 or n - k + 1 < 1:
                raise ConfigError(
                    f"sequence length {n} of modality {m!r} is shorter than its conv kernel {k}"
                )
        if self.dst_feature_dim % self.nheads:
            raise ConfigError(f"dst_feature_dim {self.dst_feature_dim} not divisible by nheads {self.nheads}")
        if self.head not in HEADS:
            raise ConfigError(f"head must be one of {', '.join(HEADS)}, got {self.head!r}")
        if self.feature_dims[1] % self.audio_layers:
            raise ConfigError(
                f"audio_layers {self.audio_layers} does not divide the audio feature dim {self.feature_dims[1]}"
            )
        if self.ort_variant not in ("fixed", "legacy"):
            raise ConfigError(f"ort_variant must be 'fixed' or 'legacy', got {self.ort_variant!r}")
        if self.num_classes < 1:
            raise ConfigError(f"num_classes must be >= 1, got {self.num_classes}")
        if len(self.gd_prior_homo) != 6 or len(self.gd_prior_hetero) != 6:
            raise ConfigError("GD priors need 6 entries (edges V->L, A->L, L->V, A->V, L->A, V->A)")
        unknown = set(self.train) - set(TRAIN_KEYS)
        if unknown:
            raise ConfigError(f"unknown train keys {sorted(unknown)}; known: {sorted(TRAIN_KEYS)}")
        n = self.estimated_parameters()
        if n > MAX_PARAMETERS:
            raise ConfigError(
                f"this configuration would build a model of about {n:,} parameters (dst_feature_dim "
                f"{self.dst_feature_dim}, nlevels {self.nlevels}, feature_dims {list(self.feature_dims)}, "
                f"seq_lens {list(self.seq_lens)}); the limit is {MAX_PARAMETERS:,}"
            )

    def estimated_parameters(self) -> int:
        """Parameters the DMD backbone and GD units would have (an upper-bound estimate, text encoder
        excluded), computed from the hyper-parameters alone: nothing is built."""
        d, out = self.dst_feature_dim, self.num_classes
        tp = [max(1, n - k + 1) for n, k in zip(self.seq_lens, self.conv1d_kernel_size, strict=True)]

        def layer(e: int) -> int:  # attention (4 e^2) + 4x feed-forward (8 e^2) + norms/biases
            return 12 * e * e + 13 * e

        if self.head != "flatten":  # pooled: one vector of d (attention) or 2d (stats) instead of d * T'
            tp = [2] * 3
        dims = (self.feature_dims[0], self.feature_dims[1] // max(1, self.audio_layers), self.feature_dims[2])
        n = sum(fd * d * k for fd, k in zip(dims, self.conv1d_kernel_size, strict=True))
        n += (self.audio_layers if self.audio_layers > 1 else 0) + (
            3 * d + 3 if self.head == "attention" else 0
        )
        n += 4 * d * d + 6 * d * d  # specific/common encoders, decoders
        n += 9 * self.nlevels * layer(d) + 3 * max(self.nlevels, 3) * layer(2 * d) + 12 * layer(d)
        n += (2 if self.keep_dead_layers else 1) * sum(d * t * d + d for t in tp)  # proj_cosine, align_c
        n += sum(2 * d * t * d + d * t * out + 3 * d * t for t in tp)  # the low (homo) heads
        n += 3 * (3 * (2 * d) ** 2 + 2 * d * out) + 4 * (3 * d) ** 2 + 3 * d * out  # high heads, weights
        n += 2 * (9 * d) ** 2 + 9 * d * out + 18 * d  # fusion head
        n += 4 * (self.gd_size_homo + self.gd_size_hetero) * (9 * d + out + 1)  # GD kernels (generous)
        return int(n)

    @property
    def t_prime(self) -> tuple[int, int, int]:
        """Lengths after the temporal convolution, (text, audio, vision)."""
        return tuple(n - k + 1 for n, k in zip(self.seq_lens, self.conv1d_kernel_size, strict=True))  # type: ignore[return-value]

    def to_dict(self) -> dict:
        """JSON-serialisable dict (tuples become lists)."""
        return copy.deepcopy(asdict(self))

    @classmethod
    def from_dict(cls, d: dict) -> DMDConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ConfigError naming them."""
        check_config_dict(d)
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ConfigError(f"unknown DMDConfig keys: {sorted(map(str, unknown))[:20]}")
        missing = [
            f.name for f in fields(cls) if f.name in ("name", "feature_dims", "seq_lens") and f.name not in d
        ]
        if missing:
            raise ConfigError(f"config lacks {', '.join(missing)}")
        kw = copy.deepcopy(dict(d))
        for key, kind in FIELD_TYPES.items():  # integral floats (JSON 2e6) become ints, so ranges apply
            if kind == "int" and isinstance(kw.get(key), float):
                kw[key] = int(kw[key])
        if "train" in kw:
            kw["train"] = {**_train(0.005), **kw["train"]}
            for key, kind in TRAIN_TYPES.items():
                if kind == "int" and isinstance(kw["train"].get(key), float):
                    kw["train"][key] = int(kw["train"][key])
        return cls(**kw)


def _mosi(aligned: bool) -> DMDConfig:
    return DMDConfig(
        name="mosi_aligned" if aligned else "mosi_unaligned",
        feature_dims=(768, 5, 20),
        seq_lens=(50, 50, 50) if aligned else (50, 375, 500),
        dst_feature_dim=50,
        nheads=10,
        nlevels=4,
        conv1d_kernel_size=(5, 5, 5),
        text_dropout=0.5,
        embed_dropout=0.2,
        attn_dropout=0.3,
        attn_dropout_a=0.2,
        attn_dropout_v=0.0,
        relu_dropout=0.0,
        res_dropout=0.0,
        output_dropout=0.5,
        train=_train(0.005),
    )


def _mosei(aligned: bool) -> DMDConfig:
    return DMDConfig(
        name="mosei_aligned" if aligned else "mosei_unaligned",
        feature_dims=(768, 74, 35),
        seq_lens=(50, 50, 50) if aligned else (50, 500, 500),
        dst_feature_dim=30,
        nheads=6,
        nlevels=4,
        conv1d_kernel_size=(5, 1, 3),
        text_dropout=0.3,
        embed_dropout=0.0,
        attn_dropout=0.4,
        attn_dropout_a=0.0,
        attn_dropout_v=0.0,
        relu_dropout=0.0,
        res_dropout=0.0,
        output_dropout=0.5,
        train=_train(0.001),
    )


def _voice_emotion() -> DMDConfig:
    """Categorical emotion from the voice (RAVDESS-like ~4 s clips); NOT from the official config.

    The MOSI network (d=50, 10 heads, official dropouts) with 2 layers per encoder instead of 4, on the
    unaligned setting with short fixed lengths: text 8 and vision 8 (fed as zeros by an audio-only model),
    audio 50 steps (Whisper encoder states at 50 Hz average-pooled: ~0.07 s per step for a 3.7 s clip),
    conv kernels (1, 5, 1). Training: Adam lr 5e-4 with a step every batch (update_epochs 1; the official
    10-batch accumulation leaves ~6 steps per epoch on 959 clips), audio time masking (up to 20 %) and
    feature noise (std 0.3), selection by validation UAR, early stop after 8 epochs without a better UAR.
    Chosen on the RAVDESS validation actors (recipes/emotion_dmd_sweep.py, MODEL_CARD.md).
    """
    train = _train(0.005)
    train.update(
        learning_rate=5e-4,
        update_epochs=1,
        early_stop=8,
        key_eval="UAR",
        augment_time_mask=0.2,
        augment_noise=0.3,
    )
    return DMDConfig(
        name="voice_emotion",
        feature_dims=(384, 384, 66),
        seq_lens=(8, 50, 8),
        num_classes=8,
        dst_feature_dim=50,
        nheads=10,
        nlevels=2,
        conv1d_kernel_size=(1, 5, 1),
        train=train,
    )


PRESETS: dict[str, DMDConfig] = {
    "voice_emotion": _voice_emotion(),
    "mosi_aligned": _mosi(True),
    "mosi_unaligned": _mosi(False),
    "mosei_aligned": _mosei(True),
    "mosei_unaligned": _mosei(False),
}


def get_preset(name: str, **overrides: Any) -> DMDConfig:
    """A fresh copy of preset ``name`` with ``overrides`` applied (e.g. ``feature_dims=(384, 33, 60)``).

    A ``train`` override is merged into the preset's train dict.
    """
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; known: {sorted(PRESETS)}")
    d = PRESETS[name].to_dict()
    if "train" in overrides:
        d["train"] = {**d["train"], **overrides.pop("train")}
    d.update(overrides)
    return DMDConfig.from_dict(d)


# ---- model folders: config.json read and checked before any tensor exists ------------------------------
MAX_CONFIG_BYTES = 16 * 1024 * 1024
MAX_CONFIG_DEPTH = 64


def read_model_config_json(path: Any) -> dict:
    """The parsed ``config.json`` of a model folder, read safely.

    A regular file of at most :data:`MAX_CONFIG_BYTES` (never a FIFO or device), valid UTF-8 JSON, an
    object nested at most :data:`MAX_CONFIG_DEPTH` deep. Every problem is a
    :class:`~dmd_pipeline.errors.ModelFileError` naming the file (no torch import, nothing built).
    """
    import json
    from pathlib import Path

    p = Path(path)
    try:
        raw = read_bytes_bounded(p, MAX_CONFIG_BYTES)
    except TooLargeError as exc:
        raise ModelConfigError(
            f"{p}: model config is {format_bytes(exc.size)}, over the limit of {format_bytes(MAX_CONFIG_BYTES)}"
        ) from None
    except FileNotFoundError:
        raise ModelFileError(f"{p}: checkpoint config not found") from None
    except OSError as exc:
        raise ModelFileError(f"{p}: cannot read the model config: {os_error_reason(exc)}") from None
    try:
        meta = json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise ModelConfigError(
            f"{p}: invalid model config: JSON nested deeper than Python can parse"
        ) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelConfigError(f"{p}: invalid JSON: {exc}") from None
    if json_depth(meta, MAX_CONFIG_DEPTH) > MAX_CONFIG_DEPTH:
        raise ModelConfigError(
            f"{p}: invalid model config: JSON nested deeper than {MAX_CONFIG_DEPTH} levels"
        )
    if not isinstance(meta, dict):
        raise ModelConfigError(f"{p}: not a dmd-pipeline model config (a JSON {type(meta).__name__})")
    return meta


def validate_model_config(cfg: Any, where: Any) -> DMDConfig:
    """``DMDConfig.from_dict(cfg)`` with every problem (type, range, size) as a
    :class:`~dmd_pipeline.errors.ModelConfigError` naming ``where``; builds no tensor."""
    if not isinstance(cfg, dict):
        raise ModelConfigError(f"{where}: the 'config' block must be an object, got {type(cfg).__name__}")
    try:
        return DMDConfig.from_dict(cfg)
    except ConfigError as exc:
        raise ModelConfigError(f"{where}: invalid model config: {exc}") from None
    except (TypeError, ValueError, OverflowError) as exc:
        raise ModelConfigError(f"{where}: invalid model config: {type(exc).__name__}: {exc}") from None
