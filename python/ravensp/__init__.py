"""ravensp: sequence-parallel training of Raven routed slot-memory models.

Importing the package loads the native op library, which registers the
``torch.ops.ravensp.*`` custom ops; ``ravensp.ops`` wraps them with the
FLA-style Python signatures and registers their fake kernels for torch.compile.
"""
import torch  # noqa: F401  (the op library links against the loaded libtorch)

from . import _C
from . import ops
from .ops import chunk_gsa, fused_recurrent_gsa
from .checkpoint import load_checkpoint, read_checkpoint, save_checkpoint

__version__ = _C.build_info()["version"]


def build_info() -> dict:
    """How the native parts were built: version, CUDA, NCCL, MPI."""
    return dict(_C.build_info())


__all__ = ["ops", "chunk_gsa", "fused_recurrent_gsa", "build_info", "__version__",
           "load_checkpoint", "read_checkpoint", "save_checkpoint"]

try:  # the nn package imports ops; keep it importable on its own
    from . import nn  # noqa: F401
    __all__.append("nn")
except ImportError as exc:  # pragma: no cover - only while nn is being written
    if "ravensp.nn" not in str(exc) and "ravensp/nn" not in str(exc):
        raise
