"""Checkpoints of the C++ launcher (ravensp-train) in Python, both ways.

A checkpoint is one file written by ``torch::pickle_save`` (so ``torch.load``
reads it): a dict with ``format`` ("ravensp-checkpoint/1"), ``step``,
``data_position``, ``model`` (parameter name -> tensor, FLA names such as
``model.layers.0.attn.q_proj.weight``), ``optimizer`` (``step``, ``exp_avg``,
``exp_avg_sq`` by parameter name), ``rng``, ``model_config`` and ``config`` (the
resolved options). docs/launcher.md describes the keys.
"""
from __future__ import annotations

import os
import tempfile
from typing import Any, Dict, Optional

import torch

FORMAT = "ravensp-checkpoint/1"


def read_checkpoint(path: str) -> Dict[str, Any]:
    """The whole checkpoint dict, tensors on the CPU."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"{path} is not a {FORMAT} file")
    return ckpt


def load_checkpoint(path: str) -> Dict[str, torch.Tensor]:
    """The launcher's weights as a state_dict (FLA RavenForCausalLM names)."""
    return dict(read_checkpoint(path)["model"])


def layer_state_dict(state_dict: Dict[str, torch.Tensor], layer: int) -> Dict[str, torch.Tensor]:
    """The keys of block `layer`'s mixer, stripped of ``model.layers.<layer>.attn.``:
    what ``ravensp.nn.RavenAttention.load_state_dict`` takes."""
    prefix = f"model.layers.{layer}.attn."
    out = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
    if not out:
        raise KeyError(f"no parameters under {prefix!r}")
    return out


def raven_attention_kwargs(model_config: Dict[str, Any], layer: int) -> Dict[str, Any]:
    """RavenAttention constructor arguments matching the C++ model's layer `layer`."""
    keys = ("hidden_size", "expand_k", "expand_v", "num_heads", "num_kv_heads", "num_slots", "topk",
            "decay_type", "feature_map", "router_score", "router_type", "bias_rmm", "add_gumbel_noise",
            "use_output_gate", "use_rope", "gate_logit_normalizer", "norm_eps")
    kw = {k: model_config[k] for k in keys}
    kw["router_fp32"] = bool(model_config.get("router_fp32", True))  # absent before it existed
    scale = model_config["scale"]
    kw["scale"] = None if scale <= 0 else scale
    kw["layer_idx"] = layer
    return kw


def save_checkpoint(path: str, state_dict: Dict[str, torch.Tensor],
                    model_config: Optional[Dict[str, Any]] = None, step: int = 0) -> None:
    """Writes weights the launcher loads with ``--output.init_from=path`` (weights only;
    names and shapes must match its model). Atomic: temporary file, then rename."""
    ckpt = {
        "format": FORMAT,
        "step": int(step),
        "data_position": 0,
        "model": {k: v.detach().cpu().contiguous() for k, v in state_dict.items()},
        "model_config": dict(model_config or {}),
        "config": "",
    }
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=os.path.basename(path) + ".tmp.")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(ckpt, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
