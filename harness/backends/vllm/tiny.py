"""Tiny random-weight models that vLLM's CPU attention accepts (head_dim 32 instead of 16).

Why: the builders in ``harness.models.tiny`` use 4 heads of dim 16 (hidden 64), and vLLM's CPU
attention kernel refuses that (``RuntimeError: Unsupported CPU attention configuration:
head_dim=16``; supported: 32, 64, 80, ...). Regrouping the same hidden size into half as many
heads of twice the size keeps every weight shape of the q/k/v/o projections, so the builder's
weights are reused as they are and only ``config.json`` changes (plus, for Qwen3-VL, its per-head
q/k RMSNorm weights, which are sized head_dim: they are widened by repetition). The M-RoPE
sections are doubled to keep summing to head_dim / 2. The model is still one the transformers
adapters load with the stock classes; both backends are compared on this same directory.
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file, save_file

from harness.models.tiny import build_tiny_model

VLLM_CPU_HEAD_DIM = 32


def _widen_text_config(text: dict) -> int:
    """Halve the head counts, double head_dim and the M-RoPE sections; return the factor applied."""
    heads = int(text["num_attention_heads"])
    head_dim = int(text.get("head_dim") or text["hidden_size"] // heads)
    if head_dim >= VLLM_CPU_HEAD_DIM:
        return 1
    factor = VLLM_CPU_HEAD_DIM // head_dim
    kv = int(text.get("num_key_value_heads", heads))
    if heads % factor or kv % factor:
        raise ValueError(f"cannot regroup {heads} heads / {kv} kv heads of dim {head_dim} into dim 32")
    text["num_attention_heads"] = heads // factor
    text["num_key_value_heads"] = kv // factor
    if "head_dim" in text:
        text["head_dim"] = head_dim * factor
    rope = text.get("rope_parameters") or {}
    if "mrope_section" in rope:
        rope["mrope_section"] = [s * factor for s in rope["mrope_section"]]
    return factor


def build_vllm_tiny_model(family: str, out_dir: str | Path, seed: int = 0) -> Path:
    """``harness.models.tiny.build_tiny_model`` with LLM heads regrouped to dim 32 (module docstring)."""
    out = build_tiny_model(family, out_dir, seed=seed)
    config_path = out / "config.json"
    config = json.loads(config_path.read_text())
    factor = _widen_text_config(config["text_config"])
    config_path.write_text(json.dumps(config, indent=2))
    if factor > 1:
        weights_path = out / "model.safetensors"
        weights = load_file(weights_path)
        changed = False
        for name, value in weights.items():
            # Qwen3's per-head RMSNorm over head_dim (q_norm / k_norm) in the language model.
            if "language_model" in name and name.endswith(("q_norm.weight", "k_norm.weight")):
                weights[name] = value.repeat(factor).contiguous()
                changed = True
        if changed:
            save_file(weights, weights_path, metadata={"format": "pt"})
    return out
