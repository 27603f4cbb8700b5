"""ravensp.nn.SPAttention: the softmax attention layer of Raven's hybrid models.

FLA's Attention layer (fla/layers/attn.py: constructor, parameter names q_proj,
k_proj, v_proj, o_proj, q_norm, k_norm, RoPE, GQA, sliding window) running on a
sequence-parallel shard through torch.ops.ravensp.ring_attention. RoPE uses each
token's GLOBAL position (restarting at document starts when cu_seqlens is given),
so a sharded layer equals the unsharded one. Also the fake kernels of the op.
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

import torch
from torch import nn

from ..distributed import document_positions, shard_positions
from .norms import RMSNorm
from .rotary import RotaryEmbedding

LAYOUTS = {0: "contiguous", 1: "zigzag"}


def _accum(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


if hasattr(torch.ops.ravensp, "ring_attention"):  # the SP library registers the op

    @torch.library.register_fake("ravensp::ring_attention")
    def _ring_fake(q, k, v, scale, causal=True, window=0, cu_seqlens=None, group=0, layout=0):
        return q.new_empty(q.shape)

    @torch.library.register_fake("ravensp::ring_attention_fwd")
    def _ring_fwd_fake(q, k, v, scale, causal, window, cu_seqlens, group, layout):
        B, L, H, _ = q.shape
        return q.new_empty(q.shape), q.new_empty((B, H, L), dtype=_accum(q.dtype))

    @torch.library.register_fake("ravensp::ring_attention_bwd")
    def _ring_bwd_fake(grad_o, q, k, v, o, lse, scale, causal, window, cu_seqlens, group, layout):
        return q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape)


def ring_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: Optional[float] = None,
                   causal: bool = True, window: Optional[int] = None,
                   cu_seqlens: Optional[torch.Tensor] = None, sp_group: Any = None) -> torch.Tensor:
    """Attention of this rank's shard q [B, L, H, D] over the whole sequence.

    k, v: [B, L, Hkv, D] shards in sp_group's layout (only the Hkv heads travel);
    cu_seqlens: GLOBAL document offsets (B == 1); window: FLA's window_size
    (None or <= 0: none). sp_group: an object with .handle and .layout, or None
    when the local tensors are the whole sequence.
    """
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    handle, layout = (0, 0) if sp_group is None else (int(sp_group.handle), int(sp_group.layout))
    return torch.ops.ravensp.ring_attention(q, k, v, scale, causal, int(window or 0), cu_seqlens,
                                            handle, layout)


class SPAttention(nn.Module):
    """Causal softmax attention with RoPE, GQA and an optional sliding window.

    Constructor and parameters as FLA's Attention, so its checkpoints load; the
    extra sp_group (an object with .handle, .rank, .size and .layout, e.g. from
    ravensp.distributed) makes forward take this rank's shard [B, L, hidden] of
    a sequence of size * L tokens. Without a group the input is the whole sequence.
    """

    def __init__(
        self,
        hidden_size: int = 2048,
        num_heads: int = 32,
        num_kv_heads: Optional[int] = None,
        qkv_bias: bool = False,
        qk_norm: bool = False,
        window_size: Optional[int] = None,
        rope_theta: Optional[float] = 10000.0,
        max_position_embeddings: Optional[int] = None,
        layer_idx: Optional[int] = None,
        sp_group: Any = None,
    ):
        super().__init__()
        self.hidden_size = hidden_size
        self.num_heads = num_heads
        self.num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads
        if hidden_size % num_heads or num_heads % self.num_kv_heads:
            raise ValueError(f"SPAttention: hidden_size={hidden_size} must be a multiple of "
                             f"num_heads={num_heads}, itself a multiple of "
                             f"num_kv_heads={self.num_kv_heads}")
        self.num_kv_groups = num_heads // self.num_kv_heads
        self.head_dim = hidden_size // num_heads
        self.kv_dim = self.num_kv_heads * self.head_dim
        self.qkv_bias = qkv_bias
        self.qk_norm = qk_norm
        self.window_size = window_size
        self.rope_theta = rope_theta
        self.max_position_embeddings = max_position_embeddings
        self.layer_idx = layer_idx
        self.sp_group = sp_group

        self.q_proj = nn.Linear(hidden_size, hidden_size, bias=qkv_bias)
        self.k_proj = nn.Linear(hidden_size, self.kv_dim, bias=qkv_bias)
        self.v_proj = nn.Linear(hidden_size, self.kv_dim, bias=qkv_bias)
        self.o_proj = nn.Linear(hidden_size, hidden_size, bias=False)
        if qk_norm:
            self.q_norm = RMSNorm(self.head_dim)
            self.k_norm = RMSNorm(self.head_dim)
        self.rotary = RotaryEmbedding(self.head_dim, base=10000.0 if rope_theta is None else rope_theta)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: Optional[torch.Tensor] = None,
        past_key_values: Optional[Any] = None,
        output_attentions: bool = False,
        use_cache: bool = False,
        cu_seqlens: Optional[torch.Tensor] = None,
        **kwargs,
    ) -> Tuple[torch.Tensor, None, Optional[Any]]:
        """hidden_states [B, L, hidden] (this rank's shard) -> (o, None, past_key_values).

        cu_seqlens: GLOBAL document offsets of a packed B == 1 sequence, the same
        tensor on every rank. Padding masks and KV caches belong to decoding, which
        runs unsharded: they are refused here rather than silently ignored.
        """
        if attention_mask is not None:
            raise ValueError("SPAttention: attention_mask (padding) is not supported; "
                             "pack sequences and pass cu_seqlens")
        if past_key_values is not None or use_cache:
            raise ValueError("SPAttention: KV caches (past_key_values, use_cache) are not supported")
        if hidden_states.dim() != 3 or hidden_states.shape[-1] != self.hidden_size:
            raise ValueError(f"SPAttention: hidden_states must be [B, L, {self.hidden_size}], "
                             f"got {list(hidden_states.shape)}")
        B, L, _ = hidden_states.shape
        g = self.sp_group
        rank, world, layout = (0, 1, 0) if g is None else (int(g.rank), int(g.size), int(g.layout))
        if layout not in LAYOUTS:
            raise ValueError(f"SPAttention: sp_group.layout must be 0 or 1, got {layout}")

        q = self.q_proj(hidden_states).view(B, L, self.num_heads, self.head_dim)
        k = self.k_proj(hidden_states).view(B, L, self.num_kv_heads, self.head_dim)
        v = self.v_proj(hidden_states).view(B, L, self.num_kv_heads, self.head_dim)
        if self.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        pos = document_positions(shard_positions(g, L, hidden_states.device), cu_seqlens)
        q, k = self.rotary(q, k, pos)
        o = ring_attention(q, k, v, causal=True, window=self.window_size, cu_seqlens=cu_seqlens,
                           sp_group=g)
        o = self.o_proj(o.reshape(B, L, self.hidden_size))
        return o, None, past_key_values
