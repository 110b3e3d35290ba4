"""``vidcom2``: VidCom2's frame-adaptive token selection (Liu et al., EMNLP 2025), before the LLM.

Reference: xuyang-liu16/VidCom2 ``token_compressor/vidcom2/vidcom2.py`` (``vidcom2_compression``
and the helpers it calls; fixture and commit in ``tests/fixtures/pruning_refs/README.md``). On
the LLM-ready features (N = T frames x n tokens, D channels):

1. keep the half of the channels with the *lowest* variance over all tokens;
2. L2-normalise each token; score it by a multi-scale Gaussian kernel (alphas 2^-3 .. 2^1) of its
   distance to the video's mean token (``v``) and to its frame's mean token (``f``);
3. frame importance = -mean(v) over the frame; a softmax of it (temperature 0.01) shifts each
   frame's retention rate: ``scale_t = base * (1 + p_t - mean(p))``, at most 1;
4. frame ``t`` keeps its ``max(1, round(scale_t * n))`` tokens with the lowest ``v + f`` (the
   most distinct ones), in raster order.

"Frames" are the model's temporal groups (Qwen: pairs of frames), as in the reference's Qwen
integration. Budget: without one, ``base_scale`` (the reference's ``R_RATIO``, default 0.25) decides. With
one, the rate is solved for so that the per-frame counts add up to the budget (``budget / N``
alone misses it by the cap at 1 and the rounding); what remains (a frame's count moves in steps)
is ``budget_gap`` in the record's ``generation_extra.reduction``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from harness.pruning.base import Pruner, PruningError
from harness.pruning.selection import Selection, TokenGeometry
from harness.pruning.stages import FeatureReducer, Reduction

ALPHAS = tuple(2.0**k for k in range(-3, 2))
TEMPERATURE = 0.01


def _gaussian(x: torch.Tensor, center: torch.Tensor) -> torch.Tensor:
    dist_sq = ((x - center) ** 2).sum(dim=-1)
    return sum(torch.exp(-dist_sq / (2 * a)) for a in ALPHAS)


def vidcom2_scores(features: torch.Tensor, tokens_per_frame: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-token score (T, n): lower = more distinct, per-frame softmax weights p (T,)), steps 1-3."""
    n = tokens_per_frame
    if features.shape[0] % n:
        raise ValueError(f"vidcom2: {features.shape[0]} features are not whole frames of {n} tokens")
    x = features.float()
    k = int(x.shape[-1] * 0.5)
    channels = torch.topk(x.var(dim=0, unbiased=False), k=k, largest=False).indices
    frames = F.normalize(x[:, channels].view(-1, n, k), dim=-1)
    v = _gaussian(frames, frames.mean(dim=(0, 1), keepdim=True))
    f = _gaussian(frames, frames.mean(dim=1, keepdim=True))
    importance = -v.mean(dim=-1)
    probs = F.softmax((importance - importance.max()) / TEMPERATURE, dim=0)
    return v + f, probs


def frame_counts(probs: torch.Tensor, base_scale: float, tokens_per_frame: int) -> list[int]:
    """Tokens each frame keeps: ``max(1, round(min(1, base * (1 + p - mean p)) * n))``."""
    scales = (base_scale * (1 + probs - probs.mean())).clamp(max=1.0)
    return (scales * tokens_per_frame).round().long().clamp(min=1).tolist()


def base_for_budget(probs: torch.Tensor, tokens_per_frame: int, budget: int) -> float:
    """The retention rate whose per-frame counts add up closest to ``budget`` (bisection).

    ``budget / N`` is the reference's own reading of a rate, but the per-frame cap at 1 and the
    rounding move the total; a matched comparison needs the total itself, so the rate is solved
    for (ties: the smaller total). Counts grow with the rate, so bisection finds the crossing.
    """
    total = lambda b: sum(frame_counts(probs, b, tokens_per_frame))  # noqa: E731
    lo, hi = 0.0, 2.0 / max(1e-6, float(1 + probs.min() - probs.mean()))
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if total(mid) < budget else (lo, mid)
    return lo if abs(total(lo) - budget) <= abs(total(hi) - budget) else hi


def vidcom2_kept(
    features: torch.Tensor, tokens_per_frame: int, base_scale: float, budget: int | None = None
) -> torch.Tensor:
    """Flat indices (ascending) of the tokens VidCom2 keeps from (T * n, D) features.

    With ``budget`` the rate is solved for (``base_for_budget``) instead of ``base_scale``.
    """
    n = tokens_per_frame
    score, probs = vidcom2_scores(features, n)
    if budget is not None:
        base_scale = base_for_budget(probs, n, budget)
    ks = frame_counts(probs, base_scale, n)
    kept = [torch.topk(score[t], k=kk, largest=False, sorted=False).indices.sort().values + t * n
            for t, kk in enumerate(ks)]
    return torch.cat(kept)


class VidCom2Reducer(FeatureReducer):
    name = "vidcom2"

    def __init__(self, base_scale: float, budget: int | None = None):
        self.base_scale = base_scale
        self.budget = budget

    def reduce(self, features: torch.Tensor, geometry: TokenGeometry,
               signals: dict[str, torch.Tensor] | None = None) -> Reduction:
        idx = vidcom2_kept(features, geometry.tokens_per_group, self.base_scale, self.budget)
        keep = torch.zeros(features.shape[0], dtype=torch.bool)
        keep[idx.cpu()] = True
        info: dict[str, Any] = {"base_scale": self.base_scale if self.budget is None else None}
        if self.budget is not None:
            info["budget_gap"] = int(keep.sum()) - self.budget
        return Reduction.from_kept(keep, **info)


class VidCom2Pruner(Pruner):
    """Plans VidCom2; the adapter runs it on the projector's features (stage ``features``)."""

    name = "vidcom2"
    budgeted: ClassVar[bool] = True
    stage: ClassVar[str] = "features"
    budget_optional: ClassVar[bool] = True  # without a budget, ``base_scale`` decides

    def __init__(self, base_scale: float = 0.25):
        if not 0.0 < float(base_scale) <= 1.0:
            raise PruningError(f"pruner 'vidcom2': base_scale must be in (0, 1], got {base_scale!r}")
        self.base_scale = float(base_scale)

    def params(self) -> dict[str, Any]:
        return {"base_scale": self.base_scale}

    def _select(
        self, frames: np.ndarray, geometry: TokenGeometry, budget: int | None, fps: float | None
    ) -> Selection:
        planned = round(self.base_scale * geometry.total_tokens) if budget is None else budget
        info = {"stage": "features", "planned_kept": planned}
        return Selection.keep_all(geometry).with_reducer(VidCom2Reducer(self.base_scale, budget), info)
