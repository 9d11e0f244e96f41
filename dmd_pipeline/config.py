"""Typed DMD configuration and the named presets (official hyper-parameters).

Values marked "official" come from the DMD authors' ``config/config.json`` (``dmd`` entry; MOSI/MOSEI
``datasetParams`` + ``commonParams``), the fixed sequence lengths from their model (aligned 50/50/50;
unaligned MOSI text 50, audio 375, vision 500; MOSEI 50/500/500, the MMSA ``unaligned_50.pkl`` layout) and the
trainer (Adam, ``ReduceLROnPlateau(mode='min', factor=0.5)``). Every value the official config does not hold is
marked "not from the official config".

Orders: ``feature_dims``, ``seq_lens`` and ``conv1d_kernel_size`` are always (text, audio, vision).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from dmd_pipeline.errors import ConfigError

#: Text feature widths for ``get_preset(..., feature_dims=(TEXT_DIM_MINILM, d_audio, d_vision))``.
TEXT_DIM_MINILM = 384  # bundled all-MiniLM-L6-v2
TEXT_DIM_BERT_BASE = 768  # bert-base-uncased, the official text features

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
        """Raise ConfigError on inconsistent values (wrong lengths, too-short sequences, bad variant)."""
        for key in ("feature_dims", "seq_lens", "conv1d_kernel_size"):
            if len(getattr(self, key)) != 3:
                raise ConfigError(f"DMDConfig.{key} must have 3 entries (text, audio, vision)")
        for n, k, m in zip(self.seq_lens, self.conv1d_kernel_size, "tav", strict=True):
            if k < 1 or n - k + 1 < 1:
                raise ConfigError(
                    f"sequence length {n} of modality {m!r} is shorter than its conv kernel {k}"
                )
        if self.dst_feature_dim % self.nheads:
            raise ConfigError(f"dst_feature_dim {self.dst_feature_dim} not divisible by nheads {self.nheads}")
        if self.ort_variant not in ("fixed", "legacy"):
            raise ConfigError(f"ort_variant must be 'fixed' or 'legacy', got {self.ort_variant!r}")
        if self.num_classes < 1:
            raise ConfigError(f"num_classes must be >= 1, got {self.num_classes}")
        if len(self.gd_prior_homo) != 6 or len(self.gd_prior_hetero) != 6:
            raise ConfigError("GD priors need 6 entries (edges V->L, A->L, L->V, A->V, L->A, V->A)")
        unknown = set(self.train) - set(TRAIN_KEYS)
        if unknown:
            raise ConfigError(f"unknown train keys {sorted(unknown)}; known: {sorted(TRAIN_KEYS)}")

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
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ConfigError(f"unknown DMDConfig keys: {sorted(unknown)}")
        kw = copy.deepcopy(dict(d))
        if "train" in kw:
            kw["train"] = {**_train(0.005), **kw["train"]}
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


PRESETS: dict[str, DMDConfig] = {
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
