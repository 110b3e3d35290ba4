"""Streaming (KV + conv caches across calls) equals whole-clip gazing; what batch-mates can change.

Run with a task-loss requirement so rows stop at different steps: that exercises batch-wide
padding, padded gazes being masked in later frames, and the last step's gazes carried into the
next call, which are exactly the places a streaming implementation can go wrong.
"""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from safetensors.torch import load_file

from harness.gaze import AutoGaze, GazeOutput

# One torch thread per module (fixture in conftest.py): the greedy loop's small ops spin-wait otherwise.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


FRAMES = 5
ARGS = {"gazing_ratio": 0.5, "task_loss_requirement": -4.0}


@pytest.fixture(scope="module")
def model(parity_dir):
    return AutoGaze.from_pretrained(parity_dir / "model")


@pytest.fixture(scope="module")
def video(parity_dir):
    return load_file(str(parity_dir / "cases.safetensors"))["video"][:, :FRAMES]


@pytest.fixture(scope="module")
def whole(model, video):
    return model.gaze(video, **ARGS)


def test_setting_exercises_padding(whole):
    assert whole.if_padded_gazing.any(), "the requirement should stop some rows early (padding)"
    assert not whole.if_padded_gazing.all()


@pytest.mark.parametrize("chunks", [[1, 1, 1, 1, 1], [2, 3], [4, 1]])
def test_stream_equals_whole_clip(model, video, whole, chunks):
    stream = model.stream(batch_size=video.shape[0], **ARGS, frames_hint=1)  # small hint: forces cache growth
    parts, start = [], 0
    for n in chunks:
        parts.append(stream.gaze(video[:, start : start + n]))
        start += n
    out = GazeOutput.concat(parts)
    assert torch.equal(out.gazing_pos, whole.gazing_pos)
    assert torch.equal(out.if_padded_gazing, whole.if_padded_gazing)
    assert torch.equal(out.num_gazing_each_frame, whole.num_gazing_each_frame)
    for a, b in zip(out.gazing_mask, whole.gazing_mask):
        assert torch.equal(a, b)


def _real_gazes(out: GazeOutput, row: int) -> list[list[int]]:
    """Per frame, the ordered real gaze ids of one row (padding removed)."""
    pos = out.gazing_pos[row].split(out.num_gazing_each_frame.tolist())
    pad = out.if_padded_gazing[row].split(out.num_gazing_each_frame.tolist())
    return [p[~m].tolist() for p, m in zip(pos, pad)]


def test_ratio_only_batch_composition_never_changes_real_gazes(model, video):
    """With only a ratio every row stops at the cap on the same step: no padding, rows independent."""
    clip = video[:, :3]
    both = model.gaze(clip, gazing_ratio=0.1)
    assert not both.if_padded_gazing.any()
    for i in range(clip.shape[0]):
        alone = model.gaze(clip[i : i + 1], gazing_ratio=0.1)
        assert torch.equal(alone.gazing_pos[0], both.gazing_pos[i])
    swapped = model.gaze(clip.flip(0), gazing_ratio=0.1)
    assert torch.equal(swapped.gazing_pos, both.gazing_pos.flip(0))


def test_requirement_batch_mates_that_stop_together_change_nothing(model, video, whole):
    """Order, and a copy of the same clip as batch-mate, never change a row's gazes."""
    alone = model.gaze(video[:1], **ARGS)
    dup = model.gaze(video[[0, 0]], **ARGS)
    assert _real_gazes(dup, 0) == _real_gazes(dup, 1) == _real_gazes(alone, 0)
    swapped = model.gaze(video.flip(0), **ARGS)
    for i in range(video.shape[0]):
        assert _real_gazes(swapped, video.shape[0] - 1 - i) == _real_gazes(whole, i)


