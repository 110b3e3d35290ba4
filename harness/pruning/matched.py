"""Matched-budget comparisons: run a reference pruner (AutoGaze), then baselines at its kept count.

This is how the runner makes "AutoGaze vs X at the same number of LLM tokens" per video: the
budget is what the LLM would actually see under the reference selection.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from harness.pruning.base import Pruner
from harness.pruning.selection import Selection, TokenGeometry


def matched_budget(selection: Selection) -> int:
    """The budget a baseline must match: the LLM tokens ``selection`` keeps."""
    return selection.num_kept


def matched_selections(
    frames: np.ndarray,
    geometry: TokenGeometry,
    reference: Pruner,
    baselines: Mapping[str, Pruner],
    *,
    fps: float | None = None,
) -> dict[str, Selection]:
    """``{"reference name": its selection, key: baseline selection at the matched budget, ...}``.

    Each baseline's ``info`` gets ``matched_to`` (the reference's name) and ``matched_budget``.
    Pruners without a budget (``none``) run unchanged, with the ignored budget noted.
    """
    ref = reference.select(frames, geometry, fps=fps)
    budget = matched_budget(ref)
    out = {reference.name: ref}
    for key, pruner in baselines.items():
        if key in out:
            raise ValueError(f"matched_selections: baseline key {key!r} clashes with the reference's name")
        sel = pruner.select(frames, geometry, budget=budget, fps=fps)
        sel.info.update({"matched_to": reference.name, "matched_budget": budget})
        out[key] = sel
    return out
