"""Rotary position embedding (non-interleaved halves, as FLA's RotaryEmbedding).

Positions are given per token, so packed documents, cache offsets and (later) a
shard's global positions are all just different position tensors. Angles are
float32 products of float32 positions and frequencies, like FLA's tables; cos, sin
and the rotation are evaluated in at least float32 (float64 inputs stay float64).
"""
from __future__ import annotations

from typing import Optional, Union

import torch
from torch import nn

from .norms import compute_dtype


class RotaryEmbedding(nn.Module):
    def __init__(self, dim: int, base: float = 10000.0):
        super().__init__()
        if dim % 2 != 0:
            raise ValueError(f"RotaryEmbedding: dim must be even, got {dim}")
        self.dim = dim
        self.base = float(base)

    def inv_freq(self, device: torch.device) -> torch.Tensor:
        # Built per call rather than kept as a buffer: model.to(bfloat16) would round a
        # buffer, and FLA's buffer is not in checkpoints anyway. Always float32.
        return 1.0 / (self.base ** (torch.arange(0, self.dim, 2, device=device, dtype=torch.float32) / self.dim))

    @staticmethod
    def _rotate(x: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
        ct = compute_dtype(x.dtype)
        angles = freqs.to(ct)
        # cos/sin are rounded to x's dtype first, then the product runs wider (FLA's order).
        cos = angles.cos().to(x.dtype).to(ct)[..., None, :]
        sin = angles.sin().to(x.dtype).to(ct)[..., None, :]
        x1, x2 = x.to(ct).chunk(2, dim=-1)
        return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).to(x.dtype)

    def forward(self, q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor):
        """q, k: [B, T, H, D]; positions: integer [B, T] or [T]."""
        freqs = positions.to(torch.float32)[..., None] * self.inv_freq(q.device)  # [.., T, D/2]
        return self._rotate(q, freqs), self._rotate(k, freqs)


def rope_positions(
    seq_len: int,
    device: torch.device,
    cu_seqlens: Optional[torch.Tensor] = None,
    offset: Union[int, torch.Tensor] = 0,
) -> torch.Tensor:
    """Position of each token: [N, T] for N sequences of length T, or [1, T] packed.

    With cu_seqlens, positions restart at each document start; offset (an int, or
    one value per sequence/document) shifts them, e.g. by the tokens already cached.
    """
    t = torch.arange(seq_len, device=device)
    if cu_seqlens is None:
        if isinstance(offset, torch.Tensor):
            return t[None, :] + offset.to(device=device, dtype=torch.int64)[:, None]
        return (t + offset)[None, :]
    cu = cu_seqlens.to(device=device, dtype=torch.int64)
    doc = torch.searchsorted(cu[1:], t, right=True)  # document index of each token
    pos = t - cu[doc]
    if isinstance(offset, torch.Tensor):
        pos = pos + offset.to(device=device, dtype=torch.int64)[doc]
    else:
        pos = pos + offset
    return pos[None, :]
