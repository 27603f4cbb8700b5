"""ravensp.nn.RavenAttention: the Raven routed slot-memory layer (DESIGN.md §2).

Same constructor arguments, parameter names and forward math as the public Raven
layer (goombalab/raven, raven/layers/raven.py), so its state_dict loads unchanged;
the GSA core runs through ravensp's ops.
"""
from __future__ import annotations

import math
from typing import Any, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from .feature_maps import make_feature_map
from .gsa_core import gsa
from ..distributed import document_positions, sp_gsa
from .gumbel import gumbel_noise, layer_key
from .norms import GatedRMSNorm, RMSNorm, compute_dtype
from .padding import pad, unpad
from .rotary import RotaryEmbedding, rope_positions
from .router import ROUTER_SCORES, make_router_proj, route

MODES = ("chunk", "fused_recurrent")
SP_EXCHANGES = ("lasp2", "lasp1")
DECAY_TYPES = ("Mamba2", "GLA")
RECURRENT_MAX_LEN = 64  # inputs this short run token by token, as in the public layer


def _choice(name: str, value: Any, allowed: Tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not supported; supported: {', '.join(allowed)}")


class RavenAttention(nn.Module):
    """Raven attention: q, k, v projections, a routed top-k write into M slots, GSA.

    Per token: feature-mapped, RMS-normed (optionally rotated) q and k; silu(v); a
    decay f <= 0 (Mamba2: one per head; GLA: one per slot); router scores over the
    slots with top-k selection (Gumbel noise in training); g = f * w and s = 1 - e^g
    feed gated slot attention; the output is normed (g_norm, or o_norm gated by
    o_gate_proj) and projected by o_proj.

    Grouped queries (num_kv_heads < num_heads), defined consistently here where the
    public code is not: k_proj and v_proj produce num_kv_heads heads, repeated to
    num_heads so kv head j serves query heads j*G .. j*G+G-1 (G = num_heads //
    num_kv_heads, FLA's "(h g)" order). The decay stays per query head (Mamba2:
    a_proj, A_log, dt_bias have num_heads entries; GLA: f_proj has num_kv_heads *
    num_slots outputs, repeated the same way) and the router is per query head.

    Differences from the public layer, each where the public one fails or is silent:
    r_bias starts at zeros (torch.empty there); g_norm spans value_dim (equal to
    hidden_size in every configuration the public layer can run); t2r is supported;
    RoPE accepts B > 1; with an attention_mask, RoPE positions count only the valid
    tokens (the public layer offsets packed tokens by the padding, which rotates
    them to negative positions); modes and enumerations are checked at
    construction. Where public code computes in `.float()`, this computes in at
    least float32, so float64 stays float64. Under autocast the router logits are
    computed in the router's parameter dtype (router_fp32=True, the default), as MoE
    routers usually are: with bf16 logits about 4% of (token, head) top-k choices
    flip against fp64 and each flip carries through the slot state; a 2048-token
    test layer's bf16 output error against fp64 falls from 0.71 to 0.019 (max) and
    0.012 to 0.002 (mean) with fp32 logits. router_fp32=False keeps the public
    layer's bf16 logits.

    Gumbel noise is counter-based (ravensp.nn.gumbel): keyed by gumbel_seed and
    gumbel_step (attributes the trainer sets), layer_idx, and each token's row and
    global position (position_ids, default 0..T-1 after any cached tokens).
    """

    def __init__(
        self,
        mode: str = "chunk",
        hidden_size: int = 1024,
        expand_k: float = 1.0,
        expand_v: float = 1.0,
        num_heads: int = 4,
        num_kv_heads: Optional[int] = None,
        num_slots: Optional[int] = None,
        elementwise_affine: Optional[bool] = True,
        norm_eps: float = 1e-5,
        gate_logit_normalizer: int = 8,
        feature_map: str = "swish",
        use_output_gate: bool = False,
        use_norm: bool = True,
        layer_idx: Optional[int] = None,
        scale: Optional[float] = 1.0,
        decay_type: str = "Mamba2",
        topk: int = 32,
        bias_rmm: bool = False,
        add_gumbel_noise: bool = True,
        router_score: str = "sigmoid",
        router_type: str = "lin",
        use_rope: bool = False,
        sp_group: Optional[Any] = None,
        sp_exchange: str = "lasp2",
        router_fp32: bool = True,
        **kwargs,
    ):
        super().__init__()
        _choice("sp_exchange", sp_exchange, SP_EXCHANGES)
        _choice("mode", mode, MODES)
        _choice("decay_type", decay_type, DECAY_TYPES)
        _choice("router_score", router_score, ROUTER_SCORES)
        self.mode = mode
        self.decay_type = decay_type
        self.hidden_size = hidden_size
        self.expand_k = expand_k
        self.expand_v = expand_v
        self.num_heads = num_heads
        self.num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads
        if self.num_kv_heads <= 0 or num_heads % self.num_kv_heads != 0:
            raise ValueError(
                f"num_heads ({num_heads}) must be a multiple of num_kv_heads ({self.num_kv_heads})"
            )
        self.num_kv_groups = num_heads // self.num_kv_heads
        self.key_dim = int(hidden_size * expand_k)
        self.value_dim = int(hidden_size * expand_v)
        if self.key_dim % num_heads or self.value_dim % num_heads:
            raise ValueError(
                f"key_dim ({self.key_dim}) and value_dim ({self.value_dim}) must be multiples of num_heads ({num_heads})"
            )
        self.head_k_dim = self.key_dim // num_heads
        self.head_v_dim = self.value_dim // num_heads
        self.key_dim_per_group = self.key_dim // self.num_kv_groups
        self.value_dim_per_group = self.value_dim // self.num_kv_groups
        self.num_slots = self.head_k_dim if num_slots is None else num_slots
        if not 1 <= topk <= self.num_slots:
            raise ValueError(f"topk must be in [1, num_slots={self.num_slots}], got topk={topk}")
        self.topk = topk
        self.use_output_gate = use_output_gate
        self.use_norm = use_norm  # accepted for config compatibility; unused, as in the public layer
        self.use_rope = use_rope
        self.gate_logit_normalizer = gate_logit_normalizer
        self.scale = scale
        self.rope_theta = 10000.0
        self.bias_rmm = bias_rmm
        self.add_gumbel_noise = add_gumbel_noise
        self.router_score = router_score
        self.router_type = router_type
        self.router_fp32 = router_fp32
        self.layer_idx = layer_idx
        self.gumbel_seed = 0
        self.gumbel_step = 0
        # Sequence parallelism (ravensp.distributed.SPGroup): forward then takes
        # this rank's shard in the group's layout, with GLOBAL cu_seqlens.
        self.sp_group = sp_group
        self.sp_exchange = sp_exchange

        self.feature_map = make_feature_map(feature_map, self.head_k_dim)
        self.q_proj = nn.Linear(hidden_size, self.key_dim, bias=False)
        self.k_proj = nn.Linear(hidden_size, self.key_dim_per_group, bias=False)
        self.v_proj = nn.Linear(hidden_size, self.value_dim_per_group, bias=False)
        if decay_type == "Mamba2":
            self.a_proj = nn.Linear(hidden_size, num_heads, bias=False)
            self.A_log = nn.Parameter(torch.empty(num_heads, dtype=torch.float32).uniform_(0, 16).log())
            self.A_log._no_weight_decay = True
            self.dt_bias = nn.Parameter(self._init_dt_bias(num_heads))
            self.dt_bias._no_weight_decay = True
        else:
            self.f_proj = nn.Linear(hidden_size, self.num_kv_heads * self.num_slots, bias=False)
        if bias_rmm:
            self.r_bias = nn.Parameter(torch.zeros(num_heads, self.num_slots, dtype=torch.float32))
        self.r_proj = make_router_proj(router_type, hidden_size, num_heads * self.num_slots)
        if use_rope:
            self.rotary = RotaryEmbedding(self.head_k_dim, base=self.rope_theta)
        self.q_norm = RMSNorm(self.head_k_dim, elementwise_affine, eps=norm_eps)
        self.k_norm = RMSNorm(self.head_k_dim, elementwise_affine, eps=norm_eps)
        if use_output_gate:
            self.o_gate_proj = nn.Linear(hidden_size, self.value_dim, bias=False)
            self.o_norm = GatedRMSNorm(self.head_v_dim, eps=norm_eps)
        else:
            self.g_norm = RMSNorm(self.value_dim, elementwise_affine, eps=norm_eps)
        self.o_proj = nn.Linear(self.value_dim, hidden_size, bias=False)

    @staticmethod
    def _init_dt_bias(n: int, dt_min: float = 1e-3, dt_max: float = 0.1, floor: float = 1e-4) -> torch.Tensor:
        # dt log-uniform in [dt_min, dt_max], stored as softplus^-1(dt) (Mamba2's init).
        dt = torch.exp(torch.rand(n) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=floor)
        return dt + torch.log(-torch.expm1(-dt))

    def _check_inputs(self, x, attention_mask, cu_seqlens, position_ids) -> None:
        if x.dim() != 3 or x.shape[-1] != self.hidden_size:
            raise ValueError(
                f"hidden_states must be [B, T, hidden_size={self.hidden_size}], got {list(x.shape)}"
            )
        B, T, _ = x.shape
        if attention_mask is not None:
            if attention_mask.dim() != 2 or attention_mask.shape[0] != B or attention_mask.shape[1] < T:
                raise ValueError(
                    f"attention_mask must be a 0/1 [B={B}, >= T={T}] padding mask, got {list(attention_mask.shape)}"
                )
            if cu_seqlens is not None:
                raise ValueError("cu_seqlens and attention_mask are exclusive: mark sequences one way")
        if cu_seqlens is not None:
            if B != 1:
                raise ValueError(f"cu_seqlens needs packed hidden_states with batch size 1, got B={B}")
            if cu_seqlens.dim() != 1 or cu_seqlens.numel() < 2 or cu_seqlens.is_floating_point():
                raise ValueError(
                    f"cu_seqlens must be a 1-D integer tensor [N+1], got {cu_seqlens.dtype} {list(cu_seqlens.shape)}"
                )
            cu = cu_seqlens.tolist()
            if cu[0] != 0 or cu[-1] != T or any(b < a for a, b in zip(cu, cu[1:])):
                raise ValueError(f"cu_seqlens must start at 0, not decrease and end at T={T}, got {cu}")
        if position_ids is not None and position_ids.shape[-1] != T:
            raise ValueError(f"position_ids must be [B, T={T}] or [T], got {list(position_ids.shape)}")

    def _decay(self, x: torch.Tensor) -> torch.Tensor:
        """Log decay f <= 0: [..., H, 1] (Mamba2, per head) or [..., H, M] (GLA, per slot)."""
        if self.decay_type == "Mamba2":
            a = self.a_proj(x)
            A = self.A_log.to(compute_dtype(self.A_log.dtype)).exp()
            return (-A * F.softplus(a.to(compute_dtype(a.dtype)) + self.dt_bias)).unsqueeze(-1)
        f = self.f_proj(x).unflatten(-1, (self.num_kv_heads, self.num_slots))
        f = F.logsigmoid(f) / self.gate_logit_normalizer
        return f.repeat_interleave(self.num_kv_groups, dim=-2)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: Optional[torch.Tensor] = None,
        past_key_values: Optional[Any] = None,
        use_cache: Optional[bool] = False,
        output_attentions: Optional[bool] = False,
        cu_seqlens: Optional[torch.Tensor] = None,
        position_ids: Optional[torch.Tensor] = None,
        **kwargs,
    ) -> Tuple[torch.Tensor, None, Optional[Any]]:
        """hidden_states [B, T, hidden_size] -> (o [B, T, hidden_size], None, past_key_values).

        attention_mask: 0/1 [B, T_total] (0 = padding); cu_seqlens: [N+1] document
        starts of a packed B == 1 input (state and RoPE positions restart at each);
        position_ids: global token positions [B, T] or [T] keying the Gumbel noise;
        past_key_values: an FLA-style Cache (len, [layer_idx]['recurrent_state'],
        get_seq_length, update), with use_cache returning the final GSA state.
        """
        if self.sp_group is not None:
            return self._forward_sp(hidden_states, attention_mask, past_key_values, cu_seqlens,
                                    position_ids)
        self._check_inputs(hidden_states, attention_mask, cu_seqlens, position_ids)
        B, T, _ = hidden_states.shape
        device = hidden_states.device
        mode = "fused_recurrent" if T <= RECURRENT_MAX_LEN else self.mode

        cache_len, last_state = 0, None
        if past_key_values is not None:
            if self.layer_idx is None:
                raise ValueError("past_key_values needs a RavenAttention built with layer_idx")
            if len(past_key_values) > self.layer_idx:
                cache_len = past_key_values.get_seq_length(self.layer_idx)
                last_state = past_key_values[self.layer_idx]

        # Gumbel keys per token: its row and its position in the (global) sequence.
        rows = torch.arange(B, device=device)[:, None].expand(B, T)
        if position_ids is None:
            positions = (torch.arange(T, device=device) + cache_len)[None, :].expand(B, T)
        else:
            positions = position_ids.to(device).expand(B, T)

        x = hidden_states
        if cu_seqlens is not None:
            cu_seqlens = cu_seqlens.to(device=device, dtype=torch.int64)  # FLA callers pass int32
        rope_offset: Union[int, torch.Tensor] = cache_len
        if attention_mask is not None:
            mask = attention_mask[:, -T:]
            x, indices, cu_seqlens = unpad(hidden_states, mask)
            # Per row, the valid tokens that came before this chunk (the cache's share).
            rope_offset = (attention_mask.sum(-1) - mask.sum(-1)).to(torch.int64)
            rows = rows.reshape(-1).index_select(0, indices)[None]
            positions = positions.reshape(-1).index_select(0, indices)[None]

        rope_pos = rope_positions(x.shape[1], device, cu_seqlens, rope_offset) if self.use_rope else None
        q, k, v, s, g = self._gsa_inputs(x, rope_pos, rows, positions)
        scale = self.head_k_dim**-0.5 if self.scale is None else self.scale
        initial_state = last_state["recurrent_state"] if last_state is not None else None
        o, final_state = gsa(mode, q, k, v, s, g, scale, initial_state, bool(use_cache), cu_seqlens)
        if past_key_values is not None:
            past_key_values.update(
                recurrent_state=final_state, conv_state=None, layer_idx=self.layer_idx, offset=T
            )

        o = self._output(o, x)
        if attention_mask is not None:
            o = pad(o, indices, B, T)
        return o, None, past_key_values

    def _gsa_inputs(self, x, rope_pos, rows, positions):
        """Projections, feature maps, norms, RoPE, router and decay -> GSA's q, k, v, s, g.

        rope_pos: positions for RoPE (None when unused); rows, positions: the
        Gumbel noise keys of every token.
        """
        H, Hkv, M = self.num_heads, self.num_kv_heads, self.num_slots
        q = self.q_proj(x).unflatten(-1, (H, self.head_k_dim))
        k = self.k_proj(x).unflatten(-1, (Hkv, self.head_k_dim))
        v = self.v_proj(x).unflatten(-1, (Hkv, self.head_v_dim))
        logits = self._router_logits(x).unflatten(-1, (H, M))
        f = self._decay(x)
        q, k = self.feature_map(q), self.feature_map(k)
        q, k = self.q_norm(q), self.k_norm(k)
        if rope_pos is not None:
            q, k = self.rotary(q, k, rope_pos)
        v = F.silu(v)
        if self.add_gumbel_noise and self.training:
            logits = logits + gumbel_noise(
                self.gumbel_seed, self.gumbel_step, layer_key(self.layer_idx), rows, positions, H, M, logits.dtype
            )
        w = route(logits, self.topk, self.router_score, self.r_bias if self.bias_rmm else None)
        gf = f * w
        g = gf.to(q.dtype)
        # s = 1 - e^g from the unrounded product: small decays put e^g within a bf16
        # ulp of 1, where 1 - exp() of the rounded g cancels to 0 or a wrong digit.
        s = (-torch.expm1(gf)).to(q.dtype)
        if self.num_kv_groups > 1:
            k = k.repeat_interleave(self.num_kv_groups, dim=-2)
            v = v.repeat_interleave(self.num_kv_groups, dim=-2)
        return q, k, v, s, g

    def _router_logits(self, x: torch.Tensor) -> torch.Tensor:
        """r_proj(x); under autocast with router_fp32, in the router's own dtype."""
        if not (self.router_fp32 and torch.is_autocast_enabled(x.device.type)):
            return self.r_proj(x)
        with torch.autocast(x.device.type, enabled=False):
            return self.r_proj(x.to(next(self.r_proj.parameters()).dtype))

    def _output(self, o, x):
        """silu, then g_norm (or o_norm gated by o_gate_proj), then o_proj."""
        if self.use_output_gate:
            gate = self.o_gate_proj(x).unflatten(-1, (self.num_heads, self.head_v_dim))
            return self.o_proj(self.o_norm(F.silu(o), gate).flatten(-2))
        return self.o_proj(self.g_norm(F.silu(o.flatten(-2))))

    def _forward_sp(self, x, attention_mask, past_key_values, cu_seqlens, position_ids):
        """This rank's shard [B, L, hidden] of a sequence split over self.sp_group.

        Positions (RoPE, Gumbel keys) are global, so every token sees exactly what
        it sees in the unsharded layer; cu_seqlens are the global document offsets.
        """
        group = self.sp_group
        if attention_mask is not None or past_key_values is not None:
            raise ValueError("RavenAttention with sp_group takes packed documents (cu_seqlens), "
                             "not attention_mask, and keeps no cache (past_key_values)")
        if x.dim() != 3 or x.shape[-1] != self.hidden_size:
            raise ValueError(f"hidden_states must be [B, L, hidden_size={self.hidden_size}], "
                             f"got {list(x.shape)}")
        B, L, _ = x.shape
        device = x.device
        gpos = group.positions(L, device)
        if cu_seqlens is not None:
            cu_seqlens = cu_seqlens.to(device=device, dtype=torch.int64)
        rope_pos = document_positions(gpos, cu_seqlens)[None, :]
        rows = torch.arange(B, device=device)[:, None].expand(B, L)
        positions = gpos[None, :].expand(B, L) if position_ids is None else \
            position_ids.to(device).expand(B, L)

        q, k, v, s, g = self._gsa_inputs(x, rope_pos if self.use_rope else None, rows, positions)
        scale = self.head_k_dim**-0.5 if self.scale is None else self.scale
        o = sp_gsa(q, k, v, s, g, group, scale=scale, cu_seqlens=cu_seqlens,
                   exchange=self.sp_exchange)
        o = self._output(o, x)
        return o, None, None

