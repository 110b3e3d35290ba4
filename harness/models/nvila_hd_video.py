"""NVILA-8B-HD-Video adapter: the model behind AutoGaze's HLVid result, run with its own shipped code.

Why the shipped code and not a re-implementation: NVILA-HD-Video gazes inside its processor
(AutoGaze on 16-frame x 392-px tiles and on thumbnails) and encodes only the gazed multi-scale
patches in its vision tower; the published numbers come from that exact pipeline. So this
adapter loads a local snapshot with ``trust_remote_code=True`` (``local_files_only``: nothing
is downloaded), maps our config onto the processor settings the model card names, and wraps
the run with measurement only:

- ``gaze``: time inside the processor's AutoGaze calls (its ``_autogaze_model``, timed by a
  transparent wrapper);
- ``vision``: time inside the vision tower (forward hooks, CUDA-synchronised);
- ``prefill``: from the start of ``model.generate`` to the end of the LLM's first forward, less
  the vision time (so it holds the projector, embedding assembly and the prompt's LLM pass);
- ``generate``: the rest of ``model.generate`` (the decode steps).
Tokens: ViT-level kept gazes per tile and per thumbnail (from the processor's ``gazing_info``)
and the LLM's visual tokens (video placeholder ids in ``input_ids``).

Our faster AutoGaze (``gaze_backend: harness``) replaces the processor's ``_autogaze_model`` by
:class:`HarnessAutoGazeShim`, which honours the reference AutoGaze forward contract (what the
shipped processor loads from ``nvidia/AutoGaze``): same arguments, same output keys and layout.

Facts used (model card, VILA ``vila_hd/nvila_hd_video/README.md``, and public runs): entry points
``configuration_nvila.py`` / ``modeling_nvila.py`` / ``processing_nvila.py`` + ``config.json``
``auto_map``; processor kwargs below; ``AutoModel.from_pretrained(..., max_batch_size_siglip=)``;
prompt ``"<video>\\n\\n" + question``; ``processor(text=, videos=, return_tensors="pt")`` gives
``input_ids``, ``pixel_values_videos_tiles``, ``pixel_values_videos_thumbnails``,
``num_spatial_tiles_each_video`` and ``gazing_info`` (``gazing_pos_tiles``,
``if_padded_gazing_tiles``, ``num_gazing_each_frame_tiles`` and the ``_thumbnails`` trio, one
tensor per video); ``model.generate(**inputs)`` returns prompt + new ids. Two points are
assumptions to confirm on the first real run (see docs/nvila_hd_video.md): that the processor
also takes decoded frames (``video_input: frames``, a list of PIL images per video) and where the
vision tower / LLM live (``vision_tower`` / ``llm`` attributes, searched in that order among
common names). ``video_input: source`` makes the model card's own call, ``videos=<the sample's
video path>`` (the processor decodes and samples the file itself); ``path`` hands it our decoded
frames as a lossless file, also as one path string.

The checkpoint's code needs transformers 4.5x and AutoGaze (not on the package index): run it in
its own venv with ``model.runtime: {env: nvila}`` (``make runtime-env RUNTIME=nvila``,
docs/runtimes.md); the runner drives it there through ``harness.runtime``.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch import nn

from harness.models.base import Generation, ModelAdapter, PruneStage, TokenCounts
from harness.models.common import StageTimer, _sync, peak_memory_mb, reset_peak_memory
from harness.models.frames import check_frames
from harness.models.loading import parse_dtype, resolve_model_dir
from harness.pruning.selection import Selection, TokenGeometry

MODEL_ID = "nvidia/NVILA-8B-HD-Video"
AUTOGAZE_ID = "nvidia/AutoGaze"
REQUIRED_FILES = ("config.json", "configuration_nvila.py", "modeling_nvila.py", "processing_nvila.py")
DOWNLOAD_HINT = (
    f"download {MODEL_ID} (and {AUTOGAZE_ID}, which its processor loads) on a machine with internet, "
    f"e.g. `hf download {MODEL_ID} --local-dir models/NVILA-8B-HD-Video` and "
    f"`hf download {AUTOGAZE_ID} --local-dir models/AutoGaze`, copy them here, then set model.path to "
    f"models/NVILA-8B-HD-Video and model.kwargs.autogaze_model to models/AutoGaze "
    f"(or keep the repo ids if they are in the HF cache: HF_HUB_CACHE / HF_HOME)"
)
VISION_ATTRS = ("vision_tower", "vision_model", "visual")
LLM_ATTRS = ("llm", "language_model", "model")
GAZE_BACKENDS = ("shipped", "harness")
VIDEO_INPUTS = ("frames", "path", "source")


class NvilaSnapshotError(FileNotFoundError):
    """The NVILA-8B-HD-Video snapshot is missing or incomplete; the message says what to download."""


# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------


@dataclass
class NvilaSettings:
    """Our config -> the shipped processor's settings (defaults: the model card's)."""

    num_video_frames: int = 128  # frames sampled for tiles
    num_video_frames_thumbnail: int = 64  # frames sampled for thumbnails
    max_tiles_video: int = 48  # spatial tiles per frame (392 x 392 each)
    gazing_ratio_tile: float | list[float] | None = field(default_factory=lambda: [0.2] + [0.06] * 15)
    task_loss_requirement_tile: float | None = 0.6
    gazing_ratio_thumbnail: float | list[float] | None = 1
    task_loss_requirement_thumbnail: float | None = None
    max_batch_size_autogaze: int = 16
    max_batch_size_siglip: int = 32
    autogaze_model: str | None = None  # local dir or hub id; None = the processor's own default
    gaze_backend: str = "shipped"  # "harness": our AutoGaze through HarnessAutoGazeShim
    video_input: str = "frames"  # frames | path | source: what the processor gets (see _video_arg)
    device_map: str | None = None  # e.g. "auto" for multi-GPU; None = move to ``device``
    local_files_only: bool = True
    extra_processor_kwargs: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_kwargs(cls, kwargs: dict[str, Any]) -> NvilaSettings:
        """Validate ``model.kwargs``; ``gazing: off`` keeps every patch (ratio 1, no requirement)."""
        kwargs = dict(kwargs)
        gazing = kwargs.pop("gazing", "on")
        valid = {f.name for f in fields(cls)}
        unknown = sorted(set(kwargs) - valid)
        if unknown:
            raise ValueError(
                f"nvila_hd_video: unknown model.kwargs {unknown}; valid: gazing, {', '.join(sorted(valid))}"
            )
        s = cls(**kwargs)
        if gazing in ("off", False):
            s.gazing_ratio_tile, s.task_loss_requirement_tile = 1, None
            s.gazing_ratio_thumbnail, s.task_loss_requirement_thumbnail = 1, None
        elif gazing not in ("on", True):
            raise ValueError(f"nvila_hd_video: gazing must be 'on' or 'off', got {gazing!r}")
        if s.gaze_backend not in GAZE_BACKENDS:
            raise ValueError(f"nvila_hd_video: gaze_backend {s.gaze_backend!r}; valid: {GAZE_BACKENDS}")
        if s.video_input not in VIDEO_INPUTS:
            raise ValueError(f"nvila_hd_video: video_input {s.video_input!r}; valid: {VIDEO_INPUTS}")
        for name in (
            "num_video_frames",
            "max_tiles_video",
            "max_batch_size_autogaze",
            "max_batch_size_siglip",
        ):
            if int(getattr(s, name)) < 1:
                raise ValueError(f"nvila_hd_video: {name} must be >= 1, got {getattr(s, name)}")
        return s

    def processor_kwargs(self) -> dict[str, Any]:
        """The keyword arguments ``AutoProcessor.from_pretrained`` gets (names from the model card)."""
        out = {
            "num_video_frames": int(self.num_video_frames),
            "num_video_frames_thumbnail": int(self.num_video_frames_thumbnail),
            "max_tiles_video": int(self.max_tiles_video),
            "gazing_ratio_tile": self.gazing_ratio_tile,
            "task_loss_requirement_tile": self.task_loss_requirement_tile,
            "gazing_ratio_thumbnail": self.gazing_ratio_thumbnail,
            "task_loss_requirement_thumbnail": self.task_loss_requirement_thumbnail,
            "max_batch_size_autogaze": int(self.max_batch_size_autogaze),
        }
        if self.autogaze_model is not None:
            out["autogaze_model_id"] = resolve_autogaze(self.autogaze_model, self.local_files_only)
        out.update(self.extra_processor_kwargs)
        return out

    def model_kwargs(self) -> dict[str, Any]:
        out: dict[str, Any] = {"max_batch_size_siglip": int(self.max_batch_size_siglip)}
        if self.device_map is not None:
            out["device_map"] = self.device_map
        return out

    def gazing_enabled(self) -> bool:
        def on(ratio: Any, req: Any) -> bool:
            ratios = ratio if isinstance(ratio, (list, tuple)) else [ratio]
            return req is not None or any(r is not None and float(r) < 1 for r in ratios)

        return on(self.gazing_ratio_tile, self.task_loss_requirement_tile) or on(
            self.gazing_ratio_thumbnail, self.task_loss_requirement_thumbnail
        )


# --------------------------------------------------------------------------------------------
# Locating the snapshot
# --------------------------------------------------------------------------------------------


def _hub_snapshot(repo_id: str, local_files_only: bool) -> Path | None:
    """The HF-cache snapshot of ``repo_id`` (the shared lookup, harness/models/loading.py), or None."""
    try:
        return resolve_model_dir(repo_id, local_files_only=local_files_only)
    except FileNotFoundError:  # not a repo id, or not cached: the caller says what to download
        return None


def resolve_snapshot(path_or_id: str | Path, local_files_only: bool = True) -> Path:
    """The local snapshot directory, checked for the shipped code; a clear download hint otherwise."""
    path = Path(path_or_id).expanduser()
    directory = path if path.is_dir() else _hub_snapshot(str(path_or_id), local_files_only)
    if directory is None:
        raise NvilaSnapshotError(
            f"{path_or_id}: no NVILA-8B-HD-Video snapshot here or in the HF cache; {DOWNLOAD_HINT}"
        )
    missing = [name for name in REQUIRED_FILES if not (directory / name).is_file()]
    if missing:
        raise NvilaSnapshotError(
            f"{directory}: incomplete NVILA-8B-HD-Video snapshot, missing {missing}; {DOWNLOAD_HINT}"
        )
    auto_map = json.loads((directory / "config.json").read_text()).get("auto_map", {})
    if "AutoModel" not in auto_map:
        raise NvilaSnapshotError(
            f"{directory / 'config.json'}: no auto_map.AutoModel entry, so the shipped modeling code cannot "
            f"load; {DOWNLOAD_HINT}"
        )
    return directory


def resolve_autogaze(path_or_id: str, local_files_only: bool = True) -> str:
    """AutoGaze as a local directory string (what the processor's ``autogaze_model_id`` receives)."""
    path = Path(path_or_id).expanduser()
    if path.is_dir():
        return str(path)
    found = _hub_snapshot(str(path_or_id), local_files_only)
    if found is None:
        raise NvilaSnapshotError(
            f"{path_or_id}: AutoGaze checkpoint not found locally or in the HF cache; {DOWNLOAD_HINT}"
        )
    return str(found)


# --------------------------------------------------------------------------------------------
# Gaze model wrappers (what the processor calls as ``_autogaze_model``)
# --------------------------------------------------------------------------------------------


class TimedGazeModel(nn.Module):
    """Transparent timing wrapper: calls and attributes go to ``inner``; call time to ``clock``'s "gaze"."""

    def __init__(self, inner: nn.Module, clock: StageTimer):
        super().__init__()
        self.inner = inner
        object.__setattr__(self, "clock", clock)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        with self.clock.stage("gaze"):
            return self.inner(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("inner"), name)


class HarnessAutoGazeShim(nn.Module):
    """Our :class:`harness.gaze.AutoGaze` behind the reference AutoGaze forward contract.

    ``shim({"video": x}, gazing_ratio=..., task_loss_requirement=..., target_scales=...,
    target_patch_size=...)`` returns the reference's output dict (``gazing_pos``,
    ``if_padded_gazing``, ``num_gazing_each_frame``, ``gazing_mask``, ``scales``,
    ``frame_sampling_rate``, ``num_vision_tokens_each_frame``, ...). Training-only paths of the
    reference (given ``gazing_info``, sampling temperature, streaming caches) are refused.
    """

    def __init__(self, model: nn.Module, raw_config: dict[str, Any] | None = None):
        super().__init__()
        self.model = model
        raw = raw_config or {}
        cfg = model.config
        self.config = SimpleNamespace(
            max_num_frames=int(raw.get("max_num_frames", 16)),
            scales="+".join(str(s) for s in cfg.scales),
            num_vision_tokens_each_frame=int(cfg.num_vision_tokens_each_frame),
            **{
                k: v
                for k, v in raw.items()
                if k not in ("max_num_frames", "scales", "num_vision_tokens_each_frame")
                and isinstance(v, (int, float, str, bool))
            },
        )

    @classmethod
    def from_pretrained(
        cls, path_or_id: str | Path, device: str | torch.device = "cpu"
    ) -> HarnessAutoGazeShim:
        from harness.gaze import AutoGaze

        model = AutoGaze.from_pretrained(path_or_id, device=device)
        raw_path = Path(getattr(model, "checkpoint_dir", "")) / "config.json"
        raw = json.loads(raw_path.read_text()) if raw_path.is_file() else {}
        return cls(model, raw)

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    @property
    def scales(self) -> list[int]:
        return list(self.model.config.scales)

    def forward(
        self,
        inputs: dict[str, torch.Tensor] | torch.Tensor,
        target_scales: Sequence[int] | None = None,
        target_patch_size: int | None = None,
        gazing_info: Any = None,
        temperature: float = 1,
        gazing_ratio: Any = None,
        task_loss_requirement: Any = None,
        generate_only: bool = True,
        use_cache: bool = False,
        **unused: Any,
    ) -> dict[str, Any]:
        if gazing_info:
            raise NotImplementedError("HarnessAutoGazeShim: scoring given gazes (training) is not supported")
        if use_cache or any(v is not None for k, v in unused.items() if k.startswith("past_")):
            raise NotImplementedError(
                "HarnessAutoGazeShim: streaming caches are not supported; pass whole clips"
            )
        video = inputs["video"] if isinstance(inputs, dict) else inputs
        if torch.is_tensor(gazing_ratio):
            gazing_ratio = gazing_ratio.tolist()
        if torch.is_tensor(task_loss_requirement):
            task_loss_requirement = float(task_loss_requirement.flatten()[0])
        out = self.model.gaze(
            video,
            gazing_ratio=gazing_ratio,
            task_loss_requirement=task_loss_requirement,
            target_scales=list(target_scales) if target_scales is not None else None,
            target_patch_size=target_patch_size,
        )
        return {
            "gazing_pos": out.gazing_pos,
            "if_padded_gazing": out.if_padded_gazing,
            "num_gazing_each_frame": out.num_gazing_each_frame,
            "gazing_mask": out.gazing_mask,
            "scales": list(out.scales),
            "frame_sampling_rate": 1,
            "num_vision_tokens_each_frame": out.num_vision_tokens_each_frame,
            "has_task_loss_requirement": task_loss_requirement is not None,
            "task_loss_requirement": task_loss_requirement,
            "log_action_probs": None,
            "task_loss_prediction": None,
            "past_key_values": None,
            "past_input_embeds": None,
            "past_attention_mask": None,
            "past_conv_values": None,
        }


def install_gaze_model(processor: Any, gaze_model: nn.Module, clock: StageTimer) -> None:
    """Put ``gaze_model`` (timed) where the shipped processor keeps its AutoGaze."""
    if not hasattr(processor, "_autogaze_model"):
        raise AttributeError(
            f"{type(processor).__name__} has no _autogaze_model attribute: this processor version does not "
            f"expose its AutoGaze, so it cannot be timed or swapped (use gaze_backend: shipped)"
        )
    processor._autogaze_model = TimedGazeModel(gaze_model, clock)


# --------------------------------------------------------------------------------------------
# Token accounting
# --------------------------------------------------------------------------------------------


def _as_list(value: Any) -> list[torch.Tensor]:
    if value is None:
        return []
    if torch.is_tensor(value):
        return [value]
    return [v for v in value if torch.is_tensor(v)]


def tokens_per_frame(scales: Sequence[int] | None, patch_size: int | None) -> int | None:
    if not scales or not patch_size:
        return None
    return sum((int(s) // int(patch_size)) ** 2 for s in scales)


def count_tokens(inputs: dict[str, Any], per_frame: int | None, video_token_id: int | None) -> dict[str, Any]:
    """ViT-level kept gazes per tile / thumbnail (and what gazing off would encode), LLM visual tokens."""
    gi = inputs.get("gazing_info") or {}
    out: dict[str, Any] = {}
    for part in ("tiles", "thumbnails"):
        pixels = _as_list(inputs.get(f"pixel_values_videos_{part}"))
        frames = sum(int(p.shape[0]) * int(p.shape[1]) if p.dim() >= 5 else int(p.shape[0]) for p in pixels)
        pads = _as_list(gi.get(f"if_padded_gazing_{part}"))
        full = frames * per_frame if per_frame else None
        if pads:
            per_unit = [(~p.bool()).reshape(p.shape[0], -1).sum(-1) for p in pads]
            kept = int(sum(int(u.sum()) for u in per_unit))
            out[f"vit_kept_per_{part[:-1]}"] = [int(x) for u in per_unit for x in u.tolist()]
        else:  # not gazed: every patch of every scale is encoded
            kept = full
        out[f"{part}_frames"] = frames
        out[f"vit_tokens_{part}"] = kept
        out[f"vit_tokens_{part}_full"] = full
    if pixels := _as_list(inputs.get("pixel_values_videos_tiles")):
        out["num_tiles"] = [int(p.shape[0]) for p in pixels]
    known = [out.get("vit_tokens_tiles"), out.get("vit_tokens_thumbnails")]
    out["vit_tokens_kept"] = sum(k for k in known if k is not None)
    fulls = [out.get("vit_tokens_tiles_full"), out.get("vit_tokens_thumbnails_full")]
    out["vit_tokens_full"] = sum(fulls) if all(f is not None for f in fulls) else None
    ids = inputs.get("input_ids")
    if video_token_id is not None and torch.is_tensor(ids):
        out["llm_visual_tokens"] = int((ids == video_token_id).sum())
    return out


# --------------------------------------------------------------------------------------------
# The adapter
# --------------------------------------------------------------------------------------------


def _stats(values: list[int]) -> dict[str, float]:
    arr = np.asarray(values, dtype=np.float64)
    return {"n": int(arr.size), "min": float(arr.min()), "mean": float(arr.mean()), "max": float(arr.max())}


def _find_module(
    model: nn.Module, names: Sequence[str], exclude: nn.Module | None = None
) -> nn.Module | None:
    for name in names:
        mod = getattr(model, name, None)
        if isinstance(mod, nn.Module) and mod is not exclude:
            return mod
    return None


@contextmanager
def _hooked(module: nn.Module | None, on_pre: Any, on_post: Any) -> Iterator[None]:
    if module is None:
        yield
        return
    handles = [module.register_forward_pre_hook(on_pre), module.register_forward_hook(on_post)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _dtype_keyword() -> str:
    """``from_pretrained``'s dtype keyword on this transformers: ``torch_dtype`` before 4.56 (the line
    the checkpoint's code runs on, where ``dtype`` would reach the model's ``__init__``), ``dtype`` after."""
    import transformers

    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    return "torch_dtype" if (major, minor) < (4, 56) else "dtype"


class NvilaHDVideoAdapter(ModelAdapter):
    """NVILA-8B-HD-Video with its shipped processor/model code (see the module docstring)."""

    name = "nvila_hd_video"

    def __init__(
        self, model: nn.Module, processor: Any, settings: NvilaSettings, device: str, snapshot: Path
    ):
        self.model = model
        self.processor = processor
        self.settings = settings
        self.device = device
        self.snapshot = snapshot
        self.gaze_clock = StageTimer(device)  # the processor's AutoGaze calls, stage "gaze"
        self.vision = _find_module(model, VISION_ATTRS)
        self.llm = _find_module(model, LLM_ATTRS, exclude=self.vision)
        tok = getattr(processor, "tokenizer", None)
        self.video_token = getattr(tok, "video_token", None) or "<vila/video>"
        self.video_token_id = tok.convert_tokens_to_ids(self.video_token) if tok is not None else None
        self.target_scales = getattr(processor, "target_scales", None)
        self.target_patch_size = getattr(processor, "target_patch_size", None)
        self.tokens_per_frame = tokens_per_frame(self.target_scales, self.target_patch_size)
        if hasattr(processor, "_autogaze_model"):
            gaze = processor._autogaze_model
            if settings.gaze_backend == "harness":
                source = settings.autogaze_model or AUTOGAZE_ID
                gaze = HarnessAutoGazeShim.from_pretrained(
                    source if Path(source).is_dir() else resolve_autogaze(source, settings.local_files_only),
                    device=device if settings.device_map is None else "cuda",
                )
            install_gaze_model(processor, gaze, self.gaze_clock)
        elif settings.gaze_backend == "harness":
            install_gaze_model(processor, nn.Identity(), self.gaze_clock)  # raises the clear error

    @classmethod
    def from_pretrained(
        cls, path_or_id: str, device: str = "cpu", dtype: str = "auto", **kwargs: Any
    ) -> NvilaHDVideoAdapter:
        """Load a local snapshot (or an HF-cache id) with its shipped code; never downloads.

        ``trust_remote_code=True`` is required: the snapshot's ``modeling_*.py`` / ``processing_*.py``
        run in this process (the runner passes ``model.trust_remote_code`` from the config).
        """
        from transformers import AutoModel, AutoProcessor

        if not kwargs.pop("trust_remote_code", False):
            raise ValueError(
                f"{path_or_id}: NVILA-8B-HD-Video runs Python code shipped in its snapshot; pass "
                "trust_remote_code=True (config: model.trust_remote_code: true) to allow it"
            )
        settings = NvilaSettings.from_kwargs(kwargs)
        snapshot = resolve_snapshot(path_or_id, settings.local_files_only)
        processor = AutoProcessor.from_pretrained(
            snapshot, trust_remote_code=True, local_files_only=True, **settings.processor_kwargs()
        )
        model = AutoModel.from_pretrained(
            snapshot,
            trust_remote_code=True,
            local_files_only=True,
            **{_dtype_keyword(): parse_dtype(dtype)},
            **settings.model_kwargs(),
        )
        if settings.device_map is None:
            model = model.to(device)
        return cls(model.eval(), processor, settings, device, snapshot)

    # -- geometry ------------------------------------------------------------------------------

    def token_geometry(self, num_frames: int, height: int, width: int) -> TokenGeometry:
        """The finest-scale tile grid, for budget bookkeeping only: NVILA decides its tokens itself.

        Frames are tiled like the processor (nearest multiple of the tile size per side, at most
        ``max_tiles_video`` tiles); one LLM token per 3x3 patches of the finest scale.
        """
        from harness.gaze.tiling import tile_layout

        tile = int(self.target_scales[-1]) if self.target_scales else 392
        patch = int(self.target_patch_size or 14)
        rows, cols = tile_layout(height, width, tile, self.settings.max_tiles_video)
        return TokenGeometry(
            num_frames=min(num_frames, self.settings.num_video_frames),
            height=rows * tile,
            width=cols * tile,
            patch_size=patch,
            spatial_merge_size=3,
        )

    # -- inputs --------------------------------------------------------------------------------

    @property
    def wants_video_path(self) -> bool:
        """The runner hands ``generate`` the sample's own file (``video_path=``) when this is true."""
        return self.settings.video_input == "source"

    def _video_arg(self, frames: np.ndarray, fps: float, tmp: Path, video_path: str | None) -> Any:
        """What ``processor(videos=...)`` gets.

        ``source``: the sample's own video file as one path string, the model card's call
        (``processor(text=..., videos=video_path)``): the processor decodes and samples
        ``num_video_frames`` / ``num_video_frames_thumbnail`` from the file itself, so the
        published pipeline runs unchanged. ``path``: our decoded frames in a lossless file, also
        as one path string. ``frames``: our decoded frames as PIL images (one list per video).
        """
        mode = self.settings.video_input
        if mode == "source":
            if not video_path:
                raise ValueError(f"{self.name}: video_input 'source' needs the sample's video file (the runner "
                                 f"passes it as video_path=); use video_input: path to hand over decoded frames")
            return str(video_path)
        if mode == "frames":
            from PIL import Image

            return [[Image.fromarray(f) for f in frames]]
        from harness.video.writer import write_video

        path = tmp / "clip.mkv"  # FFV1: lossless, so the processor decodes exactly our frames
        write_video(path, frames, fps=fps, codec="ffv1", pix_fmt="bgr0")  # RGB kept exactly
        return str(path)

    def prepare(self, frames: np.ndarray, prompt: str, fps: float, tmp: Path,
                video_path: str | None = None) -> dict[str, Any]:
        text = f"{self.video_token}\n\n{prompt}"
        videos = self._video_arg(frames, fps, tmp, video_path)
        try:
            return dict(self.processor(text=text, videos=videos, return_tensors="pt"))
        except (TypeError, ValueError, AttributeError) as exc:
            if self.settings.video_input == "frames":
                raise RuntimeError(
                    f"{self.snapshot}: the shipped processor rejected decoded frames ({type(exc).__name__}: "
                    f"{exc}); set model.kwargs.video_input: path to hand it a lossless video file instead"
                ) from exc
            raise

    def _to_device(self, value: Any) -> Any:
        if torch.is_tensor(value):
            return value.to(self.device)
        if isinstance(value, dict):
            return {k: self._to_device(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(self._to_device(v) for v in value)
        return value

    # -- the contract --------------------------------------------------------------------------

    @torch.inference_mode()
    def generate(
        self,
        frames: np.ndarray,
        selection: Selection | None,
        prompt: str,
        *,
        fps: float,
        max_new_tokens: int = 16,
        prune_stage: PruneStage = "pre_vit",
        video_path: str | None = None,
    ) -> Generation:
        """Answer ``prompt`` about ``frames`` (or, with ``video_input: source``, about ``video_path``,
        the sample's own file); NVILA gazes itself, so only keep-all selections are taken."""
        later_stage = selection is not None and (selection.reducer is not None or selection.llm is not None)
        if selection is not None and (later_stage or not bool(selection.keep.all())):
            raise ValueError(
                f"{self.name}: gazing happens inside NVILA's own processor (configure it with model.kwargs: "
                f"gazing_ratio_tile, task_loss_requirement_tile, ... or gazing: off); run it with pruner 'none', "
                f"got a '{selection.pruner}' selection keeping {selection.num_kept}/{selection.keep.numel()} tokens"
            )
        check_frames(frames)
        reset_peak_memory(self.device)
        self.gaze_clock.reset()
        with tempfile.TemporaryDirectory(prefix="nvila_") as tmp:
            start = time.perf_counter()
            inputs = self.prepare(frames, prompt, fps, Path(tmp), video_path)
            processor_s = time.perf_counter() - start
        counts = count_tokens(inputs, self.tokens_per_frame, self.video_token_id)
        input_ids = inputs["input_ids"]
        model_inputs = self._to_device(inputs)

        vision = StageTimer(self.device)
        marks: dict[str, float] = {}

        def llm_pre(*_: Any) -> None:
            pass

        def llm_post(*_: Any) -> None:
            if "first_llm_end" not in marks:
                _sync(self.device)
                marks["first_llm_end"] = time.perf_counter()

        _sync(self.device)
        gen_start = time.perf_counter()
        with (
            _hooked(self.vision, lambda *_: vision.start("vision"), lambda *_: vision.stop("vision")),
            _hooked(self.llm, llm_pre, llm_post),
        ):
            output = self.model.generate(**model_inputs, max_new_tokens=max_new_tokens, do_sample=False)
        _sync(self.device)
        gen_end = time.perf_counter()

        ids = output.sequences if hasattr(output, "sequences") else output
        ids = ids.detach().cpu()
        n_in = input_ids.shape[1]
        if ids.shape[1] >= n_in and torch.equal(ids[:, :n_in], input_ids.cpu()):
            new_ids = ids[0, n_in:]
        else:  # a generate over inputs_embeds returns the new ids only
            new_ids = ids[0]
        text = self.processor.batch_decode(new_ids[None], skip_special_tokens=True)[0].strip()

        gaze_s, vision_s = self.gaze_clock.seconds.get("gaze", 0.0), vision.seconds.get("vision", 0.0)
        timings = {"vision": vision_s}
        if self.gaze_clock.calls.get("gaze", 0):  # a ``gaze`` latency means a gaze model ran (harness/stages.py)
            timings["gaze"] = gaze_s
        if "first_llm_end" in marks:
            timings["prefill"] = max(0.0, marks["first_llm_end"] - gen_start - vision_s)
            timings["generate"] = gen_end - marks["first_llm_end"]
        else:
            timings["generate"] = gen_end - gen_start - vision_s
        llm_visual = counts.get("llm_visual_tokens")
        kept, full = counts.get("vit_tokens_kept"), counts.get("vit_tokens_full")
        if llm_visual is not None and kept and full:
            visual_before = int(round(llm_visual * full / kept))
        else:
            visual_before = llm_visual if llm_visual is not None else (full or 0)
        tokens = TokenCounts(
            visual_before=visual_before,
            visual_after=llm_visual if llm_visual is not None else int(kept or 0),
            prompt=int(n_in),
            generated=int(new_ids.numel()),
        )
        return Generation(
            text=text,
            tokens=tokens,
            timings=timings,
            peak_memory_mb=peak_memory_mb(self.device),
            extra={
                "prune_stage": "pre_vit",  # NVILA-HD always encodes gazed patches only
                "processor_s": processor_s,
                "processor_without_gaze_s": max(0.0, processor_s - gaze_s),
                "gaze_calls": self.gaze_clock.calls.get("gaze", 0),
                "vision_calls": vision.calls.get("vision", 0),
                "gaze_backend": self.settings.gaze_backend,
                "gazing_enabled": self.settings.gazing_enabled(),
                "visual_before_estimated": True,  # LLM tokens with gazing off, scaled from ViT counts
                # scalars in one small dict (the runner keeps extra values under 2,000 JSON chars);
                # per-unit lists apart, with their summary, since 4K x 128 frames makes 360 tile clips
                "token_counts": {k: v for k, v in counts.items() if not isinstance(v, list)},
                "num_tiles": counts.get("num_tiles"),
                **{
                    key: counts[key]
                    for key in ("vit_kept_per_tile", "vit_kept_per_thumbnail")
                    if key in counts
                },
                **{
                    f"{key}_stats": _stats(counts[key])
                    for key in ("vit_kept_per_tile", "vit_kept_per_thumbnail")
                    if key in counts
                },
                "settings": {k: v for k, v in asdict(self.settings).items() if k != "extra_processor_kwargs"},
                "output_ids": new_ids.tolist(),
                "vision_module_found": self.vision is not None,
                "llm_module_found": self.llm is not None,
                "frames_given": int(frames.shape[0]),
                "video_input": self.settings.video_input,
                "frames_sampled_tiles": min(int(frames.shape[0]), int(self.settings.num_video_frames)),
                "llm_tokens_per_vit_token": (llm_visual / kept) if (llm_visual and kept) else None,
            },
        )
