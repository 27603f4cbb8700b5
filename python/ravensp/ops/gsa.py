"""Gated slot attention ops: FLA-compatible wrappers and fake kernels.

``chunk_gsa`` and ``fused_recurrent_gsa`` take ``[B, T, H, D]`` tensors and the
keyword arguments of FLA's ``fla.ops.gsa`` functions, so the Raven layer calls
either. Autograd is registered in C++ (the launcher trains without Python);
this module adds the fake (meta) kernels that let torch.compile trace the ops.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch

State = Tuple[torch.Tensor, torch.Tensor]

_ops = torch.ops.ravensp


def _accum(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _num_seqs(q: torch.Tensor, cu_seqlens: Optional[torch.Tensor]):
    return q.shape[0] if cu_seqlens is None else cu_seqlens.shape[0] - 1


def _check_devices(q, **tensors):
    # The C++ checks cover real tensors; fake/meta dispatch lands here instead,
    # so mixed devices must be caught here too (torch.compile traces this path).
    for name, t in tensors.items():
        if t is not None and t.device != q.device:
            raise RuntimeError(f"gsa: {name} must be on q's device {q.device}, got {t.device}")


def _state_shapes(q, v, s, cu_seqlens):
    n = _num_seqs(q, cu_seqlens)
    _, _, h, k = q.shape
    return (n, h, k, s.shape[-1]), (n, h, s.shape[-1], v.shape[-1])


def _saved_states_bytes(q, v, s, cu_seqlens):
    """Bytes of the chunk states (and pass 2's pair matrices) a CUDA forward keeps
    for the backward: the layout of carve_saved (csrc/kernels/gsa/gsa_states.cu),
    each buffer rounded up to 256
    bytes, sized for the most 64-token chunks the shape allows
    (gsa_chunk_saved_states_bytes; the GPU opcheck compares the two)."""
    b, t, h, k = q.shape
    m, vd = s.shape[-1], v.shape[-1]
    n = _num_seqs(q, cu_seqlens)
    per = (t + 63) // 64
    nc = per + n - 1 if cu_seqlens is not None else n * per
    sb = 4 if q.dtype == torch.float32 else 2

    def up(x):
        return (x + 255) // 256 * 256

    return (up(nc * h * k * m * sb) + up(nc * h * m * vd * sb) + up(nc * h * m * 4)
            + up(n * h * k * m * 4) + up(n * h * m * vd * 4) + up(nc * h * 64 * 64 * sb))


@torch.library.register_fake("ravensp::gsa_chunk_fwd")
def _chunk_fwd_fake(q, k, v, s, g, scale, hk0, hv0, cu_seqlens, chunk_size, save_states=False):
    _check_devices(q, k=k, v=v, s=s, g=g, hk0=hk0, hv0=hv0, cu_seqlens=cu_seqlens)
    hk, hv = _state_shapes(q, v, s, cu_seqlens)
    acc = _accum(q.dtype)
    kept = _saved_states_bytes(q, v, s, cu_seqlens) if save_states and q.is_cuda else 0
    return (v.new_empty(v.shape), q.new_empty(hk, dtype=acc), q.new_empty(hv, dtype=acc),
            s.new_empty(s.shape, dtype=acc), s.new_empty(s.shape[:-1], dtype=acc),
            q.new_empty((kept,), dtype=torch.uint8))


def _bwd_fake(q, k, v, s, g, cu_seqlens):
    _check_devices(q, k=k, v=v, s=s, g=g, cu_seqlens=cu_seqlens)
    hk, hv = _state_shapes(q, v, s, cu_seqlens)
    acc = _accum(q.dtype)
    return (q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape),
            s.new_empty(s.shape), g.new_empty(g.shape), q.new_empty(hk, dtype=acc),
            q.new_empty(hv, dtype=acc))


@torch.library.register_fake("ravensp::gsa_chunk_bwd")
def _chunk_bwd_fake(grad_o, grad_hkT, grad_hvT, q, k, v, s, g, p, lse, scale, hk0, hv0,
                    cu_seqlens, chunk_size, states=None):
    return _bwd_fake(q, k, v, s, g, cu_seqlens)


@torch.library.register_fake("ravensp::gsa_recurrent_bwd")
def _recurrent_bwd_fake(grad_o, grad_hkT, grad_hvT, q, k, v, s, g, scale, hk0, hv0, cu_seqlens):
    return _bwd_fake(q, k, v, s, g, cu_seqlens)


def _fwd3_fake(q, k, v, s, g, scale, hk0=None, hv0=None, cu_seqlens=None, chunk_size=64):
    _check_devices(q, k=k, v=v, s=s, g=g, hk0=hk0, hv0=hv0, cu_seqlens=cu_seqlens)
    hk, hv = _state_shapes(q, v, s, cu_seqlens)
    acc = _accum(q.dtype)
    return v.new_empty(v.shape), q.new_empty(hk, dtype=acc), q.new_empty(hv, dtype=acc)


torch.library.register_fake("ravensp::gsa_recurrent_fwd")(
    lambda q, k, v, s, g, scale, hk0, hv0, cu_seqlens: _fwd3_fake(q, k, v, s, g, scale, hk0, hv0,
                                                                  cu_seqlens))
torch.library.register_fake("ravensp::gsa_chunk")(_fwd3_fake)
torch.library.register_fake("ravensp::gsa_recurrent")(
    lambda q, k, v, s, g, scale, hk0=None, hv0=None, cu_seqlens=None: _fwd3_fake(
        q, k, v, s, g, scale, hk0, hv0, cu_seqlens))


def _split_state(initial_state: Optional[State]):
    if initial_state is None:
        return None, None
    if not (isinstance(initial_state, (tuple, list)) and len(initial_state) == 2):
        raise TypeError("initial_state must be a tuple (hk [N, H, K, M], hv [N, H, M, V]), got "
                        f"{type(initial_state).__name__}")
    return initial_state[0], initial_state[1]


def _resolve_scale(q: torch.Tensor, scale: Optional[float]) -> float:
    return q.shape[-1] ** -0.5 if scale is None else float(scale)


def chunk_gsa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, s: torch.Tensor,
              g: torch.Tensor, scale: Optional[float] = None,
              initial_state: Optional[State] = None, output_final_state: bool = False,
              cu_seqlens: Optional[torch.Tensor] = None, chunk_size: int = 64):
    """Chunked gated slot attention (DESIGN.md §3).

    q, k: [B, T, H, K]; v: [B, T, H, V]; s, g: [B, T, H, M] with g the log decay.
    scale defaults to K**-0.5 (Raven layers pass 1.0). initial_state and the
    returned final state are tuples (hk [N, H, K, M], hv [N, H, M, V]) kept in
    fp32 (fp64 for fp64 inputs). cu_seqlens: int64 [N + 1] offsets of packed
    sequences (B must be 1). Returns (o [B, T, H, V], final_state or None).
    """
    hk0, hv0 = _split_state(initial_state)
    o, hkT, hvT = _ops.gsa_chunk(q, k, v, s, g, _resolve_scale(q, scale), hk0, hv0, cu_seqlens,
                                 chunk_size)
    return o, ((hkT, hvT) if output_final_state else None)


def fused_recurrent_gsa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, s: torch.Tensor,
                        g: torch.Tensor, scale: Optional[float] = None,
                        initial_state: Optional[State] = None, output_final_state: bool = False,
                        cu_seqlens: Optional[torch.Tensor] = None):
    """Token-by-token gated slot attention, for decoding and short inputs.

    Same contract as :func:`chunk_gsa`; differentiable.
    """
    hk0, hv0 = _split_state(initial_state)
    o, hkT, hvT = _ops.gsa_recurrent(q, k, v, s, g, _resolve_scale(q, scale), hk0, hv0,
                                     cu_seqlens)
    return o, ((hkT, hvT) if output_final_state else None)


@torch.library.register_fake("ravensp::sp_gsa")
def _sp_gsa_fake(q, k, v, s, g, scale, hk0, hv0, cu_seqlens, group, layout, exchange=0,
                 chunk_size=64):
    _check_devices(q, k=k, v=v, s=s, g=g, hk0=hk0, hv0=hv0, cu_seqlens=cu_seqlens)
    return v.new_empty(v.shape)
