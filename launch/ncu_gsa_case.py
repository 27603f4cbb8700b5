"""One chunked GSA forward+backward at issue 4's target shape (B1 H4 K=V=256 M64
T=32K, bf16), twice (the first warms up), for Nsight Compute to profile.
RAVENSP_NCU_M=<slots> profiles another slot count (the M=256 shapes)."""
import os

import torch

import ravensp
from conftest import make_gsa_inputs

M = int(os.environ.get("RAVENSP_NCU_M", "64"))
q, k, v, s, g = make_gsa_inputs(1, 32768, 4, 256, 256, M, dtype=torch.bfloat16, device="cuda")[:5]
for _ in range(2):
    o, _ = ravensp.chunk_gsa(q, k, v, s, g, 1.0)
    o.float().sum().backward()
torch.cuda.synchronize()
