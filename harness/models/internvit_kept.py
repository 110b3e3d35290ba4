"""Pre-ViT pruning for InternVL's stock InternViT: encode only the patches the kept LLM tokens read.

Why this exists: post-ViT pruning saves LLM time only; running InternViT on the kept patches
alone is where pre-ViT pruning saves vision time. It reuses the stock transformers modules of
``InternVLVisionModel`` (``embeddings``, each ``encoder.layer``, ``layernorm``) and
``InternVLModel`` (``pixel_shuffle``, ``multi_modal_projector``) by calling them, so any
``-hf`` checkpoint works unchanged and nothing is patched.

What the ViT sees, per frame (each frame is its own image, as in stock InternVL video):
- the stock embeddings of the whole frame are computed (the patch convolution is cheap next to
  the layers) and the sequence ``[CLS, kept patches in raster order]`` is cut from them, so every
  kept patch carries its stock (possibly bicubic-interpolated) position embedding;
- the CLS token always runs with the kept patches of its frame, as in stock: stock drops it only
  after the encoder (``vision_feature_select_strategy="default"``), so it is part of what every
  patch attends to. A frame with no kept patch runs nothing, CLS included;
- attention is among the tokens of one frame only. The stock layers take no attention mask, so
  frames are batched by their kept count (one unpadded batch per count): exact, and with every
  patch kept it is the stock batch itself.

Which features are read (``vision_feature_layer``, as stock ``get_image_features``): ``-1`` is
the last layer after the tower's ``layernorm`` (an identity when ``use_mean_pooling``); any other
int indexes the stock ``hidden_states`` (0 = embeddings, i = output of layer i, negative from the
end, no ``layernorm``), and layers after it are not run. A list of layers is refused: stock
InternVL cannot use one either. ``vision_feature_select_strategy="full"`` is refused: it keeps the
CLS token in the patch grid, which stock cannot reshape into a square either.

Pixel shuffle (``downsample_ratio`` 0.5): each LLM token reads a 2x2 block of patches. Which
block is found by pushing a map of patch ids through the stock ``pixel_shuffle`` itself
(:func:`shuffle_footprint`), not re-derived. The kept patches' features are scattered into a
zero grid, the stock shuffle runs on it and the kept tokens are read back. Only the kept tokens
go through the projector: it works token by token (LayerNorm over channels, two Linears), so
this equals projecting the whole grid and reading the kept rows afterwards.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from harness.models.siglip_kept import KeptPatchFeatures

PixelShuffle = Callable[..., torch.Tensor]


def shuffle_footprint(pixel_shuffle: PixelShuffle, grid: tuple[int, int], scale: float) -> torch.Tensor:
    """(tokens, patches_per_token) long: the patch ids (raster over ``grid``) each shuffled token reads.

    Found by shuffling a one-channel map of patch ids with the model's own ``pixel_shuffle``; each
    patch must land in exactly one token (a partition), which is checked.
    """
    gh, gw = grid
    ids = torch.arange(gh * gw, dtype=torch.float64).view(1, gh, gw, 1)
    shuffled = pixel_shuffle(ids, scale_factor=scale)  # (1, th, tw, r^2)
    footprint = shuffled.reshape(-1, shuffled.shape[-1]).round().long()
    if not torch.equal(footprint.flatten().sort().values, torch.arange(gh * gw)):
        raise ValueError(f"pixel shuffle of a {gh}x{gw} patch grid at scale {scale} is not a partition of it")
    return footprint


def vit_keep_for_token_keep(
    token_keep: torch.Tensor, pixel_shuffle: PixelShuffle, vit_grid: tuple[int, int], scale: float
) -> torch.Tensor:
    """(T, th, tw) kept LLM tokens -> (T, *vit_grid) the patches the ViT must compute for them."""
    t = token_keep.shape[0]
    footprint = shuffle_footprint(pixel_shuffle, vit_grid, scale)
    if footprint.shape[0] != token_keep[0].numel():
        raise ValueError(
            f"token keep grid {tuple(token_keep.shape[1:])} does not match a {vit_grid} patch grid "
            f"shuffled at scale {scale}"
        )
    per_token = footprint.shape[1]
    src = token_keep.reshape(t, -1).bool().cpu().repeat_interleave(per_token, dim=1)
    vit_keep = torch.zeros(t, vit_grid[0] * vit_grid[1], dtype=torch.bool)
    vit_keep.scatter_(1, footprint.flatten()[None].expand(t, -1), src)
    return vit_keep.view(t, *vit_grid).to(token_keep.device)


def _patch_hw(tower: nn.Module) -> tuple[int, int]:
    """The tower's patch (height, width): the ``-hf`` configs store a pair, older ones one int."""
    patch = tower.config.patch_size
    return (int(patch[0]), int(patch[1])) if isinstance(patch, (list, tuple)) else (int(patch), int(patch))


