"""Checkpoints between the C++ launcher and Python, both ways, with numbers.

The launcher writes a checkpoint; ravensp.load_checkpoint reads it and its Raven
layers load into ravensp.nn.RavenAttention (strict). Python writes weights back
(ravensp.save_checkpoint); the launcher trains from them (--output.init_from) on a
text file, and its first-step loss equals the loss Python computes with the same
weights, the same tokens and the same Gumbel noise (fp64, train mode).
"""
import json
import os
import shutil
import subprocess

import pytest
import torch
import torch.nn.functional as F

import ravensp
from ravensp.checkpoint import layer_state_dict, raven_attention_kwargs
from ravensp.nn import RavenAttention
from ravensp.nn.norms import rms_norm

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _launcher():
    candidates = [os.environ.get("RAVENSP_TRAIN_BIN", ""),
                  os.path.join(os.environ.get("RAVENSP_BUILD", ""), "bin", "ravensp-train"),
                  os.path.join(ROOT, "build", "py", "bin", "ravensp-train"),
                  shutil.which("ravensp-train") or ""]
    for c in candidates:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    pytest.skip("ravensp-train not built (set RAVENSP_TRAIN_BIN)")


T = 80  # > 64: both sides take the chunked GSA path
MODEL = ["--model.vocab_size=256", "--model.hidden_size=32", "--model.num_layers=2",
         "--model.num_heads=2", "--model.num_slots=8", "--model.topk=3",
         "--model.intermediate_size=48", "--model.use_rope=true"]


def _run(tmp_path, name, *extra):
    out = tmp_path / name
    cmd = [_launcher(), *MODEL, "--data.kind=text", f"--data.path={tmp_path / 'text.bin'}",
           f"--data.seq_len={T}", "--data.micro_batch=1", "--train.precision=fp64",
           "--train.device=cpu", "--train.seed=11", f"--output.dir={out}", "--output.resume=none",
           "--output.progress=off", "--output.json_stdout=true", *extra]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    records = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    return out, records


def _python_loss(sd, cfg, tokens, seed, step):
    """The C++ model's forward, written with ravensp.nn pieces."""
    eps = cfg["norm_eps"]
    x = sd["model.embeddings.weight"][tokens[:-1]][None]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        attn = RavenAttention(**raven_attention_kwargs(cfg, i)).double().train()
        attn.load_state_dict(layer_state_dict(sd, i), strict=True)
        attn.gumbel_seed, attn.gumbel_step = seed, step
        x = x + attn(rms_norm(x, sd[p + "attn_norm.weight"], eps))[0]
        h = rms_norm(x, sd[p + "mlp_norm.weight"], eps)
        mlp = F.silu(h @ sd[p + "mlp.gate_proj.weight"].T) * (h @ sd[p + "mlp.up_proj.weight"].T)
        x = x + mlp @ sd[p + "mlp.down_proj.weight"].T
    x = rms_norm(x, sd["model.norm.weight"], eps)
    logits = x[0] @ sd["lm_head.weight"].T
    return F.cross_entropy(logits, tokens[1:]).item()


def test_round_trip_and_same_loss(tmp_path):
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 256, (3 * T + 1,), generator=gen, dtype=torch.uint8)
    (tmp_path / "text.bin").write_bytes(tokens.numpy().tobytes())

    out, _ = _run(tmp_path, "first", "--train.steps=1")
    ckpt = ravensp.read_checkpoint(str(out / "ckpt-0000001.pt"))
    assert ckpt["step"] == 1 and ckpt["data_position"] == 1
    sd = ravensp.load_checkpoint(str(out / "ckpt-0000001.pt"))
    cfg = ckpt["model_config"]
    assert set(ckpt["optimizer"]["exp_avg"]) == set(sd)
    for i in range(cfg["num_hidden_layers"]):  # strict loads: names and shapes match
        RavenAttention(**raven_attention_kwargs(cfg, i)).load_state_dict(layer_state_dict(sd, i))

    # Python -> launcher: perturbed weights, written by Python, trained from in C++.
    sd = {k: v + 0.01 * torch.randn(v.shape, generator=gen, dtype=v.dtype) for k, v in sd.items()}
    ravensp.save_checkpoint(str(tmp_path / "py.pt"), sd, cfg)
    _, records = _run(tmp_path, "second", "--train.steps=1",
                      f"--output.init_from={tmp_path / 'py.pt'}")
    want = _python_loss(sd, cfg, tokens[: T + 1].long(), seed=11, step=0)
    assert records[0]["loss"] == pytest.approx(want, rel=1e-10, abs=0)
