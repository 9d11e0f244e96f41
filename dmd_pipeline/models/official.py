"""Load weights named as in the official DMD code (mdswyz/DMD) into our modules.

Accepted layouts:
  * prefixed: ``model.<official DMD key>``, ``kernel_homo.<key>``, ``kernel_hetero.<key>`` (the golden-fixture
    layout; the official trainer's three modules);
  * un-prefixed: an official DMD ``state_dict`` as the authors release it (model alone; GD units untouched).

Our parameter names equal the official ones, so the mapping is: strip the prefix, route to the module, drop the
official buffers that carry no numbers (``*.version``, ``*.embed_positions._float_tensor``) and, when
``keep_dead_layers`` is False, the dead ``proj_cosine_*`` weights. Unknown or missing keys and shape mismatches
raise :class:`ModelFileError` naming them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from dmd_pipeline.errors import ModelFileError

PREFIXES = {"model.": "model", "kernel_homo.": "homo_gd", "kernel_hetero.": "hetero_gd"}
_IGNORED_SUFFIXES = (
    ".version",
    ".embed_positions._float_tensor",
    ".embeddings.position_ids",  # persistent BERT buffer in older transformers checkpoints
)


def _as_tensor(v: Tensor | np.ndarray) -> Tensor:
    if isinstance(v, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(v))
    if isinstance(v, Tensor):
        return v
    raise ModelFileError(f"state value of type {type(v).__name__} is neither a tensor nor an ndarray")


def _targets(system_or_parts: Any) -> dict[str, nn.Module]:
    """Map 'model'/'homo_gd'/'hetero_gd' to modules from a DMDSystem, a DMD, a tuple or a dict of parts."""
    if isinstance(system_or_parts, Mapping):
        return {k: v for k, v in system_or_parts.items() if v is not None}
    if isinstance(system_or_parts, tuple | list):
        return {k: v for k, v in zip(("model", "homo_gd", "hetero_gd"), system_or_parts, strict=False) if v}
    if hasattr(system_or_parts, "homo_gd") and hasattr(system_or_parts, "model"):
        return {
            "model": system_or_parts.model,
            "homo_gd": system_or_parts.homo_gd,
            "hetero_gd": system_or_parts.hetero_gd,
        }
    if isinstance(system_or_parts, nn.Module):
        return {"model": system_or_parts}
    raise TypeError(f"cannot load official weights into {type(system_or_parts).__name__}")


def load_official_state_dict(
    system_or_parts: Any, state: Mapping[str, Tensor | np.ndarray]
) -> dict[str, Any]:
    """Copy official weights into ``system_or_parts`` (DMDSystem, DMD, (model, homo, hetero) or dict of parts).

    Returns ``{"loaded": n, "ignored": [keys]}``. Strict: every parameter of each targeted module must be
    present and no unknown key may remain, otherwise ModelFileError names them (nothing is half-loaded).
    """
    targets = _targets(system_or_parts)
    prefixed = any(k.startswith(tuple(PREFIXES)) for k in state)
    routed: dict[str, dict[str, Tensor]] = {}
    ignored: list[str] = []
    unknown: list[str] = []
    for key, value in state.items():
        if prefixed:
            pre = next((p for p in PREFIXES if key.startswith(p)), None)
            if pre is None:
                unknown.append(key)
                continue
            part, name = PREFIXES[pre], key[len(pre) :]
        else:
            part, name = "model", key
        if name.endswith(_IGNORED_SUFFIXES):
            ignored.append(key)
            continue
        if part not in targets:
            unknown.append(key)
            continue
        routed.setdefault(part, {})[name] = _as_tensor(value)
    problems: list[str] = []
    if unknown:
        problems.append(f"unknown keys: {sorted(unknown)[:20]}{' ...' if len(unknown) > 20 else ''}")
    for part, module in targets.items():
        own = module.state_dict()
        given = routed.get(part, {})
        if part == "model" and not getattr(getattr(module, "config", None), "keep_dead_layers", True):
            for name in [n for n in given if n.startswith("proj_cosine_")]:
                ignored.append(name)
                del given[name]
        has_kernels = prefixed and any(k.startswith("kernel_") for k in state)
        if part not in routed and part != "model" and not has_kernels:
            continue  # a model-only state leaves the GD units untouched
        missing = sorted(set(own) - set(given))
        extra = sorted(set(given) - set(own))
        if missing:
            problems.append(f"missing {part} keys: {missing[:20]}{' ...' if len(missing) > 20 else ''}")
        if extra:
            problems.append(f"unknown {part} keys: {extra[:20]}{' ...' if len(extra) > 20 else ''}")
        for name in set(own) & set(given):
            if tuple(own[name].shape) != tuple(given[name].shape):
                problems.append(
                    f"shape mismatch {part}.{name}: ours {tuple(own[name].shape)}, given {tuple(given[name].shape)}"
                )
    if problems:
        raise ModelFileError("official state_dict does not match the model: " + "; ".join(problems))
    loaded = 0
    with torch.no_grad():
        for part, given in routed.items():
            module = targets[part]
            own = module.state_dict()
            for name, value in given.items():
                own[name].copy_(value.to(dtype=own[name].dtype))
                loaded += 1
    return {"loaded": loaded, "ignored": ignored}
