"""InternViT on AutoGaze's multi-scale gazes, for InternVL's native route (``prune_stage: native``).

Why a rule is needed: InternVL's LLM token is the pixel shuffle (``downsample_ratio`` 0.5) of a
2x2 block of 14-px InternViT patches, so a ViT patch is not an LLM token. The rule chosen here:
**one gaze = one LLM token**. AutoGaze is called with ``target_patch_size`` = the token's footprint
(2 x 14 = 28 px) at four scales (56/140/224/448 px for the 448 checkpoints: cell grids 2/5/8/16,
AutoGaze's trained ratios rounded); for each gazed cell InternViT embeds the 2x2 patches under it
at that cell's scale, and after the encoder the stock ``pixel_shuffle`` folds those four into one
token, which the stock projector maps into the LLM. So the LLM receives exactly AutoGaze's count
and InternViT runs on 4 patches per gaze (+ one CLS token per frame). Alternatives and what they
cost are in docs/pruning.md (gazing 14-px patches and keeping every 2x2 block that holds a gaze
inflates the LLM count, as ``expand`` does).

What the ViT sees (the authors' SigLIP recipe carried over to InternViT):
- each frame is resized to every scale (bicubic, no antialias, as AutoGaze's reference SigLIP);
  the stock ``embeddings`` (patch conv, CLS token, bicubic-interpolated position table of that
  scale) run on it and the gazed blocks' patches are cut out, so each patch has its scale's
  position; the CLS token of every frame is kept (stock InternViT always runs with it and drops
  it after the encoder, ``vision_feature_select_strategy="default"``);
- attention (``attn_type``): ``frame_independent`` runs each frame's sequence
  ``[CLS, gazed patches]`` alone through the stock layers (the stock tower's own setting: with
  every finest-scale cell gazed this is the stock model); ``block_causal`` (the authors'
  recommendation) runs the whole clip as one sequence in which a token sees its own frame and
  earlier frames. The stock ``InternVLVisionLayer.forward`` takes no attention mask, so that mode
  calls the layer's own submodules in the same order with a mask (:func:`layer_with_mask`; equal
  to the stock layer when nothing is masked, checked in the tests).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from harness.models.internvit_kept import _layers_to_run, _patch_hw
from harness.pruning.native_gaze import NativeGaze

ATTN_TYPES = ("block_causal", "frame_independent")


def layer_with_mask(layer: nn.Module, hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``InternVLVisionLayer.forward`` with an additive attention mask (its own modules, same order)."""
    if mask is None:
        out = layer(hidden)
        return out[0] if isinstance(out, tuple) else out
    attn, _ = layer.attention(layer.layernorm_before(hidden), attention_mask=mask)
    hidden = layer.lambda_1 * attn + hidden
    out = layer.dropout(layer.mlp(layer.layernorm_after(hidden)))
    if layer.lambda_2 is not None:
        out = layer.lambda_2 * out
    return out + hidden


def _block_patch_ids(local: torch.Tensor, cells: int) -> torch.Tensor:
    """(k,) cell ids of a ``cells x cells`` grid -> (k, 4) ids of its 2x2 patches on the 2x finer grid."""
    r, c = local // cells, local % cells
    g = 2 * cells
    return torch.stack(
        [(2 * r) * g + 2 * c, (2 * r) * g + 2 * c + 1, (2 * r + 1) * g + 2 * c, (2 * r + 1) * g + 2 * c + 1],
        1,
    )


