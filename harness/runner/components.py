"""The runner's links to the other packages: benchmark, adapter, pruner, frames, evidence.

Why one seam: the engine only orchestrates. Tests give it small fakes implementing the same
five callables; production uses these defaults, which import each package lazily (so a config
check never pays for torch + transformers imports, and one missing piece names itself).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.runner.config import BenchmarkConfig, ConfigError, FramesConfig, ModelConfig

TINY_LABEL = "tiny random-weight model: numbers are plumbing checks, not accuracy"


@dataclass
class DecodedVideo:
    """A sample's frames, decoded once and shared by every pruner setting of that sample."""

    frames: np.ndarray  # uint8 (T, H, W, 3)
    indices: np.ndarray  # source frame indices
    timestamps: np.ndarray  # seconds
    fps: float  # rate of the *sampled* frames (what adapters use for temporal positions)
    source_fps: float
    source_size: tuple[int, int]  # (height, width) of the source video
    source_frames: int = 0  # frames in the source video
    # fps_convention "source": the adapter gets the source indices (its processor metadata)
    pass_indices: bool = False
    decoder: str = ""
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "num": int(self.frames.shape[0]),
            "height": int(self.frames.shape[1]),
            "width": int(self.frames.shape[2]),
            "first_index": int(self.indices[0]) if len(self.indices) else None,
            "last_index": int(self.indices[-1]) if len(self.indices) else None,
            "fps": self.fps,
            "source_fps": self.source_fps,
            "source_height": self.source_size[0],
            "source_width": self.source_size[1],
            "decoder": self.decoder,
        }


def sampled_fps(timestamps: np.ndarray, source_fps: float) -> float:
    """Frames per second of the sampled clip: (T - 1) / span; the source rate for one frame."""
    ts = np.asarray(timestamps, dtype=np.float64)
    if ts.size >= 2 and ts[-1] > ts[0]:
        return float((ts.size - 1) / (ts[-1] - ts[0]))
    return float(source_fps) if source_fps and source_fps > 0 else 1.0


def count_fps(num_sampled: int, num_source: int, source_fps: float) -> float:
    """qwen-vl-utils' ``sample_fps``: sampled count / source count * source rate.

    32 of 64 frames at 25 fps: 12.5, where ``sampled_fps`` gives 31 / 2.52 s = 12.3; 32 of
    1,800 at 30 fps: 0.533 vs 31 / 59.97 s = 0.517. The temporal positions
    (``second_per_grid_ts``) follow.
    """
    rate = float(source_fps) if source_fps and source_fps > 0 else 1.0
    return num_sampled / max(num_source, 1) * rate


def _video_size(frames_cfg: FramesConfig) -> int | tuple[int, int] | None:
    res = frames_cfg.resolution
    if res is None or isinstance(res, int):
        return res
    return (int(res[1]), int(res[0]))  # config says [W, H]; harness.video takes (h, w)


def load_frames(path: str, frames_cfg: FramesConfig) -> DecodedVideo:
    """Sample and decode a video in chunks into one array (memory: the sampled frames only)."""
    from harness.video import open_video
    from harness.video.sampling import sample_indices

    start = time.perf_counter()
    with open_video(path) as reader:
        meta = reader.meta
        num = None if frames_cfg.fps is not None else frames_cfg.num_frames  # fps wins; max_frames caps it
        idx = sample_indices(meta, num_frames=num, fps=frames_cfg.fps,
                             max_frames=frames_cfg.max_frames, timestamps=reader.timestamps,
                             rounding=frames_cfg.index_rounding, count_multiple=frames_cfg.count_multiple)
        size = _video_size(frames_cfg)
        out_h, out_w = reader.output_size(size, frames_cfg.keep_aspect)
        need_gb = len(idx) * out_h * out_w * 3 / 2**30
        if need_gb > frames_cfg.max_decoded_gb:
            raise MemoryError(
                f"{path}: {len(idx)} frames at {out_w}x{out_h} need {need_gb:.1f} GiB, above "
                f"frames.max_decoded_gb={frames_cfg.max_decoded_gb:g}; set frames.resolution (e.g. 448) "
                f"or fewer frames"
            )
        frames = np.empty((len(idx), out_h, out_w, 3), dtype=np.uint8)
        pos = 0
        for chunk in reader.iter_chunks(idx, chunk_size=frames_cfg.chunk_size, size=(out_h, out_w),
                                        keep_aspect=False):
            frames[pos: pos + len(chunk)] = chunk.frames
            pos += len(chunk)
        timestamps = np.asarray(reader.timestamps)[idx]
        decoder = getattr(reader.meta, "decoder", "")
    if frames_cfg.fps_convention == "count":
        fps = count_fps(len(idx), meta.num_frames, meta.fps)
    elif frames_cfg.fps_convention == "source":
        fps = float(meta.fps) if meta.fps and meta.fps > 0 else sampled_fps(timestamps, meta.fps)
    else:
        fps = sampled_fps(timestamps, meta.fps)
    return DecodedVideo(frames=frames, indices=np.asarray(idx), timestamps=timestamps,
                        fps=fps, source_fps=float(meta.fps),
                        source_size=(meta.height, meta.width), decoder=decoder,
                        source_frames=int(meta.num_frames), pass_indices=frames_cfg.fps_convention == "source",
                        seconds=time.perf_counter() - start)


