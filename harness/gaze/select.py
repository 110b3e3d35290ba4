"""One decoding step's slot choice, as the original's ``_sample``: a numpy and a torch version.

Rules (parity README): slot i takes the argmax (first maximum); its id is banned for slots
i+1..K-1 of the step; ids gazed earlier in the frame and EOS are banned (``banned``); before
each slot, if every score of the slot is -inf for every row, the step ends there; the cap
``int(ratio * N)`` truncates the last step; slot i becomes EOS where the predicted task loss
is <= the requirement (never slot 0 of the frame's first step) and the row finishes; finished
rows emit EOS; when the cap is reached or a step ended early, every row finishes.

Which runs where: ``select_step_numpy`` on CPU (the loop already holds float32 logits; numpy's
per-op overhead is a fraction of torch's on these (B, 10, 266) arrays), ``select_step_torch`` on
an accelerator: fixed shapes, no ``.item()``/``.cpu()``, so the loop never waits for the
device to choose tokens. The two give the same ids (``tests/test_gaze_select.py``: random
logits with ties, -inf slots, caps, requirements).
"""

from __future__ import annotations

import numpy as np
import torch


def select_step_numpy(
    logits: np.ndarray,
    task_loss: np.ndarray,
    banned: np.ndarray,
    unfinished: np.ndarray,
    requirement: np.ndarray | None,
    n: int,
    cap: int,
    first: bool,
    eos: int,
) -> tuple[np.ndarray, bool]:
    """Choose one step's tokens for every row.

    logits (B, K, V) and task_loss (B, K) float32; ``banned`` (B, V) ids already gazed this frame
    (plus EOS); ``unfinished`` (B,) is updated in place. Returns (tokens (B, m), frame over?).
    Pure comparisons and argmaxes (first maximum, like torch), so numpy gives torch's exact choices.
    """
    b, k, _ = logits.shape
    rows = np.arange(b)
    scores = np.where(banned[:, None, :], -np.inf, logits).astype(np.float32, copy=False)
    chosen: list[np.ndarray] = []
    early = False
    for i in range(k):
        if n + len(chosen) >= cap:
            early = True
            break
        s = scores[:, i]
        if np.all(s == -np.inf):
            early = True
            break
        tok = s.argmax(-1)
        chosen.append(tok)
        if i + 1 < k:
            scores[rows[:, None], np.arange(i + 1, k)[None, :], tok[:, None]] = -np.inf
    toks = np.stack(chosen, axis=1) if chosen else np.zeros((b, 0), dtype=np.int64)
    toks = np.where(unfinished[:, None], toks, eos)
    if requirement is not None:
        meet = task_loss[:, : toks.shape[1]] <= requirement[:, None]
        if first and meet.shape[1]:
            meet[:, 0] = False
        toks = np.where(meet, eos, toks)
        unfinished &= ~meet.any(1)
    if n + toks.shape[1] >= cap:
        toks = toks[:, : cap - n]
        early = True
    if early:
        unfinished[:] = False
    return toks.astype(np.int64), not unfinished.any()


def select_step_torch(
    logits: torch.Tensor,
    task_loss: torch.Tensor,
    banned: torch.Tensor,
    unfinished: torch.Tensor,
    requirement: torch.Tensor | None,
    n: int,
    cap: int,
    first: bool,
    eos: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The same choice with device tensors and static shapes: no host synchronisation.

    ``n`` (ids chosen earlier in the frame) and ``cap`` are host ints: both are known without
    looking at the scores (an all -inf slot ends the frame, see below), so the step's slot count
    ``m = min(K, cap - n)`` is static. Returns ``(tokens (B, m), taken, unfinished, stop)``:
    ``taken`` (0-d long) is how many leading slots are real; it is ``m`` unless a slot was -inf
    for every row, and then the frame is over (``stop``), so callers that only continue while not
    ``stop`` never look past it. ``tokens[:, :taken]`` equals ``select_step_numpy``'s tokens.
    ``unfinished`` is a new (B,) bool tensor, ``stop`` a 0-d bool.
    """
    b, k, _ = logits.shape
    m = max(0, min(k, cap - n))
    scores = logits[:, :m].float().masked_fill(banned[:, None, :], float("-inf"))
    alive = torch.ones((), dtype=torch.bool, device=logits.device)
    taken = torch.zeros((), dtype=torch.long, device=logits.device)
    chosen = []
    for i in range(m):
        s = scores[:, i]
        alive = alive & ~torch.isneginf(s).all()
        taken = taken + alive.long()
        tok = s.argmax(-1)
        chosen.append(tok)
        if i + 1 < m:
            idx = tok[:, None, None].expand(b, m - i - 1, 1)
            scores[:, i + 1 :].scatter_(-1, idx, float("-inf"))
    if chosen:
        toks = torch.stack(chosen, dim=1)
    else:
        toks = torch.zeros(b, 0, dtype=torch.long, device=logits.device)
    toks = torch.where(unfinished[:, None], toks, eos)
    unfinished = unfinished.clone()
    if requirement is not None and m:
        meet = task_loss[:, :m].float() <= requirement[:, None]
        meet = meet & (torch.arange(m, device=logits.device) < taken)[None, :]  # slots before an all -inf break
        if first:
            meet[:, 0] = False
        toks = torch.where(meet, eos, toks)
        unfinished &= ~meet.any(1)
    early = (taken < m) | (n + m >= cap)
    unfinished &= ~early
    return toks, taken, unfinished, ~unfinished.any()
