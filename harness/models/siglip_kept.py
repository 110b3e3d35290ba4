"""Pre-ViT pruning for stock LLaVA-OneVision / LLaVA-Video SigLIP towers.

:func:`encode_kept_patches` (features of the kept patches of each frame, through
``GazedSiglipVisionEncoder`` on one scale), :func:`vit_keep_for_pooled_keep` (the
spatial-pooling policy: which patches a kept pooled LLM token needs) and
:func:`pooled_features_pre_vit` (the whole chain up to the kept pooled tokens). InternViT's
counterpart is harness/models/internvit_kept.py.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from harness.models.gazed_siglip import GazedSiglipVisionEncoder, GazingInfo, _tower_parts


@dataclass
class KeptPatchFeatures:
    """Features of the kept ViT patches of each frame (raster order over (t, h, w))."""

    features: torch.Tensor  # (K, D)
    keep: torch.Tensor  # (T, gh, gw) bool, K = keep.sum()

    def to_grid(self, fill: float = 0.0) -> torch.Tensor:
        """(T, gh, gw, D) with the kept features in place and ``fill`` elsewhere."""
        t, gh, gw = self.keep.shape
        grid = self.features.new_full((t, gh, gw, self.features.shape[-1]), fill)
        grid[self.keep] = self.features
        return grid


@torch.no_grad()
def encode_kept_patches(
    tower: nn.Module,
    pixel_values: torch.Tensor,
    keep: torch.Tensor,
    *,
    feature_layer: int | Sequence[int] = -1,
    attn_type: str = "frame_independent",
) -> KeptPatchFeatures:
    """Pre-ViT mode for a stock SigLIP tower: embed and encode only the kept patches of each frame.

    ``pixel_values`` (T, C, H, W) are the frames as the model's processor prepared them
    (H = W = the tower's image size); ``keep`` (T, H/p, W/p) marks the ViT patches to compute.
    ``attn_type`` defaults to ``frame_independent`` because a stock image tower was trained on
    single images: with every patch kept, the result equals the stock tower frame by frame.
    ``feature_layer`` follows the model's ``vision_feature_layer`` (hidden states index; -1 =
    last layer output before the post layer norm, as LLaVA-OneVision reads it).
    """
    if pixel_values.dim() != 4:
        raise ValueError(f"pixel_values must be (T, C, H, W); got {tuple(pixel_values.shape)}")
    t, _, h, w = pixel_values.shape
    if h != w:
        raise ValueError(f"pre-ViT gazing needs square frames (the SigLIP processor's output); got {h}x{w}")
    encoder = GazedSiglipVisionEncoder(tower, scales=h, attn_type=attn_type)
    g = encoder.layout.grid_sizes[0]
    keep = keep.bool()
    if tuple(keep.shape) != (t, g, g):
        raise ValueError(
            f"keep must be (T, {g}, {g}) for {t} frames of {h} px with patch {encoder.layout.patch_size}; "
            f"got {tuple(keep.shape)}"
        )
    gazing = GazingInfo.from_masks(keep.reshape(1, t, g * g).to(pixel_values.device), encoder.layout)
    out = encoder(pixel_values[None], gazing, feature_layer=feature_layer)
    return KeptPatchFeatures(features=out.real_features()[0], keep=keep.to(out.features.device))


def bilinear_half_pool(x: torch.Tensor) -> torch.Tensor:
    """LLaVA-OneVision / LLaVA-Video's video pooling: bilinear resize of (N, C, h, w) to ceil(h/2) x ceil(w/2)."""
    h, w = x.shape[-2:]
    return F.interpolate(x, size=(math.ceil(h / 2), math.ceil(w / 2)), mode="bilinear")


def pooling_footprint(in_hw: tuple[int, int], pool: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """(out_h*out_w, in_h*in_w) bool: which input cells each pooled cell reads (any linear ``pool``).

    Found by pushing one-hot maps through ``pool`` itself, so it is right for whatever pooling the
    model uses (bilinear, average, strided) without re-deriving its index arithmetic.
    """
    ih, iw = in_hw
    eye = torch.eye(ih * iw, dtype=torch.float64).view(ih * iw, 1, ih, iw)
    response = pool(eye)  # (in, 1, oh, ow)
    return (response.flatten(1).abs() > 0).T.contiguous()


def vit_keep_for_pooled_keep(
    pooled_keep: torch.Tensor,
    vit_grid: tuple[int, int],
    pool: Callable[[torch.Tensor], torch.Tensor] = bilinear_half_pool,
) -> torch.Tensor:
    """Spatial-pooling policy for pre-ViT pruning: which ViT patches to compute for kept LLM tokens.

    Policy: a kept LLM token (a cell of the pooled grid, what ``Selection.keep`` marks) needs every
    ViT patch its pooling reads; so the ViT runs on the union of the kept tokens' footprints, the
    stock projector and pooling then run on a grid holding those features (zeros elsewhere), and
    only the kept LLM cells are read back. Each kept cell is then pooled from exactly the inputs the
    stock model would use; the only approximation left is the one pre-ViT pruning makes on purpose
    (ViT attention sees the kept patches only). Dropped cells' values are never used.

    ``pooled_keep`` (T, oh, ow) -> (T, *vit_grid) bool.
    """
    fp = pooling_footprint(vit_grid, pool)  # (oh*ow, ih*iw)
    t = pooled_keep.shape[0]
    if fp.shape[0] != pooled_keep[0].numel():
        raise ValueError(
            f"pooled keep grid {tuple(pooled_keep.shape[1:])} does not match pooling of {vit_grid}"
        )
    needed = pooled_keep.reshape(t, -1).double().cpu() @ fp.double()
    return (needed > 0).view(t, *vit_grid).to(pooled_keep.device)


@torch.no_grad()
def pooled_features_pre_vit(
    tower: nn.Module,
    projector: nn.Module,
    pixel_values: torch.Tensor,
    pooled_keep: torch.Tensor,
    *,
    feature_layer: int | Sequence[int] = -1,
    pool: Callable[[torch.Tensor], torch.Tensor] = bilinear_half_pool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """LLaVA-OneVision / LLaVA-Video pre-ViT pruning in one call: kept pooled LLM tokens.

    ``pixel_values`` (T, C, H, W) as the processor made them; ``pooled_keep`` (T, oh, ow) is the
    ``Selection.keep`` grid over pooled tokens. Applies :func:`vit_keep_for_pooled_keep`, runs the
    stock tower on those patches (frame-independent, :func:`encode_kept_patches`), the stock
    ``projector`` on the kept features, scatters them into a zero grid, applies the model's
    ``pool`` and returns ``(features of the kept pooled cells in raster order (K, D), vit_keep)``.
    With every cell kept this equals the stock ``get_video_features`` without its newline.
    """
    t, _, h, w = pixel_values.shape
    p = _tower_parts(tower).config.patch_size
    vit_keep = vit_keep_for_pooled_keep(pooled_keep.bool(), (h // p, w // p), pool)
    kept = encode_kept_patches(tower, pixel_values, vit_keep, feature_layer=feature_layer)
    projected = projector(kept.features)
    grid = projected.new_zeros(t, h // p, w // p, projected.shape[-1])
    grid[vit_keep.to(grid.device)] = projected
    pooled = pool(grid.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    return pooled[pooled_keep.bool().to(pooled.device)], vit_keep
