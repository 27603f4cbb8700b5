"""The one place the Raven layer reaches the GSA op (DESIGN.md §3).

Chunked for long inputs, token by token (fused recurrent) for short ones and decoding.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch

from ravensp.ops import chunk_gsa, fused_recurrent_gsa


def gsa(
    mode: str,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    s: torch.Tensor,
    g: torch.Tensor,
    scale: float,
    initial_state: Optional[Tuple[torch.Tensor, torch.Tensor]],
    output_final_state: bool,
    cu_seqlens: Optional[torch.Tensor],
):
    """Returns (o [B, T, H, V], (hk [N, H, K, M], hv [N, H, M, V]) or None)."""
    op = chunk_gsa if mode == "chunk" else fused_recurrent_gsa
    return op(q, k, v, s, g, scale=scale, initial_state=initial_state,
              output_final_state=output_final_state, cu_seqlens=cu_seqlens)
