"""Seed ensembles of DMD: K independently trained DMDSystems of one config scored as one model.

NOT part of the official method: an option for small data sets, where single DMD runs vary a lot from seed
to seed (on the 120 RAVDESS validation clips the best-epoch UAR of one configuration spans several points
across seeds). Members are trained one after the other by ``dmd train --ensemble K`` (seeds ``seed ..
seed+K-1``, each with its own best epoch on the validation split) and stored in one safetensors file under
``members.<k>.``; ``config.json`` records ``ensemble_size``.

Combination: classification members' softmax probabilities are averaged and ``output_logit`` is their log
(so ``softmax(output_logit)`` is the mean probability); regression outputs are averaged. The graph-edge
outputs (``edges_homo``/``edges_hetero``) are the members' mean. Only what inference reads is returned.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dmd_pipeline.config import DMDConfig
from dmd_pipeline.models.dmd import DMDSystem


class DMDEnsemble(nn.Module):
    """K DMDSystems of one config; ``forward``/``predict`` combine them (see the module docstring)."""

    def __init__(self, config: DMDConfig, size: int, members: list[DMDSystem] | None = None) -> None:
        super().__init__()
        if size < 1:
            raise ValueError(f"an ensemble needs at least one member, got {size}")
        self.config = config
        self.members = nn.ModuleList(members if members is not None else [DMDSystem(config) for _ in range(size)])
        if len(self.members) != size:
            raise ValueError(f"{len(self.members)} members given for an ensemble of {size}")

    @property
    def size(self) -> int:
        """Number of members."""
        return len(self.members)

    def _combine(self, logits: list[Tensor]) -> Tensor:
        if int(self.config.num_classes) > 1:
            probs = torch.stack([torch.softmax(x.float(), dim=-1) for x in logits]).mean(0)
            return torch.log(probs.clamp_min(1e-12))
        return torch.stack(logits).mean(0)

    def forward(self, text: Tensor, audio: Tensor, vision: Tensor) -> dict[str, Tensor]:
        """``output_logit`` (combined), ``edges_homo``/``edges_hetero`` (6, B, members' mean)."""
        outs = [m(text, audio, vision) for m in self.members]
        return {
            "output_logit": self._combine([o["output_logit"] for o in outs]),
            "edges_homo": torch.stack([o["edges_homo"] for o in outs]).mean(0),
            "edges_hetero": torch.stack([o["edges_hetero"] for o in outs]).mean(0),
        }

    def predict(self, text: Tensor, audio: Tensor, vision: Tensor) -> Tensor:
        """Combined ``output_logit`` (B, num_classes) without gradients."""
        with torch.no_grad():
            return self._combine([m.predict(text, audio, vision) for m in self.members])
