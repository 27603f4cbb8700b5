"""Padding <-> packed conversion for a 0/1 attention_mask [B, T].

Padded batches are run as one packed sequence with cu_seqlens (no compute on pad
tokens, no state leaking across rows), then scattered back with zeros at pads.
"""
from __future__ import annotations

from typing import Tuple

import torch


def unpad(x: torch.Tensor, mask: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x [B, T, ...] -> (packed [1, n, ...], indices [n] into B*T, cu_seqlens [B+1] int64)."""
    flat = mask.reshape(-1).to(torch.bool)
    indices = flat.nonzero(as_tuple=False).flatten()
    lens = mask.to(torch.bool).sum(dim=-1)
    cu = torch.zeros(mask.shape[0] + 1, dtype=torch.int64, device=mask.device)
    cu[1:] = lens.cumsum(0)
    packed = x.reshape(-1, *x.shape[2:]).index_select(0, indices)
    return packed.unsqueeze(0), indices, cu


def pad(packed: torch.Tensor, indices: torch.Tensor, batch: int, seq_len: int) -> torch.Tensor:
    """packed [1, n, ...] -> [B, T, ...] with zeros where the mask was 0."""
    flat = packed.squeeze(0)
    out = flat.new_zeros(batch * seq_len, *flat.shape[1:])
    out = out.index_copy(0, indices, flat)
    return out.reshape(batch, seq_len, *flat.shape[1:])
