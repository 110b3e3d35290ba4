"""AutoGaze configuration: read the published ``config.json`` (nested layout) and validate it.

The published checkpoint's ``config.json`` is what ``AutoGaze.save_pretrained`` writes with
transformers 4.51: an ``AutoGazeConfig`` holding ``gaze_model_config`` with three nested configs
(``vision_model_config``, ``connector_config``, ``gaze_decoder_config``). We read only the
fields that define the network and its inference defaults, and check that they agree with each
other, because a silently inconsistent config would load weights of the right names into a
network that gazes differently. Every problem is collected and reported at once, naming the key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A config that is missing keys or has values we cannot run; the message names them all."""


_MISSING = object()


class _Reader:
    """Collects missing/bad keys while reading a nested dict, so one error lists every problem."""

    def __init__(self, data: dict[str, Any], source: str):
        self.data = data
        self.source = source
        self.missing: list[str] = []
        self.bad: list[str] = []

    def get(self, dotted: str, kind: type | tuple[type, ...], default: Any = _MISSING) -> Any:
        node: Any = self.data
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                if default is _MISSING:
                    self.missing.append(dotted)
                return None if default is _MISSING else default
            node = node[part]
        if node is None and default is not _MISSING and default is None:
            return None
        # bool is an int subclass: never accept True/False where a number is expected.
        if isinstance(node, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
            self.bad.append(f"{dotted}={node!r} (expected {_kind_name(kind)})")
            return None
        if not isinstance(node, kind):
            self.bad.append(f"{dotted}={node!r} (expected {_kind_name(kind)})")
            return None
        return node

    def check(self, ok: bool, message: str) -> None:
        if not ok:
            self.bad.append(message)

    def raise_if_any(self) -> None:
        if not (self.missing or self.bad):
            return
        parts = []
        if self.missing:
            parts.append("missing keys: " + ", ".join(self.missing))
        if self.bad:
            parts.append("bad values: " + "; ".join(self.bad))
        raise ConfigError(f"{self.source}: invalid AutoGaze config: " + " | ".join(parts))


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


@dataclass(frozen=True)
class VisionConfig:
    """The shallow conv video encoder (patchify conv, LayerNorm, causal 3D conv blocks, 1x1x1 conv)."""

    hidden_dim: int
    out_dim: int
    depth: int
    kernel_size: int
    temporal_patch_size: int
    trunk_temporal_kernel_size: int
    trunk_spatial_kernel_size: int


@dataclass(frozen=True)
class DecoderConfig:
    """The LLaMA-style gaze decoder with multi-token prediction and a task-loss head."""

    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float
    rope_theta: float
    rope_scaling: dict[str, Any] | None
    vocab_size: int
    eos_token_id: int
    num_multi_token_pred: int
    attention_bias: bool
    mlp_bias: bool


@dataclass(frozen=True)
class AutoGazeConfig:
    """Everything the gaze network and its inference loop need, validated."""

    scales: tuple[int, ...]  # ascending, e.g. (32, 64, 112, 224)
    num_vision_tokens_each_frame: int  # gaze vocabulary size without EOS (265 for 2x2+4x4+7x7+14x14)
    input_img_size: int  # frames are resized (bicubic) to this square before the encoder
    num_connector_tokens: int
    vision: VisionConfig
    decoder: DecoderConfig
    attn_mode: str = "sdpa"
    # Inference defaults used when the caller gives neither a gazing ratio nor a requirement.
    default_gazing_ratio: float | None = 0.5
    default_task_loss_requirement: float | None = None
    source: str = field(default="<dict>", compare=False)

    @property
    def tokens_per_scale(self) -> list[int]:
        """Gaze tokens per scale in one frame; same float formula as the original so the split agrees."""
        total = sum(s**2 for s in self.scales)
        return [int(s**2 / total * self.num_vision_tokens_each_frame) for s in self.scales]

    @property
    def grid_per_scale(self) -> list[int]:
        """Side length of each scale's square cell grid (2, 4, 7, 14 for the published model)."""
        return [round(n**0.5) for n in self.tokens_per_scale]

    @property
    def vision_tokens_per_frame(self) -> int:
        """Encoder tokens per frame fed to the decoder (196 = 14x14 for 224 px and 16 px patches)."""
        return self.num_connector_tokens

    @classmethod
    def from_file(cls, path: str | Path) -> AutoGazeConfig:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a JSON object, got {type(data).__name__}")
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<dict>") -> AutoGazeConfig:
        r = _Reader(data, source)
        g = "gaze_model_config"
        vm, cn, dc = f"{g}.vision_model_config", f"{g}.connector_config", f"{g}.gaze_decoder_config"

        scales_raw = r.get("scales", (str, int))
        scales: tuple[int, ...] = ()
        if scales_raw is not None:
            try:
                scales = tuple(sorted(int(s) for s in str(scales_raw).split("+")))
                r.check(all(s > 0 for s in scales), f"scales={scales_raw!r} (each scale must be > 0)")
            except ValueError:
                r.bad.append(f"scales={scales_raw!r} (expected e.g. '32+64+112+224')")
        n_tokens = r.get("num_vision_tokens_each_frame", int)
        n_tokens_inner = r.get(f"{g}.num_vision_tokens_each_frame", int, default=n_tokens)
        input_img = r.get(f"{g}.input_img_size", int)

        vision = VisionConfig(
            hidden_dim=r.get(f"{vm}.hidden_dim", int),
            out_dim=r.get(f"{vm}.out_dim", int),
            depth=r.get(f"{vm}.depth", int),
            kernel_size=r.get(f"{vm}.kernel_size", int),
            temporal_patch_size=r.get(f"{vm}.temporal_patch_size", int, default=1),
            trunk_temporal_kernel_size=r.get(f"{vm}.trunk_temporal_kernel_size", int, default=3),
            trunk_spatial_kernel_size=r.get(f"{vm}.trunk_spatial_kernel_size", int, default=3),
        )
        conn_hidden = r.get(f"{cn}.hidden_dim", int)
        conn_tokens = r.get(f"{cn}.num_tokens", int)

        heads = r.get(f"{dc}.num_attention_heads", int)
        hidden = r.get(f"{dc}.hidden_size", int)
        head_dim = r.get(f"{dc}.head_dim", int, default=None)
        if head_dim is None and heads and hidden:
            head_dim = hidden // heads
        rope_scaling = r.get(f"{dc}.rope_scaling", dict, default=None)
        decoder = DecoderConfig(
            hidden_size=hidden,
            intermediate_size=r.get(f"{dc}.intermediate_size", int),
            num_layers=r.get(f"{dc}.num_hidden_layers", int),
            num_heads=heads,
            num_kv_heads=r.get(f"{dc}.num_key_value_heads", int, default=heads),
            head_dim=head_dim,
            rms_norm_eps=r.get(f"{dc}.rms_norm_eps", (float, int)),
            rope_theta=r.get(f"{dc}.rope_theta", (float, int)),
            rope_scaling=rope_scaling,
            vocab_size=r.get(f"{dc}.vocab_size", int),
            eos_token_id=r.get(f"{dc}.eos_token_id", int),
            num_multi_token_pred=r.get(f"{dc}.num_multi_token_pred", int),
            attention_bias=r.get(f"{dc}.attention_bias", bool, default=False),
            mlp_bias=r.get(f"{dc}.mlp_bias", bool, default=False),
        )
        act = r.get(f"{dc}.hidden_act", str, default="silu")
        r.check(act == "silu", f"{dc}.hidden_act={act!r} (only 'silu' is supported)")
        attn_mode = r.get("attn_mode", str, default="sdpa")

        # Inference defaults (the original samples them from these sub-configs when neither is given).
        ratio_cfg = r.get("gazing_ratio_config", dict, default={})
        default_ratio = None
        if ratio_cfg.get("sample_strategy_during_inference", "fixed") == "fixed":
            default_ratio = ratio_cfg.get("fixed", {}).get("gazing_ratio", 0.5)
        tlr_cfg = r.get("task_loss_requirement_config", dict, default={})
        has_tlr = r.get("has_task_loss_requirement_during_inference", bool, default=False)
        default_tlr = None
        if has_tlr and tlr_cfg.get("sample_strategy_during_inference", "fixed") == "fixed":
            default_tlr = tlr_cfg.get("fixed", {}).get("task_loss_requirement", 0.7)

        if r.missing or r.bad:
            r.raise_if_any()

        # Cross-field consistency: each is a way the weights would load but gaze wrongly.
        r.check(
            n_tokens_inner == n_tokens,
            f"{g}.num_vision_tokens_each_frame={n_tokens_inner} differs from num_vision_tokens_each_frame={n_tokens}",
        )
        total = sum(s**2 for s in scales)
        per_scale = [int(s**2 / total * n_tokens) for s in scales] if scales else []
        r.check(
            sum(per_scale) == n_tokens,
            f"scales={scales_raw!r} split into {per_scale} tokens, which do not sum to num_vision_tokens_each_frame={n_tokens}",
        )
        r.check(
            all(round(n**0.5) ** 2 == n for n in per_scale),
            f"scales={scales_raw!r} give non-square token grids {per_scale}",
        )
        r.check(
            decoder.vocab_size == n_tokens + 1,
            f"{dc}.vocab_size={decoder.vocab_size} (expected num_vision_tokens_each_frame + 1 = {n_tokens + 1})",
        )
        r.check(
            decoder.eos_token_id == n_tokens,
            f"{dc}.eos_token_id={decoder.eos_token_id} (expected num_vision_tokens_each_frame = {n_tokens})",
        )
        r.check(
            input_img % vision.kernel_size == 0,
            f"{g}.input_img_size={input_img} is not a multiple of {vm}.kernel_size={vision.kernel_size}",
        )
        r.check(
            conn_tokens == (input_img // vision.kernel_size) ** 2,
            f"{cn}.num_tokens={conn_tokens} (expected (input_img_size // kernel_size)**2 = {(input_img // vision.kernel_size) ** 2})",
        )
        r.check(
            vision.out_dim == conn_hidden == decoder.hidden_size,
            f"{vm}.out_dim={vision.out_dim}, {cn}.hidden_dim={conn_hidden}, {dc}.hidden_size={decoder.hidden_size} must be equal",
        )
        r.check(
            decoder.num_heads > 0
            and decoder.num_kv_heads > 0
            and decoder.num_heads % decoder.num_kv_heads == 0,
            f"{dc}.num_attention_heads={decoder.num_heads} must be a multiple of num_key_value_heads={decoder.num_kv_heads}",
        )
        r.check(
            decoder.head_dim % 2 == 0, f"{dc}.head_dim={decoder.head_dim} must be even (rotary embedding)"
        )
        r.check(
            decoder.num_multi_token_pred >= 1,
            f"{dc}.num_multi_token_pred={decoder.num_multi_token_pred} must be >= 1",
        )
        r.check(vision.trunk_temporal_kernel_size >= 1, f"{vm}.trunk_temporal_kernel_size must be >= 1")
        r.check(
            vision.trunk_spatial_kernel_size % 2 == 1,
            f"{vm}.trunk_spatial_kernel_size={vision.trunk_spatial_kernel_size} must be odd",
        )
        if rope_scaling is not None:
            rtype = rope_scaling.get("rope_type", rope_scaling.get("type"))
            r.check(
                rtype in ("llama3", "default"),
                f"{dc}.rope_scaling.rope_type={rtype!r} (supported: 'llama3', 'default')",
            )
            if rtype == "llama3":
                for key in (
                    "factor",
                    "low_freq_factor",
                    "high_freq_factor",
                    "original_max_position_embeddings",
                ):
                    r.check(
                        isinstance(rope_scaling.get(key), (int, float)),
                        f"{dc}.rope_scaling.{key} missing or not a number",
                    )
        r.raise_if_any()
        return cls(
            scales=scales,
            num_vision_tokens_each_frame=n_tokens,
            input_img_size=input_img,
            num_connector_tokens=conn_tokens,
            vision=vision,
            decoder=decoder,
            attn_mode=attn_mode,
            default_gazing_ratio=default_ratio,
            default_task_loss_requirement=default_tlr,
            source=source,
        )
