"""DMD loss terms (fixture README section 7 and 9), written from their definitions.

Keys: task_all, task_c, task_{m}_homo, task_{m}_hetero, task, recon_{m}, recon, cyc_{m}, cyc,
ort_{m}_fixed, ort_fixed, ort_{m}_legacy, ort_legacy, ort (the configured variant), ort_{m}_persample_info,
ort_persample_info (informational, detached), mar, gd_homo_{reg,logit,repr}, gd_homo, gd_hetero_{reg,logit,repr},
gd_hetero, total (configured variant), total_fixed, total_legacy.

Classification (num_classes > 1): every task term is cross-entropy; the margin loss uses the class index as the
label (positives = same class, margin 0.15 * |class_r - class_n|, i.e. classes are taken as ordinal, which fits
negative/neutral/positive sentiment); GD logit distillation uses the L1 distance of the class-logit vectors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from dmd_pipeline.models.distill import cos_embedding

if TYPE_CHECKING:
    from dmd_pipeline.config import DMDConfig
    from dmd_pipeline.models.distill import GraphDistillation

MODS = ("l", "v", "a")


def ort_fixed(s: Tensor, c: Tensor) -> Tensor:
    """Mean over (time step, sample) rows of max(0, cos over channels); s, c (T', B, d)."""
    return F.relu(cos_embedding(s, c)).mean()


def ort_legacy(s: Tensor, c: Tensor) -> Tensor:
    """What torch 1.9 computed for the official 3-D call: cosine over the batch axis, mean over (T', d)."""
    return F.relu(cos_embedding(s.transpose(1, 2), c.transpose(1, 2))).mean()


def ort_persample(s: Tensor, c: Tensor) -> Tensor:
    """One row per sample (time-major flatten), mean of max(0, cos); informational only."""
    b = s.shape[1]
    return F.relu(cos_embedding(s.transpose(0, 1).reshape(b, -1), c.transpose(0, 1).reshape(b, -1))).mean()


def margin_loss(feats: Tensor, labels: Tensor, scale: float = 0.15) -> Tensor:
    """The official hinge/margin loss on rows ``feats`` (N, d) with labels (N,).

    For each anchor r: mean over (positive p, negative n) of max(0, scale*|y_r - y_n| - cos(r,p) + cos(r,n));
    positives have an exactly equal label (not r itself), negatives a different one. Mean over anchors with at
    least one of each; 0 when there is none.
    """
    norm = torch.sqrt((feats * feats).sum(1) + 1e-8).clamp_min(1e-8)
    xn = feats / norm.unsqueeze(1)
    cos = xn @ xn.t()
    y = labels.reshape(-1).to(feats.dtype)
    n = y.shape[0]
    same = y.unsqueeze(0) == y.unsqueeze(1)
    eye = torch.eye(n, dtype=torch.bool, device=feats.device)
    pos = same & ~eye
    neg = ~same
    margin = scale * (y.unsqueeze(1) - y.unsqueeze(0)).abs()  # (r, n)
    hinge = F.relu(margin.unsqueeze(1) - cos.unsqueeze(2) + cos.unsqueeze(1))  # (r, p, n)
    mask = (pos.unsqueeze(2) & neg.unsqueeze(1)).to(feats.dtype)
    count = mask.sum((1, 2))
    valid = count > 0
    if not bool(valid.any()):
        return feats.sum() * 0.0
    per_anchor = (hinge * mask).sum((1, 2))[valid] / count[valid]
    return per_anchor.mean()


def _task(pred: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    if num_classes == 1:
        return F.l1_loss(pred, labels.reshape(pred.shape).to(pred.dtype))
    return F.cross_entropy(pred, labels.reshape(-1).long())


def _mse(a: Tensor, b: Tensor) -> Tensor:
    return (a - b).pow(2).mean()


def compute_losses(
    outputs: dict[str, Tensor],
    labels: Tensor,
    config: DMDConfig,
    homo_gd: GraphDistillation,
    hetero_gd: GraphDistillation,
) -> dict[str, Tensor]:
    """All loss terms from a DMDSystem output dict (needs ``edges_homo``/``edges_hetero``)."""
    nc = config.num_classes
    lo: dict[str, Tensor] = {}
    heads = [("task_all", "output_logit")]
    heads += [(f"task_{m}_homo", f"logits_{m}_homo") for m in MODS]
    heads += [(f"task_{m}_hetero", f"logits_{m}_hetero") for m in MODS]
    heads += [("task_c", "logits_c")]
    for key, out_key in heads:
        lo[key] = _task(outputs[out_key], labels, nc)
    lo["task"] = sum((lo[k] for k, _ in heads), start=torch.zeros((), device=labels.device))
    for m in MODS:
        lo[f"recon_{m}"] = _mse(outputs[f"origin_{m}"], outputs[f"recon_{m}"])
    lo["recon"] = lo["recon_l"] + lo["recon_v"] + lo["recon_a"]
    for m in MODS:
        lo[f"cyc_{m}"] = _mse(outputs[f"s_{m}"].permute(1, 2, 0), outputs[f"s_{m}_r"])
    lo["cyc"] = lo["cyc_l"] + lo["cyc_v"] + lo["cyc_a"]
    for m in MODS:
        s, c = outputs[f"s_{m}"], outputs[f"c_{m}"]
        lo[f"ort_{m}_fixed"] = ort_fixed(s, c)
        lo[f"ort_{m}_legacy"] = ort_legacy(s, c)
        with torch.no_grad():
            lo[f"ort_{m}_persample_info"] = ort_persample(s, c)
    for v in ("fixed", "legacy", "persample_info"):
        lo[f"ort_{v}"] = lo[f"ort_l_{v}"] + lo[f"ort_v_{v}"] + lo[f"ort_a_{v}"]
    lo["ort"] = lo[f"ort_{config.ort_variant}"]
    b = outputs["c_l_sim"].shape[0]
    feats = torch.stack([outputs[f"c_{m}_sim"] for m in MODS], dim=1).reshape(3 * b, -1)
    lab = labels.reshape(b, -1)[:, :1].expand(b, 3).reshape(-1)
    lo["mar"] = margin_loss(feats, lab, config.mar_margin_scale)
    for kind, gd in (("homo", homo_gd), ("hetero", hetero_gd)):
        logits = torch.stack([outputs[f"logits_{m}_{kind}"] for m in MODS])
        reprs = torch.stack([outputs[f"repr_{m}_{kind}"] for m in MODS])
        if kind == "homo":
            with torch.no_grad():  # computed officially but never used in the total
                lo["gd_homo_repr"] = gd.distillation_loss(logits, reprs, outputs["edges_homo"])["repr"]
            d = gd.distillation_loss(logits, reprs.detach(), outputs["edges_homo"])
            lo["gd_homo_reg"], lo["gd_homo_logit"] = d["reg"], d["logit"]
            lo["gd_homo"] = config.w_gd * (lo["gd_homo_logit"] + lo["gd_homo_reg"])
        else:
            d = gd.distillation_loss(logits, reprs, outputs["edges_hetero"])
            lo["gd_hetero_reg"], lo["gd_hetero_logit"], lo["gd_hetero_repr"] = d["reg"], d["logit"], d["repr"]
            lo["gd_hetero"] = config.w_gd * (
                lo["gd_hetero_logit"] + lo["gd_hetero_repr"] + lo["gd_hetero_reg"]
            )
    base = lo["task"] + lo["gd_homo"] + lo["gd_hetero"]
    for v in ("fixed", "legacy"):
        inner = lo["cyc"] + lo["recon"] + (lo["mar"] + lo[f"ort_{v}"]) * config.w_mar_ort
        lo[f"total_{v}"] = base + inner * config.w_rec_cyc
    lo["total"] = lo[f"total_{config.ort_variant}"]
    return lo