def test_requirement_early_stop_quirk_is_reproduced(model, video, whole):
    """Faithful to the original: a row that meets the requirement before its batch-mates has its
    last step fed inside the frame (at the quirk positions) instead of at the next frame's start,
    so its later frames can differ from gazing it alone. The frame it stops in never differs."""
    nums = whole.num_gazing_each_frame.tolist()
    row_counts = [len(g) for g in _real_gazes(whole, 1)]
    assert row_counts[0] < nums[0], "row 1 should stop before row 0 in frame 0"
    alone = model.gaze(video[1:2], **ARGS)
    assert _real_gazes(alone, 0)[0] == _real_gazes(whole, 1)[0]
    assert _real_gazes(alone, 0)[1] != _real_gazes(whole, 1)[1]


# SHA-256 of json.dumps([gazing_pos, if_padded_gazing, num_gazing_each_frame]) (as .tolist()) from
# the ORIGINAL implementation (NVlabs/AutoGaze on transformers 4.51.3, sdpa, float32, 1 thread) run
# on the fixture's video[:, :5] with ARGS: at batch 2 ("b2") and each row alone at batch 1. Row 1
# stops before row 0 in frame 0, so the original's batch-2 and batch-1 gazes of row 1 differ from
# frame 1 on: the batch effect is the original's, and independent_rows reproduces its batch 1.
ORIGINAL_SHA256 = {
    "b2": "089232c124c91af73fbdb415a41acd3e9ba2648bda03220ff0dc0f176baf373e",
    "b1_0": "72668a8fd21cf37337f11a24fe221cc7161c10070dee5bfc49e6629d6237c0f8",
    "b1_1": "253540e3c2854817b0026cae2a1493140ef656be37b539845c6414bac2b95e73",
}


def _sha(out: GazeOutput) -> str:
    fields = [out.gazing_pos.tolist(), out.if_padded_gazing.tolist(), out.num_gazing_each_frame.tolist()]
    return hashlib.sha256(json.dumps(fields).encode()).hexdigest()


def test_batch_1_and_batch_2_match_the_original_run(model, video, whole):
    assert _sha(whole) == ORIGINAL_SHA256["b2"]
    for i in range(video.shape[0]):
        assert _sha(model.gaze(video[i : i + 1], **ARGS)) == ORIGINAL_SHA256[f"b1_{i}"]


def test_independent_rows_gaze_exactly_as_alone(model, video, whole):
    """independent_rows=True: every row's gazes equal the original at batch 1, whatever its batch-mates."""
    ind = model.gaze(video, **ARGS, independent_rows=True)
    assert ind.if_padded_gazing.any()  # still batch-wide padding
    for i in range(video.shape[0]):
        alone = model.gaze(video[i : i + 1], **ARGS)
        assert _real_gazes(ind, i) == _real_gazes(alone, 0)
    # Streaming keeps the per-row carries across calls.
    stream = model.stream(batch_size=video.shape[0], **ARGS, independent_rows=True)
    parts = GazeOutput.concat([stream.gaze(video[:, :2]), stream.gaze(video[:, 2:])])
    assert torch.equal(parts.gazing_pos, ind.gazing_pos)
    assert torch.equal(parts.if_padded_gazing, ind.if_padded_gazing)


def test_stream_rejects_other_batch_size(model, video):
    stream = model.stream(batch_size=1, gazing_ratio=0.1)
    with pytest.raises(ValueError, match="batch"):
        stream.gaze(video[:, :1])


def test_budget_rules(model, video):
    """Per-frame ratios cap each frame; with neither budget the config's fixed defaults apply."""
    clip = video[:1, :2]
    per_frame = model.gaze(clip, gazing_ratio=[0.04, 0.1])
    assert per_frame.num_gazing_each_frame.tolist() == [10, 26]  # int(0.04*265), int(0.1*265)
    default = model.gaze(clip)
    explicit = model.gaze(clip, gazing_ratio=0.5, task_loss_requirement=0.7)
    assert torch.equal(default.gazing_pos, explicit.gazing_pos)
    assert default.task_loss_requirement == 0.7
    with pytest.raises(ValueError, match="2 per-frame values but frame 2"):
        model.gaze(video[:1, :3], gazing_ratio=[0.1, 0.1])


