"""The lean greedy gazing loop: exactly the original's choices, without its overheads.

The original runs one ``transformers.generate`` call per frame on the whole history and
deep-copies the KV cache at every step. Here the KV cache is preallocated once per batch
(``KVCache``) and each decoder call only writes the new tokens' keys/values at an offset, while
every quantity the original's numbers depend on is reproduced (see the parity README):

* Frame prompt = history + this frame's vision tokens; positions = cumsum(attention mask) - 1
  where earlier frames' padded gazes have mask 0. Because the original reuses its cache across
  frames too, only the previous frame's *last* step of gazes plus this frame's vision tokens are
  new input at a frame start ("carry" below); the cached part keeps the keys computed earlier.
* Within a frame every step's K tokens are fed at the positions of the last K prompt tokens
  (transformers 4.51 slices the prompt's ``position_ids`` to the step length), and attend to all
  tokens of the frame, padding included (generation extends the mask with ones). Once the frame
  is over, its padded gazes are masked for all later queries and do not advance positions.
* Slot choice: argmax, then ban the chosen id for the step's later slots; ids gazed earlier in
  the frame and EOS are banned; a slot whose scores are all -inf for every row ends the step.
* Task-loss stop: slot i becomes EOS where prediction i <= requirement (never slot 0 of the
  frame's first step); the row finishes; finished rows keep emitting EOS until the batch is done.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from harness.gaze.model import EXACT_MIN_ROWS, GazeDecoder, KVCache, TailCausal
from harness.gaze.select import select_step_numpy as select_step
from harness.gaze.select import select_step_torch


@dataclass
class GazeState:
    """What it takes to continue gazing a batch of clips frame after frame (streaming)."""

    cache: KVCache
    key_mask: torch.Tensor  # (B, capacity) bool: cached tokens that later queries attend to
    length: int = 0  # filled cache entries (same for every row)
    next_pos: torch.Tensor | None = None  # (B,) long: attended tokens so far = next rope position
    carry: torch.Tensor | None = None  # (B, m) last step's gaze ids of the previous frame, not yet fed
    conv_past: list[torch.Tensor] | None = None  # conv encoder's temporal caches
    frames_done: int = 0
    scratch: dict = field(default_factory=dict)
    # No cached key has ever been masked (no padded gaze so far, the usual case under a ratio-only
    # budget): chunks can attend under a ``TailCausal`` mask instead of a dense one. Kept by the
    # numpy loop, which sees every mask value on the host; the device loop clears it.
    all_attended: bool = True

    @classmethod
    def empty(cls, decoder: GazeDecoder, batch: int, capacity: int, dtype, device) -> GazeState:
        c = decoder.cfg
        cache = KVCache(c.num_layers, batch, c.num_kv_heads, c.head_dim, capacity, dtype, device)
        return cls(
            cache=cache,
            key_mask=torch.zeros(batch, capacity, dtype=torch.bool, device=device),
            next_pos=torch.zeros(batch, dtype=torch.long, device=device),
            carry=torch.zeros(batch, 0, dtype=torch.long, device=device),
        )

    def ensure(self, needed: int) -> None:
        """Grow cache and mask together (doubling) if ``needed`` entries do not fit."""
        if needed <= self.cache.capacity:
            return
        old = self.cache.capacity
        self.cache.ensure(needed)
        mask = torch.zeros(
            self.key_mask.shape[0], self.cache.capacity, dtype=torch.bool, device=self.key_mask.device
        )
        mask[:, :old] = self.key_mask
        self.key_mask = mask


# Decoding steps that feed at most this many rows (batch x K) run on one CPU thread. Their GEMMs
# are too small to split: a split costs an OpenMP wake-up per op (on a busy machine, a wait for
# the other core) for microseconds of work, and MKL splits a 5-11-row GEMM into pieces that round
# differently from the whole (measured on every decoder shape: rows 5-7 and 9-11 differ at two
# threads, none at one), so at one thread a batch-1 clip also gets exactly the bits of a
# one-thread run, the condition the parity fixture was recorded in. Batch 2 (20 rows) and up
# keep every thread.
STEP_ONE_THREAD_ROWS = 16


@contextlib.contextmanager
def step_threads(device: torch.device, rows: int) -> Iterator[None]:
    """Run the block on one torch thread if it decodes ``rows`` <= ``STEP_ONE_THREAD_ROWS`` rows on
    the CPU (see there); restore the caller's count afterwards. ``set_num_threads`` costs well
    under a microsecond, so it is done once per frame, around the frame's decoding steps."""
    threads = torch.get_num_threads()
    if device.type != "cpu" or rows > STEP_ONE_THREAD_ROWS or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


_FUTURE: dict[tuple[int, torch.device], torch.Tensor] = {}


