"""Pruning for LLMs with 1D RoPE and fixed square towers (LLaVA-OneVision/Video, InternVL3).

Dropping visual placeholders from the prompt and giving each remaining token the position it had
in the unpruned sequence is exact for 1D RoPE: the LLM sees the kept tokens where they were.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from transformers.modeling_outputs import BaseModelOutputWithPooling

from harness.models.base import Generation, TokenCounts
from harness.models.common import StageTimer, peak_memory_mb
from harness.models.decoding import greedy_decode
from harness.pruning.selection import Selection, TokenGeometry
from harness.pruning.stages import Reduction, reduction_record


def run_geometry(native: TokenGeometry, selection: Selection | None, family: str) -> TokenGeometry:
    """The geometry a square-tower model runs at for ``selection``: native, or the selection's own.

    A different size is what the ``downsample`` pruner asks for (a keep-all selection over a
    smaller grid). It must keep patch/merge/temporal sizes and the frame count, be a multiple of
    one token's pixel square, and be square: these towers pool/shuffle square grids only (and
    their native grid is square, so ``downsample`` keeps it square).
    """
    if selection is None:
        return native
    sg = selection.geometry
    if (sg.patch_size, sg.spatial_merge_size, sg.temporal_patch_size) != (
        native.patch_size,
        native.spatial_merge_size,
        native.temporal_patch_size,
    ):
        raise ValueError(f"selection geometry {sg} was not made for {family} (patch/merge/temporal sizes)")
    if sg.num_frames != native.num_frames:
        raise ValueError(f"selection covers {sg.num_frames} frames but {native.num_frames} frames were given")
    if (sg.height, sg.width) == (native.height, native.width):
        return native
    cell = native.patch_size * native.spatial_merge_size
    if sg.height % cell or sg.width % cell or sg.height != sg.width:
        raise ValueError(
            f"{family}: selection size {sg.height}x{sg.width} must be square and a multiple of {cell} px"
        )
    return sg


def processor_square_size(size: Any, source: str) -> tuple[int, int]:
    """(height, width) from a processor ``size`` dict (``height``/``width`` or ``shortest_edge``)."""
    size = dict(size)
    if "height" in size and "width" in size:
        return int(size["height"]), int(size["width"])
    if "shortest_edge" in size:
        return int(size["shortest_edge"]), int(size["shortest_edge"])
    raise ValueError(f"{source}: unsupported processor size {size}")


@dataclass
class PrunedInputs:
    """What the LLM receives for one (frames, selection, prompt), and how it maps to the full prompt.

    ``model_kwargs`` go straight into the model's forward (prefill). ``kept_sequence`` marks, over
    the UNPRUNED prompt, the tokens that remain; ``position_ids`` are their unpruned positions.
    """

    model_kwargs: dict[str, Any]
    full_input_ids: torch.Tensor  # (1, L_full)
    kept_sequence: torch.Tensor  # (L_full,) bool
    visual_before: int
    visual_after: int
    reduction: dict[str, Any] | None = None  # a feature-stage method's facts (``reduction_record``)
    kept_grid: torch.Tensor | None = None  # and its keep over the selection's grid (flat, bool)


def prune_sequence(
    full_input_ids: torch.Tensor,
    placeholder_id: int,
    keep_visual: torch.Tensor,
    kept_features: torch.Tensor,
    modality: str,
    reduction: Reduction | None = None,
) -> PrunedInputs:
    """Drop unkept visual placeholders; keep every text token; positions from the unpruned prompt.

    ``keep_visual`` is a bool over the prompt's placeholders in order; ``kept_features`` holds the
    embeddings of the kept ones, in the same order. ``reduction``: the feature-stage method that
    chose them, if any, recorded on the result (its facts and its keep over the selection's grid).
    """
    is_visual = full_input_ids[0] == placeholder_id
    n_visual = int(is_visual.sum())
    if n_visual != keep_visual.numel():
        raise ValueError(
            f"the prompt holds {n_visual} visual placeholders but the features/selection cover "
            f"{keep_visual.numel()} tokens"
        )
    if int(keep_visual.sum()) != kept_features.shape[0]:
        raise ValueError(f"{int(keep_visual.sum())} tokens kept but {kept_features.shape[0]} features given")
    kept_sequence = torch.ones_like(is_visual)
    kept_sequence[is_visual] = keep_visual.to(is_visual.device)
    input_ids = full_input_ids[:, kept_sequence]
    positions = torch.arange(full_input_ids.shape[1], device=full_input_ids.device)[kept_sequence][None]
    model_kwargs = {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "position_ids": positions,
        "mm_encoder_outputs": {modality: BaseModelOutputWithPooling(pooler_output=kept_features[None])},
    }
    return PrunedInputs(
        model_kwargs=model_kwargs,
        full_input_ids=full_input_ids,
        kept_sequence=kept_sequence,
        visual_before=n_visual,
        visual_after=int(keep_visual.sum()),
        reduction=reduction_record(reduction),
        kept_grid=None if reduction is None else reduction.keep.cpu(),
    )


def native_sequence(
    full_input_ids: torch.Tensor,
    placeholder_id: int,
    features: torch.Tensor,
    modality: str,
    run_lengths: list[int] | None = None,
) -> PrunedInputs:
    """The prompt with each run of visual placeholders resized to its share of ``features``.

    For the native AutoGaze route, whose token count is AutoGaze's gaze count (it can exceed the
    stock placeholder count). ``run_lengths`` gives the new length of each contiguous run of
    placeholders, in order (InternVL: one run per frame; a run may become empty, its frame's
    text wrapper stays); None means one run holding every feature (LLaVA-OV). Positions are
    consecutive (0..L-1): visual tokens sit where their run began, in ``features`` order, and
    the text after them follows directly, as in any prompt of that length.
    """
    ids = full_input_ids[0]
    is_visual = ids == placeholder_id
    edges = torch.diff(is_visual.int(), prepend=torch.zeros(1, dtype=torch.int, device=ids.device))
    starts = (edges == 1).nonzero().squeeze(-1).tolist()
    ends = torch.diff(is_visual.int(), append=torch.zeros(1, dtype=torch.int, device=ids.device)) == -1
    ends = (ends.nonzero().squeeze(-1) + 1).tolist()
    lengths = [int(features.shape[0])] if run_lengths is None else [int(n) for n in run_lengths]
    if len(starts) != len(lengths):
        raise ValueError(
            f"the prompt holds {len(starts)} runs of visual placeholders, {len(lengths)} expected"
        )
    if sum(lengths) != features.shape[0]:
        raise ValueError(f"run lengths add up to {sum(lengths)} but {features.shape[0]} features were given")
    parts, prev = [], 0
    for a, b, n in zip(starts, ends, lengths, strict=True):
        parts += [ids[prev:a], torch.full((n,), placeholder_id, dtype=ids.dtype, device=ids.device)]
        prev = b
    parts.append(ids[prev:])
    input_ids = torch.cat(parts)[None]
    model_kwargs = {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "position_ids": torch.arange(input_ids.shape[1], device=ids.device)[None],
        "mm_encoder_outputs": {modality: BaseModelOutputWithPooling(pooler_output=features[None])},
    }
    return PrunedInputs(
        model_kwargs=model_kwargs,
        full_input_ids=input_ids,
        kept_sequence=torch.ones(input_ids.shape[1], dtype=torch.bool, device=ids.device),
        visual_before=int(is_visual.sum()),
        visual_after=int(features.shape[0]),
    )


def generate_pruned(
    model: torch.nn.Module,
    tokenizer: Any,
    pruned: PrunedInputs,
    geometry: TokenGeometry,
    *,
    visual_before: int,
    timer: StageTimer,
    device: torch.device | str | None,
    max_new_tokens: int,
    extra: dict[str, Any],
    stop: set[int] | None = None,
    selection: Selection | None = None,
    visual_token_id: int | None = None,
) -> Generation:
    """Greedy-decode ``pruned`` and account for it: the common end of both 1D-RoPE adapters' ``generate``.

    Why shared: LLaVA-OV and InternVL3 must count tokens and time the same way for their records
    to compare. ``visual_before`` is the native model's count (LLaVA-OV adds its newline token);
    ``geometry`` the one the model ran at. ``extra`` holds the family's own facts; it lands between
    ``output_ids`` and ``model_size``/``token_grid`` in ``Generation.extra``. ``stop``: the ids
    that end decoding (default: the generation config's eos ids). ``selection``'s in-LLM stage
    (FastV), if any, prunes ``visual_token_id`` placeholders inside the LLM: ``visual_after`` is
    then what its layers from K on saw, ``extra["llm_pruning"]`` has the average over layers.
    """
    report: dict[str, Any] = {}
    ids = greedy_decode(model, pruned.model_kwargs, max_new_tokens=max_new_tokens, timer=timer, stop=stop,
                        llm=None if selection is None else selection.llm, visual_token_id=visual_token_id,
                        report=report)
    stage_facts = {k: v for k, v in (("reduction", pruned.reduction), *report.items()) if v is not None}
    tokens = TokenCounts(
        visual_before=visual_before,
        visual_after=report["llm_pruning"]["visual_after"] if "llm_pruning" in report else pruned.visual_after,
        prompt=int(pruned.model_kwargs["input_ids"].shape[1]),
        generated=len(ids),
    )
    return Generation(
        text=tokenizer.decode(ids, skip_special_tokens=True),
        tokens=tokens,
        timings=dict(timer.seconds),
        peak_memory_mb=peak_memory_mb(device),
        kept_grid=pruned.kept_grid,
        extra={
            "output_ids": ids,
            **extra,
            **stage_facts,
            "model_size": [geometry.height, geometry.width],
            "token_grid": [geometry.grid_t, geometry.grid_h, geometry.grid_w],
        },
    )