@pytest.fixture(scope="module")
def whole_independent(model, video):
    return model.gaze(video, **ARGS, independent_rows=True)


def _same(a: GazeOutput, b: GazeOutput) -> bool:
    return (
        torch.equal(a.gazing_pos, b.gazing_pos)
        and torch.equal(a.if_padded_gazing, b.if_padded_gazing)
        and torch.equal(a.num_gazing_each_frame, b.num_gazing_each_frame)
        and all(torch.equal(x, y) for x, y in zip(a.gazing_mask, b.gazing_mask))
    )


@pytest.mark.parametrize("static", [False, True])
@pytest.mark.parametrize("independent", [False, True])
def test_device_selection_loop_equals_numpy_loop(model, video, whole, whole_independent, static, independent):
    """Token choice on the device (and fixed-shape steps) gives the numpy loop's gazes, in the
    setting where rows stop at different steps (per-step stop reads, carries, padding)."""
    want = whole_independent if independent else whole
    got = model.gaze(video, **ARGS, independent_rows=independent, selection="torch", static=static)
    assert _same(got, want)


def test_stacked_single_rows_equal_independent_batch(model, video, whole_independent):
    """``GazeOutput.stack`` of batch-1 runs is what an independent-rows batch returns (the
    deterministic mode on accelerators gazes row by row and stacks)."""
    rows = [model.gaze(video[i : i + 1], **ARGS) for i in range(video.shape[0])]
    assert _same(GazeOutput.stack(rows), whole_independent)
    assert not _same(GazeOutput.stack(rows[::-1]), whole_independent)  # the check can fail


def test_deterministic_mode_is_batch_invariant(model, video):
    """At 2 threads, a deterministic batch gives each clip exactly its batch-1 gazes."""
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        batch = model.gaze(video, **ARGS, deterministic=True)
        assert torch.get_num_threads() == 2  # restored after the call
        alone = [model.gaze(video[i : i + 1], **ARGS, deterministic=True) for i in range(video.shape[0])]
    finally:
        torch.set_num_threads(old)
    assert _same(batch, GazeOutput.stack(alone))


def _threads_seen(model, video, monkeypatch) -> dict[int, set[int]]:
    """Torch thread counts seen by decoder calls during a gaze at 2 threads, by chunk length."""
    dec = model.gazing_model.gaze_decoder
    seen: dict[int, set[int]] = {}
    real = dec.forward_chunk

    def spy(x, *args, **kwargs):
        seen.setdefault(x.shape[1], set()).add(torch.get_num_threads())
        return real(x, *args, **kwargs)

    monkeypatch.setattr(dec, "forward_chunk", spy)
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        model.gaze(video, **ARGS)
        assert torch.get_num_threads() == 2  # restored after the call
    finally:
        torch.set_num_threads(old)
        monkeypatch.undo()
    return seen


def test_small_batch_decoding_steps_run_on_one_thread(model, video, monkeypatch):
    """Batch 1's 10-row decoding steps run at one thread (prefills keep the caller's two); batch 2
    keeps two threads everywhere. Disabling the rule shows the check can fail."""
    from harness.gaze import generate

    k = model.config.decoder.num_multi_token_pred
    one = _threads_seen(model, video[:1], monkeypatch)
    assert one[k] == {1} and {2} == {t for q, ts in one.items() if q > k for t in ts}
    two = _threads_seen(model, video, monkeypatch)
    assert two[k] == {2}
    monkeypatch.setattr(generate, "STEP_ONE_THREAD_ROWS", 0)
    assert _threads_seen(model, video[:1], monkeypatch)[k] == {2}


def test_batch_1_at_two_threads_equals_one_thread(model, video):
    """A batch-1 clip gets the same gazes at 2 threads as at 1 (the fixture's condition)."""
    one = model.gaze(video[:1], **ARGS)
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        two = model.gaze(video[:1], **ARGS)
    finally:
        torch.set_num_threads(old)
    assert _same(one, two)
