"""Torch modules: the Raven layer and the pieces it is built from."""
from .feature_maps import ReLUFeatureMap, SwishFeatureMap, T2RFeatureMap
from .gumbel import gumbel_noise
from .norms import GatedRMSNorm, RMSNorm
from .raven import RavenAttention
from .rotary import RotaryEmbedding, rope_positions
from .router import route

__all__ = [
    "GatedRMSNorm",
    "RavenAttention",
    "ReLUFeatureMap",
    "RMSNorm",
    "RotaryEmbedding",
    "SwishFeatureMap",
    "T2RFeatureMap",
    "gumbel_noise",
    "rope_positions",
    "route",
]
from .attention import SPAttention  # noqa: E402,F401  (ring attention layer)
