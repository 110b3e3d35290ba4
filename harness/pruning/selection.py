"""The value a pruner hands to a model adapter: which visual tokens the LLM (or ViT) sees.

Why a boolean grid rather than a flat index list: every adapter lays out its visual tokens as
(temporal groups, rows, cols) of LLM tokens (after spatial merge / pooling), so a mask of that
shape is unambiguous across families and trivially converts to flat indices in raster order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from harness.pruning.stages import DecodePruning, FeatureReducer, LayerPruning


@dataclass(frozen=True)
class TokenGeometry:
    """How a model turns a clip into LLM visual tokens.

    ``height``/``width`` are the pixel sizes the model actually sees (after its own resize).
    One LLM token covers ``temporal_patch_size`` frames and a square of
    ``patch_size * spatial_merge_size`` pixels.
    """

    num_frames: int
    height: int
    width: int
    patch_size: int
    temporal_patch_size: int = 1
    spatial_merge_size: int = 1

    @property
    def grid_t(self) -> int:
        return self.num_frames // self.temporal_patch_size

    @property
    def grid_h(self) -> int:
        """LLM-token rows (after spatial merge)."""
        return self.height // (self.patch_size * self.spatial_merge_size)

    @property
    def grid_w(self) -> int:
        return self.width // (self.patch_size * self.spatial_merge_size)

    @property
    def tokens_per_group(self) -> int:
        return self.grid_h * self.grid_w

    @property
    def total_tokens(self) -> int:
        return self.grid_t * self.tokens_per_group


@dataclass
class Selection:
    """Kept LLM visual tokens: ``keep`` is a bool tensor (grid_t, grid_h, grid_w) over ``geometry``.

    ``geometry`` may differ from the model's native one (the ``downsample`` baseline lowers the
    resolution); adapters resize frames to ``geometry.height x geometry.width`` then.
    ``info`` carries pruner-specific facts for the record (e.g. gaze seconds, matched budget).

    Two later stages (``harness/pruning/stages.py``) may follow ``keep``: ``reducer`` runs on
    every token's LLM-ready features before the LLM (DyCoke, VidCom2), ``llm`` prunes inside
    the LLM at a layer (FastV). ``keep`` is then what the vision tower encodes; the adapter
    reports the tokens the LLM finally saw.
    """

    geometry: TokenGeometry
    keep: torch.Tensor
    pruner: str = "none"
    info: dict[str, Any] = field(default_factory=dict)
    reducer: FeatureReducer | None = None
    llm: LayerPruning | DecodePruning | None = None

    def __post_init__(self) -> None:
        g = self.geometry
        expected = (g.grid_t, g.grid_h, g.grid_w)
        if tuple(self.keep.shape) != expected or self.keep.dtype != torch.bool:
            raise ValueError(
                f"Selection.keep must be a bool tensor of shape {expected} for {g}, "
                f"got {self.keep.dtype} {tuple(self.keep.shape)}"
            )

    @classmethod
    def keep_all(cls, geometry: TokenGeometry, pruner: str = "none") -> Selection:
        keep = torch.ones(geometry.grid_t, geometry.grid_h, geometry.grid_w, dtype=torch.bool)
        return cls(geometry=geometry, keep=keep, pruner=pruner)

    def with_reducer(self, reducer: FeatureReducer, info: dict[str, Any] | None = None) -> Selection:
        """This selection plus a feature-stage method (it must see every token: keep-all only)."""
        if not bool(self.keep.all()):
            raise ValueError(f"a feature-stage method ({reducer.name}) needs every token's features: keep-all only")
        self.reducer = reducer
        self.info.update(info or {})
        return self

    def with_llm(self, llm: LayerPruning | DecodePruning, info: dict[str, Any] | None = None) -> Selection:
        self.llm = llm
        self.info.update(info or {})
        return self

    @property
    def num_kept(self) -> int:
        return int(self.keep.sum())

    @property
    def kept_indices(self) -> torch.Tensor:
        """Flat indices (raster order over t, h, w) of kept tokens: the LLM's visual sequence order."""
        return self.keep.flatten().nonzero().squeeze(-1)

    def kept_per_group(self) -> list[int]:
        return self.keep.flatten(1).sum(-1).tolist()
