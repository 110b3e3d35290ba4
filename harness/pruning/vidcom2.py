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
integration. Budget: ``base = budget / N`` (the reference's ``R_RATIO``, default 0.25); the
per-frame rounding makes the kept count differ from the budget by a few tokens at most
(``info["budget_gap"]`` after the model ran, in ``Reduction.info``).
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


def vidcom2_kept(features: torch.Tensor, tokens_per_frame: int, base_scale: float) -> torch.Tensor:
    """Flat indices (ascending) of the tokens VidCom2 keeps from (T * n, D) features."""
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
    scales = (base_scale * (1 + probs - probs.mean())).clamp(max=1.0)
    ks = (scales * n).round().long().clamp(min=1).tolist()
    score = v + f
    kept = [torch.topk(score[t], k=kk, largest=False, sorted=False).indices.sort().values + t * n
            for t, kk in enumerate(ks)]
    return torch.cat(kept)


class VidCom2Reducer(FeatureReducer):
    name = "vidcom2"

    def __init__(self, base_scale: float, budget: int | None = None):
        self.base_scale = base_scale
        self.budget = budget

    def reduce(self, features: torch.Tensor, geometry: TokenGeometry) -> Reduction:
        idx = vidcom2_kept(features, geometry.tokens_per_group, self.base_scale)
        keep = torch.zeros(features.shape[0], dtype=torch.bool)
        keep[idx.cpu()] = True
        info: dict[str, Any] = {"base_scale": self.base_scale}
        if self.budget is not None:
            info["budget_gap"] = int(keep.sum()) - self.budget
        return Reduction.from_kept(keep, **info)


class VidCom2Pruner(Pruner):
    """Plans VidCom2; the adapter runs it on the projector's features (stage ``features``)."""

    name = "vidcom2"
    budgeted: ClassVar[bool] = True
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
        base = self.base_scale if budget is None else budget / geometry.total_tokens
        info = {"stage": "features", "planned_kept": round(base * geometry.total_tokens)}
        return Selection.keep_all(geometry).with_reducer(VidCom2Reducer(base, budget), info)