def _layers_to_run(tower: nn.Module, feature_layer: int) -> tuple[int, bool]:
    """(how many encoder layers to run, whether to apply the tower's final ``layernorm``)."""
    if isinstance(feature_layer, bool) or not isinstance(feature_layer, int):
        raise ValueError(
            f"vision_feature_layer must be one int for InternVL (stock indexes hidden_states with it); "
            f"got {feature_layer!r}"
        )
    num_layers = len(tower.encoder.layer)
    if not -(num_layers + 1) <= feature_layer <= num_layers:
        raise ValueError(f"vision_feature_layer {feature_layer} is out of range for {num_layers} layers")
    if feature_layer == -1:
        return num_layers, True
    return feature_layer % (num_layers + 1), False


@torch.no_grad()
def encode_kept_patches(
    tower: nn.Module,
    pixel_values: torch.Tensor,
    keep: torch.Tensor,
    *,
    feature_layer: int = -1,
    select_strategy: str = "default",
) -> KeptPatchFeatures:
    """Features of the kept patches of each frame, InternViT run frame by frame on them (+ CLS).

    ``tower`` is a stock ``InternVLVisionModel``; ``pixel_values`` (T, C, H, W) as the processor
    made them; ``keep`` (T, H/p, W/p) marks the patches to compute. With every patch kept this
    equals the stock tower's features of ``feature_layer`` with the CLS token dropped.
    """
    if select_strategy != "default":
        raise ValueError(
            f"pre-ViT InternViT needs vision_feature_select_strategy='default' (CLS dropped after the "
            f"encoder); got {select_strategy!r}"
        )
    if pixel_values.dim() != 4:
        raise ValueError(f"pixel_values must be (T, C, H, W); got {tuple(pixel_values.shape)}")
    t, _, h, w = pixel_values.shape
    ph, pw = _patch_hw(tower)
    grid = (h // ph, w // pw)
    keep = keep.bool()
    if tuple(keep.shape) != (t, *grid):
        raise ValueError(
            f"keep must be (T, gh, gw) = {(t, *grid)} for these pixel_values; got {tuple(keep.shape)}"
        )
    run_layers, apply_norm = _layers_to_run(tower, feature_layer)
    layers = tower.encoder.layer[:run_layers]

    flat_keep = keep.reshape(t, -1).to(pixel_values.device)
    counts = flat_keep.sum(1)
    out: torch.Tensor | None = None
    for n in counts.unique().tolist():
        if n == 0:
            continue
        frames = (counts == n).nonzero().squeeze(-1)
        embedded = tower.embeddings(pixel_values[frames])  # (B, 1 + P, D): CLS, then patches, stock positions
        patch_ids = flat_keep[frames].nonzero()[:, 1].view(len(frames), n)  # ascending = raster
        d = embedded.shape[-1]
        kept = torch.gather(embedded[:, 1:], 1, patch_ids[..., None].expand(-1, -1, d))
        hidden = torch.cat([embedded[:, :1], kept], dim=1)
        for layer in layers:
            hidden = layer(hidden)
        if apply_norm:
            hidden = tower.layernorm(hidden)
        if out is None:
            out = hidden.new_zeros(t, flat_keep.shape[1], d)
        out[frames[:, None], patch_ids] = hidden[:, 1:]
    if out is None:  # nothing kept anywhere
        d = tower.config.hidden_size
        dtype = tower.embeddings.patch_embeddings.projection.weight.dtype
        return KeptPatchFeatures(pixel_values.new_zeros(0, d, dtype=dtype), keep.to(pixel_values.device))
    return KeptPatchFeatures(features=out[flat_keep], keep=keep.to(out.device))


@torch.no_grad()
def shuffled_features_pre_vit(
    inner: nn.Module, pixel_values: torch.Tensor, token_keep: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """InternVL pre-ViT pruning in one call: the projected features of the kept LLM tokens.

    ``inner`` is the stock ``InternVLModel`` (``model.model``); ``pixel_values`` (T, C, H, W);
    ``token_keep`` (T, th, tw) the ``Selection.keep`` grid over shuffled tokens. Returns
    ``(features of the kept tokens in raster (t, row, col) order (K, D_text), vit_keep (T, gh, gw))``.
    With every token kept this equals the stock ``get_image_features`` (flattened over frames).
    """
    config = inner.config
    tower = inner.vision_tower
    pixel_values = pixel_values.to(dtype=inner.dtype)
    t, _, h, w = pixel_values.shape
    ph, pw = _patch_hw(tower)
    vit_grid = (h // ph, w // pw)
    if vit_grid[0] != vit_grid[1]:
        raise ValueError(f"InternVL pixel shuffle needs a square patch grid; got {vit_grid} for {h}x{w} px")
    scale = config.downsample_ratio
    vit_keep = vit_keep_for_token_keep(token_keep.bool(), inner.pixel_shuffle, vit_grid, scale)
    kept = encode_kept_patches(
        tower,
        pixel_values,
        vit_keep,
        feature_layer=config.vision_feature_layer,
        select_strategy=config.vision_feature_select_strategy,
    )
    grid = kept.to_grid()  # (T, gh, gw, D_vit), zeros where not computed
    shuffled = inner.pixel_shuffle(grid, scale_factor=scale)
    shuffled = shuffled.reshape(t, -1, shuffled.shape[-1])
    selected = shuffled[token_keep.reshape(t, -1).bool().to(shuffled.device)]
    return inner.multi_modal_projector(selected), vit_keep
