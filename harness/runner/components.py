"""The runner's links to the other packages: benchmark, adapter, pruner, frames, evidence.

Why one seam: the engine only orchestrates. Tests give it small fakes implementing the same
five callables; production uses these defaults, which import each package lazily (so a config
check never pays for torch + transformers imports, and one missing piece names itself).
"""

from __future__ import annotations

import importlib.util
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.cache import build_once, cache_dir
from harness.runner.config import BenchmarkConfig, ConfigError, FramesConfig, ModelConfig, remote_code_refusal

TINY_LABEL = "tiny random-weight model: numbers are plumbing checks, not accuracy"
# Below two 14-px patches a side is blown up by the model's processor (Qwen's smart_resize floor is
# 28 px): a sample decoded that small (a thin video at a low frames.resolution) is warned about.
MIN_SIDE_PX = 28


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
    shared: bool = False  # handed over from an earlier model entry (frame_share.py): not decoded again

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
        if min(out_h, out_w) < MIN_SIDE_PX:
            warnings.warn(
                f"{path}: frames decoded at {out_w}x{out_h} px (source {meta.width}x{meta.height}, "
                f"frames.resolution={frames_cfg.resolution}); a side under {MIN_SIDE_PX} px is upscaled by "
                "the model and carries almost no picture", RuntimeWarning, stacklevel=2)
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


def resolve_model_path(model: ModelConfig, seed: int = 0) -> str:
    """A real path as given; ``tiny`` builds the family's tiny random-weight model on first use."""
    if not model.is_tiny:
        return str(model.path)
    from harness.models.tiny import build_tiny_model

    out = cache_dir() / "tiny-models" / f"{model.family}-seed{seed}-letters"
    build_once(out, lambda tmp: build_tiny_model(model.family, tmp, seed=seed, answer_letters=True),
               f"the tiny {model.family} model ({TINY_LABEL})")
    return str(out)


def load_adapter(model: ModelConfig, backend: str, device: str, seed: int = 0) -> Any:
    """The model behind the adapter contract: a transformers adapter, or the vLLM engine (same contract).

    With ``model.runtime`` the adapter lives in a worker process in that interpreter
    (``harness.runtime.client.WorkerAdapter``, same contract); it is started and the model loaded
    here, so a runtime that cannot start fails before any sample, in one line.
    """
    from harness.models.registry import REMOTE_CODE_FAMILIES

    path = resolve_model_path(model, seed=seed)
    if model.family in REMOTE_CODE_FAMILIES and not model.trust_remote_code:
        raise ConfigError(remote_code_refusal(model.label, model.family))
    if model.runtime is not None:
        return start_worker(model, path, backend, device, seed)
    if backend == "transformers":
        from harness.models.registry import get_adapter_class

        extra = {"pipeline": dict(model.pipeline)} if model.pipeline else {}
        return get_adapter_class(model.family).from_pretrained(path, device=device, dtype=model.dtype,
                                                              **extra, **adapter_kwargs(model))
    if backend == "vllm":
        if model.preset:
            raise ConfigError(f"model.preset {model.preset!r} is not supported by the vllm backend (its "
                              "preprocessing is vLLM's own); use backend: transformers")
        unsupported = sorted(set(model.pipeline or {}) - {"text_positions"})
        if unsupported:
            raise ConfigError(f"model.pipeline keys {', '.join(unsupported)} are not supported by the vllm "
                              "backend; it takes only text_positions")
        if importlib.util.find_spec("vllm") is None:
            raise ConfigError("backend 'vllm' needs vLLM installed: pip install .[vllm] (see docs/vllm.md)")
        try:
            from harness.backends.vllm import VLLMBackend
        except ImportError as exc:
            raise ConfigError(f"backend 'vllm' cannot be imported ({exc}); install the extra: pip install .[vllm]") \
                from exc
        text = (model.pipeline or {}).get("text_positions", "reference")
        # model.kwargs go to vllm.LLM (gpu_memory_utilization, max_model_len, tensor_parallel_size, ...)
        return VLLMBackend.from_pretrained(model.family, path, dtype=model.dtype, device=device, seed=seed,
                                           text_positions=text, **model.kwargs)
    raise ConfigError(f"unknown backend {backend!r}; valid choices: transformers, vllm")


