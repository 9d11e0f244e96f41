"""The one device resolver: a device name (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``) -> a torch device.

Training, evaluation, analysis and serving all ask this module, so ``auto`` means the same everywhere (the
first available of CUDA, MPS, CPU) and an unavailable device fails with the same error.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dmd_pipeline.errors import ConfigError

if TYPE_CHECKING:
    import torch


def resolve_device(name: str = "auto") -> torch.device:
    """``cpu``/``cuda``/``cuda:N``/``mps``, or ``auto`` = the first available of cuda, mps, cpu.

    ConfigError for an unknown name or a device this machine does not have.
    """
    import torch  # here, not at the top: the CLI imports this module before it needs torch

    name = (name or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name not in ("cpu", "cuda", "mps") and not name.startswith("cuda:"):
        raise ConfigError(f"unknown device {name!r}; use cpu, cuda, mps or auto")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but torch sees no CUDA GPU")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("device 'mps' requested but it is not available")
    return torch.device(name)
