"""Token-by-token gated slot attention in plain PyTorch (DESIGN.md §3).

This is the oracle every GSA implementation is tested against: a direct
transcription of the recurrence, differentiable by autograd, with no chunking
and no fused kernels. It is slow (a Python loop over tokens) and meant for
small shapes in fp64.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch


def _one_sequence(q, k, v, s, g, scale, hk, hv):
    # q, k: [T, H, K]; v: [T, H, V]; s, g: [T, H, M]; hk: [H, K, M]; hv: [H, M, V]
    outs = []
    for t in range(q.shape[0]):
        decay = g[t].exp()  # [H, M]
        hk = hk * decay[:, None, :] + k[t][:, :, None] * s[t][:, None, :]
        u = scale * torch.einsum("hkm,hk->hm", hk, q[t])
        p = torch.softmax(u, dim=-1)
        hv = hv * decay[:, :, None] + s[t][:, :, None] * v[t][:, None, :]
        outs.append(torch.einsum("hmv,hm->hv", hv, p))
    return torch.stack(outs, 0), hk, hv


def gsa_recurrence_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    s: torch.Tensor,
    g: torch.Tensor,
    scale: Optional[float] = None,
    initial_state: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
    cu_seqlens: Optional[torch.Tensor] = None,
):
    """Returns (o [B, T, H, V], (hk [N, H, K, M], hv [N, H, M, V])).

    Inputs are [B, T, H, D]; with cu_seqlens, B == 1 and the state restarts at
    every boundary. Computation happens in the inputs' dtype.
    """
    B, T, H, K = q.shape
    V, M = v.shape[-1], s.shape[-1]
    if scale is None:
        scale = K ** -0.5
    if cu_seqlens is None:
        spans = [(b, 0, T) for b in range(B)]
    else:
        cu = cu_seqlens.tolist()
        spans = [(0, cu[n], cu[n + 1]) for n in range(len(cu) - 1)]
    outs, hks, hvs = [], [], []
    for n, (b, bos, eos) in enumerate(spans):
        if initial_state is None:
            hk = q.new_zeros(H, K, M)
            hv = q.new_zeros(H, M, V)
        else:
            hk, hv = initial_state[0][n].to(q.dtype), initial_state[1][n].to(q.dtype)
        sl = slice(bos, eos)
        o, hk, hv = _one_sequence(q[b, sl], k[b, sl], v[b, sl], s[b, sl], g[b, sl], scale, hk, hv)
        outs.append(o)
        hks.append(hk)
        hvs.append(hv)
    if cu_seqlens is None:
        o = torch.stack(outs, 0)
    else:
        o = torch.cat(outs, 0).unsqueeze(0)
    return o, (torch.stack(hks, 0), torch.stack(hvs, 0))
