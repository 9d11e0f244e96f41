"""The DMD network (Decoupled Multimodal Distilling, Li et al., CVPR 2023) and DMDSystem (model + 2 GD units).

Written from the golden-fixture README (sections 5-7). Parameter names equal the official ones. Internally every
sequence is (B, T, C); the returned dict uses the official layouts: origin/recon/s_r (B, d, T'), s/c (T', B, d).

Known deviations / quirks, all kept faithful by default:
  * ``repr_{m}_homo`` is the POST-ReLU hidden of the homo head (the official ReLU is in place); in training the
    output dropout acts after it (the returned repr is not dropped out).
  * ``proj_cosine_*`` are dead (only ``proj_s_*`` uses them; no loss does): kept unless
    ``config.keep_dead_layers`` is False.
  * Deviation: ``proj_m`` always exists. The official code skips it when a modality's input dim equals d, which
    leaves T' = T and breaks its own flattened heads (sized for T - k + 1); no official preset hits this case.
  * Key and value of cross attention are embedded (and embed-dropped-out) separately, as officially.

Options that are not official (``DMDConfig.head``, ``DMDConfig.audio_layers``; see :class:`DMDConfig`): the homo
heads, ``align_c_*`` and ``proj_cosine_*`` can pool the T' positions (attention or statistics pooling over the
real, unpadded positions) instead of flattening them; a layer-stacked audio input can be fed as a learned
softmax-weighted sum of its layers (``audio_layer_weights``). With the defaults the network is the official one.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dmd_pipeline.config import DMDConfig
from dmd_pipeline.errors import ConfigError, InputError
from dmd_pipeline.models.distill import GraphDistillation
from dmd_pipeline.models.losses import compute_losses
from dmd_pipeline.models.transformer import TransformerEncoder, dropout

MODS = ("l", "v", "a")  # official output / GD order
_CFG_IDX = {"l": 0, "a": 1, "v": 2}  # index into config (text, audio, vision) tuples


class BertTextEncoder(nn.Module):
    """Wraps a BERT-family model: (B, 3, L) [ids, mask, segment ids] -> last hidden state (B, L, H).

    ``finetune=False`` runs the encoder without gradients (official ``use_finetune``).
    """

    def __init__(self, model: nn.Module, finetune: bool = True) -> None:
        super().__init__()
        self.model = model
        self.finetune = finetune

    @classmethod
    def from_path(cls, path: str | Path, finetune: bool = True) -> BertTextEncoder:
        """Load a local BERT-family folder with transformers (never downloads)."""
        from transformers import AutoModel

        p = Path(path)
        if not p.is_dir():
            raise InputError(p, "text encoder folder not found", stage="model")
        return cls(AutoModel.from_pretrained(str(p), local_files_only=True), finetune)

    def forward(self, text: Tensor) -> Tensor:
        ids, mask, seg = text[:, 0].long(), text[:, 1].float(), text[:, 2].long()
        if self.finetune:
            return self.model(input_ids=ids, attention_mask=mask, token_type_ids=seg)[0]
        with torch.no_grad():
            return self.model(input_ids=ids, attention_mask=mask, token_type_ids=seg)[0]


def _conv1x1(d_in: int, d_out: int) -> nn.Conv1d:
    return nn.Conv1d(d_in, d_out, kernel_size=1, padding=0, bias=False)


def _pointwise(x: Tensor, conv: nn.Conv1d) -> Tensor:
    """A kernel-1 Conv1d applied on the (B, T, C) layout."""
    return F.linear(x, conv.weight.squeeze(-1))


class DMD(nn.Module):
    """The DMD backbone: decoupling encoders, decoders, homo/hetero branches and the fusion head."""

    def __init__(self, config: DMDConfig, text_encoder: nn.Module | None = None) -> None:
        super().__init__()
        self.config = cfg = config
        d, out_dim = cfg.dst_feature_dim, cfg.num_classes
        self.use_bert = cfg.use_bert
        if cfg.use_bert:
            if text_encoder is None:
                if not cfg.text_encoder:
                    raise ConfigError("use_bert=True needs config.text_encoder (a local BERT-family folder)")
                text_encoder = BertTextEncoder.from_path(cfg.text_encoder, cfg.finetune_text_encoder)
            elif not isinstance(text_encoder, BertTextEncoder):
                text_encoder = BertTextEncoder(text_encoder, cfg.finetune_text_encoder)
            hidden = getattr(getattr(text_encoder.model, "config", None), "hidden_size", None)
            if hidden is not None and hidden != cfg.feature_dims[0]:
                raise ConfigError(
                    f"text encoder hidden size {hidden} != feature_dims[0] {cfg.feature_dims[0]}"
                )
            self.text_model = text_encoder
        t_prime = dict(zip(("l", "a", "v"), cfg.t_prime, strict=True))
        self.t_prime = t_prime
        self.head = cfg.head
        self.audio_layers = cfg.audio_layers
        if cfg.audio_layers > 1:  # zero logits: the plain mean of the layers at the start
            self.audio_layer_weights = nn.Parameter(torch.zeros(cfg.audio_layers))
        # what the homo heads, align_c and proj_cosine see per modality: d * T' (flatten) or one pooled vector
        pooled = {"flatten": None, "attention": d, "stats": 2 * d}[cfg.head]
        n_in = {m: d * t_prime[m] if pooled is None else pooled for m in ("l", "a", "v")}
        for m in ("l", "a", "v"):
            d_in, k = cfg.feature_dims[_CFG_IDX[m]], cfg.conv1d_kernel_size[_CFG_IDX[m]]
            if m == "a":
                d_in //= cfg.audio_layers
            setattr(self, f"proj_{m}", nn.Conv1d(d_in, d, kernel_size=k, padding=0, bias=False))
        for m in ("l", "v", "a"):
            setattr(self, f"encoder_s_{m}", _conv1x1(d, d))
        self.encoder_c = _conv1x1(d, d)
        for m in ("l", "v", "a"):
            setattr(self, f"decoder_{m}", _conv1x1(2 * d, d))
        if cfg.keep_dead_layers:
            for m in ("l", "v", "a"):
                setattr(self, f"proj_cosine_{m}", nn.Linear(n_in[m], d))
        for m in ("l", "v", "a"):
            setattr(self, f"align_c_{m}", nn.Linear(n_in[m], d))
        for m in ("l", "v", "a"):
            setattr(self, f"self_attentions_c_{m}", self._encoder(d, m))
        self.proj1_c = nn.Linear(3 * d, 3 * d)
        self.proj2_c = nn.Linear(3 * d, 3 * d)
        self.out_layer_c = nn.Linear(3 * d, out_dim)
        for t, s in (("l", "a"), ("l", "v"), ("a", "l"), ("a", "v"), ("v", "l"), ("v", "a")):
            setattr(self, f"trans_{t}_with_{s}", self._encoder(d, s))
        for m in ("l", "a", "v"):
            setattr(self, f"trans_{m}_mem", self._encoder(2 * d, "mem", layers=max(cfg.nlevels, 3)))
        for m in ("l", "v", "a"):
            n = n_in[m]
            setattr(self, f"proj1_{m}_low", nn.Linear(n, d))
            setattr(self, f"proj2_{m}_low", nn.Linear(d, n))
            setattr(self, f"out_layer_{m}_low", nn.Linear(n, out_dim))
        for m in ("l", "v", "a"):
            setattr(self, f"proj1_{m}_high", nn.Linear(2 * d, 2 * d))
            setattr(self, f"proj2_{m}_high", nn.Linear(2 * d, 2 * d))
            setattr(self, f"out_layer_{m}_high", nn.Linear(2 * d, out_dim))
        for m in ("l", "v", "a"):
            setattr(self, f"weight_{m}", nn.Linear(2 * d, 2 * d))
        self.weight_c = nn.Linear(3 * d, 3 * d)
        combined = 2 * 3 * d + 3 * d
        self.proj1 = nn.Linear(combined, combined)
        self.proj2 = nn.Linear(combined, combined)
        self.out_layer = nn.Linear(combined, out_dim)
        if cfg.head == "attention":
            for m in ("l", "v", "a"):
                setattr(self, f"pool_{m}_low", nn.Linear(d, 1))

    def _encoder(self, d: int, source: str, layers: int = -1) -> TransformerEncoder:
        """Official rule: attention dropout chosen by the key/value modality (mem encoders: attn_dropout)."""
        cfg = self.config
        p = {"l": cfg.attn_dropout, "a": cfg.attn_dropout_a, "v": cfg.attn_dropout_v, "mem": cfg.attn_dropout}
        return TransformerEncoder(
            d,
            cfg.nheads,
            max(cfg.nlevels, layers),
            attn_dropout=p[source],
            relu_dropout=cfg.relu_dropout,
            res_dropout=cfg.res_dropout,
            embed_dropout=cfg.embed_dropout,
            attn_mask=cfg.attn_mask,
        )

    def _check(self, text: Tensor, audio: Tensor, vision: Tensor) -> None:
        cfg = self.config
        exp_t = (3, cfg.seq_lens[0]) if cfg.use_bert else (cfg.seq_lens[0], cfg.feature_dims[0])
        for name, x, exp in (
            ("text", text, exp_t),
            ("audio", audio, (cfg.seq_lens[1], cfg.feature_dims[1])),
            ("vision", vision, (cfg.seq_lens[2], cfg.feature_dims[2])),
        ):
            if x.dim() != 3 or tuple(x.shape[1:]) != exp:
                raise InputError(
                    None,
                    f"{name} input has shape {tuple(x.shape)}, expected (B, {exp[0]}, {exp[1]}) for preset "
                    f"{cfg.name!r} (pad/truncate to the preset's fixed lengths)",
                    stage="model",
                )

    def _head(self, x: Tensor, p1: nn.Linear, p2: nn.Linear) -> tuple[Tensor, Tensor]:
        """Residual head: returns (post-ReLU hidden, p2(dropout(hidden)) + x)."""
        h = F.relu(p1(x))
        return h, p2(dropout(h, self.config.output_dropout, self.training)) + x

    def layer_weights(self) -> Tensor | None:
        """The softmax weights of the audio layers (``audio_layers`` > 1), None otherwise."""
        if self.audio_layers <= 1:
            return None
        return torch.softmax(self.audio_layer_weights.detach(), dim=0)

    def _mix_layers(self, audio: Tensor) -> Tensor:
        """(B, T, L * D) layer-major -> (B, T, D): softmax-weighted sum of the (LayerNorm-ed) layers."""
        b, t, f = audio.shape
        a = audio.reshape(b, t, self.audio_layers, f // self.audio_layers)
        if self.config.audio_layer_norm:  # an all-zero (padded) frame stays zero
            a = F.layer_norm(a, (a.shape[-1],))
        w = torch.softmax(self.audio_layer_weights, dim=0)
        return torch.einsum("btld,l->btd", a, w)

    def _masks(self, text: Tensor, audio: Tensor, vision: Tensor) -> dict[str, Tensor]:
        """(B, T') True at the real positions after each modality's convolution (see ``DMDConfig.head``)."""
        cfg = self.config
        real = {
            "l": text[:, 1] > 0 if self.use_bert else (text != 0).any(-1),
            "a": (audio != 0).any(-1),
            "v": (vision != 0).any(-1),
        }
        out = {}
        for m, nz in real.items():
            n_t = nz.shape[1]
            idx = torch.arange(1, n_t + 1, device=nz.device)
            length = torch.where(nz, idx, torch.zeros_like(idx)).amax(dim=1)  # last real frame + 1 (0: none)
            k = cfg.conv1d_kernel_size[_CFG_IDX[m]]
            valid = (length - k + 1).clamp(min=1)
            out[m] = torch.arange(self.t_prime[m], device=nz.device)[None] < valid[:, None]
        return out

    def _summary(self, m: str, seq: Tensor, masks: dict[str, Tensor] | None) -> Tensor:
        """One vector per sample of a (B, T', d) sequence: the official time-major flatten, or the masked
        attention / statistics pooling of ``config.head``."""
        if masks is None:
            return seq.reshape(seq.shape[0], -1)
        mask = masks[m].unsqueeze(-1).to(seq.dtype)  # (B, T', 1)
        if self.head == "attention":
            score = getattr(self, f"pool_{m}_low")(seq).masked_fill(mask == 0, float("-inf"))
            return (torch.softmax(score, dim=1) * seq).sum(dim=1)
        n = mask.sum(dim=1).clamp(min=1.0)
        mean = (seq * mask).sum(dim=1) / n
        var = (((seq - mean.unsqueeze(1)) ** 2) * mask).sum(dim=1) / n
        return torch.cat([mean, torch.sqrt(var + 1e-5)], dim=-1)

    def forward(self, text: Tensor, audio: Tensor, vision: Tensor, full: bool = True) -> dict[str, Tensor]:
        """Official output dict. ``full=False`` computes only what ``output_logit`` needs (inference)."""
        self._check(text, audio, vision)
        cfg = self.config
        masks = self._masks(text, audio, vision) if self.head != "flatten" else None
        if self.use_bert:
            text = self.text_model(text)
        if self.audio_layers > 1:
            audio = self._mix_layers(audio)
        x = {
            "l": dropout(text.transpose(1, 2), cfg.text_dropout, self.training),
            "a": audio.transpose(1, 2),
            "v": vision.transpose(1, 2),
        }
        origin, s, c = {}, {}, {}
        for m in MODS:
            o = getattr(self, f"proj_{m}")(x[m])  # (B, d, T')
            origin[m] = o.transpose(1, 2)  # (B, T', d)
            s[m] = _pointwise(origin[m], getattr(self, f"encoder_s_{m}"))
            c[m] = _pointwise(origin[m], self.encoder_c)
        out: dict[str, Tensor] = {}
        b = text.shape[0]
        if full:
            for m in MODS:
                flat = self._summary(m, c[m], masks)  # official: time-major flatten
                rep, h = self._head(flat, getattr(self, f"proj1_{m}_low"), getattr(self, f"proj2_{m}_low"))
                out[f"logits_{m}_homo"] = getattr(self, f"out_layer_{m}_low")(h)
                out[f"repr_{m}_homo"] = rep
            for m in MODS:
                out[f"origin_{m}"] = origin[m].transpose(1, 2)
            for m in MODS:
                out[f"s_{m}"] = s[m].transpose(0, 1)
            if cfg.keep_dead_layers:
                for m in MODS:
                    out[f"proj_s_{m}"] = getattr(self, f"proj_cosine_{m}")(self._summary(m, s[m], masks))
            for m in MODS:
                out[f"c_{m}"] = c[m].transpose(0, 1)
            recon = {}
            for m in MODS:
                recon[m] = _pointwise(torch.cat([s[m], c[m]], dim=-1), getattr(self, f"decoder_{m}"))
                out[f"s_{m}_r"] = _pointwise(recon[m], getattr(self, f"encoder_s_{m}")).transpose(1, 2)
            for m in MODS:
                out[f"recon_{m}"] = recon[m].transpose(1, 2)
            for m in MODS:  # official: channel-major flatten of (B, d, T')
                cm = c[m].transpose(1, 2).reshape(b, -1) if masks is None else self._summary(m, c[m], masks)
                out[f"c_{m}_sim"] = getattr(self, f"align_c_{m}")(cm)
        c_att = [getattr(self, f"self_attentions_c_{m}")(c[m], last_only=True) for m in MODS]
        c_fusion = torch.cat(c_att, dim=1)
        last_h = {}
        for t, (s1, s2) in (("l", ("a", "v")), ("a", ("l", "v")), ("v", ("l", "a"))):
            h1 = getattr(self, f"trans_{t}_with_{s1}")(s[t], s[s1])
            h2 = getattr(self, f"trans_{t}_with_{s2}")(s[t], s[s2])
            last_h[t] = getattr(self, f"trans_{t}_mem")(torch.cat([h1, h2], dim=-1), last_only=True)
        if full:
            for m in MODS:
                _, r = self._head(
                    last_h[m], getattr(self, f"proj1_{m}_high"), getattr(self, f"proj2_{m}_high")
                )
                out[f"logits_{m}_hetero"] = getattr(self, f"out_layer_{m}_high")(r)
                out[f"repr_{m}_hetero"] = r
            for m in MODS:
                out[f"last_h_{m}"] = last_h[m]
            _, cp = self._head(c_fusion, self.proj1_c, self.proj2_c)
            out["logits_c"] = self.out_layer_c(cp)
        fused = torch.cat(
            [torch.sigmoid(getattr(self, f"weight_{m}")(last_h[m])) for m in MODS]
            + [torch.sigmoid(self.weight_c(c_fusion))],
            dim=1,
        )
        _, fp = self._head(fused, self.proj1, self.proj2)
        out["output_logit"] = self.out_layer(fp)
        return out


class DMDSystem(nn.Module):
    """What the trainer uses: the DMD model + HomoGD + HeteroGD, the loss composition and predict()."""

    def __init__(self, config: DMDConfig, text_encoder: nn.Module | None = None) -> None:
        super().__init__()
        self.config = cfg = config
        self.model = DMD(config, text_encoder)
        d = cfg.dst_feature_dim
        common = dict(
            prior_temperature=cfg.gd_prior_temperature,
            gd_reg=cfg.gd_reg,
            w_losses=cfg.gd_w_losses,
            alpha=cfg.gd_alpha,
        )
        self.homo_gd = GraphDistillation(
            cfg.num_classes, d, cfg.gd_size_homo, cfg.gd_prior_homo, repr_metric="l1", **common
        )
        self.hetero_gd = GraphDistillation(
            cfg.num_classes, 2 * d, cfg.gd_size_hetero, cfg.gd_prior_hetero, repr_metric="cosine", **common
        )

    def forward(self, text: Tensor, audio: Tensor, vision: Tensor) -> dict[str, Tensor]:
        """Official output dict plus ``edges_homo``/``edges_hetero`` (6, B) and ``edges_origin_*`` (6, 1)."""
        out = self.model(text, audio, vision)
        for kind, gd in (("homo", self.homo_gd), ("hetero", self.hetero_gd)):
            logits = torch.stack([out[f"logits_{m}_{kind}"] for m in MODS])
            reprs = torch.stack([out[f"repr_{m}_{kind}"] for m in MODS])
            edges, origin = gd(logits, reprs)
            out[f"edges_{kind}"] = edges
            out[f"edges_origin_{kind}"] = origin
        return out

    def losses(self, outputs: dict[str, Tensor], labels: Tensor) -> dict[str, Tensor]:
        """Every loss term (fixture README section 7) and ``total`` (with config.ort_variant)."""
        return compute_losses(outputs, labels, self.config, self.homo_gd, self.hetero_gd)

    def predict(self, text: Tensor, audio: Tensor, vision: Tensor) -> Tensor:
        """``output_logit`` (B, num_classes) without gradients; the train/eval mode is left to the caller."""
        with torch.no_grad():
            return self.model(text, audio, vision, full=False)["output_logit"]