def _future(q: int, device: torch.device) -> torch.Tensor:
    """(q, q) bool, True above the diagonal: a chunk's own keys in each query's future (cached per size)."""
    key = (q, torch.device(device))
    tri = _FUTURE.get(key)
    if tri is None:
        tri = torch.ones(q, q, dtype=torch.bool, device=device).triu_(1)
        _FUTURE[key] = tri
    return tri


def _chunk_mask(
    key_mask: torch.Tensor, start: int, q: int, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Additive attention mask (B, 1, q, start+q): 0 where the key is attended and not in the
    query's future, -inf elsewhere. Built once per decoder call and shared by every layer (sdpa
    would otherwise convert a bool mask to this in each layer); same result as the bool mask.
    Keys before ``start`` are never in a query's future, so the causal part is only the chunk's
    own (q, q) corner: two fills instead of building a (q, start+q) causal comparison."""
    end = start + q
    b = key_mask.shape[0]
    mask = torch.zeros(b, 1, q, end, dtype=dtype, device=key_mask.device)
    mask.masked_fill_(~key_mask[:, None, None, :end], float("-inf"))
    mask[..., start:].masked_fill_(_future(q, key_mask.device), float("-inf"))
    return mask


def _mask(state: GazeState, start: int, q: int, dtype: torch.dtype) -> torch.Tensor | TailCausal | None:
    """The attention mask of a chunk of ``q`` tokens at ``start`` (numpy loop): none for a first
    chunk with nothing masked (plain causal), a ``TailCausal`` while no cached key is masked
    (same bits, a fraction of the memory traffic), else the dense ``_chunk_mask``."""
    if state.all_attended:
        return None if start == 0 else TailCausal(start, q, dtype, state.key_mask.device)
    return _chunk_mask(state.key_mask, start, q, dtype)


def capacity_for(frames: int, vision_tokens: int, cap: int, k: int) -> int:
    """Cache entries needed for ``frames`` frames whose gazes are capped at ``cap`` per frame."""
    steps = -(-cap // k)
    return frames * (vision_tokens + steps * k)


def _frame_prefill(state: GazeState, vision: torch.Tensor, embed: torch.nn.Module, eos: int, cap: int, k: int) -> tuple:
    """A frame's prefill input: the previous frame's last-step gazes (carry, EOS masked) then this
    frame's vision tokens; their positions (cumsum of the mask); the cache grown for the frame's
    steps. Shared by the numpy and the device selection loops so both feed identical inputs."""
    carry = state.carry
    new_mask = torch.ones(vision.shape[0], carry.shape[1] + vision.shape[1], dtype=torch.bool,
                          device=vision.device)
    if carry.shape[1]:
        x = torch.cat([embed(carry).to(vision.dtype), vision], dim=1)
        new_mask[:, : carry.shape[1]] = carry != eos
    else:
        x = vision
    q, start = x.shape[1], state.length
    pos = state.next_pos[:, None] + new_mask.long().cumsum(1) - 1
    state.next_pos = state.next_pos + new_mask.sum(1)
    steps_max = -(-cap // k)
    state.ensure(start + q + steps_max * k)
    state.key_mask[:, start : start + q] = new_mask
    return x, new_mask, pos, q, start, steps_max


@torch.no_grad()
def gaze_frame(
    decoder: GazeDecoder,
    state: GazeState,
    vision: torch.Tensor,
    cap: int,
    requirement: torch.Tensor | None,
    independent_rows: bool = False,
    selection: str = "numpy",
    static: bool = False,
) -> torch.Tensor:
    """Gaze one frame for every row. vision: (B, N, C) connector tokens. Returns ids (B, n) with EOS padding.

    ``independent_rows=False`` is the original's batched behaviour: a row that meets the task-loss
    requirement before its batch-mates has its last step fed inside the frame (at the frame's
    step positions) like everyone else's, which can change its later frames. With ``True`` each
    row behaves exactly as if gazed alone (the original at batch 1): once a row finishes, its
    last step is kept back as its own carry for the next frame, and what the batch feeds for it
    meanwhile is invisible padding (masked, position-neutral). Identical when no row stops early.

    ``selection``: ``"numpy"`` (CPU: logits copied to the host each step, chosen in numpy) or
    ``"torch"`` (``_gaze_frame_torch``: chosen on the device, no per-step host sync without a
    task-loss budget). ``static`` (torch selection only): fixed-shape decoding steps.
    """
    if selection == "torch":
        return _gaze_frame_torch(decoder, state, vision, cap, requirement, independent_rows, static)
    if selection != "numpy":
        raise ValueError(f"selection must be 'numpy' or 'torch', got {selection!r}")
    cfg = decoder.cfg
    k, eos, vocab = cfg.num_multi_token_pred, cfg.eos_token_id, cfg.vocab_size
    b, dev = vision.shape[0], vision.device
    embed = decoder.model.embed_tokens

    # Prefill: previous frame's last-step gazes (carry) + this frame's vision tokens.
    x, new_mask, pos, q, start, steps_max = _frame_prefill(state, vision, embed, eos, cap, k)
    state.all_attended = state.all_attended and bool(new_mask.all())
    h = decoder.forward_chunk(x, pos, state.cache, start, _mask(state, start, q, x.dtype), last=EXACT_MIN_ROWS)
    state.length = start + q
    step_pos = pos[:, -k:]
    logits, task_loss = decoder.heads(h[:, -1:])

    gen_start = state.length
    req = None if requirement is None else requirement.detach().to("cpu", torch.float32).numpy()
    banned = np.zeros((b, vocab), dtype=bool)
    banned[:, eos] = True
    unfinished = np.ones(b, dtype=bool)
    steps: list[np.ndarray] = []
    n, first = 0, True
    rope = decoder.rope(step_pos, vision.dtype)  # every step of the frame uses the same positions
    fed: list[np.ndarray] = []
    own_carry = np.full((b, k), eos, dtype=np.int64)  # independent rows: each row's final step
    own_len = 0
    with step_threads(dev, b * k):
        while True:
            was_unfinished = unfinished.copy()
            toks, stop = select_step(
                logits.cpu().numpy(), task_loss.cpu().numpy(), banned, unfinished, req, n, cap, first, eos
            )
            n += toks.shape[1]
            steps.append(toks)
            banned[np.arange(b)[:, None], toks] = True
            first = False
            if independent_rows:
                done = was_unfinished & ~unfinished
                own_carry[done, : toks.shape[1]] = toks[done]
                own_len = max(own_len, toks.shape[1]) if done.any() else own_len
            if stop:
                break
            # Feed this step's tokens: they attend to the whole frame so far, padding included.
            start = state.length
            if independent_rows:
                toks = np.where(unfinished[:, None], toks, eos)
                state.key_mask[:, start : start + k] = torch.from_numpy(unfinished)[:, None].to(dev)
                state.all_attended = state.all_attended and bool(unfinished.all())
            else:
                state.key_mask[:, start : start + k] = True
            fed.append(toks)
            h = decoder.forward_chunk(
                embed(torch.from_numpy(toks).to(dev)), step_pos, state.cache, start,
                _mask(state, start, k, vision.dtype), rope=rope, last=EXACT_MIN_ROWS,
            )  # fmt: skip
            state.length = start + k
            logits, task_loss = decoder.heads(h[:, -1:])

    # Frame over: its fed padding is masked from now on and does not advance positions.
    if fed:
        real_np = np.concatenate(fed, axis=1) != eos
        state.all_attended = state.all_attended and bool(real_np.all())
        real = torch.from_numpy(real_np).to(dev)
        state.key_mask[:, gen_start : state.length] = real
        state.next_pos = state.next_pos + real.sum(1)
    carry = own_carry[:, :own_len] if independent_rows else steps[-1]
    state.carry = torch.from_numpy(np.ascontiguousarray(carry)).to(dev)
    state.frames_done += 1
    return torch.from_numpy(np.concatenate(steps, axis=1)).to(dev)


def _static_mask(state: GazeState, slots: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Additive mask (B, 1, q, capacity) for queries at cache entries ``slots`` (static-shape mode),
    written into a buffer kept in ``state.scratch`` (same shape every step): a key is attended if
    it is marked in ``key_mask`` and is not after the query."""
    b, cap = state.key_mask.shape
    q = slots.shape[0]
    key = ("mask", q, cap, dtype)
    buf = state.scratch.get(key)
    if buf is None:
        buf = torch.empty(b, 1, q, cap, dtype=dtype, device=slots.device)
        state.scratch[key] = buf
        state.scratch[("cols", cap)] = torch.arange(cap, device=slots.device)
    cols = state.scratch[("cols", cap)]
    allowed = state.key_mask[:, None, None, :] & (cols[None, None, None, :] <= slots[None, None, :, None])
    buf.zero_().masked_fill_(~allowed, float("-inf"))
    return buf


