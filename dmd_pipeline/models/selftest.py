"""Golden-reference self-test: rebuild each reference configuration, load the official weights, compare.

For every ``*.npz`` of ``shared/fixtures/dmd_reference`` (README there): eval-mode forward, graph edges, every
loss term, the 'fixed' and 'legacy' totals, the recorded gradients and all 690 gradient norms, with the
tolerances of README section 10.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dmd_pipeline.config import get_preset
from dmd_pipeline.errors import InputError
from dmd_pipeline.utils import REPO_ROOT, shared_dir

ZERO_GRAD_ATOL = 1e-7  # analytically-zero gradients (GD kernel biases cancel in the softmax)


def default_references() -> list[Path]:
    """shared_dir()/fixtures/dmd_reference/*.npz, or an InputError saying where it looked."""
    base = shared_dir()
    folder = (base if base is not None else REPO_ROOT.parent / "shared") / "fixtures" / "dmd_reference"
    paths = sorted(folder.glob("*.npz")) if folder.is_dir() else []
    if not paths:
        raise InputError(folder, "no reference archives (*.npz) found; pass --reference PATH.npz", "selftest")
    return paths


def _entry(got: np.ndarray, ref: np.ndarray, atol: float, rtol: float) -> dict[str, Any]:
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if got.shape != ref.shape:
        return {
            "max_abs_err": None,
            "max_rel_err": None,
            "ok": False,
            "error": f"shape {got.shape} vs {ref.shape}",
        }
    err = np.abs(got - ref)
    rel = err / np.maximum(np.abs(ref), 1e-30)
    ok = bool(np.all(err <= atol + rtol * np.abs(ref)))
    return {"max_abs_err": float(err.max(initial=0.0)), "max_rel_err": float(rel.max(initial=0.0)), "ok": ok}


def _grad_entry(got: np.ndarray | None, ref: np.ndarray, zero: bool) -> dict[str, Any]:
    """Normwise check max|g - ref| <= 1e-4 max|ref|, or |g| <= 1e-7 for analytically-zero gradients."""
    g = np.zeros_like(ref, dtype=np.float64) if got is None else np.asarray(got, dtype=np.float64)
    r = np.asarray(ref, dtype=np.float64)
    if g.shape != r.shape:
        return {
            "max_abs_err": None,
            "max_rel_err": None,
            "ok": False,
            "error": f"shape {g.shape} vs {r.shape}",
        }
    err = float(np.abs(g - r).max(initial=0.0))
    scale = float(np.abs(r).max(initial=0.0))
    rel = err / scale if scale > 0 else (0.0 if err == 0 else float("inf"))
    ok = float(np.abs(g).max(initial=0.0)) <= ZERO_GRAD_ATOL if zero else err <= 1e-4 * scale
    return {"max_abs_err": err, "max_rel_err": rel, "ok": bool(ok)}


def _is_zero_grad(name: str) -> bool:
    return name.startswith("kernel_") and name.endswith(".bias")


def _named_params(system: Any) -> dict[str, torch.nn.Parameter]:
    out = {}
    for pre, mod in (
        ("model.", system.model),
        ("kernel_homo.", system.homo_gd),
        ("kernel_hetero.", system.hetero_gd),
    ):
        for n, p in mod.named_parameters():
            out[pre + n] = p
    return out


def check_reference(path: Path) -> dict[str, Any]:
    """Run every check of one reference archive; returns {quantity: entry, ..., 'ok': bool}."""
    from dmd_pipeline.models.dmd import DMDSystem
    from dmd_pipeline.models.official import load_official_state_dict

    path = Path(path)
    try:
        z = np.load(path, allow_pickle=False)
        meta = json.loads(str(z["meta.json"]))
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(path, f"not a DMD reference archive: {exc}", "selftest") from exc
    preset = f"{meta['dataset']}_{'aligned' if meta['aligned'] else 'unaligned'}"
    cfg = get_preset(preset, feature_dims=tuple(meta["feature_dims_t_a_v"]), ort_variant="fixed")
    res: dict[str, Any] = {}
    cfg_ok = (
        [cfg.dst_feature_dim, cfg.nheads] == meta["dst_feature_dim_nheads"]
        and cfg.nlevels == meta["nlevels"]
        and list(cfg.conv1d_kernel_size) == meta["conv1d_kernel_size_l_a_v"]  # both (text, audio, vision)
        and list(cfg.t_prime) == meta["T_prime_l_a_v"]
        and all(getattr(cfg, k) == v for k, v in meta["dropouts"].items())
    )
    res["config"] = {"preset": preset, "ok": bool(cfg_ok)}
    torch.manual_seed(0)
    system = DMDSystem(cfg)
    system.eval()
    load_official_state_dict(system, {k: z[k] for k in z.files if k.startswith(("model.", "kernel_"))})
    ours_model = sum(p.numel() for p in system.model.parameters())
    ours = [ours_model, sum(p.numel() for p in system.homo_gd.parameters())]
    ours.append(sum(p.numel() for p in system.hetero_gd.parameters()))
    official = [meta["param_count_model"], meta["param_count_kernel_homo"], meta["param_count_kernel_hetero"]]
    res["param_count"] = {"ours": ours, "official": official, "ok": ours == official}
    for kind in ("homo", "hetero"):
        res[f"prior.{kind}"] = _entry(
            getattr(system, f"{kind}_gd").prior.numpy(), z[f"prior.{kind}"], 1e-7, 1e-6
        )

    text, audio, vision = (torch.from_numpy(z[f"input.{k}"]) for k in ("text", "audio", "vision"))
    labels = torch.from_numpy(z["input.labels"])
    out = system(text, audio, vision)
    for key in meta["output_keys_in_official_order"]:
        res[f"output.{key}"] = _entry(out[key].detach().numpy(), z[f"output.{key}"], 1e-5, 1e-5)
    for kind in ("homo", "hetero"):
        res[f"edges.{kind}"] = _entry(out[f"edges_{kind}"].detach().numpy(), z[f"edges.{kind}"], 1e-6, 0.0)
        res[f"edges_origin.{kind}"] = _entry(
            out[f"edges_origin_{kind}"].detach().numpy(), z[f"edges_origin.{kind}"], 1e-7, 1e-5
        )
    losses = system.losses(out, labels)
    for key in (k for k in z.files if k.startswith("loss.")):
        res[key] = _entry(losses[key[5:]].detach().numpy(), z[key], 1e-7, 1e-5)

    params = _named_params(system)
    losses["total_fixed"].backward(retain_graph=True)
    for name in meta["grad_params"]:
        g = params[name].grad
        res[f"grad.{name}"] = _grad_entry(
            None if g is None else g.numpy(), z[f"grad.{name}"], _is_zero_grad(name)
        )
    no_grad = set(meta["params_with_no_grad"])
    worst: dict[str, Any] = {"max_abs_err": 0.0, "max_rel_err": 0.0, "ok": True, "count": 0, "failed": []}
    for name in (k[9:] for k in z.files if k.startswith("gradnorm.")):
        ref = float(z[f"gradnorm.{name}"])
        p = params.get(name)
        if p is None:  # only the dead layers may be absent (keep_dead_layers=False)
            got, ok_absent = 0.0, name in no_grad
        else:
            got = 0.0 if p.grad is None else float(p.grad.double().norm())
            ok_absent = True
        if name in no_grad:
            ok = ok_absent and (p is None or p.grad is None)
        elif _is_zero_grad(name):
            ok = got <= ZERO_GRAD_ATOL
        else:
            ok = ref > 0 and abs(got - ref) <= 1e-4 * ref
        err = abs(got - ref)
        worst["count"] += 1
        if not _is_zero_grad(name) and name not in no_grad:
            worst["max_abs_err"] = max(worst["max_abs_err"], err)
            worst["max_rel_err"] = max(worst["max_rel_err"], err / ref if ref > 0 else float("inf"))
        if not ok:
            worst["ok"] = False
            worst["failed"].append(name)
    missing_norms = sorted(set(params) - {k[9:] for k in z.files if k.startswith("gradnorm.")})
    if missing_norms:
        worst["ok"] = False
        worst["failed"] += [f"{n} (no reference)" for n in missing_norms]
    res["gradnorm"] = worst

    system.zero_grad(set_to_none=True)
    losses["total_legacy"].backward()
    for name in meta["grad_legacy_params"]:
        g = params[name].grad
        res[f"grad_legacy.{name}"] = _grad_entry(
            None if g is None else g.numpy(), z[f"grad_legacy.{name}"], False
        )
    res["ok"] = all(v["ok"] for v in res.values() if isinstance(v, dict))
    return res


def run_selftest(paths: list[Path] | None = None) -> dict[str, Any]:
    """{"<file name>": {quantity: {"max_abs_err", "max_rel_err", "ok"}, ..., "param_count": ...}, "ok": bool}."""
    paths = [Path(p) for p in paths] if paths else default_references()
    report: dict[str, Any] = {}
    for p in paths:
        if not p.is_file():
            raise InputError(p, "reference archive not found", "selftest")
        report[p.name] = check_reference(p)
    report["ok"] = all(report[p.name]["ok"] for p in paths)
    return report
