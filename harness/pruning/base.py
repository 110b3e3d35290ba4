"""The pruner contract: a video's frames + a model's TokenGeometry -> Selection.

``Pruner.select`` is a template method: it validates the inputs once for every pruner, times the
pruner's own ``_select`` and writes the facts every record needs (seconds, budget, kept count,
parameters) into ``Selection.info``, so subclasses only decide *which* tokens to keep.

Why budgets are counted in LLM tokens: the comparisons this harness exists for are AutoGaze vs
baselines *at the same number of tokens the LLM sees*, so a baseline is told "keep exactly N"
(``budget``, e.g. what AutoGaze kept on this video) or a fixed fraction of the model's tokens
(the ``ratio`` parameter). An explicit ``budget`` passed to ``select`` wins over ``ratio``.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from harness.pruning.selection import Selection, TokenGeometry


class PruningError(ValueError):
    """Bad pruner input or configuration; the message names the pruner and the cause."""


def check_frames(frames: np.ndarray, geometry: TokenGeometry, pruner: str) -> None:
    """Frames must be uint8 (T, H, W, 3) and cover the geometry's temporal groups.

    ``T`` may differ from ``geometry.num_frames`` only the way models pad or trim a clip to a
    multiple of ``temporal_patch_size`` (Qwen repeats the last frame): every temporal group must
    contain at least one real frame, and no whole group's worth of frames may be left over.
    """
    if not isinstance(frames, np.ndarray):
        raise PruningError(f"pruner {pruner!r}: frames must be a numpy array, got {type(frames).__name__}")
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise PruningError(
            f"pruner {pruner!r}: frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}"
        )
    t, tps = frames.shape[0], geometry.temporal_patch_size
    if not (t // tps <= geometry.grid_t <= math.ceil(t / tps)) or geometry.grid_t < 1:
        raise PruningError(
            f"pruner {pruner!r}: {t} frames do not match the geometry's {geometry.grid_t} temporal "
            f"groups of {tps} frame(s) ({geometry})"
        )


def group_frames(num_frames: int, geometry: TokenGeometry) -> list[list[int]]:
    """Frame indices each temporal group covers; a group past the clip's end reuses the last frame.

    That mirrors how models pad a clip whose length is not a multiple of the temporal patch size
    (they repeat the last frame), so a padded token looks at the frame it was built from.
    """
    tps = geometry.temporal_patch_size
    return [
        sorted({min(g * tps + k, num_frames - 1) for k in range(tps)}) for g in range(geometry.grid_t)
    ]


def resolve_budget(geometry: TokenGeometry, budget: int | None, ratio: float | None, pruner: str) -> tuple[int, str]:
    """The number of LLM tokens to keep and where it came from (``"budget"`` or ``"ratio"``).

    ``ratio`` rounds to the nearest token and keeps at least one; a budget above the model's
    token count is clamped to it (keeping everything is the closest achievable).
    """
    total = geometry.total_tokens
    if budget is not None:
        if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 1:
            raise PruningError(f"pruner {pruner!r}: budget must be a positive int (LLM tokens), got {budget!r}")
        return min(int(budget), total), "budget"
    if ratio is not None:
        return max(1, min(total, round(ratio * total))), "ratio"
    raise PruningError(
        f"pruner {pruner!r} needs a token budget: pass budget=N to select() or build it with ratio=R"
    )


def check_ratio(ratio: float | None, pruner: str) -> float | None:
    if ratio is not None and not (0.0 < float(ratio) <= 1.0):
        raise PruningError(f"pruner {pruner!r}: ratio must be in (0, 1], got {ratio!r}")
    return None if ratio is None else float(ratio)


class Pruner(ABC):
    """Decides which LLM visual tokens a model sees. Subclasses implement ``_select``.

    Subclasses register their constructor keywords as their parameters (see ``registry``) and
    report them from ``params()`` so each record says exactly how the selection was made.
    """

    name: ClassVar[str] = "base"
    #: True for pruners that need a budget (explicit or via ``ratio``); False for none/autogaze.
    budgeted: ClassVar[bool] = False
    #: True for budgeted pruners with a published parameter of their own (DyCoke's ``k``, FastV's
    #: ``r``, VidCom2's ``base_scale``): without a budget it decides (``budget_source`` "params").
    budget_optional: ClassVar[bool] = False
    #: where the method acts (docs/pruning.md): "frames" (the Selection's keep grid), "features"
    #: (a FeatureReducer on the projector's features) or "llm" (LayerPruning inside the LLM)
    stage: ClassVar[str] = "frames"
    #: True when this pruner's kept count on a sample is a budget other runs can be matched to
    #: (``budget: matched``, AutoGaze); the runner asks the class, it names no pruner. (Not
    #: ``Selection.info["budget_source"]``, which says where a selection's own budget came from.)
    defines_matched_budget: ClassVar[bool] = False
    #: The latency stage a selection's time is recorded under (``harness.stages``): ``prune`` for
    #: the baselines, ``gaze`` for a gaze model; None when selecting does no work (``none``).
    latency_stage: ClassVar[str | None] = "prune"
    #: Vision-tower signals beyond the features the method reads (``FeatureReducer.needs``), which
    #: the family must declare in its spec's ``tower_signals`` (checked before any model loads).
    needs_tower: ClassVar[frozenset[str]] = frozenset()
    #: Said after a build or load failure (e.g. where a checkpoint may come from); "" for none.
    load_hint: ClassVar[str] = ""

    @property
    def acts_in_llm(self) -> bool:
        """True when this pruner's selections carry a plan applied inside the LLM (``Selection.llm``),
        which only the transformers decoding loop runs: FastV always, DyCoke when its KV stage is on.
        An instance property (a parameter may decide it) so the config preflight can refuse such a
        run on the vLLM backend before anything loads."""
        return self.stage == "llm"

    def load(self) -> None:
        """Load what ``select`` needs (a checkpoint) now, so a bad one fails before any sample.

        Nothing by default: the baselines have nothing to load.
        """
        return None

    @abstractmethod
    def params(self) -> dict[str, Any]:
        """The constructor parameters, JSON-serialisable, as they went into the selection."""

    @abstractmethod
    def _select(
        self, frames: np.ndarray, geometry: TokenGeometry, budget: int | None, fps: float | None
    ) -> Selection:
        """Build the Selection; ``budget`` is already resolved (an int) for budgeted pruners."""

    def select(
        self,
        frames: np.ndarray,
        geometry: TokenGeometry,
        *,
        budget: int | None = None,
        fps: float | None = None,
    ) -> Selection:
        """Select tokens of ``geometry`` for ``frames`` (uint8 (T, H, W, 3) at the model's resolution).

        ``budget``: LLM tokens to keep (budgeted pruners only; ignored with a note by the others).
        ``Selection.info`` gets ``seconds``, ``budget``, ``budget_source``, ``kept``,
        ``native_tokens``, ``kept_ratio`` and ``params`` on top of the pruner's own facts.
        """
        check_frames(frames, geometry, self.name)
        source, ignored = None, None
        if self.budgeted and budget is None and self.budget_optional:
            source = "params"
        elif self.budgeted:
            budget, source = resolve_budget(geometry, budget, getattr(self, "ratio", None), self.name)
        elif budget is not None:
            budget, ignored = None, budget  # e.g. the runner passing a budget to `none`: say so
        start = time.perf_counter()
        selection = self._select(frames, geometry, budget, fps)
        seconds = time.perf_counter() - start
        selection.pruner = self.name
        kept = selection.num_kept
        if ignored is not None:
            selection.info["budget_ignored"] = int(ignored)
        selection.info.update(
            {
                "seconds": seconds,
                "budget": None if budget is None else int(budget),
                "budget_source": source,
                "kept": kept,
                "native_tokens": geometry.total_tokens,
                "kept_ratio": kept / geometry.total_tokens,
                "params": self.params(),
            }
        )
        return selection

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"


class RatioPruner(Pruner):
    """A budgeted pruner whose only parameter is ``ratio`` (uniform_frames, temporal_diff, downsample).

    Those baselines differ only in *which* tokens they keep for a budget, so the constructor
    (``ratio`` validated by ``check_ratio``), ``params()`` and ``budgeted = True`` live here once;
    subclasses set ``name`` and implement ``_select`` (where ``budget`` is always an int).
    """

    budgeted: ClassVar[bool] = True

    def __init__(self, ratio: float | None = None):
        self.ratio = check_ratio(ratio, self.name)

    def params(self) -> dict[str, Any]:
        return {"ratio": self.ratio}
