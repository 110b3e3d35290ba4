"""``dycoke``: DyCoke (Tao et al., CVPR 2025): temporal token merging before the LLM, then
dynamic KV-cache pruning while decoding.

Reference: KD-TAO/DyCoke ``llava/model/llava_arch.py:dycole_ttm`` (fixture and commit in
``tests/fixtures/pruning_refs/README.md``). On the LLM-ready features of each frame (here: each
temporal group of the model's token grid, ``n`` tokens):

1. frames are paired (0,1), (2,3), ...: in frame ``2i+1`` only the ``keep`` tokens *least*
   cosine-similar to the same position in frame ``2i`` stay;
2. in windows of four, frame ``4i+2`` is then re-pruned against frame ``4i`` the same way, for
   ``i in range(0, T - 4, 4)`` as in the reference (so with ``T`` a multiple of 4 the last
   window's third frame stays whole; reproduced as shipped);
3. ``keep = int((1 - k) * n)`` with DyCoke's ``dycoke_k`` = ``k`` (the paper's 0.7 in its
   README's run, 0.3 the builder's default).

A dropped token is *represented by* the token at the same position of the frame it was compared
with (the reference drops its feature; the paper calls this merging): ``Reduction.merge_into``
records that target (followed to a kept token), with rule ``keep_target``.

Stage 2, dynamic KV pruning (``p`` = ``dycoke_p``, ``l`` = ``dycoke_l``; reference
``PrunableDynamicCache.dycoke_pruning`` in its ``modeling_qwen2.py``): at every decoding step the
new token's attention at layer ``l-1`` (head mean) over the visual tokens is compared with the
previous step's; unless cosine-similar at >= 0.9, layers ``>= l`` read only the top
``int(n * (1 - p))`` visual KV entries that step (``dycoke_kv_step``; applied by the decoding
loop, ``harness/models/layer_pruning.py``). ``p=None`` turns it off. Published: ``l=3``, ``p``
0.7 in the README's run (builder default 0.8).

Deviations, all stated: kept tokens are in raster order (the reference emits a pruned frame's
tokens in ascending-similarity order); an odd last frame is kept whole (the reference's pairing
loop silently drops it); the KV stage ranks every visual placeholder (the reference's span after
TTM stops one token short and leaves LLaVA's newline out) and keeps no state across samples (the
reference's previous-step attention survives into the next sample's first step).

Budget: a budget fixes ``keep`` instead of ``k``: the largest ``keep`` with
``whole * n + pruned * keep <= budget`` (``whole``/``pruned``: frames left whole / pruned);
below ``whole * n`` it keeps the whole frames only (``info["budget_gap"] > 0``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from harness.pruning.base import Pruner, PruningError
from harness.pruning.selection import Selection, TokenGeometry
from harness.pruning.stages import DecodePruning, FeatureReducer, Reduction


def ttm_pairs(num_frames: int) -> list[tuple[int, int]]:
    """(reference frame, pruned frame) in the order the reference applies them (later wins)."""
    pairs = [(i, i + 1) for i in range(0, num_frames - 1, 2)]
    pairs += [(i, i + 2) for i in range(0, num_frames - 4, 4)]
    return pairs


def pruned_frames(num_frames: int) -> set[int]:
    return {b for _, b in ttm_pairs(num_frames)}


def dycoke_ttm(features: torch.Tensor, tokens_per_frame: int, keep: int) -> Reduction:
    """DyCoke's TTM on (T * n, D) features: which tokens stay, and which kept token stands for each other one."""
    n = tokens_per_frame
    if features.shape[0] % n:
        raise ValueError(f"dycoke: {features.shape[0]} features are not whole frames of {n} tokens")
    t = features.shape[0] // n
    keep = max(0, min(int(keep), n))
    frames = features.view(t, n, -1).float()
    kept = torch.ones(t, n, dtype=torch.bool)
    source = torch.arange(t * n).view(t, n).clone()  # token -> token it is compared with
    for a, b in ttm_pairs(t):
        # the reference normalises before cosine similarity (a no-op for the cosine): kept for parity
        sim = F.cosine_similarity(F.normalize(frames[a], dim=1), F.normalize(frames[b], dim=1), dim=1)
        stay = sim.topk(keep, largest=False).indices
        kept[b] = False
        kept[b, stay] = True
        source[b] = torch.arange(n) + a * n
        source[b, stay] = torch.arange(n)[stay] + b * n
    flat_keep = kept.flatten()
    merge_into = source.flatten()
    for _ in range(t):  # follow chains (frame 4i+3 -> 4i+2 -> 4i) to a kept token
        hop = ~flat_keep[merge_into]
        if not bool(hop.any()):
            break
        merge_into = torch.where(hop, source.flatten()[merge_into], merge_into)
    merge_into[flat_keep] = torch.arange(t * n)[flat_keep]
    return Reduction(keep=flat_keep, merge_into=merge_into, rule="keep_target")


