"""The two later places a pruning method can act, after ``Pruner.select`` has seen the frames.

A method acts at one of three places (docs/pruning.md has the picture):

1. **frames** -> ``Selection.keep``: which LLM tokens exist (every pruner so far; AutoGaze).
2. **features** (before the LLM, after the vision tower + projector): a ``FeatureReducer`` reads
   the LLM-ready visual features of *every* token (raster order over the geometry) and returns a
   ``Reduction``: which tokens the LLM sees and which of the others are merged into them
   (DyCoke's temporal merging, VidCom2's frame-adaptive selection, VisionZip-style merges).
3. **llm** (inside the LLM at layer K): a ``LayerPruning`` says "after layer K-1, keep the
   visual tokens the last prompt token attends to most" (FastV). The adapters' shared decoding
   loop applies it (``harness/models/layer_pruning.py``).

Why typed objects rather than callbacks into the model: the data flow stays one-way (pruner ->
plan -> adapter), the plan is recorded as-is, and a method is a pure function of tensors that
is tested against its authors' code on fixtures without any model.

Position rule for merges (one rule for every method): a token merged into another disappears
from the sequence; the merged feature sits at its *target's* position (the target's unpruned
position for 1D RoPE, its (t, h, w) for M-RoPE). Methods whose reference appends merged tokens
after the kept ones (VisionZip's contextual tokens) therefore differ in order, never in content.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from harness.pruning.selection import TokenGeometry

#: How a kept token's feature is formed from its own and those of the tokens merged into it.
#: ``keep_target``: unchanged, the target stands for its sources (DyCoke: a redundant token is
#: represented by the same token of an earlier frame); ``mean``: the mean of the target and its
#: sources (ToMe); ``target_plus_mean``: target + mean(sources) (VisionZip's contextual tokens).
MergeRule = Literal["keep_target", "mean", "target_plus_mean"]


@dataclass(frozen=True)
class Reduction:
    """What a feature-stage method does to the N visual tokens (flat raster order over a geometry).

    ``keep``: bool (N,), the tokens the LLM sees, each at its own position. ``merge_into``: long
    (N,), for every token the index of the kept token that absorbs it (itself when kept; -1 when it
    is dropped without being merged). ``rule`` says how a kept token's feature is formed.
    """

    keep: torch.Tensor
    merge_into: torch.Tensor
    rule: MergeRule = "keep_target"
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = self.keep.numel()
        if self.keep.dtype != torch.bool or self.keep.dim() != 1:
            raise ValueError(f"Reduction.keep must be a 1-D bool tensor, got {self.keep.dtype} {tuple(self.keep.shape)}")
        if self.merge_into.shape != (n,) or self.merge_into.dtype != torch.long:
            raise ValueError(f"Reduction.merge_into must be a long tensor of shape ({n},)")
        kept = self.keep.nonzero().squeeze(-1)
        if not torch.equal(self.merge_into[kept], kept):
            raise ValueError("Reduction: a kept token must merge into itself")
        targets = self.merge_into[~self.keep]
        targets = targets[targets >= 0]
        if targets.numel() and not bool(self.keep[targets].all()):
            raise ValueError("Reduction: a token may only merge into a kept token")

    @classmethod
    def from_kept(cls, keep: torch.Tensor, **info: Any) -> Reduction:
        """A pure selection: the kept tokens stay, the others are dropped."""
        keep = keep.flatten().to(torch.bool)
        merge_into = torch.full((keep.numel(),), -1, dtype=torch.long, device=keep.device)
        merge_into[keep] = keep.nonzero().squeeze(-1)
        return cls(keep=keep, merge_into=merge_into, rule="keep_target", info=dict(info))

    @property
    def num_kept(self) -> int:
        return int(self.keep.sum())

    @property
    def num_merged(self) -> int:
        return int(((self.merge_into >= 0) & ~self.keep).sum())

    def apply(self, features: torch.Tensor) -> torch.Tensor:
        """(N, D) features of every token -> (num_kept, D) features of the kept tokens, raster order."""
        if features.shape[0] != self.keep.numel():
            raise ValueError(f"Reduction covers {self.keep.numel()} tokens but {features.shape[0]} features were given")
        keep = self.keep.to(features.device)
        kept = features[keep]
        if self.rule == "keep_target":
            return kept
        merge_into = self.merge_into.to(features.device)
        sources = (~keep) & (merge_into >= 0)
        slot = torch.cumsum(keep.long(), 0) - 1  # token index -> row among the kept
        dest = slot[merge_into[sources]]
        sums = torch.zeros_like(kept).index_add_(0, dest, features[sources])
        counts = torch.zeros(kept.shape[0], dtype=features.dtype, device=features.device)
        counts.index_add_(0, dest, torch.ones_like(dest, dtype=features.dtype))
        if self.rule == "mean":
            return (kept + sums) / (counts + 1)[:, None]
        return kept + sums / counts.clamp(min=1)[:, None]  # target_plus_mean


class FeatureReducer(ABC):
    """A method that decides from the LLM-ready visual features of every token (stage 2).

    ``needs`` names tower signals beyond the features that the adapter must supply, on the same
    token grid: ``"tower_attention"`` = ``received`` (N,), the attention each token receives in
    the layer that produced the features (mean over heads and queries), and ``keys`` (N, d), that
    layer's keys averaged over heads (VisionZip). Adapters that cannot supply them refuse.
    """

    name: str = "base"
    needs: frozenset[str] = frozenset()

    @abstractmethod
    def reduce(self, features: torch.Tensor, geometry: TokenGeometry,
               signals: dict[str, torch.Tensor] | None = None) -> Reduction:
        """``features`` (N, D), N = ``geometry.total_tokens`` in raster order (t, h, w)."""


def run_reducer(reducer: FeatureReducer, features: torch.Tensor, geometry: TokenGeometry,
                signals: dict[str, torch.Tensor] | None = None, family: str = "this model") -> Reduction:
    """``reducer.reduce`` after checking the adapter supplied what it needs (else one clear error)."""
    if reducer.needs and signals is None:
        raise ValueError(
            f"{reducer.name} needs {', '.join(sorted(reducer.needs))} from the vision tower, which {family}'s "
            "adapter does not supply (implemented for llava_onevision)"
        )
    return reducer.reduce(features, geometry, signals)


@dataclass(frozen=True)
class LayerPruning:
    """Stage 3: from layer ``layer`` on, the LLM keeps only some visual tokens (FastV).

    The visual tokens are the prompt's visual placeholders (for LLaVA-OV that includes its
    trailing newline token, as in FastV's image span). Those kept are the ``keep`` (or, with
    ``keep=None``, ``round(n * (1 - drop_ratio))``, FastV's rule with Python's rounding) that the
    last prompt token attends to most at layer ``layer - 1``, averaged over heads; text tokens
    always stay, every kept token keeps its position, layers before ``layer`` see every token.
    """

    layer: int
    keep: int | None = None
    drop_ratio: float = 0.5
    #: the selection's token count ``keep`` refers to; placeholders beyond it (LLaVA-OV's
    #: newline) are added to ``keep``, so a budget counts the same tokens as every other pruner's
    selection_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.layer < 1:
            raise ValueError(f"LayerPruning.layer must be >= 1 (attention of layer K-1 decides), got {self.layer}")
        if self.keep is not None and self.keep < 1:
            raise ValueError(f"LayerPruning.keep must be >= 1, got {self.keep}")
        if not 0.0 <= self.drop_ratio < 1.0:
            raise ValueError(f"LayerPruning.drop_ratio must be in [0, 1), got {self.drop_ratio}")

    def num_keep(self, num_visual: int) -> int:
        if self.keep is None:
            n = round(num_visual * (1 - self.drop_ratio))
        else:
            n = self.keep + max(0, num_visual - (self.selection_tokens or num_visual))
        return max(1, min(int(n), num_visual))

    def to_dict(self) -> dict[str, Any]:
        return {"layer": self.layer, "keep": self.keep, "drop_ratio": self.drop_ratio,
                "selection_tokens": self.selection_tokens}


@dataclass(frozen=True)
class DecodePruning:
    """Stage 3 while decoding (DyCoke's dynamic KV-cache pruning): at every decoding step, layer
    ``layer - 1``'s attention of the new token ranks the visual tokens; unless it is at least
    ``threshold`` cosine-similar to the previous step's, layers ``>= layer`` read only the top
    ``int(n * (1 - drop_ratio))`` visual entries of the KV cache (text and generated ones always),
    for that step only. The prefill and layers below ``layer`` see everything.
    """

    layer: int
    drop_ratio: float = 0.7
    threshold: float = 0.9

    def __post_init__(self) -> None:
        if self.layer < 1:
            raise ValueError(f"DecodePruning.layer must be >= 1, got {self.layer}")
        if not 0.0 <= self.drop_ratio < 1.0:
            raise ValueError(f"DecodePruning.drop_ratio must be in [0, 1), got {self.drop_ratio}")

    def num_keep(self, num_visual: int) -> int:
        return int(num_visual * (1 - self.drop_ratio))

    def to_dict(self) -> dict[str, Any]:
        return {"layer": self.layer, "drop_ratio": self.drop_ratio, "threshold": self.threshold}


def feature_stage(
    selection: Any, features: torch.Tensor, signals: dict[str, torch.Tensor] | None = None, family: str = "this model"
) -> tuple[torch.Tensor, torch.Tensor, Reduction | None]:
    """(keep (N,) bool, kept features in raster order, the Reduction or None) for a selection.

    The one call adapters make where they hold every token's LLM-ready features (rows in
    ``selection.keep`` raster order): a selection without a feature-stage method keeps its
    ``keep`` rows; one with a ``reducer`` gets the method's reduction applied.
    """
    if selection.reducer is None:
        keep = selection.keep.flatten().to(features.device)
        return keep, features[keep], None
    reduction = run_reducer(selection.reducer, features, selection.geometry, signals, family)
    keep = reduction.keep.to(features.device)
    return keep, reduction.apply(features), reduction


def reduction_record(reduction: Reduction | None) -> dict[str, Any] | None:
    """The facts a record keeps about a feature-stage reduction (small, JSON-ready)."""
    if reduction is None:
        return None
    small = {k: v for k, v in reduction.info.items() if isinstance(v, (int, float, str, bool)) or v is None}
    return {"kept": reduction.num_kept, "merged": reduction.num_merged, "rule": reduction.rule, **small}