def adapter_kwargs(model: ModelConfig) -> dict[str, Any]:
    """``model.kwargs`` for the adapter, plus the remote-code opt-in for families that need it."""
    from harness.models.registry import REMOTE_CODE_FAMILIES

    if model.family in REMOTE_CODE_FAMILIES:
        return {**model.kwargs, "trust_remote_code": model.trust_remote_code}
    return dict(model.kwargs)


def start_worker(model: ModelConfig, path: str, backend: str, device: str, seed: int = 0) -> Any:
    """A started :class:`WorkerAdapter` for ``model`` (``ConfigError`` naming the interpreter and the cause)."""
    from harness.runtime.client import RuntimeStartError, WorkerAdapter

    assert model.runtime is not None
    python = model.runtime.interpreter()
    load = {"family": model.family, "path": path, "backend": backend, "device": device, "dtype": model.dtype,
            "seed": seed, "kwargs": adapter_kwargs(model)}
    worker = WorkerAdapter(python, load, label=model.label, timeout_s=model.runtime.timeout_s)
    try:
        return worker.start()
    except RuntimeStartError as exc:
        worker.close()
        raise ConfigError(f"model {model.label!r}: {exc}") from None


def build_pruner(name: str, params: dict[str, Any]) -> Any:
    from harness.pruning.registry import build_pruner as _build

    pruner = _build(name, **params)
    pruner.load()  # e.g. AutoGaze's checkpoint (loaded lazily otherwise): a bad one fails before any sample
    return pruner


def evidence_scores(benchmark: Any, selection: Any, sample: Any, video: DecodedVideo) -> dict[str, Any] | None:
    """Evidence scores of a selection when the sample carries evidence (pruner-only scoring).

    The record keeps every scalar the benchmark returns (synthetic needle: recall, coverage,
    kept_share, chance, skill, hit, findable, reason; benchmarks/evidence.py); NaN becomes None
    (JSON has no NaN). ``recall`` and ``hit`` are always present.
    """
    scorer = getattr(benchmark, "evidence_scores", None)
    if not getattr(sample, "evidence", None) or selection is None or not callable(scorer):
        return None
    if getattr(selection, "reducer", None) is not None or getattr(selection, "llm", None) is not None:
        return None  # decided inside the model: a feature-stage keep is scored after it ran (engine)
    # the model may pad a clip to its temporal patch (Qwen repeats the last frame): so do the indices
    indices = list(np.asarray(video.indices).tolist())
    while indices and len(indices) < selection.geometry.num_frames:
        indices.append(indices[-1])
    scores = dict(scorer(sample, selection, indices[: selection.geometry.num_frames]))
    scores.setdefault("recall", scores.pop("evidence_recall", None))
    scores.setdefault("hit", scores.pop("evidence_hit", None))
    out: dict[str, Any] = {}
    for key, value in scores.items():
        if isinstance(value, bool | np.bool_) or value is None or isinstance(value, str):
            out[key] = value if value is None or isinstance(value, str) else bool(value)
        elif isinstance(value, int | float | np.number):
            out[key] = None if value != value else float(value)
    return out


@dataclass
class Components:
    """The five callables the engine needs; replace any of them in tests."""

    load_benchmark: Callable[[BenchmarkConfig], Any] = load_benchmark
    load_adapter: Callable[[ModelConfig, str, str, int], Any] = load_adapter
    build_pruner: Callable[[str, dict[str, Any]], Any] = build_pruner
    load_frames: Callable[[str, FramesConfig], DecodedVideo] = load_frames
    evidence_scores: Callable[[Any, Any, Any, DecodedVideo], dict[str, Any] | None] = evidence_scores
    extra: dict[str, Any] = field(default_factory=dict)