def load_benchmark(cfg: BenchmarkConfig) -> Any:
    from benchmarks.registry import get_benchmark

    return get_benchmark(cfg.name, **cfg.kwargs)


def cache_dir() -> Path:
    """Where built artefacts live (tiny models; the benchmarks use the same root): $HARNESS_CACHE_DIR,
    else ~/.cache/harness, outside the repository."""
    return Path(os.environ.get("HARNESS_CACHE_DIR") or Path.home() / ".cache" / "harness").expanduser()


def resolve_model_path(model: ModelConfig, seed: int = 0) -> str:
    """A real path as given; ``tiny`` builds the family's tiny random-weight model on first use."""
    if not model.is_tiny:
        return str(model.path)
    from harness.models.tiny import build_tiny_model

    out = cache_dir() / "tiny-models" / f"{model.family}-seed{seed}-letters"
    if not (out / ".complete").exists():
        # build beside the target and rename: ranks starting together never see half a model
        print(f"building the tiny {model.family} model ({TINY_LABEL}) into {out}", flush=True)
        tmp = out.with_name(f"{out.name}.tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        build_tiny_model(model.family, tmp, seed=seed, answer_letters=True)
        (tmp / ".complete").write_text("ok\n")
        try:
            if out.exists() and not (out / ".complete").exists():  # a stale, incomplete build
                shutil.rmtree(out, ignore_errors=True)
            os.rename(tmp, out)
        except OSError:
            if not (out / ".complete").exists():
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another process finished first: use its build
    return str(out)


def load_adapter(model: ModelConfig, backend: str, device: str, seed: int = 0) -> Any:
    """The model behind the adapter contract: a transformers adapter, or the vLLM engine (same contract)."""
    path = resolve_model_path(model, seed=seed)
    if backend == "transformers":
        from harness.models.registry import get_adapter_class

        extra = {"pipeline": dict(model.pipeline)} if model.pipeline else {}
        return get_adapter_class(model.family).from_pretrained(path, device=device, dtype=model.dtype,
                                                              **extra, **model.kwargs)
    if backend == "vllm":
        if importlib.util.find_spec("vllm") is None:
            raise ConfigError("backend 'vllm' needs vLLM installed: pip install .[vllm] (see docs/vllm.md)")
        try:
            from harness.backends.vllm.engine import VLLMBackend
        except ImportError as exc:
            raise ConfigError(f"backend 'vllm' cannot be imported ({exc}); install the extra: pip install .[vllm]") \
                from exc
        if model.pipeline:
            raise ConfigError("model.pipeline (and presets that set it) are not supported by the vllm backend yet")
        # model.kwargs go to vllm.LLM (gpu_memory_utilization, max_model_len, tensor_parallel_size, ...)
        return VLLMBackend.from_pretrained(model.family, path, dtype=model.dtype, device=device, seed=seed,
                                           **model.kwargs)
    raise ConfigError(f"unknown backend {backend!r}; valid choices: transformers, vllm")


def build_pruner(name: str, params: dict[str, Any]) -> Any:
    from harness.pruning.registry import build_pruner as _build

    pruner = _build(name, **params)
    if name == "autogaze":  # the gaze model loads lazily (cached per path): load it now, so a bad
        from harness.pruning.autogaze import load_gaze_model  # checkpoint fails before any sample

        load_gaze_model(pruner.model, pruner.device)
    return pruner


def evidence_scores(benchmark: Any, selection: Any, sample: Any, video: DecodedVideo) -> dict[str, Any] | None:
    """Evidence recall/hit of a selection when the sample carries evidence (pruner-only scoring)."""
    scorer = getattr(benchmark, "evidence_scores", None)
    if not getattr(sample, "evidence", None) or selection is None or not callable(scorer):
        return None
    # the model may pad a clip to its temporal patch (Qwen repeats the last frame): so do the indices
    indices = list(np.asarray(video.indices).tolist())
    while indices and len(indices) < selection.geometry.num_frames:
        indices.append(indices[-1])
    scores = scorer(sample, selection, indices[: selection.geometry.num_frames])
    recall = scores.get("evidence_recall", scores.get("recall"))
    hit = scores.get("evidence_hit", scores.get("hit"))
    return {"recall": None if recall is None or recall != recall else float(recall),
            "hit": None if hit is None else bool(hit)}


@dataclass
class Components:
    """The five callables the engine needs; replace any of them in tests."""

    load_benchmark: Callable[[BenchmarkConfig], Any] = load_benchmark
    load_adapter: Callable[[ModelConfig, str, str, int], Any] = load_adapter
    build_pruner: Callable[[str, dict[str, Any]], Any] = build_pruner
    load_frames: Callable[[str, FramesConfig], DecodedVideo] = load_frames
    evidence_scores: Callable[[Any, Any, Any, DecodedVideo], dict[str, Any] | None] = evidence_scores
    extra: dict[str, Any] = field(default_factory=dict)
