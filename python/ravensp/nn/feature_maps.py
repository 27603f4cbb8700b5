"""Feature maps applied to q and k before their norms: swish, relu, and t2r.

t2r (Kasai et al.) is a learned head_dim x head_dim projection followed by relu,
kept under the attribute name `layer` so FLA's `feature_map.layer.weight` loads.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

FEATURE_MAPS = ("swish", "relu", "t2r")


class SwishFeatureMap(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.silu(x)


class ReLUFeatureMap(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x)


class T2RFeatureMap(nn.Module):
    def __init__(self, head_dim: int, dot_dim: int):
        super().__init__()
        self.layer = nn.Linear(head_dim, dot_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.layer(x))


def make_feature_map(name: str, head_dim: int) -> nn.Module:
    if name == "swish":
        return SwishFeatureMap()
    if name == "relu":
        return ReLUFeatureMap()
    if name == "t2r":
        return T2RFeatureMap(head_dim, head_dim)
    raise NotImplementedError(f"feature_map={name!r} is not supported; supported: {', '.join(FEATURE_MAPS)}")
