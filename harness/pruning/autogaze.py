"""``autogaze``: keep the tokens AutoGaze looks at (harness.gaze), mapped onto the model's grid.

The gaze model runs on the frames the model will see (``harness.gaze.tiling.gaze_video`` tiles
them into 224 px tiles and 16-frame clips); its multi-scale per-frame gazes become model tokens
by ``harness.pruning.gaze_mapping`` (spatial policy ``expand``/``drop``, temporal union).
The kept count is whatever AutoGaze decided: it is the budget the baselines are matched to.

``select_native`` is the other route (``prune_stage: native``, ``harness.pruning.native_gaze``):
AutoGaze gazes at the adapter's ViT scales and patch size and the ViT encodes those gazes.

Models load once per (model path or HF id, device) and are shared by every pruner instance in
the process, so a grid of ratios does not reload the checkpoint.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from harness.pruning.base import Pruner, PruningError, check_frames
from harness.pruning.gaze_mapping import GazeLike, check_policy, temporal_union
from harness.pruning.native_gaze import NativeGaze, NativeSelection, NativeTarget, coverage_grid, gaze_native
from harness.pruning.selection import Selection, TokenGeometry

#: The published checkpoint, looked up in the local HF cache (never downloaded). ``tiny`` builds a
#: random-weight one (``harness.gaze.tiny``) for demos and CI.
DEFAULT_MODEL = "nvidia/AutoGaze"

_MODELS: dict[tuple[str, str], Any] = {}


def load_gaze_model(model: str, device: str) -> Any:
    key = (model, device)
    if key not in _MODELS:
        from harness.gaze import AutoGaze

        # A local checkpoint dir or a cached HF id (nvidia/AutoGaze); never downloads.
        _MODELS[key] = AutoGaze.from_pretrained(model, device=device)
    return _MODELS[key]


def selection_from_gaze(gaze: GazeLike, geometry: TokenGeometry, policy: str) -> Selection:
    """Per-frame gaze -> the model's keep grid (spatial policy, then temporal union)."""
    per_frame = gaze.to_grid(geometry.grid_h, geometry.grid_w, policy)
    keep = temporal_union(per_frame, geometry)
    info: dict[str, Any] = {"policy": policy, "gaze_seconds": float(gaze.seconds)}
    gazed = getattr(gaze, "gazed_per_frame", None)
    if gazed is not None:
        gazed = [int(n) for n in np.asarray(gazed).reshape(-1)]
        info["gazed_per_frame"] = gazed
        info["gazed_total"] = sum(gazed)
    per_frame_cap = getattr(gaze, "tokens_per_frame", None)
    if per_frame_cap is not None:
        info["gaze_tokens_per_frame"] = int(per_frame_cap)  # what gazing everything would be
    status = getattr(gaze, "cache_status", None)
    if status is not None:
        info["_gaze_cache"] = status  # in-process: the runner moves it to the record's ``gaze_cache``
    if getattr(gaze, "scale_masks", None) is not None:
        info["_gaze"] = gaze  # in-process only: the runner records a few frames' masks (harness.runner.masks)
    return Selection(geometry, keep, info=info)


def _through_cache(kind: str, frames: np.ndarray, model: Any, setting: dict[str, Any], compute: Any,
                   encode: Any, decode: Any) -> Any:
    """``compute()``, or its cached value when the gaze cache is on; tagged with ``cache_status``."""
    from harness.gaze import cache

    if not cache.active():
        value, status = compute(), cache.OFF
    else:
        key, facts = cache.make_key(kind, frames, model, setting)
        value, status = cache.cached(key, facts, compute, encode, decode)
    value.cache_status = status
    return value


