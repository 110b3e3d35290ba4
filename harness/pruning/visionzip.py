"""``visionzip``: VisionZip (Yang et al., CVPR 2025): dominant + contextual visual tokens.

Reference: dvlab-research/VisionZip ``visionzip/clip_encoder.py``
(``CLIPVisionTower_VisionZip.forward``; fixture and commit in
``tests/fixtures/pruning_refs/README.md``). At the tower layer that produces the features, for
one image of N tokens:

- **dominant**: the ``dominant`` tokens with the highest *dominance score*, in index order. In
  the reference (CLIP) the score is the CLS token's attention summed over heads, and the CLS
  itself is always kept;
- **contextual**: of the remaining ``m`` tokens, every ``max(1, m // contextual)``-th (the first
  ``contextual`` of them) is a target; each other remaining token joins the target its key
  (``metric``: the layer's keys averaged over heads, L2-normalised) is most cosine-similar to;
  a target's feature becomes ``target + mean(joined)`` (``Reduction`` rule ``target_plus_mean``).

Towers without a CLS token (LLaVA-OV's SigLIP): the dominance score is the attention each token
*receives*, averaged over heads and queries, as in the VisionZip port for LLaVA-OneVision video
(DyToK's ``static_compression``, which passes ``attn.mean(1).mean(1)`` of the last SigLIP layer;
its default is 42 dominant + 7 contextual of 196 tokens per frame, i.e. 25% kept at 6:1). Here it
runs per frame on the pooled LLM grid (the stock 2x2 bilinear pooling applied to the features,
the received attention and the keys alike), so a kept token is an LLM token.

The reference emits the dominant tokens, then the contextual ones in target order; here the
merged tokens sit at their targets' positions (the contract's one position rule). Adapters
supply the tower signals (``FeatureReducer.needs``): LLaVA-OneVision does; the others refuse
with the reason (Qwen's ViT attends in windows and merges 2x2 patches after it; InternViT's
pixel shuffle folds 4 patches into one LLM token).

Budget: without one, ``ratio`` (kept share per frame, default 0.25) decides; a budget is split
evenly over the frames (the remainder to the first ones); each frame's count splits into
dominant and contextual at ``contextual_share`` (1/7, VisionZip's 6:1 in DyToK; 30/221 in the
CLIP README).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from harness.pruning.base import Pruner, PruningError, check_ratio
from harness.pruning.selection import Selection, TokenGeometry
from harness.pruning.stages import FeatureReducer, Reduction


def visionzip_select(
    score: torch.Tensor, metric: torch.Tensor, dominant: int, contextual: int, always: int | None = None
) -> Reduction:
    """VisionZip over N tokens of one image from a dominance ``score`` (N,) and keys ``metric`` (N, C).

    ``always``: a token kept in any case and not counted in ``dominant`` (the CLS in the reference).
    """
    n = score.shape[0]
    keep = torch.zeros(n, dtype=torch.bool)
    candidates = torch.arange(n) if always is None else torch.tensor([i for i in range(n) if i != always])
    top = candidates[score[candidates].topk(min(dominant, candidates.numel())).indices]
    keep[top] = True
    if always is not None:
        keep[always] = True
    rest = (~keep).nonzero().squeeze(-1)  # in index order, as the reference's masked_select
    m = rest.numel()
    contextual = min(contextual, m)
    if contextual == 0:
        return Reduction.from_kept(keep, dominant=dominant, contextual=0)
    step = max(1, m // contextual)
    targets_local = torch.arange(0, m, step)[:contextual]
    is_target = torch.zeros(m, dtype=torch.bool)
    is_target[targets_local] = True
    normed = metric[rest] / metric[rest].norm(dim=-1, keepdim=True)
    sim = normed[~is_target] @ normed[targets_local].T
    joined = rest[~is_target]
    merge_into = torch.full((n,), -1, dtype=torch.long)
    targets = rest[targets_local]
    keep[targets] = True
    merge_into[keep] = keep.nonzero().squeeze(-1)
    merge_into[joined] = targets[sim.argmax(dim=1)]
    return Reduction(keep=keep, merge_into=merge_into, rule="target_plus_mean",
                     info={"dominant": dominant, "contextual": contextual})


def visionzip_reduction(
    attention: torch.Tensor, metric: torch.Tensor, dominant: int, contextual: int, cls_index: int = 0
) -> Reduction:
    """The reference (CLIP) form: ``attention`` (H, N, N) at the feature layer, CLS at ``cls_index``."""
    return visionzip_select(attention[:, cls_index].sum(0), metric, dominant, contextual, always=cls_index)


def frame_budgets(total: int, frames: int, per_frame: int, contextual_share: float) -> list[tuple[int, int]]:
    """(dominant, contextual) per frame for ``total`` tokens spread evenly (remainder first)."""
    out = []
    for f in range(frames):
        k = min(per_frame, total // frames + (1 if f < total % frames else 0))
        c = round(k * contextual_share)
        out.append((k - c, c))
    return out


class VisionZipReducer(FeatureReducer):
    name = "visionzip"
    needs = frozenset({"tower_attention"})

    def __init__(self, budgets: list[tuple[int, int]]):
        self.budgets = budgets

    def reduce(self, features: torch.Tensor, geometry: TokenGeometry,
               signals: dict[str, torch.Tensor] | None = None) -> Reduction:
        assert signals is not None  # checked by stages.run_reducer
        n, t = geometry.tokens_per_group, geometry.grid_t
        received, keys = signals["received"].float().cpu(), signals["keys"].float().cpu()
        keep = torch.zeros(t * n, dtype=torch.bool)
        merge_into = torch.full((t * n,), -1, dtype=torch.long)
        for f, (dom, ctx) in enumerate(self.budgets):
            part = visionzip_select(received[f * n : (f + 1) * n], keys[f * n : (f + 1) * n], dom, ctx)
            keep[f * n : (f + 1) * n] = part.keep
            merge_into[f * n : (f + 1) * n] = torch.where(part.merge_into >= 0, part.merge_into + f * n, -1)
        return Reduction(keep=keep, merge_into=merge_into, rule="target_plus_mean",
                         info={"dominant": sum(d for d, _ in self.budgets), "contextual": sum(c for _, c in self.budgets)})


class VisionZipPruner(Pruner):
    """Plans VisionZip per frame; the adapter runs it with its tower's attention (stage ``features``)."""

    name = "visionzip"
    budgeted: ClassVar[bool] = True
    stage: ClassVar[str] = "features"
    budget_optional: ClassVar[bool] = True  # without a budget, ``ratio`` decides
    needs_tower: ClassVar[frozenset[str]] = VisionZipReducer.needs

    def __init__(self, ratio: float = 0.25, contextual_share: float = 1 / 7):
        self.ratio = check_ratio(ratio, self.name)
        if not 0.0 <= float(contextual_share) < 1.0:
            raise PruningError(f"pruner 'visionzip': contextual_share must be in [0, 1), got {contextual_share!r}")
        self.contextual_share = float(contextual_share)

    def params(self) -> dict[str, Any]:
        return {"ratio": self.ratio, "contextual_share": self.contextual_share}

    def _select(
        self, frames: np.ndarray, geometry: TokenGeometry, budget: int | None, fps: float | None
    ) -> Selection:
        n, t = geometry.tokens_per_group, geometry.grid_t
        total = round(self.ratio * n) * t if budget is None else budget
        budgets = frame_budgets(total, t, n, self.contextual_share)
        info = {"stage": "features", "planned_kept": sum(d + c for d, c in budgets)}
        return Selection.keep_all(geometry).with_reducer(VisionZipReducer(budgets), info)
