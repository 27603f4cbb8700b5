"""Tests of ravensp.nn.RavenAttention against a transcription of the public Raven layer.

`public_forward` below re-derives the public layer's forward (goombalab/raven,
raven/layers/raven.py, with FLA's RMSNorm, FusedRMSNormGated, feature maps and
rotary kernel written out) in plain torch on a state_dict, with the token-by-token
GSA oracle as its core. Everything runs in float64 on CPU, where both sides must
agree to ~1e-10 in outputs and in every gradient.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ravensp.nn import RavenAttention, gumbel_noise
from ravensp.nn import raven as raven_module
from ravensp.testing.gsa_reference import gsa_recurrence_reference

DT = torch.float64
TOL = 1e-10  # fp64 end to end: only summation-order differences remain
BASE = dict(hidden_size=32, num_heads=2, num_slots=8, topk=3, layer_idx=0)


# --------------------------------------------------------------------------- transcription


def _wide(t):
    # The public code upcasts with .float(); in fp64 "at least fp32" keeps fp64.
    return t.to(torch.promote_types(t.dtype, torch.float32))


def _fla_rms(x, w, eps):
    xf = _wide(x)
    y = xf / torch.sqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return (y * w if w is not None else y).to(x.dtype)


def _fla_rotary(x, offset, cu_seqlens, table_len):
    """FLA's rotary kernel: non-interleaved halves, rows outside [0, TR) written as 0."""
    B, T, H, D = x.shape
    inv_freq = 1.0 / (10000.0 ** (torch.arange(0, D, 2, dtype=torch.float32) / D))
    table = torch.outer(torch.arange(table_len, dtype=torch.float32), inv_freq).to(_wide(x).dtype)
    cos_t, sin_t = table.cos().to(x.dtype), table.sin().to(x.dtype)
    t = torch.arange(T)
    if cu_seqlens is None:
        pos = t[None, :] + (offset[:, None] if torch.is_tensor(offset) else offset)
        pos = pos.expand(B, T)
    else:
        starts = cu_seqlens[:-1].long()
        doc = (t[:, None] >= cu_seqlens[None, 1:].long()).sum(-1)
        off = offset.long()[doc] if torch.is_tensor(offset) else offset
        pos = (t - starts[doc] + off)[None, :]
    ok = (pos >= 0) & (pos < table_len)
    idx = pos.clamp(0, table_len - 1)
    c, s = cos_t[idx][:, :, None, :], sin_t[idx][:, :, None, :]
    x0, x1 = x[..., : D // 2], x[..., D // 2 :]
    y = torch.cat([x0 * c - x1 * s, x0 * s + x1 * c], -1)
    return torch.where(ok[:, :, None, None], y, torch.zeros_like(y))


def _heads(t, n):
    return t.reshape(*t.shape[:-1], n, t.shape[-1] // n)


def _repeat_groups(t, groups):
    # "(h g)": kv head j fills query heads j*G .. j*G+G-1
    if groups == 1:
        return t
    *lead, h, d = t.shape
    return t[..., :, None, :].expand(*lead, h, groups, d).reshape(*lead, h * groups, d)


def public_forward(p, cfg, x, attention_mask=None, cu_seqlens=None, noise=None):
    """The public layer's forward on parameters p (name -> tensor) and config cfg."""
    H = cfg["num_heads"]
    Hkv = cfg.get("num_kv_heads") or H
    G = H // Hkv
    d = cfg["hidden_size"]
    Kh = int(d * cfg.get("expand_k", 1.0)) // H
    Vh = int(d * cfg.get("expand_v", 1.0)) // H
    M = cfg.get("num_slots") or Kh
    eps = cfg.get("norm_eps", 1e-5)
    B, L, _ = x.shape
    offset, max_seqlen = 0, L
    if attention_mask is not None:
        indices = torch.nonzero(attention_mask.flatten(), as_tuple=False).flatten()
        lens = attention_mask.sum(-1, dtype=torch.int32)
        cu_seqlens = F.pad(torch.cumsum(lens, 0, dtype=torch.int32), (1, 0))
        x = x.reshape(B * L, d)[indices].unsqueeze(0)
        offset = 0 + lens - attention_mask.shape[-1]
        max_seqlen = max(L, L + int(offset.max()))

    q = _heads(x @ p["q_proj.weight"].T, H)
    k = _heads(x @ p["k_proj.weight"].T, Hkv)
    v = _heads(x @ p["v_proj.weight"].T, Hkv)
    if cfg.get("router_type", "lin") == "lin":
        router = _heads(x @ p["r_proj.weight"].T, H)
    else:
        hid = F.gelu(x @ p["r_proj.0.weight"].T + p["r_proj.0.bias"])
        router = _heads(hid @ p["r_proj.2.weight"].T, H)

    if cfg.get("decay_type", "Mamba2") == "Mamba2":
        a = x @ p["a_proj.weight"].T
        f = (-_wide(p["A_log"]).exp() * F.softplus(_wide(a) + p["dt_bias"])).unsqueeze(-1)
    else:
        f = F.logsigmoid(_heads(x @ p["f_proj.weight"].T, Hkv)) / cfg.get("gate_logit_normalizer", 8)
        f = _repeat_groups(f, G)

    fmap = cfg.get("feature_map", "swish")
    if fmap == "swish":
        q, k = q * torch.sigmoid(q), k * torch.sigmoid(k)
    elif fmap == "relu":
        q, k = q.clamp_min(0), k.clamp_min(0)
    else:
        q, k = (q @ p["feature_map.layer.weight"].T).clamp_min(0), (k @ p["feature_map.layer.weight"].T).clamp_min(0)
    q = _fla_rms(q, p.get("q_norm.weight"), eps)
    k = _fla_rms(k, p.get("k_norm.weight"), eps)
    if cfg.get("use_rope", False):
        table_len = max(max_seqlen, 8192)
        q = _fla_rotary(q, offset, cu_seqlens, table_len)
        k = _fla_rotary(k, offset, cu_seqlens, table_len)
    v = v * torch.sigmoid(v)

    if noise is not None:
        router = router + noise
    orig = torch.sigmoid(router) if cfg.get("router_score", "sigmoid") == "sigmoid" else router.softmax(-1)
    scores = orig + _wide(p["r_bias"]) if cfg.get("bias_rmm", False) else orig
    idx = scores.topk(cfg["topk"], dim=-1).indices
    tw = orig.gather(-1, idx)
    if cfg.get("router_score", "sigmoid") == "sigmoid":
        tw = tw / (tw.sum(-1, keepdim=True) + 1e-9)
    multihot = torch.zeros_like(router).scatter(-1, idx, tw)
    f = (f * multihot).to(q.dtype)
    s = (1 - f.exp()).to(q.dtype)
    k, v = _repeat_groups(k, G), _repeat_groups(v, G)
    o, _ = gsa_recurrence_reference(q, k, v, s, f, cfg.get("scale", 1.0), None, cu_seqlens)

    if cfg.get("use_output_gate", False):
        gate = _heads(x @ p["o_gate_proj.weight"].T, H)
        o = _wide(o * torch.sigmoid(o))
        o = o / torch.sqrt(o.pow(2).mean(-1, keepdim=True) + eps) * p["o_norm.weight"]
        o = (o * _wide(gate) * torch.sigmoid(_wide(gate))).to(x.dtype)
        o = o.flatten(-2) @ p["o_proj.weight"].T
    else:
        o = o.flatten(-2)
        o = _fla_rms(o * torch.sigmoid(o), p.get("g_norm.weight"), eps) @ p["o_proj.weight"].T
    if attention_mask is not None:
        out = o.new_zeros(B * L, d)
        out = out.index_put((indices,), o[0])
        o = out.reshape(B, L, d)
    return o


# --------------------------------------------------------------------------- helpers


def make_layer(seed=0, **kw):
    cfg = {**BASE, **kw}
    torch.manual_seed(seed)
    layer = RavenAttention(**cfg).to(DT).eval()
    # Move every parameter off its init value (norm weights 1, r_bias 0) so a
    # mis-wired one shows up.
    with torch.no_grad():
        for name, prm in layer.named_parameters():
            if name.endswith("norm.weight"):
                prm.copy_(1 + 0.3 * torch.randn_like(prm))
            elif name == "r_bias":
                prm.copy_(0.3 * torch.randn_like(prm))
            elif name == "A_log":
                prm.copy_(torch.empty_like(prm).uniform_(-1, 1.5))
    return layer, cfg


def run_both(layer, cfg, x, **fwd):
    """Outputs and gradients (wrt x and every parameter) of the layer and the transcription."""
    torch.manual_seed(123)
    x1 = x.clone().requires_grad_(True)
    o1 = layer(x1, **fwd)[0]
    w = torch.randn_like(o1)
    params = dict(layer.named_parameters())
    # allow_unused: r_bias only steers the top-k choice, so neither side gives it a gradient
    g1 = torch.autograd.grad((o1 * w).sum(), [x1, *params.values()], allow_unused=True)

    p = {n: t.detach().clone().requires_grad_(True) for n, t in params.items()}
    x2 = x.clone().requires_grad_(True)
    o2 = public_forward(p, cfg, x2, **fwd)
    g2 = torch.autograd.grad((o2 * w).sum(), [x2, *p.values()], allow_unused=True)
    return o1, o2, ["x", *params], g1, g2


def assert_close_all(o1, o2, names, g1, g2, tol=TOL):
    assert o1.abs().max() > 1e-3, "output is (nearly) zero: the comparison would prove nothing"
    torch.testing.assert_close(o1, o2, rtol=0, atol=tol)
    for n, a, b in zip(names, g1, g2):
        if n == "r_bias":
            assert a is None and b is None
            continue
        assert b.abs().max() > 0, f"reference gradient of {n} is zero"
        torch.testing.assert_close(a, b, rtol=0, atol=tol, msg=lambda m: f"grad {n}: {m}")


# --------------------------------------------------------------------------- (a) math


CASES = {
    "mamba2-lin-sigmoid": (dict(), 2, 20),
    "gla-lin-sigmoid": (dict(decay_type="GLA"), 2, 20),
    "mamba2-mlp-softmax": (dict(router_type="mlp", router_score="softmax"), 2, 20),
    "gla-mlp-softmax-bias": (dict(decay_type="GLA", router_type="mlp", router_score="softmax", bias_rmm=True), 2, 20),
    "mamba2-bias-outgate": (dict(bias_rmm=True, use_output_gate=True), 2, 20),
    "gla-outgate-rope": (dict(decay_type="GLA", use_output_gate=True, use_rope=True), 1, 33),
    "mamba2-rope-chunk67": (dict(use_rope=True), 1, 67),
    "gla-bias-chunk67": (dict(decay_type="GLA", bias_rmm=True), 2, 67),
    "mlp-softmax-outgate-rope-chunk130": (
        dict(router_type="mlp", router_score="softmax", use_output_gate=True, use_rope=True), 1, 130),
    "relu": (dict(feature_map="relu"), 2, 12),
    "t2r": (dict(feature_map="t2r", decay_type="GLA"), 2, 12),
    "gqa-mamba2": (dict(num_heads=4, num_kv_heads=2), 2, 20),
    "gqa-gla-rope-outgate": (dict(num_heads=4, num_kv_heads=2, decay_type="GLA", use_rope=True,
                                  use_output_gate=True), 1, 20),
    "expand-scaleNone-noaffine": (dict(expand_k=2.0, expand_v=2.0, scale=None, elementwise_affine=False,
                                       use_output_gate=True, num_slots=None), 2, 10),
    "fused-recurrent-mode-long": (dict(mode="fused_recurrent", decay_type="GLA"), 1, 70),
}


@pytest.mark.parametrize("case", list(CASES))
def test_matches_public_math(case):
    kw, B, T = CASES[case]
    layer, cfg = make_layer(**kw)
    x = torch.randn(B, T, cfg["hidden_size"], dtype=DT)
    assert_close_all(*run_both(layer, cfg, x))


@pytest.mark.parametrize("use_rope", [False, True])
def test_cu_seqlens_matches_public_math(use_rope):
    layer, cfg = make_layer(decay_type="GLA", use_rope=use_rope, bias_rmm=True)
    cu = torch.tensor([0, 5, 6, 40, 71], dtype=torch.int32)
    x = torch.randn(1, 71, cfg["hidden_size"], dtype=DT)
    assert_close_all(*run_both(layer, cfg, x, cu_seqlens=cu))


def test_attention_mask_matches_public_math():
    # RoPE off: with padding, the public layer rotates packed tokens by a negative
    # offset (see RavenAttention's docstring), which this layer deliberately fixes.
    layer, cfg = make_layer(router_type="mlp", use_output_gate=True)
    mask = torch.ones(3, 70, dtype=torch.int64)
    mask[0, :9] = 0   # left padding
    mask[1, 50:] = 0  # right padding
    x = torch.randn(3, 70, cfg["hidden_size"], dtype=DT)
    assert_close_all(*run_both(layer, cfg, x, attention_mask=mask))


def test_full_mask_with_rope_matches_public_math():
    layer, cfg = make_layer(use_rope=True)
    x = torch.randn(1, 30, cfg["hidden_size"], dtype=DT)
    assert_close_all(*run_both(layer, cfg, x, attention_mask=torch.ones(1, 30, dtype=torch.int64)))


def test_gumbel_training_matches_public_math_with_same_noise():
    layer, cfg = make_layer(decay_type="GLA", bias_rmm=True)
    layer.train()
    layer.gumbel_seed, layer.gumbel_step = 7, 3
    x = torch.randn(2, 20, cfg["hidden_size"], dtype=DT)
    rows = torch.arange(2)[:, None].expand(2, 20)
    pos = torch.arange(20)[None, :].expand(2, 20)
    noise = gumbel_noise(7, 3, 0, rows, pos, cfg["num_heads"], cfg["num_slots"], DT)
    o = layer(x)[0]
    p = dict(layer.named_parameters())
    torch.testing.assert_close(o, public_forward(p, cfg, x, noise=noise), rtol=0, atol=TOL)
    assert (o - public_forward(p, cfg, x)).abs().max() > 1e-6, "noise had no effect"


# --------------------------------------------------------------------------- packing, padding, cache


@pytest.mark.parametrize("use_rope", [False, True])
def test_cu_seqlens_equals_separate_calls(use_rope):
    layer, cfg = make_layer(use_rope=use_rope, use_output_gate=True)
    lens = [1, 30, 45, 4]
    docs = [torch.randn(1, n, cfg["hidden_size"], dtype=DT) for n in lens]
    cu = torch.tensor([0, *torch.tensor(lens).cumsum(0).tolist()], dtype=torch.int64)
    packed = layer(torch.cat(docs, 1), cu_seqlens=cu)[0]
    separate = torch.cat([layer(d)[0] for d in docs], 1)
    assert separate.abs().max() > 1e-3
    torch.testing.assert_close(packed, separate, rtol=0, atol=TOL)


@pytest.mark.parametrize("use_rope", [False, True])
def test_attention_mask_equals_unpadded(use_rope):
    layer, cfg = make_layer(use_rope=use_rope, decay_type="GLA")
    T, d = 70, cfg["hidden_size"]
    spans = [(0, 70), (9, 70), (0, 50), (20, 41)]  # full, left-, right-, both-padded
    mask = torch.zeros(len(spans), T, dtype=torch.int64)
    for b, (lo, hi) in enumerate(spans):
        mask[b, lo:hi] = 1
    x = torch.randn(len(spans), T, d, dtype=DT)
    out = layer(x, attention_mask=mask)[0]
    for b, (lo, hi) in enumerate(spans):
        alone = layer(x[b:b + 1, lo:hi])[0][0]
        torch.testing.assert_close(out[b, lo:hi], alone, rtol=0, atol=TOL)
        assert (out[b, :lo] == 0).all() and (out[b, hi:] == 0).all()


class _Cache:
    """The FLA Cache calls the layer makes, for one layer."""

    def __init__(self):
        self.states, self.seen = [], 0

    def __len__(self):
        return len(self.states)

    def __getitem__(self, i):
        return self.states[i]

    def get_seq_length(self, i):
        return self.seen

    def update(self, recurrent_state, conv_state, layer_idx, offset):
        entry = {"recurrent_state": recurrent_state}
        if len(self.states) <= layer_idx:
            self.states.append(entry)
        else:
            self.states[layer_idx] = entry
        self.seen += offset


@pytest.mark.parametrize("split", [1, 40])
def test_cache_continuation_equals_whole(split):
    layer, cfg = make_layer(use_rope=True, bias_rmm=True)
    x = torch.randn(2, 70, cfg["hidden_size"], dtype=DT)
    whole = layer(x)[0]
    cache = _Cache()
    first = layer(x[:, :split], past_key_values=cache, use_cache=True)[0]
    assert cache[0]["recurrent_state"][0].shape == (2, cfg["num_heads"], 16, cfg["num_slots"])
    second = layer(x[:, split:], past_key_values=cache, use_cache=True)[0]
    torch.testing.assert_close(torch.cat([first, second], 1), whole, rtol=0, atol=TOL)


def test_mode_selection(monkeypatch):
    seen = []
    real = raven_module.gsa

    def spy(mode, *args):
        seen.append(mode)
        return real(mode, *args)

    monkeypatch.setattr(raven_module, "gsa", spy)
    layer, cfg = make_layer()
    for T in (64, 65):
        layer(torch.randn(1, T, cfg["hidden_size"], dtype=DT))
    recurrent, _ = make_layer(mode="fused_recurrent")
    recurrent(torch.randn(1, 65, cfg["hidden_size"], dtype=DT))
    assert seen == ["fused_recurrent", "chunk", "fused_recurrent"]


# --------------------------------------------------------------------------- (b) checkpoint layout


def expected_state_dict(d, H, Hkv, Kh, Vh, M, decay, router, bias_rmm, out_gate, t2r=False):
    """Keys and shapes of the public layer's state_dict, read off its constructor."""
    e = {}
    if decay == "Mamba2":
        e.update({"A_log": (H,), "dt_bias": (H,)})
    if bias_rmm:
        e["r_bias"] = (H, M)
    if t2r:
        e["feature_map.layer.weight"] = (Kh, Kh)
    e.update({"q_proj.weight": (H * Kh, d), "k_proj.weight": (Hkv * Kh, d), "v_proj.weight": (Hkv * Vh, d)})
    if decay == "Mamba2":
        e["a_proj.weight"] = (H, d)
    else:
        e["f_proj.weight"] = (Hkv * M, d)
    if router == "lin":
        e["r_proj.weight"] = (H * M, d)
    else:
        e.update({"r_proj.0.weight": (d, d), "r_proj.0.bias": (d,), "r_proj.2.weight": (H * M, d)})
    e.update({"q_norm.weight": (Kh,), "k_norm.weight": (Kh,)})
    if out_gate:
        e.update({"o_gate_proj.weight": (H * Vh, d), "o_norm.weight": (Vh,)})
    else:
        e["g_norm.weight"] = (d,)
    e["o_proj.weight"] = (d, H * Vh)
    return e


LAYOUTS = {
    "default-340M-shape": (dict(hidden_size=64, num_heads=4, num_slots=16, topk=4),
                           (64, 4, 4, 16, 16, 16, "Mamba2", "lin", False, False)),
    "gla-mlp-bias-gate-rope-gqa-t2r": (
        dict(hidden_size=64, num_heads=4, num_kv_heads=2, num_slots=8, topk=2, decay_type="GLA", router_type="mlp",
             bias_rmm=True, use_output_gate=True, use_rope=True, feature_map="t2r", expand_v=2.0),
        (64, 4, 2, 16, 32, 8, "GLA", "mlp", True, True, True)),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_state_dict_layout_and_strict_load(layout):
    kw, args = LAYOUTS[layout]
    layer = RavenAttention(layer_idx=0, **kw)
    expected = expected_state_dict(*args)
    got = {k: tuple(v.shape) for k, v in layer.state_dict().items()}
    assert got == expected
    torch.manual_seed(5)
    foreign = {k: torch.randn(shape) for k, shape in expected.items()}
    layer.load_state_dict(foreign, strict=True)
    for k, v in layer.state_dict().items():
        assert torch.equal(v, foreign[k])


def test_init_follows_public_layer():
    torch.manual_seed(0)
    layer = RavenAttention(hidden_size=64, num_heads=64, num_slots=4, topk=2, bias_rmm=True, layer_idx=0)
    A = layer.A_log.detach().exp()
    assert A.min() > 0 and A.max() < 16 and A.std() > 2  # U(0, 16) over 64 heads
    dt = F.softplus(layer.dt_bias.detach())
    assert dt.min() >= 1e-3 * (1 - 1e-5) and dt.max() <= 0.1 * (1 + 1e-5)
    assert torch.equal(layer.r_bias.detach(), torch.zeros(64, 4))
    assert layer.A_log._no_weight_decay and layer.dt_bias._no_weight_decay
    assert (layer.q_norm.weight == 1).all() and (layer.g_norm.weight == 1).all()


# --------------------------------------------------------------------------- (c) Gumbel noise


def _keys(B=2, T=16, start=0):
    rows = torch.arange(B)[:, None].expand(B, T)
    return rows, (torch.arange(T) + start)[None, :].expand(B, T)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_gumbel_same_key_same_bits_and_keys_separate(dtype):
    rows, pos = _keys()
    a = gumbel_noise(11, 2, 3, rows, pos, 4, 8, dtype)
    assert a.shape == (2, 16, 4, 8) and a.dtype == dtype
    assert torch.equal(a, gumbel_noise(11, 2, 3, rows, pos, 4, 8, dtype))
    # A shard drawing positions 5..12 gets exactly the whole sequence's noise there.
    sub_rows, sub_pos = rows[:, 5:13].contiguous(), pos[:, 5:13].contiguous()
    assert torch.equal(gumbel_noise(11, 2, 3, sub_rows, sub_pos, 4, 8, dtype), a[:, 5:13])
    for other in (gumbel_noise(12, 2, 3, rows, pos, 4, 8, dtype), gumbel_noise(11, 3, 3, rows, pos, 4, 8, dtype),
                  gumbel_noise(11, 2, 4, rows, pos, 4, 8, dtype), gumbel_noise(11, 2, 3, rows, pos + 1, 4, 8, dtype)):
        assert (other != a).float().mean() > 0.99
    # rows, heads and slots each get their own values
    assert (a[0] != a[1]).float().mean() > 0.99
    assert (a[:, :, 0] != a[:, :, 1]).float().mean() > 0.99
    assert (a[..., 0] != a[..., 1]).float().mean() > 0.99
    assert torch.equal(gumbel_noise(-1, 2**40, 3, rows, pos + 2**35, 4, 8, dtype),
                       gumbel_noise(-1, 2**40, 3, rows, pos + 2**35, 4, 8, dtype))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_gumbel_distribution(dtype):
    rows, pos = _keys(B=5, T=2500, start=10**9)
    z = gumbel_noise(1, 0, 0, rows, pos, 2, 4, dtype).double().flatten()  # 1e5 samples
    n = z.numel()
    assert n == 100_000 and torch.isfinite(z).all()
    euler_gamma = 0.5772156649
    assert abs(z.mean().item() - euler_gamma) < 0.02  # sd of the mean ~ 0.004
    assert abs(z.var().item() - math.pi**2 / 6) < 0.06
    zs, _ = z.sort()
    cdf = torch.exp(-torch.exp(-zs))
    i = torch.arange(1, n + 1, dtype=torch.float64)
    ks = torch.maximum(i / n - cdf, cdf - (i - 1) / n).max().item()
    assert ks < 0.01  # 1% critical value at n=1e5 is ~0.0052
    # neighbouring slots and neighbouring positions are uncorrelated
    grid = z.reshape(5, 2500, 2, 4)
    for u, v in ((grid[..., :-1], grid[..., 1:]), (grid[:, :-1], grid[:, 1:])):
        c = torch.corrcoef(torch.stack([u.flatten(), v.flatten()]))[0, 1].item()
        assert abs(c) < 0.02


def test_eval_has_no_noise_training_is_seeded():
    layer, cfg = make_layer(bias_rmm=True, topk=2)
    x = torch.randn(2, 24, cfg["hidden_size"], dtype=DT)
    e1, e2 = layer(x)[0], layer(x)[0]
    assert torch.equal(e1, e2)
    layer.train()
    layer.gumbel_seed, layer.gumbel_step = 3, 10
    t1, t2 = layer(x)[0], layer(x)[0]
    assert torch.equal(t1, t2)
    assert (t1 - e1).abs().max() > 1e-6
    layer.gumbel_step = 11
    assert (layer(x)[0] - t1).abs().max() > 1e-6
    layer.gumbel_step = 10
    shifted = layer(x, position_ids=torch.arange(24) + 100)[0]
    assert (shifted - t1).abs().max() > 1e-6
    assert torch.equal(layer(x, position_ids=torch.arange(24))[0], t1)
    layer.add_gumbel_noise = False
    assert torch.equal(layer(x)[0], e1)


@pytest.mark.parametrize("router_type", ["lin", "mlp"])
def test_router_logits_stay_fp32_under_autocast(router_type, monkeypatch):
    """router_fp32 (default): bf16 autocast leaves the router's logits in fp32, which
    keeps top-k choices as fp32 makes them; router_fp32=False: the public layer's bf16."""
    seen = []
    real = raven_module.route

    def spy(logits, *a, **k):
        seen.append(logits.dtype)
        return real(logits, *a, **k)

    monkeypatch.setattr(raven_module, "route", spy)
    torch.manual_seed(0)
    x = torch.randn(1, 80, BASE["hidden_size"])
    for fp32, want in ((True, torch.float32), (False, torch.bfloat16)):
        layer = RavenAttention(**BASE, router_type=router_type, router_fp32=fp32).train()
        with torch.autocast("cpu", torch.bfloat16):
            out = layer(x)[0]
        assert seen[-1] == want, (fp32, seen)
        out.float().sum().backward()  # gradients flow through the fp32 router
        assert layer.r_proj.parameters().__next__().grad.abs().sum() > 0
    # fp64 layers are untouched: logits stay fp64.
    layer = RavenAttention(**BASE).double()
    layer(x.double())
    assert seen[-1] == torch.float64


# --------------------------------------------------------------------------- (d) bad inputs


@pytest.mark.parametrize("kw, exc, name", [
    (dict(topk=9), ValueError, "topk"),
    (dict(decay_type="mamba"), ValueError, "decay_type"),
    (dict(router_score="relu"), ValueError, "router_score"),
    (dict(router_type="conv"), ValueError, "router_type"),
    (dict(feature_map="elu"), NotImplementedError, "feature_map"),
    (dict(mode="parallel"), ValueError, "mode"),
    (dict(num_heads=4, num_kv_heads=3), ValueError, "num_kv_heads"),
])
def test_bad_constructor_arguments(kw, exc, name):
    with pytest.raises(exc, match=name):
        RavenAttention(**{**BASE, **kw})


def test_bad_forward_inputs():
    layer, cfg = make_layer()
    d = cfg["hidden_size"]
    with pytest.raises(ValueError, match="hidden_states"):
        layer(torch.randn(1, 8, d + 1, dtype=DT))
    with pytest.raises(ValueError, match="hidden_states"):
        layer(torch.randn(8, d, dtype=DT))
    with pytest.raises(ValueError, match="cu_seqlens.*B=2"):
        layer(torch.randn(2, 8, d, dtype=DT), cu_seqlens=torch.tensor([0, 8]))
    with pytest.raises(ValueError, match="cu_seqlens.*T=8"):
        layer(torch.randn(1, 8, d, dtype=DT), cu_seqlens=torch.tensor([0, 3, 7]))
    with pytest.raises(ValueError, match="cu_seqlens"):
        layer(torch.randn(1, 8, d, dtype=DT), cu_seqlens=torch.tensor([0, 5, 3, 8]))
    with pytest.raises(ValueError, match="attention_mask"):
        layer(torch.randn(2, 8, d, dtype=DT), attention_mask=torch.ones(2, 5))
    with pytest.raises(ValueError, match="position_ids"):
        layer(torch.randn(1, 8, d, dtype=DT), position_ids=torch.arange(9))