class AutoGazePruner(Pruner):
    name = "autogaze"
    defines_matched_budget = True  # ``budget: matched`` baselines keep as many tokens as AutoGaze did
    latency_stage = "gaze"
    load_hint = ("give a checkpoint with --set pruners.autogaze.params.model=DIR (a local AutoGaze "
                 "directory, nvidia/AutoGaze in the HF cache, or tiny)")

    def __init__(
        self,
        gazing_ratio: float = 0.75,
        task_loss_requirement: float | None = None,
        model: str = DEFAULT_MODEL,
        policy: str = "expand",
        device: str = "cpu",
        batch_size: int = 8,
        tile_size: int = 224,
        clip_len: int = 16,
        deterministic: bool | None = None,
    ):
        """``deterministic``: batch-invariant gazing (``AutoGaze.gaze``), so a sample's gazes never
        depend on the batch its clips were gazed in. None (default) = on for CPU (the gaze runs at
        one torch thread, where multi-thread BLAS could flip a near-tie), off elsewhere (on a GPU it
        would gaze row by row). The resolved value is in ``params()``, hence in every run record."""
        if not 0.0 < float(gazing_ratio) <= 1.0:
            raise PruningError(f"autogaze: gazing_ratio must be in (0, 1], got {gazing_ratio!r}")
        if int(batch_size) < 1 or int(clip_len) < 1 or int(tile_size) < 1:
            raise PruningError("autogaze: batch_size, clip_len and tile_size must be positive")
        self.gazing_ratio = float(gazing_ratio)
        self.task_loss_requirement = None if task_loss_requirement is None else float(task_loss_requirement)
        self.model = str(model)
        self.policy = check_policy(policy)
        self.device = str(device)
        self.batch_size = int(batch_size)
        self.tile_size = int(tile_size)
        self.clip_len = int(clip_len)
        self.deterministic = (self.device == "cpu") if deterministic is None else bool(deterministic)

    def params(self) -> dict[str, Any]:
        return {
            "gazing_ratio": self.gazing_ratio,
            "task_loss_requirement": self.task_loss_requirement,
            "model": self.model,
            "policy": self.policy,
            "device": self.device,
            "batch_size": self.batch_size,
            "tile_size": self.tile_size,
            "clip_len": self.clip_len,
            "deterministic": self.deterministic,
        }

    def load(self) -> None:
        """Load the gaze model now (it loads lazily, cached per path and device)."""
        load_gaze_model(self.model, self.device)

    def gaze_setting(self) -> dict[str, Any]:
        """Every setting that decides a gaze (the gaze cache's key; ``policy`` only maps it afterwards)."""
        return {"gazing_ratio": self.gazing_ratio, "task_loss_requirement": self.task_loss_requirement,
                "tile_size": self.tile_size, "clip_len": self.clip_len, "batch_size": self.batch_size,
                "max_tiles": None, "independent_rows": True, "deterministic": self.deterministic}

    def warm_up_key(self) -> tuple[str, str, str]:
        """Settings sharing a gaze model share its warm-up (lazy initialisation is per model)."""
        return ("autogaze", self.model, self.device)

    def gaze_is_cached(self, frames: np.ndarray) -> bool:
        """Whether the gaze cache is on and holds this setting's (mapped) gaze of ``frames``."""
        from harness.gaze import cache

        if not cache.active():
            return False
        key, _ = cache.make_key("mapped", frames, load_gaze_model(self.model, self.device), self.gaze_setting())
        return cache.entry_path(key).is_file()

    def gaze(self, frames: np.ndarray) -> GazeLike:
        """Run AutoGaze on the frames, through the gaze cache when it is on (``harness.gaze.cache``).

        A seam: tests substitute a hand-made gaze here. The result carries ``cache_status``
        (hit / miss / off) for the record.
        """
        from harness.gaze import cache
        from harness.gaze.tiling import gaze_video

        model = load_gaze_model(self.model, self.device)

        def compute() -> Any:
            return gaze_video(
                model,
                frames,
                gazing_ratio=self.gazing_ratio,
                task_loss_requirement=self.task_loss_requirement,
                tile_size=self.tile_size,
                clip_len=self.clip_len,
                batch_size=self.batch_size,
                deterministic=self.deterministic,
            )

        return _through_cache("mapped", frames, model, self.gaze_setting(), compute,
                              cache.encode_video_gaze, cache.decode_video_gaze)

    def _select(
        self, frames: np.ndarray, geometry: TokenGeometry, budget: int | None, fps: float | None
    ) -> Selection:
        return selection_from_gaze(self.gaze(frames), geometry, self.policy)

    def gaze_native(self, frames: np.ndarray, target: NativeTarget) -> NativeGaze:
        """Run AutoGaze at the ViT's own scales / patch size, through the gaze cache when it is on.

        A seam: tests substitute gazes here. The result carries ``cache_status`` (hit / miss / off).
        """
        from harness.gaze import cache

        model = load_gaze_model(self.model, self.device)

        def compute() -> NativeGaze:
            return gaze_native(
                model,
                frames,
                target,
                gazing_ratio=self.gazing_ratio,
                task_loss_requirement=self.task_loss_requirement,
                clip_len=self.clip_len,
                batch_size=self.batch_size,
                deterministic=self.deterministic,
            )

        setting = {**self.gaze_setting(), "tile_size": None,
                   "target": [list(target.scales), target.patch_size, target.resize, target.temporal_stride]}
        return _through_cache("native", frames, model, setting, compute,
                              cache.encode_native_gaze, cache.decode_native_gaze)

    def select_native(
        self, frames: np.ndarray, target: NativeTarget, geometry: TokenGeometry, *, fps: float | None = None
    ) -> NativeSelection:
        """``prune_stage: native``: AutoGaze's gazes at ``target`` (the adapter's ViT), not a token grid.

        The record's ``kept`` is AutoGaze's gaze count (the LLM sees one token per gaze plus the
        family's fixed tokens); ``policy`` plays no part (nothing is mapped). ``keep`` is the area
        the gazes cover on ``geometry`` (for evidence recall only).
        """
        check_frames(frames, geometry, self.name)
        start = time.perf_counter()
        gaze = self.gaze_native(frames, target)
        keep = coverage_grid(gaze, geometry)
        seconds = time.perf_counter() - start
        selection = NativeSelection(geometry, keep, pruner=self.name, native=gaze)
        per_frame = gaze.gazed_per_frame
        selection.info.update(
            {
                "route": "native",
                "gaze_seconds": float(gaze.seconds),
                "gazed_per_frame": per_frame,
                "gazed_total": gaze.count,
                "gazed_per_scale": gaze.per_scale_counts(),
                "gaze_scales": list(target.scales),
                "gaze_patch_size": target.patch_size,
                "gaze_tokens_per_frame": gaze.layout.tokens_per_frame,
                "seconds": seconds,
                "budget": None,
                "budget_source": None,
                "kept": gaze.count,
                "native_tokens": geometry.total_tokens,
                "kept_ratio": gaze.count / geometry.total_tokens,
                "params": self.params(),
            }
        )
        status = getattr(gaze, "cache_status", None)
        if status is not None:
            selection.info["_gaze_cache"] = status
        return selection
