"""Selection -> vLLM request pieces. Pure torch/numpy: importable and tested WITHOUT vLLM.

Two routes (docs/vllm.md):

- M-RoPE families (Qwen2.5-VL; the route generalises to Qwen3-VL) send the raw frames as
  ``multi_modal_data`` and the Selection's keep mask as a per-request ``mm_processor_kwargs``
  entry (:data:`KEEP_KWARG`). Our registered model subclass (``harness/backends/vllm/qwen.py``)
  writes one placeholder per KEPT token, keeps the same rows of the vision tower's output, and
  gives every kept token the M-RoPE position it has in the UNPRUNED prompt
  (:func:`pruned_mrope_positions`), which is what the transformers adapter does.
- 1D-RoPE families (LLaVA-OneVision/Video, InternVL3) send ``prompt_embeds``: the text
  embeddings of the pruned prompt with the kept visual features written at their placeholders
  (:func:`stitch_prompt_embeds`), plus each row's UNPRUNED position in the placeholder
  ``prompt_token_ids`` (:func:`embeds_request`), which our subclasses (``one_d.py``) turn into
  positions through vLLM's M-RoPE hook (:func:`mrope_overrides`). Without that, vLLM would
  number the rows 0..L-1 (compacted), unlike the transformers adapters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from harness.pruning.selection import Selection

# Per-request ``mm_processor_kwargs`` key: one flat list of kept token indices (raster order over
# the LLM token grid, ``Selection.kept_indices``) per video of the prompt, in prompt order.
KEEP_KWARG = "harness_video_keep"
# Name of the processed multimodal field (bool mask over each video's full token grid) that the
# vLLM processor subclass adds so the model (embeddings, positions) sees the same mask.
KEEP_FIELD = "video_keep"


def keep_kwargs(selections: Sequence[Selection | None]) -> dict[str, Any]:
    """``mm_processor_kwargs`` carrying the keep masks of a prompt's videos (empty when none prunes).

    Plain lists of ints so that vLLM can hash them into the multimodal cache key: two requests
    on the same video with different selections must not share a cached processor output.
    ``None`` entries and keep-all selections are sent as ``None`` (nothing to hash or check).
    """
    masks = [None if s is None or s.num_kept == s.geometry.total_tokens else s for s in selections]
    if all(s is None for s in masks):
        return {}
    return {KEEP_KWARG: [None if s is None else s.kept_indices.tolist() for s in masks]}


def keep_mask_from_kwarg(value: Any, num_tokens: Sequence[int]) -> torch.Tensor:
    """Flat bool mask over all videos' tokens (concatenated) from :data:`KEEP_KWARG`'s value.

    ``num_tokens[i]`` is video i's full LLM token count. Validates what a caller sent: one entry
    per video, indices in range, no duplicates, at least one kept token (an empty video gives
    the LLM nothing to attend and the Qwen prompt no placeholder to anchor positions).
    """
    if value is None:
        return torch.ones(sum(num_tokens), dtype=torch.bool)
    if len(value) != len(num_tokens):
        raise ValueError(f"{KEEP_KWARG}: {len(value)} keep lists for {len(num_tokens)} videos in the prompt")
    masks = []
    for i, (kept, total) in enumerate(zip(value, num_tokens)):
        mask = torch.zeros(total, dtype=torch.bool)
        if kept is None:
            mask[:] = True
        else:
            index = torch.as_tensor(list(kept), dtype=torch.long)
            if index.numel() == 0:
                raise ValueError(f"{KEEP_KWARG}: video {i} keeps no token (at least one is needed)")
            if int(index.min()) < 0 or int(index.max()) >= total:
                raise ValueError(
                    f"{KEEP_KWARG}: video {i} keep index out of range [0, {total}): "
                    f"min {int(index.min())}, max {int(index.max())}"
                )
            if torch.unique(index).numel() != index.numel():
                raise ValueError(f"{KEEP_KWARG}: video {i} lists a kept index twice")
            mask[index] = True
        masks.append(mask)
    return torch.cat(masks)


@dataclass(frozen=True)
class MediaSpan:
    """One image/video of a Qwen-style prompt, as the position rule needs it.

    ``offset``: index of its first placeholder in the PRUNED prompt; ``grid``: LLM token grid
    (t, h, w) after spatial merge; ``t_factor``: temporal position step per group
    (``second_per_grid_ts * tokens_per_second`` for Qwen2.5-VL videos, 1 for images);
    ``keep``: flat bool mask over the full grid (None = all kept).
    """

    offset: int
    grid: tuple[int, int, int]
    t_factor: float = 1.0
    keep: torch.Tensor | None = None

    @property
    def num_kept(self) -> int:
        return int(np.prod(self.grid)) if self.keep is None else int(self.keep.sum())


def grid_positions(grid: tuple[int, int, int], t_factor: float) -> np.ndarray:
    """(3, t*h*w) M-RoPE (t, h, w) positions of a token grid, raster order, starting at 0.

    The temporal index is ``int(group * t_factor)`` (float product, then truncation), the rule of
    transformers' ``Qwen2_5_VLModel.get_rope_index`` and of vLLM's own unpruned
    ``get_mrope_input_positions``.
    """
    t, h, w = grid
    index = np.indices((t, h, w)).reshape(3, -1)
    if t_factor != 1.0:
        index[0] = (index[0] * t_factor).astype(np.int64)
    return index.astype(np.int64)


TEXT_POSITIONS = ("reference", "transformers")  # model.pipeline.text_positions (docs/lmms_eval.md)
# HF config attribute (an ``hf_overrides`` entry) carrying that setting into the vLLM model.
TEXT_POSITIONS_ATTR = "harness_text_positions"


def pruned_mrope_positions(
    num_tokens: int, spans: Sequence[MediaSpan], text_positions: str = "reference"
) -> tuple[torch.Tensor, int]:
    """M-RoPE positions (3, num_tokens) of a PRUNED Qwen-style prompt, and vLLM's position delta.

    Every kept media token gets the position it has in the unpruned prompt, and text keeps the
    positions it has there. A media grid starts at the current text position ``p`` (t, h, w
    offsets added to ``p``); where the text after it resumes is ``text_positions`` (the
    transformers adapters' ``model.pipeline.text_positions``): ``reference`` (default; Qwen's
    rule, what the checkpoints were trained with and vLLM's stock Qwen2.5-VL
    ``get_mrope_input_positions`` does) after the unpruned grid's largest position, ``p +
    max(int((t - 1) * t_factor), h - 1, w - 1) + 1``; ``transformers`` at ``p + max(h, w)``
    (``get_rope_index`` of transformers >= 5.3, e.g. 5.19 and 5.24). The two differ when the
    temporal extent exceeds the spatial one (long videos at a low frame rate). Equivalent to the
    transformers adapters with the same setting: their positions of the full prompt with the
    unkept columns deleted.

    ``delta`` makes vLLM's decode positions (``token index + delta`` on every row) continue at
    the LAST prompt position + 1, as the adapters' greedy loop does (the prompt ends with text).
    """
    if text_positions not in TEXT_POSITIONS:
        raise ValueError(f"text_positions {text_positions!r}; valid choices: {', '.join(TEXT_POSITIONS)}")
    pieces: list[np.ndarray] = []
    next_pos = 0  # first position of the next text run (unpruned numbering)
    cursor = 0  # index into the pruned prompt
    for span in sorted(spans, key=lambda s: s.offset):
        if span.offset < cursor:
            raise ValueError(f"media spans overlap at prompt index {span.offset}")
        text_len = span.offset - cursor
        pieces.append(np.broadcast_to(np.arange(text_len), (3, text_len)) + next_pos)
        start = next_pos + text_len
        full = grid_positions(span.grid, span.t_factor) + start
        if span.keep is not None:
            keep = span.keep.cpu().numpy().astype(bool).reshape(-1)
            if keep.size != full.shape[1]:
                raise ValueError(f"keep mask of {keep.size} entries for a grid of {full.shape[1]} tokens")
            kept = full[:, keep]
        else:
            kept = full
        pieces.append(kept)
        if text_positions == "reference":
            next_pos = int(full.max()) + 1 if full.size else start
        else:
            next_pos = start + max(span.grid[1], span.grid[2])
        cursor = span.offset + kept.shape[1]
    if cursor > num_tokens:
        raise ValueError(f"media spans end at {cursor}, beyond the {num_tokens}-token prompt")
    tail = num_tokens - cursor
    pieces.append(np.broadcast_to(np.arange(tail), (3, tail)) + next_pos)
    positions = np.concatenate(pieces, axis=1)
    delta = int(positions[:, -1].max()) + 1 - num_tokens if num_tokens else 0
    return torch.from_numpy(np.ascontiguousarray(positions, dtype=np.int64)), delta


def qwen2_5_vl_span(
    offset: int,
    grid_thw: Sequence[int],
    merge: int,
    *,
    second_per_grid: float | None = None,
    tokens_per_second: float = 1.0,
    keep: torch.Tensor | None = None,
) -> MediaSpan:
    """Qwen2.5-VL: one video (or image, ``second_per_grid=None``) is one span of its whole grid.

    ``grid_thw`` is the processor's patch grid; the LLM grid divides h and w by ``merge``.
    """
    t, h, w = (int(v) for v in grid_thw)
    t_factor = 1.0 if second_per_grid is None else float(second_per_grid) * float(tokens_per_second)
    return MediaSpan(offset, (t, h // merge, w // merge), t_factor, keep)


def qwen3_vl_frame_spans(
    input_tokens: Sequence[int],
    offset: int,
    grid_thw: Sequence[int],
    merge: int,
    vision_start_id: int,
    vision_end_id: int,
    keep: torch.Tensor | None = None,
) -> list[MediaSpan]:
    """Qwen3-VL: every frame of a video is its own (1, h, w) span after its ``<|vision_start|>``.

    ``offset`` is where vLLM's placeholder for the video starts (``mm_position.offset``: after the
    chat template's own ``<|vision_start|>``, which wraps the expansion). The placeholder is ``<t seconds> <|vision_start|> pads
    <|vision_end|>`` per frame; a frame whose tokens are all pruned keeps its start/end tokens,
    so frames are located by those, never by counting pads.
    """
    t, h, w = (int(v) for v in grid_thw)
    gh, gw = h // merge, w // merge
    frames = keep.reshape(t, gh * gw) if keep is not None else None
    tokens = list(input_tokens)
    spans, cursor = [], offset
    for frame in range(t):
        try:
            cursor = tokens.index(vision_start_id, cursor)
            end = tokens.index(vision_end_id, cursor)
        except ValueError as exc:
            raise ValueError(
                f"Qwen3-VL prompt: frame {frame} of the video at {offset} has no vision start/end"
            ) from exc
        spans.append(MediaSpan(cursor + 1, (1, gh, gw), 1.0, None if frames is None else frames[frame]))
        cursor = end
    return spans


def stitch_prompt_embeds(
    input_ids: torch.Tensor, placeholder_id: int, text_embeds: torch.Tensor, features: torch.Tensor
) -> torch.Tensor:
    """``prompt_embeds`` (L, D): text embeddings with the kept visual features at the placeholders.

    ``input_ids`` (L,) is the PRUNED prompt (one placeholder per kept token, in order);
    ``text_embeds`` (L, D) its embedding-table rows; ``features`` (K, D) the kept tokens in the
    same order. This is what the transformers model builds internally before its LLM layers.
    """
    if input_ids.ndim != 1 or text_embeds.shape[0] != input_ids.shape[0]:
        raise ValueError(
            f"input_ids must be (L,) and text_embeds (L, D); got {tuple(input_ids.shape)} and "
            f"{tuple(text_embeds.shape)}"
        )
    slots = input_ids == placeholder_id
    if int(slots.sum()) != features.shape[0]:
        raise ValueError(f"{int(slots.sum())} placeholders in the prompt but {features.shape[0]} features")
    if features.shape[-1] != text_embeds.shape[-1]:
        raise ValueError(f"feature width {features.shape[-1]} != embedding width {text_embeds.shape[-1]}")
    out = text_embeds.clone()
    out[slots] = features.to(out.dtype)
    return out


def embeds_request(prompt_embeds: torch.Tensor, positions: Sequence[int], vocab_size: int) -> dict[str, Any]:
    """A vLLM ``EmbedsPrompt`` whose placeholder token ids carry each row's unpruned position.

    Every row comes from ``prompt_embeds`` (``prompt_is_token_ids`` all False), so vLLM never
    embeds those ids; ``one_d.py`` reads them back as positions. They must stay below the vocab
    size (vLLM keeps token ids in vocab-sized buffers) and increase strictly.
    """
    positions = [int(p) for p in positions]
    if prompt_embeds.ndim != 2 or len(positions) != prompt_embeds.shape[0]:
        raise ValueError(
            f"{len(positions)} positions for prompt_embeds of shape {tuple(prompt_embeds.shape)}"
        )
    if any(b <= a for a, b in zip(positions, positions[1:])) or (positions and positions[0] < 0):
        raise ValueError("positions must be non-negative and strictly increasing")
    if positions and positions[-1] >= vocab_size:
        raise ValueError(
            f"unpruned prompt length {positions[-1] + 1} exceeds the vocabulary size {vocab_size}: "
            "positions cannot ride in placeholder token ids"
        )
    return {
        "prompt_embeds": prompt_embeds,
        "prompt_token_ids": positions,
        "prompt_is_token_ids": [False] * len(positions),
    }


def mrope_overrides(
    rope_parameters: dict[str, Any] | None, head_dim: int, rope_theta: float | None = None
) -> dict[str, Any]:
    """``rope_parameters`` plus an ``mrope_section`` (three parts summing to head_dim / 2).

    With the three position rows equal, M-RoPE computes exactly the 1D RoPE of that position
    (each frequency takes its angle from one row), whatever the split.
    """
    params = dict(rope_parameters or {})
    if "mrope_section" in params:
        raise ValueError("this text config already uses M-RoPE")
    params.setdefault("rope_type", "default")
    if rope_theta is not None:
        params.setdefault("rope_theta", rope_theta)
    half = head_dim // 2
    params["mrope_section"] = [half - 2 * (half // 3), half // 3, half // 3]
    params["mrope_interleaved"] = False
    return params


def video_metadata(num_frames: int, fps: float, height: int, width: int) -> dict[str, Any]:
    """The ``(frames, metadata)`` metadata vLLM's Qwen processors need (else they assume 24 fps).

    Same facts the transformers adapters give the HF processor: the frames given are all the
    frames, at ``fps`` (the rate AFTER the harness's sampling), indices 0..T-1.
    """
    if not fps or fps <= 0:
        raise ValueError(f"fps must be the positive frame rate of the frames given, got {fps!r}")
    return {
        "fps": float(fps),
        "total_num_frames": int(num_frames),
        "frames_indices": list(range(num_frames)),
        "duration": num_frames / float(fps),
        "width": int(width),
        "height": int(height),
        "video_backend": "harness",
        "do_sample_frames": False,
    }


def mrope_request(
    prompt_text: str,
    frames: np.ndarray,
    fps: float,
    selection: Selection | None,
    *,
    resized: bool = False,
) -> dict[str, Any]:
    """The vLLM prompt dict for the M-RoPE route (chat-formatted text with one video placeholder).

    ``resized``: the caller already resized ``frames`` to the selection's (non-native) size, as the
    transformers adapter does for ``downsample``; the processor must then not resize them back.
    """
    t, h, w = frames.shape[:3]
    request: dict[str, Any] = {
        "prompt": prompt_text,
        "multi_modal_data": {"video": (frames, video_metadata(t, fps, h, w))},
    }
    kwargs = keep_kwargs([selection])
    if resized:
        kwargs["do_resize"] = False
    if kwargs:
        request["mm_processor_kwargs"] = kwargs
    return request
