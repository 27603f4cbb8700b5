"""Python signatures of the ravensp custom ops (the math lives in C++)."""
from .gsa import chunk_gsa, fused_recurrent_gsa

__all__ = ["chunk_gsa", "fused_recurrent_gsa"]
