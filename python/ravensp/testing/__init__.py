"""Plain PyTorch references used by the tests (and handy when debugging)."""
from .gsa_reference import gsa_recurrence_reference

__all__ = ["gsa_recurrence_reference"]
