"""MulT-style transformer encoder used by DMD (self- and cross-modal attention), batch-first.

Semantics (fixture README, section 6.3), written from that description:
  * input embedding ``sqrt(E) * x + PE(x)``, the same separately for key and value;
  * sinusoidal PE, sin half first, frequencies ``exp(-k ln(10000) / (E/2 - 1))``, 1-based positions, and a time
    step whose FIRST channel is exactly 0 gets position 0, whose PE is the zero vector (positions are not
    renumbered: trailing zero padding keeps the indices of the real steps);
  * pre-LN layers; in cross attention the SAME ``layer_norms.0`` normalises query and key/value;
  * causal mask in every encoder: query i may not see key j >= i + 1 + |T_k - T_q| (the last query sees all);
  * a final LayerNorm.

Tensors are (B, T, E) here (the official code is time-first). Attention is two batched matmuls + softmax:
with head dims of 5-10 and ~50 steps, ``scaled_dot_product_attention``'s CPU kernel measured slower end-to-end
here (MOSI inference 0.073 s vs 0.046 s, 2 threads); ``ATTENTION_IMPL = "sdpa"`` switches to it. Parameter names
equal the official ones so checkpoints map 1:1.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: "matmul" (default, faster here) or "sdpa" (torch's scaled_dot_product_attention); both pass the selftest.
ATTENTION_IMPL = "matmul"

_PE_CACHE: dict[tuple[int, int, str, torch.dtype], Tensor] = {}
_MASK_CACHE: dict[tuple[int, int, str], Tensor] = {}
_ADD_CACHE: dict[tuple[int, int, str, torch.dtype], Tensor] = {}


def dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """Inverted dropout with the same distribution as ``F.dropout`` (keep 1-p, scale 1/(1-p)).

    The mask comes from ``rand >= p`` instead of ``bernoulli_``, which measured ~2.4x faster on this CPU
    (bernoulli_ was 19% of a MOSI training step). Only the random stream differs from ``F.dropout``.
    """
    if not training or p <= 0.0:
        return x
    if p >= 1.0:
        return x * 0.0
    return x * torch.rand_like(x).ge_(p).mul_(1.0 / (1.0 - p))


def sinusoidal_table(num_positions: int, dim: int, device: torch.device | str = "cpu") -> Tensor:
    """(num_positions, dim) float32 table; row p is the PE of position p, row 0 is all zeros (padding)."""
    half = dim // 2
    step = math.log(10000.0) / max(half - 1, 1)
    freq = torch.exp(torch.arange(half, dtype=torch.float32) * -step)
    ang = torch.arange(num_positions, dtype=torch.float32).unsqueeze(1) * freq.unsqueeze(0)
    table = torch.cat([torch.sin(ang), torch.cos(ang)], dim=1)
    if dim % 2:  # odd width: a zero last column
        table = torch.cat([table, torch.zeros(num_positions, 1)], dim=1)
    table[0] = 0.0
    return table.to(device)


def positional_embedding(x: Tensor) -> Tensor:
    """PE for x (B, T, E): position t+1, or 0 (zero vector) where x[b, t, 0] == 0 exactly."""
    b, t, e = x.shape
    key = (t + 1, e, str(x.device), x.dtype)
    table = _PE_CACHE.get(key)
    if table is None:
        table = sinusoidal_table(t + 1, e, x.device).to(x.dtype)
        _PE_CACHE[key] = table
    pos = torch.arange(1, t + 1, device=x.device).unsqueeze(0) * (x[..., 0] != 0)
    return F.embedding(pos, table)


def causal_mask(t_q: int, t_k: int, device: torch.device) -> Tensor:
    """Boolean (T_q, T_k) mask, True = may attend: key j allowed iff j <= i + |T_k - T_q|."""
    key = (t_q, t_k, str(device))
    m = _MASK_CACHE.get(key)
    if m is None:
        i = torch.arange(t_q, device=device).unsqueeze(1)
        j = torch.arange(t_k, device=device).unsqueeze(0)
        m = (j - i) <= abs(t_k - t_q)
        _MASK_CACHE[key] = m
    return m


def causal_additive_mask(t_q: int, t_k: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """Float (T_q, T_k) version of :func:`causal_mask`: 0 where allowed, -inf where masked (cached)."""
    key = (t_q, t_k, str(device), dtype)
    m = _ADD_CACHE.get(key)
    if m is None:
        allowed = causal_mask(t_q, t_k, device)
        m = torch.zeros(allowed.shape, device=device, dtype=dtype).masked_fill(~allowed, float("-inf"))
        _ADD_CACHE[key] = m
    return m


class MultiheadAttention(nn.Module):
    """Multi-head attention with packed in-projection (rows q, k, v), official parameter names."""

    def __init__(self, embed_dim: int, num_heads: int, attn_dropout: float = 0.0) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} not divisible by num_heads {num_heads}")
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.head_dim = embed_dim // num_heads
        self.attn_dropout = attn_dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dim, embed_dim))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * embed_dim))
        self.out_proj = nn.Linear(embed_dim, embed_dim)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.in_proj_bias)
        nn.init.zeros_(self.out_proj.bias)

    def _heads(self, x: Tensor) -> Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(
        self,
        query: Tensor,
        key: Tensor | None = None,
        value: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> Tensor:
        """query (B, Tq, E); key/value (B, Tk, E) or None (self attention); ``value is key`` shares the kv pass.

        ``mask``: additive float (Tq, Tk) mask (0 / -inf) or None.
        """
        e = self.embed_dim
        w, bias = self.in_proj_weight, self.in_proj_bias
        b, tq, _ = query.shape
        if key is None:
            qkv = (
                F.linear(query, w, bias).view(b, tq, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
            )
            q, k, v = qkv[0], qkv[1], qkv[2]
        else:
            q = self._heads(F.linear(query, w[:e], bias[:e]))
            if value is None or value is key:
                tk = key.shape[1]
                kv = F.linear(key, w[e:], bias[e:]).view(b, tk, 2, self.num_heads, self.head_dim)
                kv = kv.permute(2, 0, 3, 1, 4)
                k, v = kv[0], kv[1]
            else:
                k = self._heads(F.linear(key, w[e : 2 * e], bias[e : 2 * e]))
                v = self._heads(F.linear(value, w[2 * e :], bias[2 * e :]))
        if ATTENTION_IMPL == "sdpa":
            p = self.attn_dropout if self.training else 0.0
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=p, scale=self.head_dim**-0.5
            )
        else:
            scores = torch.matmul(q * self.head_dim**-0.5, k.transpose(-1, -2))  # (B, H, Tq, Tk)
            if mask is not None:
                scores = scores + mask
            attn = dropout(torch.softmax(scores, dim=-1), self.attn_dropout, self.training)
            out = torch.matmul(attn, v)
        out = out.transpose(1, 2).reshape(b, tq, e)
        return self.out_proj(out)


class TransformerEncoderLayer(nn.Module):
    """Pre-LN layer: x + MHA(LN0(x), LN0(k), LN0(v)); then x + fc2(relu(fc1(LN1(x))))."""

    def __init__(
        self, embed_dim: int, num_heads: int, attn_dropout: float, relu_dropout: float, res_dropout: float
    ) -> None:
        super().__init__()
        self.self_attn = MultiheadAttention(embed_dim, num_heads, attn_dropout)
        self.relu_dropout, self.res_dropout = relu_dropout, res_dropout
        self.fc1 = nn.Linear(embed_dim, 4 * embed_dim)
        self.fc2 = nn.Linear(4 * embed_dim, embed_dim)
        self.layer_norms = nn.ModuleList([nn.LayerNorm(embed_dim), nn.LayerNorm(embed_dim)])

    def forward(
        self,
        x: Tensor,
        x_k: Tensor | None = None,
        x_v: Tensor | None = None,
        mask: Tensor | None = None,
        last_only: bool = False,
    ) -> Tensor:
        """Apply the layer; ``last_only`` computes only the last query position (output (B, 1, E))."""
        ln0 = self.layer_norms[0]
        h = ln0(x)
        if x_k is None:
            k = h
            v = h
        else:
            k = ln0(x_k)
            v = k if (x_v is None or x_v is x_k) else ln0(x_v)
        if last_only:
            x = x[:, -1:]
            q = h[:, -1:]
            mask = None  # the last query sees every key
        else:
            q = h
        if x_k is None and not last_only:
            a = self.self_attn(q, None, None, mask)
        else:
            a = self.self_attn(q, k, v, mask)
        x = x + dropout(a, self.res_dropout, self.training)
        h = F.relu(self.fc1(self.layer_norms[1](x)))
        h = self.fc2(dropout(h, self.relu_dropout, self.training))
        return x + dropout(h, self.res_dropout, self.training)


class TransformerEncoder(nn.Module):
    """Stack of pre-LN layers with the MulT embedding rules, the causal-mask rule and a final LayerNorm."""

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        layers: int,
        attn_dropout: float = 0.0,
        relu_dropout: float = 0.0,
        res_dropout: float = 0.0,
        embed_dropout: float = 0.0,
        attn_mask: bool = True,
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.embed_scale = math.sqrt(embed_dim)
        self.embed_dropout = embed_dropout
        self.attn_mask = attn_mask
        self.layers = nn.ModuleList(
            TransformerEncoderLayer(embed_dim, num_heads, attn_dropout, relu_dropout, res_dropout)
            for _ in range(layers)
        )
        self.layer_norm = nn.LayerNorm(embed_dim)

    def _embed(self, x: Tensor) -> Tensor:
        return dropout(self.embed_scale * x + positional_embedding(x), self.embed_dropout, self.training)

    def forward(self, x_in: Tensor, x_in_k: Tensor | None = None, last_only: bool = False) -> Tensor:
        """x_in (B, Tq, E) queries; x_in_k (B, Tk, E) source of key AND value (cross attention) or None.

        Returns (B, Tq, E), or (B, E) for the last time step only when ``last_only`` (cheaper: the final layer
        then evaluates one query).
        """
        x = self._embed(x_in)
        x_k = x_v = None
        if x_in_k is not None:
            x_k = self._embed(x_in_k)
            # the official code embeds key and value separately: only dropout can make them differ
            x_v = self._embed(x_in_k) if (self.training and self.embed_dropout > 0) else x_k
        mask = None
        if self.attn_mask:
            t_k = x.shape[1] if x_k is None else x_k.shape[1]
            mask = causal_additive_mask(x.shape[1], t_k, x.device, x.dtype)
        n = len(self.layers)
        for i, layer in enumerate(self.layers):
            x = layer(x, x_k, x_v, mask, last_only=last_only and i == n - 1)
        x = self.layer_norm(x)
        return x[:, -1] if last_only else x
