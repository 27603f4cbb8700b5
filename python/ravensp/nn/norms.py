"""RMS norms of the Raven layer: plain (q_norm, k_norm, g_norm) and gated (o_norm).

Parameter names match FLA's RMSNorm and FusedRMSNormGated (weight, no bias) so
public checkpoints load. The statistics are computed in at least float32 (float64
stays float64) and the result is returned in the input's dtype, as FLA does.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype norms and decays run in: float32, or wider when the input is."""
    return torch.promote_types(dtype, torch.float32)


def rms_norm(x: torch.Tensor, weight: Optional[torch.Tensor], eps: float) -> torch.Tensor:
    xc = x.to(compute_dtype(x.dtype))
    y = xc * torch.rsqrt(xc.square().mean(dim=-1, keepdim=True) + eps)
    if weight is not None:
        y = y * weight.to(y.dtype)
    return y.to(x.dtype)


class RMSNorm(nn.Module):
    """y = x / rms(x) * weight over the last dimension (weight only if elementwise_affine)."""

    def __init__(self, hidden_size: int, elementwise_affine: bool = True, eps: float = 1e-5):
        super().__init__()
        self.hidden_size = hidden_size
        self.eps = eps
        if elementwise_affine:
            self.weight = nn.Parameter(torch.ones(hidden_size))
        else:
            self.register_parameter("weight", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.weight, self.eps)


class GatedRMSNorm(nn.Module):
    """y = x / rms(x) * weight * silu(gate): FLA's FusedRMSNormGated with its swish default."""

    def __init__(self, hidden_size: int, elementwise_affine: bool = True, eps: float = 1e-5):
        super().__init__()
        self.hidden_size = hidden_size
        self.eps = eps
        if elementwise_affine:
            self.weight = nn.Parameter(torch.ones(hidden_size))
        else:
            self.register_parameter("weight", None)

    def forward(self, x: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        ct = compute_dtype(x.dtype)
        xc = x.to(ct)
        y = xc * torch.rsqrt(xc.square().mean(dim=-1, keepdim=True) + self.eps)
        if self.weight is not None:
            y = y * self.weight.to(ct)
        return (y * F.silu(gate.to(ct))).to(x.dtype)
