"""Shared pytest fixtures: GSA input factories and the tolerance table."""
import pytest
import torch

# Tolerances by dtype, derived rather than tuned: the CPU ops compute in the
# accumulation dtype (fp64 for fp64 inputs, fp32 otherwise) and round the
# output once to the input dtype. fp64: the chunked and token-by-token sums
# differ only in summation order (~1e-15 relative, 1e-10 leaves room for
# T=130 accumulation). fp32: a few hundred fp32 roundings (eps 1.2e-7) per
# output. bf16/fp16: one final rounding of the output (eps 2^-8 / 2^-11),
# doubled for the rounding of the inputs the reference also sees.
TOLERANCE = {
    torch.float64: 1e-10,
    torch.float32: 2e-5,
    torch.bfloat16: 2 * 2.0 ** -8,
    torch.float16: 2 * 2.0 ** -11,
}


def make_gsa_inputs(B, T, H, K, V, M, dtype=torch.float64, seed=0, states=False, n_seqs=None,
                    requires_grad=True, device="cpu"):
    """Random GSA inputs with a realistic decay: g in (-0.5, 0], s = 1 - exp(g)
    scaled by a sparse routing weight, as the Raven layer produces them."""
    gen = torch.Generator().manual_seed(seed)
    f64 = dict(dtype=torch.float64, generator=gen)
    q = 0.5 * torch.randn(B, T, H, K, **f64)
    k = 0.5 * torch.randn(B, T, H, K, **f64)
    v = torch.randn(B, T, H, V, **f64)
    w = torch.rand(B, T, H, M, **f64) * (torch.rand(B, T, H, M, **f64) < 0.6)
    g = -0.5 * torch.rand(B, T, H, M, **f64) * w
    s = 1 - g.exp()
    tensors = [q, k, v, s, g]
    if states:
        n = B if n_seqs is None else n_seqs
        tensors += [0.3 * torch.randn(n, H, K, M, **f64), 0.3 * torch.randn(n, H, M, V, **f64)]
    out = [t.to(device=device, dtype=dtype if i < 5 else t.dtype) for i, t in enumerate(tensors)]
    if requires_grad:
        out = [t.requires_grad_() for t in out]
    return out


@pytest.fixture
def gsa_inputs():
    return make_gsa_inputs
