"""Counter-based Gumbel noise for the Raven router (DESIGN.md §9).

Each value is a pure function of (seed, step, layer, row, position, head, slot), so
a sequence-parallel rank that holds only its shard draws exactly the noise the
unsharded layer draws at the same global positions. Only torch integer ops are
used, so it runs on any device and never touches torch's RNG state.
"""
from __future__ import annotations

from typing import Optional

import torch

_MASK32 = 0xFFFFFFFF
_GOLDEN32 = 0x9E3779B1  # odd, so multiplying by it permutes 32-bit words


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    # x * c mod 2^32 for x in [0, 2^32). Splitting c in 16-bit halves keeps every
    # product below 2^49, so int64 never overflows (signed overflow is undefined).
    lo = x * (c & 0xFFFF)
    hi = ((x * (c >> 16)) & 0xFFFF) << 16
    return (lo + hi) & _MASK32


def _fmix32(x: torch.Tensor) -> torch.Tensor:
    # MurmurHash3's finaliser: a bijection on 32-bit words with full avalanche.
    # Inputs are non-negative, so >> acts as a logical shift.
    x = x ^ (x >> 16)
    x = _mul32(x, 0x85EBCA6B)
    x = x ^ (x >> 13)
    x = _mul32(x, 0xC2B2AE35)
    return x ^ (x >> 16)


def _absorb(h: torch.Tensor, word: torch.Tensor) -> torch.Tensor:
    """Folds one key word (any int64, split into two 32-bit halves) into the hash."""
    for half in (word & _MASK32, (word >> 32) & _MASK32):
        h = _fmix32(h ^ _mul32(half, _GOLDEN32))
    return h


def gumbel_noise(
    seed: int,
    step: int,
    layer: int,
    rows: torch.Tensor,
    positions: torch.Tensor,
    num_heads: int,
    num_slots: int,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Standard Gumbel noise of shape rows.shape + [num_heads, num_slots].

    rows and positions are integer tensors of the same shape (typically [B, T] or
    [1, T_packed]): the sequence index and the global token position of each token.
    The value is -log(E) with E = -log(U) ~ Exp(1), U uniform in (0, 1) built from
    52 hash bits for float64 and 23 bits otherwise (computed in float32); one bit
    fewer than the mantissa, so the +0.5 below is exact and U never rounds to 1.
    """
    if rows.shape != positions.shape:
        raise ValueError(
            f"gumbel_noise: rows shape {tuple(rows.shape)} != positions shape {tuple(positions.shape)}"
        )
    device = positions.device
    h = torch.zeros((), dtype=torch.int64, device=device)
    for word in (seed, step, layer):
        h = _absorb(h, torch.tensor(word, dtype=torch.int64, device=device))
    h = _absorb(_absorb(h, rows.to(torch.int64)), positions.to(torch.int64))
    heads = torch.arange(num_heads, dtype=torch.int64, device=device)
    slots = torch.arange(num_slots, dtype=torch.int64, device=device)
    h = _absorb(h[..., None], heads)
    h = _absorb(h[..., None], slots)
    if dtype == torch.float64:
        # 20 bits of one word and 32 of a second.
        h1 = _fmix32(h ^ 0x68E31DA4)
        h2 = _fmix32(h ^ 0xB5297A4D)
        bits = ((h1 >> 12) << 32) | h2
        u = (bits.to(torch.float64) + 0.5) * 2.0**-52
    else:
        bits = _fmix32(h ^ 0x68E31DA4) >> 9
        u = (bits.to(torch.float32) + 0.5) * 2.0**-23
    # The +0.5 keeps U strictly inside (0, 1), so both logs stay finite.
    return (-torch.log(-torch.log(u))).to(dtype)


def layer_key(layer_idx: Optional[int]) -> int:
    """A layer built without layer_idx gets a key no indexed layer uses."""
    return _MASK32 if layer_idx is None else int(layer_idx)