@torch.no_grad()
def encode_gazed_cells(
    inner: nn.Module, pixel_values: torch.Tensor, gaze: NativeGaze, attn_type: str = "block_causal"
) -> torch.Tensor:
    """Projected LLM tokens of the gazed cells (K, D_text), K = gaze count, in slot order.

    ``inner`` is the stock ``InternVLModel``; ``pixel_values`` (T, C, S, S) as the processor made
    them (S = the finest scale); ``gaze`` one video's gazes at ``patch * 2``-px cells.
    """
    if attn_type not in ATTN_TYPES:
        raise ValueError(f"InternViT native attn_type {attn_type!r}; valid: {', '.join(ATTN_TYPES)}")
    config, tower = inner.config, inner.vision_tower
    if config.vision_feature_select_strategy != "default":
        raise ValueError(
            "the native InternViT route needs vision_feature_select_strategy='default' (CLS dropped)"
        )
    ph, _ = _patch_hw(tower)
    merge = round(1 / config.downsample_ratio)
    layout = gaze.layout
    if merge != 2 or layout.patch_size != ph * merge:
        raise ValueError(
            f"gazes are on {layout.patch_size}-px cells; InternViT tokens are {ph * merge} px (2x2 of {ph})"
        )
    pixel_values = pixel_values.to(inner.dtype)
    t = pixel_values.shape[0]
    if gaze.gazing.num_frames != t:
        raise ValueError(f"gazes cover {gaze.gazing.num_frames} frames, {t} given")
    real = ~gaze.gazing.if_padded_gazing[0].cpu()
    pos = gaze.gazing.gazing_pos[0].cpu()[real]
    n = layout.tokens_per_frame
    frame, local = pos // n, pos % n
    offsets = torch.tensor(layout.scale_offsets)
    scale_of = torch.bucketize(local, offsets[1:], right=True)

    # embeddings of every gazed cell's 4 patches, at its scale, in slot order: (K, 4, D)
    dev = pixel_values.device
    d = tower.config.hidden_size
    patches = pixel_values.new_zeros(pos.shape[0], 4, d)
    cls = None
    for s, (side, cells) in enumerate(zip(layout.scales, layout.grid_sizes, strict=True)):
        x = pixel_values
        if x.shape[-1] != side:
            x = F.interpolate(x, size=(side, side), mode="bicubic", align_corners=False)
        emb = tower.embeddings(x)  # (T, 1 + (2*cells)^2, D), stock positions of this scale
        cls = emb[:, 0]  # the CLS embedding does not depend on the scale
        sel = (scale_of == s).nonzero().squeeze(-1)
        if sel.numel():
            ids = _block_patch_ids(local[sel] - offsets[s], cells)
            patches[sel.to(dev)] = emb[frame[sel].to(dev)[:, None], 1 + ids.to(dev)]

    run_layers, apply_norm = _layers_to_run(tower, config.vision_feature_layer)
    layers = tower.encoder.layer[:run_layers]
    counts = torch.bincount(frame, minlength=t).tolist()
    per_frame = list(patches.split(counts))
    seqs = [torch.cat([cls[f : f + 1], per_frame[f].reshape(-1, d)]) for f in range(t)]
    if attn_type == "frame_independent":
        outs = []
        for seq in seqs:
            h = seq[None]
            for layer in layers:
                h = layer_with_mask(layer, h, None)
            outs.append(h[0])
    else:
        lengths = [s.shape[0] for s in seqs]
        fid = torch.repeat_interleave(torch.arange(t, device=dev), torch.tensor(lengths, device=dev))
        allowed = fid[None, :] <= fid[:, None]
        mask = torch.zeros(allowed.shape, dtype=pixel_values.dtype, device=dev)
        mask = mask.masked_fill(~allowed, torch.finfo(pixel_values.dtype).min)[None, None]
        h = torch.cat(seqs)[None]
        for layer in layers:
            h = layer_with_mask(layer, h, mask)
        outs = list(h[0].split(lengths))
    hidden = torch.cat([o[1:] for o in outs])  # CLS dropped, slot order kept
    if apply_norm:
        hidden = tower.layernorm(hidden)
    blocks = hidden.view(-1, 2, 2, hidden.shape[-1])  # (K, row, col, D): the stock (w, h) grid layout
    shuffled = inner.pixel_shuffle(blocks, scale_factor=config.downsample_ratio).reshape(blocks.shape[0], -1)
    return inner.multi_modal_projector(shuffled)
