"""Device token selection (torch ops) == the numpy selection, on many random steps.

Logits are drawn from a few values so that ties are everywhere (argmax must take the first
maximum in both); some slots are -inf for some or all rows (the step-ends-here rule), and the
cap, the requirement, the frame's first step and finished rows vary.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.gaze.select import select_step_numpy, select_step_torch

EOS = 11


def _case(rng: np.random.Generator):
    b, k, v = int(rng.integers(1, 6)), int(rng.integers(1, 6)), EOS + 1
    values = np.array([-1.0, 0.0, 0.5, 1.0, 2.0], dtype=np.float32)
    logits = values[rng.integers(0, len(values), size=(b, k, v))]
    if rng.random() < 0.3:  # -inf entries, sometimes a whole slot for every row
        logits[rng.random(size=logits.shape) < 0.4] = -np.inf
        if rng.random() < 0.5:
            logits[:, int(rng.integers(1, k)) if k > 1 else 0] = -np.inf
    task_loss = rng.choice(np.array([-1.0, 0.0, 1.0], dtype=np.float32), size=(b, k))
    banned = rng.random(size=(b, v)) < 0.3
    banned[:, EOS] = True
    unfinished = rng.random(size=b) < 0.8
    requirement = None if rng.random() < 0.3 else np.full(b, rng.choice([-0.5, 0.0, 0.5]), np.float32)
    n = int(rng.integers(0, 8))
    cap = n + int(rng.integers(1, 2 * k + 1))
    first = bool(rng.random() < 0.5)
    return logits, task_loss, banned, unfinished, requirement, n, cap, first


def _both(logits, task_loss, banned, unfinished, requirement, n, cap, first):
    unf_np = unfinished.copy()
    toks_np, stop_np = select_step_numpy(logits, task_loss, banned, unf_np, requirement, n, cap, first, EOS)
    toks, taken, unf_t, stop_t = select_step_torch(
        torch.from_numpy(logits), torch.from_numpy(task_loss), torch.from_numpy(banned),
        torch.from_numpy(unfinished), None if requirement is None else torch.from_numpy(requirement),
        n, cap, first, EOS,
    )  # fmt: skip
    return (toks_np, stop_np, unf_np), (toks[:, : int(taken)].numpy(), bool(stop_t), unf_t.numpy())


def test_torch_selection_equals_numpy_on_random_steps():
    rng = np.random.default_rng(0)
    checked_allinf = checked_ties = 0
    for _ in range(3000):
        logits, task_loss, banned, unfinished, requirement, n, cap, first = _case(rng)
        if np.all(logits[:, 0] == -np.inf):
            continue  # the original cannot reach a step whose first slot is -inf everywhere
        (t_np, s_np, u_np), (t_t, s_t, u_t) = _both(
            logits, task_loss, banned, unfinished, requirement, n, cap, first
        )
        assert t_np.shape == t_t.shape and np.array_equal(t_np, t_t), (t_np, t_t)
        assert s_np == s_t
        assert np.array_equal(u_np, u_t)
        checked_allinf += t_np.shape[1] < min(logits.shape[1], cap - n)
        checked_ties += int((logits == logits.max(-1, keepdims=True)).sum(-1).max() > 1)
    assert checked_allinf > 50 and checked_ties > 1000  # the hard cases really were exercised


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_torch_selection_on_real_ties_is_first_maximum(dtype):
    logits = torch.zeros(2, 3, EOS + 1, dtype=dtype)  # every id ties: first unbanned ids in order
    banned = torch.zeros(2, EOS + 1, dtype=torch.bool)
    banned[:, EOS] = True
    banned[1, 0] = True
    toks, taken, _, stop = select_step_torch(
        logits, torch.zeros(2, 3), banned, torch.ones(2, dtype=torch.bool), None, 0, 10, True, EOS
    )
    assert toks.tolist() == [[0, 1, 2], [1, 2, 3]] and int(taken) == 3 and not bool(stop)


def test_a_broken_selection_is_caught():
    """The comparison can fail: a torch selection that forgets the later-slot ban differs."""
    rng = np.random.default_rng(1)
    differs = 0
    for _ in range(200):
        logits, task_loss, banned, unfinished, requirement, n, cap, first = _case(rng)
        if np.all(logits[:, 0] == -np.inf):
            continue
        unf = unfinished.copy()
        t_np, _ = select_step_numpy(logits, task_loss, banned, unf, requirement, n, cap, first, EOS)
        scores = torch.from_numpy(logits).masked_fill(torch.from_numpy(banned)[:, None], float("-inf"))
        broken = scores.argmax(-1)[:, : t_np.shape[1]]  # no later-slot ban, no padding
        differs += not np.array_equal(broken.numpy(), t_np)
    assert differs > 50


def test_device_loop_rolls_back_a_frame_with_an_all_minus_inf_slot():
    """A slot that is -inf for every row ends the step (numpy loop); the device loop only learns
    it at the frame's end, rolls the frame back and redoes it: same gazes either way."""
    from harness.gaze import AutoGaze

    model = AutoGaze.from_pretrained("tiny")
    dec = model.gazing_model.gaze_decoder
    heads = dec.heads

    def patched(h):
        logits, tl = heads(h)
        if float(h[0, -1, 0]) > 0:  # a function of the hidden state (identical in both loops)
            logits[:, 4] = float("-inf")  # slot 4 is -inf for every row
        return logits, tl

    video = torch.randn(2, 2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    outs = []
    try:
        dec.heads = patched
        for selection in ("numpy", "torch"):
            outs.append(model.gaze(video, gazing_ratio=0.3, selection=selection))
    finally:
        del dec.heads
    a, b = outs
    assert (a.num_gazing_each_frame < 79).any()  # the -inf slot really ended frames early
    assert torch.equal(a.gazing_pos, b.gazing_pos) and torch.equal(a.num_gazing_each_frame, b.num_gazing_each_frame)
