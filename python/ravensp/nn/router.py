"""The Raven router: slot logits -> top-k selection -> dense per-slot write weights.

Scores are sigmoid or softmax of the logits (plus Gumbel noise in training); an
optional bias shifts which slots are selected but not their weights; sigmoid
weights of the selected slots are renormalised to sum to 1.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

ROUTER_SCORES = ("sigmoid", "softmax")
ROUTER_TYPES = ("lin", "mlp")


def make_router_proj(router_type: str, hidden_size: int, num_outputs: int) -> nn.Module:
    """r_proj: a linear map, or Linear -> GELU -> Linear (keys r_proj.0, r_proj.2)."""
    if router_type == "lin":
        return nn.Linear(hidden_size, num_outputs, bias=False)
    if router_type == "mlp":
        return nn.Sequential(
            nn.Linear(hidden_size, hidden_size, bias=True),
            nn.GELU(),
            nn.Linear(hidden_size, num_outputs, bias=False),
        )
    raise ValueError(f"router_type={router_type!r} is not supported; supported: {', '.join(ROUTER_TYPES)}")


def route(
    logits: torch.Tensor,
    topk: int,
    router_score: str,
    bias: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Dense write weights [..., M] from logits [..., M]: zero off the top-k slots."""
    if router_score == "sigmoid":
        scores = torch.sigmoid(logits)
    elif router_score == "softmax":
        scores = torch.softmax(logits, dim=-1)
    else:
        raise ValueError(f"router_score={router_score!r} is not supported; supported: {', '.join(ROUTER_SCORES)}")
    # The bias is float32 in checkpoints; adding it promotes the selection scores,
    # which only matters for ties and never reaches the weights.
    select = scores if bias is None else scores + bias.to(torch.promote_types(bias.dtype, torch.float32))
    idx = select.topk(topk, dim=-1).indices
    weights = scores.gather(-1, idx)
    if router_score == "sigmoid":
        weights = weights / (weights.sum(dim=-1, keepdim=True) + 1e-9)
    return torch.zeros_like(logits).scatter(-1, idx, weights.to(logits.dtype))
