"""A random-weight AutoGaze in the published checkpoint layout, built on the fly (no download).

Why: the demo and CI must run on a fresh clone with nothing beside it, and no weights can be
fetched. This writes ``config.json`` / ``model.safetensors`` / ``preprocessor_config.json``
exactly as ``nvidia/AutoGaze`` lays them out (same architecture: scales 32+64+112+224, 265 gaze
tokens per frame, 4-layer LLaMA-style decoder with 10-token prediction, 3.26M parameters), so
everything downstream loads it through the real loader (``AutoGaze.from_pretrained``).

Its weights are RANDOM (seeded): where it looks is arbitrary, not a learned saliency. Token
counts, timings and the pipeline are real; which patches it keeps means nothing. Weights are
drawn with std 0.2 (norms at 1) so that logits are decisive, as in the parity fixture; its
task-loss head predicts values around 0, not the published model's positive losses, so runs on
it use ``task_loss_requirement: null`` (a fixed gazing ratio).

    model: tiny              # in a pruner's params: built once into <cache>/tiny-models/
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from harness.cache import build_once, cache_dir
from harness.gaze.config import AutoGazeConfig
from harness.gaze.loader import CONFIG_NAME, PREPROCESSOR_NAME, WEIGHTS_NAME

#: The pruner/CLI value that means "build the tiny random-weight AutoGaze".
TINY_AUTOGAZE = "tiny"
TINY_AUTOGAZE_LABEL = "the tiny AutoGaze (random weights: where it gazes is arbitrary)"

WEIGHT_STD = 0.2
TASK_LOSS_HEAD_STD = 0.1


def published_layout_config() -> dict[str, Any]:
    """``config.json`` of the published model's architecture (keys as ``save_pretrained`` writes them)."""
    return {
        "architectures": ["AutoGaze"],
        "model_type": "autogaze",
        "attn_mode": "sdpa",
        "scales": "32+64+112+224",
        "num_vision_tokens_each_frame": 265,
        "has_task_loss_requirement_during_inference": False,
        "gazing_ratio_config": {"sample_strategy_during_inference": "fixed", "fixed": {"gazing_ratio": 0.5}},
        "task_loss_requirement_config": {
            "sample_strategy_during_inference": "fixed",
            "fixed": {"task_loss_requirement": 0.7},
        },
        "torch_dtype": "float32",
        "tiny_random_weights": True,  # not read by any loader: says what this checkpoint is
        "gaze_model_config": {
            "input_img_size": 224,
            "num_vision_tokens_each_frame": 265,
            "vision_model_config": {
                "hidden_dim": 192, "out_dim": 192, "depth": 1, "kernel_size": 16, "temporal_patch_size": 1,
                "trunk_temporal_kernel_size": 3, "trunk_spatial_kernel_size": 3,
            },
            "connector_config": {"hidden_dim": 192, "num_tokens": 196},
            "gaze_decoder_config": {
                "model_type": "llama", "hidden_size": 192, "intermediate_size": 384, "num_hidden_layers": 4,
                "num_attention_heads": 6, "num_key_value_heads": 6, "head_dim": 32, "hidden_act": "silu",
                "rms_norm_eps": 1e-05, "rope_theta": 500000.0, "max_position_embeddings": 131072,
                "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                 "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
                "vocab_size": 266, "eos_token_id": 265, "num_multi_token_pred": 10,
                "attention_bias": False, "mlp_bias": False,
            },
        },
    }


def preprocessor_config() -> dict[str, Any]:
    """The published image-processor settings: shortest edge 224, scaled to [-1, 1], ImageNet mean/std."""
    return {
        "image_processor_type": "AutoGazeImageProcessor",
        "do_resize": True, "size": {"shortest_edge": 224}, "resample": 2,
        "do_center_crop": False, "crop_size": {"height": 224, "width": 224},
        "do_rescale": True, "rescale_factor": 2 / 255, "offset": True,
        "do_normalize": True, "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225],
    }


def build_tiny_autogaze(out_dir: str | Path, seed: int = 0) -> Path:
    """Write a seeded random-weight AutoGaze checkpoint into ``out_dir`` and return it."""
    from safetensors.torch import save_file

    from harness.gaze.autogaze import AutoGaze

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = published_layout_config()
    model = AutoGaze(AutoGazeConfig.from_dict(config, source="tiny AutoGaze"))
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, tensor in model.state_dict().items():
        if name.endswith("norm.weight"):
            value = torch.ones_like(tensor)
        elif name.endswith("norm.bias"):
            value = torch.zeros_like(tensor)
        else:
            std = TASK_LOSS_HEAD_STD if "task_loss_prediction_head" in name else WEIGHT_STD
            value = torch.randn(tensor.shape, generator=generator) * std
        state[name] = value.to(torch.float32).contiguous()
    save_file(state, str(out / WEIGHTS_NAME), metadata={"format": "pt"})
    (out / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
    (out / PREPROCESSOR_NAME).write_text(json.dumps(preprocessor_config(), indent=2) + "\n")
    return out


def tiny_autogaze_dir(seed: int = 0) -> Path:
    """The tiny AutoGaze in the harness cache, built on first use (safe across processes)."""
    out = cache_dir() / "tiny-models" / f"autogaze-seed{seed}"
    return build_once(out, lambda tmp: build_tiny_autogaze(tmp, seed=seed), TINY_AUTOGAZE_LABEL)


def resolve_gaze_checkpoint(model: str) -> str:
    """``tiny`` -> the built tiny checkpoint's directory; anything else is returned unchanged."""
    return str(tiny_autogaze_dir()) if str(model) == TINY_AUTOGAZE else str(model)
