"""A SigLIP / SigLIP2 vision tower that sees only gazed patches of a video, at several scales.

Why this exists: post-ViT pruning saves LLM time only. AutoGaze's own integration makes the
ViT itself embed and attend over just the gazed patches of every frame (and of every scale of
every frame), which is where its ViT speed-up and its reach to thousands of frames come from,
and it is how NVILA-8B-HD-Video works. This module does that on top of the *stock*
transformers classes: it reuses the tower's own parameters (patch embedding, position
embedding, encoder layers, post layer norm), so any SigLIP / SigLIP2 checkpoint loads
unchanged and nothing is copied.

Token layout (the one AutoGaze's ``gazing_pos`` counts over): each frame is resized to every
scale (ascending), each scale is cut into ``patch_size`` squares in raster order, and a frame's
ids run ``[scale 0 cells..., scale 1 cells..., ...]``; frame ``t`` adds ``t * tokens_per_frame``.

Attention over the gazed tokens of a clip (``attn_type``):
- ``block_causal`` (default, what AutoGaze-trained towers use): a token sees every token of its
  own frame and of earlier frames;
- ``causal``: a token sees the tokens before it in the flattened sequence;
- ``bidirectional``: every token sees every token of the clip;
- ``frame_independent``: a token sees only its own frame (what a stock image tower was trained
  for; run as unpadded per-frame sequences, so it costs ``T * k^2`` not ``(T * k)^2``).
Padded gaze slots are never attended to by anything, so they cannot change a real token.

LLaVA-OneVision's native AutoGaze route (``prune_stage: native``) runs this encoder on the
gazes AutoGaze makes at SigLIP's own scales; ``tests/test_gazed_siglip_authors.py`` checks it
against the AutoGaze authors' own SigLIP on multi-scale, multi-frame, padded gazes.

Pre-ViT pruning of stock LLaVA-OneVision / LLaVA-Video towers, built on this encoder, is in
harness/models/siglip_kept.py.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

ATTN_TYPES = ("block_causal", "causal", "bidirectional", "frame_independent")
SUPPORTED_ATTN_IMPLEMENTATIONS = ("eager", "sdpa")


# --------------------------------------------------------------------------------------------
# Multi-scale token layout
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MultiScaleLayout:
    """The per-frame multi-scale token ids a gaze is counted over (scales ascending)."""

    scales: tuple[int, ...]
    patch_size: int

    def __post_init__(self) -> None:
        if not self.scales:
            raise ValueError("MultiScaleLayout needs at least one scale")
        if list(self.scales) != sorted(set(self.scales)):
            raise ValueError(f"scales must be distinct and ascending, got {self.scales}")
        bad = [s for s in self.scales if s % self.patch_size]
        if bad:
            raise ValueError(f"every scale must be a multiple of patch_size {self.patch_size}; not: {bad}")

    @classmethod
    def parse(cls, scales: str | int | Sequence[int], patch_size: int) -> MultiScaleLayout:
        """Accept AutoGaze's ``"32+64+112+224"`` string, one int, or a sequence of ints."""
        if isinstance(scales, str):
            values = [int(s) for s in scales.split("+") if s.strip()]
        elif isinstance(scales, int):
            values = [scales]
        else:
            values = [int(s) for s in scales]
        return cls(scales=tuple(sorted(values)), patch_size=int(patch_size))

    @property
    def grid_sizes(self) -> tuple[int, ...]:
        return tuple(s // self.patch_size for s in self.scales)

    @property
    def tokens_per_scale(self) -> tuple[int, ...]:
        return tuple(g * g for g in self.grid_sizes)

    @property
    def tokens_per_frame(self) -> int:
        return sum(self.tokens_per_scale)

    @property
    def scale_offsets(self) -> tuple[int, ...]:
        """First per-frame id of each scale."""
        out, acc = [], 0
        for n in self.tokens_per_scale:
            out.append(acc)
            acc += n
        return tuple(out)

    def __str__(self) -> str:
        return "+".join(str(s) for s in self.scales) + f"/p{self.patch_size}"


# --------------------------------------------------------------------------------------------
# Gazing info (AutoGaze's output format, validated)
# --------------------------------------------------------------------------------------------


def _get(obj: Any, key: str) -> Any:
    if isinstance(obj, Mapping):
        return obj[key]
    return getattr(obj, key)


@dataclass
class GazingInfo:
    """Which multi-scale tokens of each frame a clip keeps (AutoGaze's ``gazing_info``).

    ``gazing_pos`` (B, N) ids counted from frame 0's first token; ``if_padded_gazing`` (B, N)
    True where a slot is padding; ``num_gazing_each_frame`` (T,) slots per frame, padding
    included, shared by the batch (so slot ``i`` belongs to the same frame in every row).
    """

    gazing_pos: torch.Tensor
    if_padded_gazing: torch.Tensor
    num_gazing_each_frame: torch.Tensor

    def __post_init__(self) -> None:
        self.gazing_pos = torch.as_tensor(self.gazing_pos).long()
        self.if_padded_gazing = torch.as_tensor(self.if_padded_gazing).bool()
        self.num_gazing_each_frame = torch.as_tensor(self.num_gazing_each_frame).long().flatten().cpu()
        if self.gazing_pos.dim() != 2 or self.gazing_pos.shape != self.if_padded_gazing.shape:
            raise ValueError(
                f"gazing_pos and if_padded_gazing must both be (B, N); got {tuple(self.gazing_pos.shape)} "
                f"and {tuple(self.if_padded_gazing.shape)}"
            )
        total = int(self.num_gazing_each_frame.sum())
        if total != self.gazing_pos.shape[1]:
            raise ValueError(
                f"num_gazing_each_frame sums to {total} but gazing_pos has {self.gazing_pos.shape[1]} slots"
            )

    @classmethod
    def from_gaze_output(cls, out: Any) -> GazingInfo:
        """From AutoGaze's output (a dict or an object with the same attribute names)."""
        return cls(_get(out, "gazing_pos"), _get(out, "if_padded_gazing"), _get(out, "num_gazing_each_frame"))

    @classmethod
    def full(cls, batch: int, num_frames: int, layout: MultiScaleLayout) -> GazingInfo:
        """Every token of every scale of every frame (what a gazing ratio of 1 would keep)."""
        n = layout.tokens_per_frame
        pos = torch.arange(num_frames * n).expand(batch, -1).clone()
        return cls(pos, torch.zeros_like(pos, dtype=torch.bool), torch.full((num_frames,), n))

    @classmethod
    def from_masks(cls, masks: torch.Tensor | Sequence[torch.Tensor], layout: MultiScaleLayout) -> GazingInfo:
        """From keep masks: one (B, T, cells) tensor per scale, or one (B, T, tokens_per_frame).

        Kept ids of a frame are listed ascending; rows keeping fewer than the batch's most in a
        frame are padded (pad slots point at id 0 of that frame and are flagged).
        """
        if isinstance(masks, torch.Tensor):
            flat = masks
        else:
            if len(masks) != len(layout.scales):
                raise ValueError(
                    f"{len(masks)} per-scale masks for a layout with {len(layout.scales)} scales"
                )
            for m, n in zip(masks, layout.tokens_per_scale, strict=True):
                if m.shape[-1] != n:
                    raise ValueError(f"per-scale mask has {m.shape[-1]} cells where {layout} expects {n}")
            flat = torch.cat([m.reshape(*m.shape[:2], -1) for m in masks], dim=-1)
        flat = flat.bool()
        if flat.dim() != 3 or flat.shape[-1] != layout.tokens_per_frame:
            raise ValueError(f"keep mask must be (B, T, {layout.tokens_per_frame}); got {tuple(flat.shape)}")
        b, t, n = flat.shape
        counts = flat.sum(-1)  # (B, T)
        per_frame = counts.max(0).values.cpu()  # (T,)
        pos_chunks, pad_chunks = [], []
        ids = torch.arange(n, device=flat.device)
        for f in range(t):
            k = int(per_frame[f])
            # stable sort: kept ids first (ascending), then the rest; take k and flag the excess
            order = torch.sort((~flat[:, f]).to(torch.int8), dim=-1, stable=True).indices[:, :k]
            slot = torch.arange(k, device=flat.device).expand(b, -1)
            pad = slot >= counts[:, f : f + 1]
            chosen = torch.where(pad, torch.zeros_like(order), ids[order])
            pos_chunks.append(chosen + f * n)
            pad_chunks.append(pad)
        return cls(torch.cat(pos_chunks, 1), torch.cat(pad_chunks, 1), per_frame)

    @property
    def batch_size(self) -> int:
        return int(self.gazing_pos.shape[0])

    @property
    def num_frames(self) -> int:
        return int(self.num_gazing_each_frame.numel())

    def frame_of_slot(self) -> torch.Tensor:
        """(N,) frame index of every slot."""
        return torch.repeat_interleave(torch.arange(self.num_frames), self.num_gazing_each_frame)

    def num_real(self) -> torch.Tensor:
        """(B,) real (non-padding) gazes per clip."""
        return (~self.if_padded_gazing).sum(-1)

    def to(self, device: torch.device | str) -> GazingInfo:
        return GazingInfo(
            self.gazing_pos.to(device), self.if_padded_gazing.to(device), self.num_gazing_each_frame
        )

    def to_masks(self, layout: MultiScaleLayout) -> list[torch.Tensor]:
        """Per-scale keep masks (B, T, cells), the inverse of :meth:`from_masks`."""
        b, t, n = self.batch_size, self.num_frames, layout.tokens_per_frame
        flat = torch.zeros(b, t * n + 1, dtype=torch.bool, device=self.gazing_pos.device)
        idx = self.gazing_pos.masked_fill(self.if_padded_gazing, t * n)
        flat.scatter_(1, idx, True)
        flat = flat[:, :-1].view(b, t, n)
        return [
            flat[..., o : o + c] for o, c in zip(layout.scale_offsets, layout.tokens_per_scale, strict=True)
        ]


# --------------------------------------------------------------------------------------------
# The encoder
# --------------------------------------------------------------------------------------------


@dataclass
class GazedSiglipOutput:
    """Features of the gazed slots, in slot order (padding slots hold meaningless values).

    ``features`` is what the caller asked for: the chosen ``feature_layer`` output (no post
    layer norm, as LLaVA-style models read it) or, without one, ``last_hidden_state``.
    """

    features: torch.Tensor  # (B, N, D)
    if_padded_gazing: torch.Tensor  # (B, N)
    num_tokens_each_frame: torch.Tensor  # (T,)
    last_hidden_state: torch.Tensor | None = None  # (B, N, D) after post_layernorm; None if stopped early
    hidden_states: tuple[torch.Tensor, ...] | None = None  # embeddings, then each layer run

    def real_features(self) -> list[torch.Tensor]:
        """Per clip, the features of its real gazes only: a list because counts differ per clip."""
        return [f[~pad] for f, pad in zip(self.features, self.if_padded_gazing, strict=True)]


def _tower_parts(tower: nn.Module) -> nn.Module:
    """The module holding ``embeddings``/``encoder``/``post_layernorm`` (transformers 5 keeps them
    on the vision model itself; 4.x wraps them in ``.vision_model``)."""
    for cand in (tower, getattr(tower, "vision_model", None)):
        if cand is not None and all(hasattr(cand, a) for a in ("embeddings", "encoder", "post_layernorm")):
            return cand
    raise TypeError(
        f"{type(tower).__name__} is not a SigLIP/SigLIP2 vision tower (no embeddings/encoder/post_layernorm)"
    )


class GazedSiglipVisionEncoder(nn.Module):
    """Run a stock SigLIP / SigLIP2 vision tower on the gazed multi-scale patches of videos.

    ``tower`` is a ``SiglipVisionModel`` (fixed-resolution SigLIP and SigLIP2 checkpoints, Conv2d
    patch embedding, bicubic position interpolation) or a ``Siglip2VisionModel`` (NaFlex: Linear
    patch embedding over (p, p, C) patches, bilinear antialiased position resize); its parameters
    are used in place. Position embeddings are resized to each scale with the tower's own method,
    so a single scale equal to the tower's ``image_size`` reproduces the stock embedding exactly.

    ``antialias`` (default False) applies to the frame resize to each scale; AutoGaze's reference
    resizes with plain bicubic, and gazes were trained on that, so the default matches it.
    """

    def __init__(
        self,
        tower: nn.Module,
        scales: str | int | Sequence[int] | None = None,
        attn_type: str = "block_causal",
        *,
        antialias: bool = False,
    ):
        super().__init__()
        if attn_type not in ATTN_TYPES:
            raise ValueError(f"attn_type {attn_type!r} is not one of {ATTN_TYPES}")
        self.tower = tower
        self.parts = _tower_parts(tower)
        config = self.parts.config if hasattr(self.parts, "config") else tower.config
        self.config = config
        self.is_naflex = isinstance(self.parts.embeddings.patch_embedding, nn.Linear)
        if scales is None:
            if self.is_naflex:
                scales = int(math.isqrt(config.num_patches)) * config.patch_size
            else:
                scales = config.image_size
        self.layout = MultiScaleLayout.parse(scales, config.patch_size)
        self.attn_type = attn_type
        self.antialias = antialias

    # The tower is registered as a submodule so ``.to()``/``.eval()`` reach it, but ``parts`` is
    # the same object (or a child of it) and must not be registered twice.
    def __setattr__(self, name: str, value: Any) -> None:
        if name == "parts":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        scales: str | int | Sequence[int] | None = None,
        attn_type: str = "block_causal",
        *,
        dtype: torch.dtype | str = "auto",
        attn_implementation: str = "sdpa",
        **kwargs: Any,
    ) -> GazedSiglipVisionEncoder:
        """Load the stock vision tower of a local SigLIP / SigLIP2 checkpoint (never downloads)."""
        from transformers import AutoConfig, SiglipVisionModel

        path = Path(path)
        if not (path / "config.json").exists():
            raise FileNotFoundError(
                f"{path}: no config.json; expected a local SigLIP/SigLIP2 checkpoint directory"
            )
        model_type = AutoConfig.from_pretrained(path, local_files_only=True).model_type
        model_cls = SiglipVisionModel
        if model_type.startswith("siglip2"):
            from transformers import Siglip2VisionModel

            model_cls = Siglip2VisionModel
        tower = model_cls.from_pretrained(
            path, local_files_only=True, dtype=dtype, attn_implementation=attn_implementation
        )
        return cls(tower.eval(), scales, attn_type, **kwargs)

    # ---------------------------------------------------------------- embedding

    def _position_table(self, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """(tokens_per_frame, D) position embedding of every multi-scale id of a frame."""
        emb = self.parts.embeddings
        weight = emb.position_embedding.weight
        dim = weight.shape[-1]
        tables = []
        for scale, g in zip(self.layout.scales, self.layout.grid_sizes, strict=True):
            if self.is_naflex:
                side = emb.position_embedding_size
                table = emb.resize_positional_embeddings(
                    weight.reshape(side, side, dim),
                    torch.tensor([[g, g]], device=weight.device),
                    max_length=g * g,
                )[0]
            else:
                # the tower's own interpolation (it only reads the dummy's length and width)
                dummy = weight.new_empty(1, g * g, dim)
                table = emb.interpolate_pos_encoding(dummy, scale, scale)[0]
            tables.append(table.reshape(g * g, dim))
        return torch.cat(tables, 0).to(device=device, dtype=dtype)

    def _patch_weight(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Patch embedding as a (D, C*p*p) matrix over ``F.unfold``'s (C, p, p) patch order."""
        pe = self.parts.embeddings.patch_embedding
        p = self.layout.patch_size
        if self.is_naflex:  # Linear over (p, p, C)-flattened patches
            d = pe.weight.shape[0]
            w = pe.weight.view(d, p, p, -1).permute(0, 3, 1, 2).reshape(d, -1)
        else:  # Conv2d (D, C, p, p)
            w = pe.weight.reshape(pe.weight.shape[0], -1)
        return w, pe.bias

    def _gazed_patches(
        self, frames: torch.Tensor, frame_idx: torch.Tensor, ids: torch.Tensor
    ) -> torch.Tensor:
        """Pixels of the requested patches only: (M,) frame indices + per-frame ids -> (M, C*p*p).

        Each scale's resized frames are cut by a strided view (no copy of the whole patch grid,
        unlike ``F.unfold``), and only the requested patches are gathered from it, so the cost of
        patchify scales with the gazed tokens. Patch pixels come out in (C, p, p) order.
        """
        p = self.layout.patch_size
        nf, c = frames.shape[:2]
        out = frames.new_empty(ids.shape[0], c * p * p)
        for scale, g, off, count in zip(
            self.layout.scales,
            self.layout.grid_sizes,
            self.layout.scale_offsets,
            self.layout.tokens_per_scale,
            strict=True,
        ):
            sel = ((ids >= off) & (ids < off + count)).nonzero().squeeze(-1)
            if sel.numel() == 0:
                continue
            x = frames
            if tuple(x.shape[-2:]) != (scale, scale):
                x = F.interpolate(
                    x, size=(scale, scale), mode="bicubic", align_corners=False, antialias=self.antialias
                )
            grid = x.reshape(nf, c, g, p, g, p).permute(0, 2, 4, 1, 3, 5)  # (F, g, g, C, p, p) view
            local = ids[sel] - off
            out[sel] = grid[frame_idx[sel], local // g, local % g].reshape(-1, c * p * p)
        return out

    def embed(self, pixel_values: torch.Tensor, gazing: GazingInfo) -> torch.Tensor:
        """(B, T, C, H, W) -> (B, N, D): patch + position embeddings of the gazed slots only."""
        b, t = pixel_values.shape[:2]
        n = self.layout.tokens_per_frame
        weight, bias = self._patch_weight()
        pos = gazing.gazing_pos.to(pixel_values.device).masked_fill(
            gazing.if_padded_gazing.to(pixel_values.device), 0
        )
        if int(pos.max()) >= t * n or int(pos.min()) < 0:
            raise ValueError(
                f"gazing_pos spans [{int(pos.min())}, {int(pos.max())}] but {t} frames x {n} tokens "
                f"({self.layout}) exist"
            )
        ids = pos % n
        frame_idx = (pos // n) + torch.arange(b, device=pos.device)[:, None] * t
        frames = pixel_values.reshape(b * t, *pixel_values.shape[2:]).to(weight.dtype)
        patches = self._gazed_patches(frames, frame_idx.flatten(), ids.flatten()).view(b, pos.shape[1], -1)
        table = self._position_table(pixel_values.device, weight.dtype)
        return F.linear(patches, weight, bias) + table[ids]

    # ---------------------------------------------------------------- attention

    def _mask_format(self, allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Bool (B, 1, Q, K) -> what the tower's attention implementation wants."""
        impl = getattr(self.config, "_attn_implementation", None) or "eager"
        if impl == "sdpa":
            return allowed
        if impl == "eager":
            return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(
                ~allowed, torch.finfo(dtype).min
            )
        raise ValueError(
            f"gazed SigLIP builds explicit block masks; attention implementation {impl!r} is not supported "
            f"(load the tower with attn_implementation in {SUPPORTED_ATTN_IMPLEMENTATIONS})"
        )

    def attention_allowed(self, gazing: GazingInfo, device: torch.device) -> torch.Tensor:
        """(B, 1, N, N) bool: may slot q attend to slot k (sequence modes)."""
        frame = gazing.frame_of_slot().to(device)
        n = frame.numel()
        if self.attn_type == "block_causal":
            allowed = frame[None, :] <= frame[:, None]
        elif self.attn_type == "causal":
            allowed = torch.ones(n, n, dtype=torch.bool, device=device).tril()
        elif self.attn_type == "frame_independent":
            allowed = frame[None, :] == frame[:, None]
        else:
            allowed = torch.ones(n, n, dtype=torch.bool, device=device)
        real_key = ~gazing.if_padded_gazing.to(device)
        allowed = allowed[None] & real_key[:, None, :]
        # every slot sees itself, so padded queries never hit an all-masked (NaN) row
        allowed = allowed | torch.eye(n, dtype=torch.bool, device=device)[None]
        return allowed[:, None]

    def _run_layers(
        self, hidden: torch.Tensor, mask: torch.Tensor | None, stop_after: int
    ) -> list[torch.Tensor]:
        states = [hidden]
        for layer in self.parts.encoder.layers[:stop_after]:
            out = layer(states[-1], mask)
            states.append(out[0] if isinstance(out, tuple) else out)
        return states

    def forward(
        self,
        pixel_values: torch.Tensor,
        gazing: GazingInfo | Mapping[str, Any] | None = None,
        *,
        feature_layer: int | Sequence[int] | None = None,
        output_hidden_states: bool = False,
    ) -> GazedSiglipOutput:
        """Encode the gazed patches of ``pixel_values`` (B, T, C, H, W), normalised as the tower expects.

        ``gazing`` None means every token of every scale. ``feature_layer`` indexes hidden states
        the transformers way (0 = embeddings, -1 = last layer, before post layer norm); layers
        after the deepest requested one are not run.
        """
        if pixel_values.dim() != 5:
            raise ValueError(f"pixel_values must be (B, T, C, H, W); got {tuple(pixel_values.shape)}")
        b, t = pixel_values.shape[:2]
        if gazing is None:
            gazing = GazingInfo.full(b, t, self.layout)
        elif not isinstance(gazing, GazingInfo):
            gazing = GazingInfo.from_gaze_output(gazing)
        if gazing.batch_size != b or gazing.num_frames != t:
            raise ValueError(
                f"gazing is for {gazing.batch_size} clips x {gazing.num_frames} frames; video is {b} x {t}"
            )
        gazing = gazing.to(pixel_values.device)

        num_layers = len(self.parts.encoder.layers)
        layers_wanted = [feature_layer] if isinstance(feature_layer, int) else list(feature_layer or [])
        norm_wanted = [i % (num_layers + 1) for i in layers_wanted]
        stop_after = max(norm_wanted) if norm_wanted else num_layers

        hidden = self.embed(pixel_values, gazing)
        if self.attn_type == "frame_independent":
            states = self._frame_independent(hidden, gazing, stop_after)
        else:
            mask = self._mask_format(self.attention_allowed(gazing, hidden.device), hidden.dtype)
            states = self._run_layers(hidden, mask, stop_after)

        last = self.parts.post_layernorm(states[-1]) if stop_after == num_layers else None
        if norm_wanted:
            features = torch.cat([states[i] for i in norm_wanted], dim=-1)
        else:
            features = last
        return GazedSiglipOutput(
            features=features,
            if_padded_gazing=gazing.if_padded_gazing,
            num_tokens_each_frame=gazing.num_gazing_each_frame,
            last_hidden_state=last,
            hidden_states=tuple(states) if output_hidden_states else None,
        )

    def _frame_independent(
        self, hidden: torch.Tensor, gazing: GazingInfo, stop_after: int
    ) -> list[torch.Tensor]:
        """One unpadded sequence per (clip, frame), bucketed by length: no attention mask at all.

        Cost T*k^2 instead of (T*k)^2, exact (no padded key exists to mask), and it works with
        every attention implementation (flash attention included). Padding slots get zeros.
        """
        b, _, d = hidden.shape
        counts = gazing.num_gazing_each_frame.tolist()
        k = max(counts) if counts else 0
        t = len(counts)
        device = hidden.device
        # slot -> (frame, index within frame) in the regrouped (B*T, k) batch
        frame = gazing.frame_of_slot().to(device)
        starts = torch.tensor([0, *counts[:-1]], device=device).cumsum(0)
        within = torch.arange(frame.numel(), device=device) - starts[frame]
        grouped = hidden.new_zeros(b, t, k, d)
        grouped[:, frame, within] = hidden
        real = torch.zeros(b, t, k, dtype=torch.bool, device=device)
        real[:, frame, within] = ~gazing.if_padded_gazing
        grouped, real = grouped.view(b * t, k, d), real.view(b * t, k)
        # real tokens first in every row (stable, so their order is kept)
        order = torch.sort((~real).to(torch.int8), dim=1, stable=True).indices
        compact = torch.gather(grouped, 1, order[..., None].expand(-1, -1, d))
        lengths = real.sum(1)
        states = [torch.zeros_like(compact) for _ in range(stop_after + 1)]
        for n in lengths.unique().tolist():
            if n == 0:
                continue
            rows = (lengths == n).nonzero().squeeze(-1)
            for i, s in enumerate(self._run_layers(compact[rows, :n], None, stop_after)):
                states[i][rows, :n] = s
        inverse = order.argsort(dim=1)
        return [
            torch.gather(s, 1, inverse[..., None].expand(-1, -1, d)).view(b, t, k, d)[:, frame, within]
            for s in states
        ]
