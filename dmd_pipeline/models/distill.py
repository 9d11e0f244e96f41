"""Graph distillation unit (used twice: HomoGD and HeteroGD), from the fixture README section 6.4 / 7.

Modalities are stacked in the order [l, v, a]. Each modality's node embedding is
``z_m = [W_logit(logit_m), W_repr(repr_m)]``; every directed edge teacher i -> student j (i != j, student-major
order) is scored by ONE shared linear layer on ``[z_j, z_i]``; the six scores are scaled by ``alpha`` (1/8) and
softmax-normalised per sample. Edge index -> (teacher -> student): 0 V->L, 1 A->L, 2 L->V, 3 A->V, 4 L->A, 5 V->A.
The prior (softmax of fixed logits / temperature) is a non-trainable buffer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: (student j, teacher i) per edge index, modality indices 0 = l, 1 = v, 2 = a.
EDGE_PAIRS: tuple[tuple[int, int], ...] = ((0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1))
EDGE_NAMES: tuple[str, ...] = ("V->L", "A->L", "L->V", "A->V", "L->A", "V->A")
_STUDENT = torch.tensor([p[0] for p in EDGE_PAIRS])
_TEACHER = torch.tensor([p[1] for p in EDGE_PAIRS])


def cos_embedding(x: Tensor, y: Tensor, eps: float = 1e-12) -> Tensor:
    """Cosine as torch's cosine-embedding loss computes it, over the last axis: eps added to each squared norm."""
    num = (x * y).sum(-1)
    return num / torch.sqrt(((x * x).sum(-1) + eps) * ((y * y).sum(-1) + eps))


class GraphDistillation(nn.Module):
    """Learned distillation graph over the three modalities plus its distillation losses.

    ``repr_metric``: "l1" (HomoGD; the official homo repr term, not used in the total) or "cosine" (HeteroGD:
    pushes student and teacher representations apart with max(0, cos)).
    Logit distance: L1 summed over the logit vector (for regression a single abs difference). For
    classification (num_classes > 1) this is the same L1 metric on the raw class-logit vectors.
    """

    def __init__(
        self,
        num_classes: int,
        hidden_size: int,
        gd_size: int,
        prior_logits: tuple[float, ...],
        prior_temperature: float = 0.25,
        gd_reg: float = 10.0,
        w_losses: tuple[float, float] = (1.0, 10.0),
        alpha: float = 1.0 / 8.0,
        repr_metric: str = "l1",
    ) -> None:
        super().__init__()
        if repr_metric not in ("l1", "cosine"):
            raise ValueError(f"repr_metric must be 'l1' or 'cosine', got {repr_metric!r}")
        self.W_logit = nn.Linear(num_classes, gd_size)
        self.W_repr = nn.Linear(hidden_size, gd_size)
        self.W_edge = nn.Linear(4 * gd_size, 1)
        self.gd_size, self.alpha, self.gd_reg = gd_size, alpha, gd_reg
        self.w_losses = tuple(w_losses)
        self.repr_metric = repr_metric
        prior = torch.softmax(torch.tensor(prior_logits, dtype=torch.float32) / prior_temperature, dim=0)
        self.register_buffer("prior", prior, persistent=False)

    def forward(self, logits: Tensor, reprs: Tensor) -> tuple[Tensor, Tensor]:
        """logits (3, B, C), reprs (3, B, H) -> (edges (6, B) softmax-normalised per column, edges_origin (6, 1))."""
        z = torch.cat([self.W_logit(logits), self.W_repr(reprs)], dim=-1)  # (3, B, 2g)
        s_idx, t_idx = _STUDENT.to(z.device), _TEACHER.to(z.device)
        pair = torch.cat([z.index_select(0, s_idx), z.index_select(0, t_idx)], dim=-1)  # (6, B, 4g)
        scores = self.W_edge(pair).squeeze(-1)  # (6, B)
        edges_origin = scores.sum(1, keepdim=True)
        edges = torch.softmax(scores * self.alpha, dim=0)
        return edges, edges_origin

    def distillation_loss(self, logits: Tensor, reprs: Tensor, edges: Tensor) -> dict[str, Tensor]:
        """{'reg', 'logit', 'repr'}: regulariser to the prior, weighted logit distillation, repr term.

        The teacher side is detached; the edge weights w = edges + prior are not.
        """
        reg = (edges.mean(1) - self.prior).pow(2).sum() * self.gd_reg
        s_idx, t_idx = _STUDENT.to(logits.device), _TEACHER.to(logits.device)
        w = edges + self.prior.unsqueeze(1)  # (6, B)
        ls, lt = logits.index_select(0, s_idx), logits.detach().index_select(0, t_idx)
        d_logit = (ls - lt).abs().sum(-1)  # (6, B)
        logit = self.w_losses[0] * (w * d_logit).mean(1).sum()
        rs, rt = reprs.index_select(0, s_idx), reprs.detach().index_select(0, t_idx)
        if self.repr_metric == "l1":
            rep = self.w_losses[1] * (w * (rs - rt).abs().sum(-1)).mean(1).sum()
        else:
            cos = F.relu(cos_embedding(rs, rt)).mean(1)  # (6,) batch-averaged loss per edge
            rep = self.w_losses[1] * (w.mean(1) * cos).sum()
        return {"reg": reg, "logit": logit, "repr": rep}