@torch.no_grad()
def _gaze_frame_torch(
    decoder: GazeDecoder,
    state: GazeState,
    vision: torch.Tensor,
    cap: int,
    requirement: torch.Tensor | None,
    independent_rows: bool,
    static: bool,
) -> torch.Tensor:
    """``gaze_frame`` with the slot choice on the device (``select_step_torch``).

    Host synchronisation: none per step when only a ratio budgets the frame (the step count is
    ``ceil(cap / K)``, known in advance); one small read per step with a task-loss requirement
    (whether every row has finished: the original then ends the frame, and what is fed next
    depends on it); one read per frame to confirm no slot was -inf for every row (impossible with
    finite scores: a slot has 265 candidates and the cap stops first). If one was, the frame is
    rolled back and redone by the numpy loop, so the result is always the original's.

    ``static``: every decoding step writes its keys at ``slots`` (a device tensor) and attends
    over the whole cache with a mask from a preallocated buffer: identical shapes every step.
    """
    cfg = decoder.cfg
    k, eos, vocab = cfg.num_multi_token_pred, cfg.eos_token_id, cfg.vocab_size
    b, dev = vision.shape[0], vision.device
    embed = decoder.model.embed_tokens
    saved = (state.length, state.next_pos, state.carry)
    cache_dtype = state.cache.k.dtype
    state.all_attended = False  # this loop writes padding without looking at it on the host

    x, new_mask, pos, q, start, steps_max = _frame_prefill(state, vision, embed, eos, cap, k)
    if static:
        slots = torch.arange(start, start + q, device=dev)
        h = decoder.forward_chunk(
            x, pos, state.cache, start, _static_mask(state, slots, cache_dtype), last=EXACT_MIN_ROWS, slots=slots
        )
    else:
        mask = None if start == 0 and q == vision.shape[1] else _chunk_mask(state.key_mask, start, q, cache_dtype)
        h = decoder.forward_chunk(x, pos, state.cache, start, mask, last=EXACT_MIN_ROWS)
    state.length = start + q
    step_pos = pos[:, -k:]
    logits, task_loss = decoder.heads(h[:, -1:])

    gen_start = state.length
    req = None if requirement is None else requirement.to(dev, torch.float32)
    banned = torch.zeros(b, vocab, dtype=torch.bool, device=dev)
    banned[:, eos] = True
    unfinished = torch.ones(b, dtype=torch.bool, device=dev)
    ok = torch.ones((), dtype=torch.bool, device=dev)  # no slot was -inf for every row
    early_done = torch.zeros((), dtype=torch.bool, device=dev)  # a row finished before the last step
    own_carry = torch.full((b, k), eos, dtype=torch.long, device=dev)
    steps: list[torch.Tensor] = []
    fed: list[torch.Tensor] = []
    rope = decoder.rope(step_pos, x.dtype)
    step_slots = torch.arange(k, device=dev)
    n, first = 0, True
    while True:
        toks, taken, now_unfinished, stop = select_step_torch(
            logits, task_loss, banned, unfinished, req, n, cap, first, eos
        )
        m = toks.shape[1]
        ok = ok & (taken == m)
        if independent_rows:
            done = unfinished & ~now_unfinished
            own_carry[:, :m] = torch.where(done[:, None], toks, own_carry[:, :m])
        unfinished = now_unfinished
        n += m
        steps.append(toks)
        banned.scatter_(1, toks, True)
        first = False
        if n >= cap or (req is not None and bool(stop)):
            break
        if independent_rows:
            early_done = early_done | ~unfinished.all()
        start = state.length
        if independent_rows:
            toks = torch.where(unfinished[:, None], toks, eos)
            state.key_mask[:, start : start + k] = unfinished[:, None]
        else:
            state.key_mask[:, start : start + k] = True
        fed.append(toks)
        if static:
            slots = step_slots + start
            h = decoder.forward_chunk(
                embed(toks).to(x.dtype), step_pos, state.cache, start, _static_mask(state, slots, cache_dtype),
                rope=rope, last=EXACT_MIN_ROWS, slots=slots,
            )  # fmt: skip
        else:
            h = decoder.forward_chunk(
                embed(toks).to(x.dtype), step_pos, state.cache, start,
                _chunk_mask(state.key_mask, start, k, cache_dtype), rope=rope, last=EXACT_MIN_ROWS,
            )  # fmt: skip
        state.length = start + k
        logits, task_loss = decoder.heads(h[:, -1:])

    flags = torch.stack([ok, early_done]).tolist()  # the frame's one host read
    if not flags[0]:  # a slot was -inf for every row: roll back, let the numpy loop redo the frame
        state.length, state.next_pos, state.carry = saved
        return gaze_frame(decoder, state, vision, cap, requirement, independent_rows)
    if fed:
        real = torch.cat(fed, dim=1) != eos
        state.key_mask[:, gen_start : state.length] = real
        state.next_pos = state.next_pos + real.sum(1)
    if independent_rows:
        # As the numpy loop: the carry is as wide as the widest step at which some row finished.
        own_len = k if flags[1] else steps[-1].shape[1]
        state.carry = own_carry[:, :own_len].contiguous()
    else:
        state.carry = steps[-1]
    state.frames_done += 1
    return torch.cat(steps, dim=1)