def keep_for_budget(num_frames: int, tokens_per_frame: int, budget: int) -> tuple[int, int]:
    """(tokens kept per pruned frame, resulting total) for a budget (see the module doc)."""
    pruned = len(pruned_frames(num_frames))
    whole = num_frames - pruned
    if pruned == 0:
        return tokens_per_frame, num_frames * tokens_per_frame
    keep = max(0, min(tokens_per_frame, (budget - whole * tokens_per_frame) // pruned))
    return keep, whole * tokens_per_frame + pruned * keep


def dycoke_kv_step(
    attention_row: torch.Tensor, visual: torch.Tensor, previous: torch.Tensor | None, keep: int, threshold: float
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """One decoding step of DyCoke's KV pruning: (positions the layers >= L read, or None for all;
    this step's visual attention, the next step's ``previous``).

    Reference: ``PrunableDynamicCache.dycoke_pruning`` / ``update_cache`` (KD-TAO/DyCoke,
    ``llava/model/language_model/modeling_qwen2.py``). ``attention_row`` (H, S): the new token's
    attention at layer L-1 over the cache; the head mean over the visual positions is compared
    (cosine) with the previous step's; below ``threshold`` (or on the first step) the top ``keep``
    visual positions stay, with every non-visual position.
    """
    image = attention_row.float().mean(0)[visual]
    similar = previous is not None and float(F.cosine_similarity(image, previous, dim=0)) >= threshold
    if similar:
        return None, image
    vis = visual.nonzero().squeeze(-1)
    kept = ~visual.clone()
    kept[vis[torch.topk(image, keep, sorted=False).indices]] = True
    return kept.nonzero().squeeze(-1), image


class DyCokeReducer(FeatureReducer):
    name = "dycoke"

    def __init__(self, keep: int):
        self.keep = keep

    def reduce(self, features: torch.Tensor, geometry: TokenGeometry,
               signals: dict[str, torch.Tensor] | None = None) -> Reduction:
        red = dycoke_ttm(features, geometry.tokens_per_group, self.keep)
        red.info.update({"kept_per_pruned_frame": self.keep})
        return red


class DyCokePruner(Pruner):
    """Plans DyCoke's TTM; the adapter runs it on the projector's features (stage ``features``)."""

    name = "dycoke"
    budgeted: ClassVar[bool] = True
    stage: ClassVar[str] = "features"
    budget_optional: ClassVar[bool] = True  # without a budget, ``k`` decides (the published way)

    def __init__(self, k: float = 0.7, p: float | None = 0.7, l: int = 3):  # noqa: E741 - DyCoke's names
        if not 0.0 <= float(k) < 1.0:
            raise PruningError(f"pruner 'dycoke': k (share of a pruned frame's tokens merged) must be in [0, 1), got {k!r}")
        if p is not None and not 0.0 <= float(p) < 1.0:
            raise PruningError(f"pruner 'dycoke': p (share of visual KV entries pruned per step) must be in [0, 1) or null, got {p!r}")
        if isinstance(l, bool) or not isinstance(l, int) or l < 1:
            raise PruningError(f"pruner 'dycoke': l (the layer KV pruning starts at) must be an int >= 1, got {l!r}")
        self.k, self.p, self.l = float(k), None if p is None else float(p), l

    def params(self) -> dict[str, Any]:
        return {"k": self.k, "p": self.p, "l": self.l}

    @property
    def acts_in_llm(self) -> bool:
        """Stage 2 (KV pruning while decoding, ``p`` set) runs inside the LLM."""
        return self.p is not None

    def _select(
        self, frames: np.ndarray, geometry: TokenGeometry, budget: int | None, fps: float | None
    ) -> Selection:
        n, t = geometry.tokens_per_group, geometry.grid_t
        info: dict[str, Any] = {"stage": "features"}
        if budget is None:
            keep = int((1 - self.k) * n)
            total = (t - len(pruned_frames(t))) * n + len(pruned_frames(t)) * keep
        else:
            keep, total = keep_for_budget(t, n, budget)
            info["budget_gap"] = total - budget
        info.update({"kept_per_pruned_frame": keep, "planned_kept": total})
        selection = Selection.keep_all(geometry).with_reducer(DyCokeReducer(keep), info)
        if self.p is not None:  # stage 2: dynamic KV pruning while decoding
            plan = DecodePruning(layer=self.l, drop_ratio=self.p)
            selection.with_llm(plan, {"kv_pruning": plan.to_dict()})
        return selection
