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

from dataclasses import dataclass, field

import numpy as np
import torch

from harness.gaze.model import EXACT_MIN_ROWS, GazeDecoder, KVCache


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


def capacity_for(frames: int, vision_tokens: int, cap: int, k: int) -> int:
    """Cache entries needed for ``frames`` frames whose gazes are capped at ``cap`` per frame."""
    steps = -(-cap // k)
    return frames * (vision_tokens + steps * k)


@torch.no_grad()
def gaze_frame(
    decoder: GazeDecoder,
    state: GazeState,
    vision: torch.Tensor,
    cap: int,
    requirement: torch.Tensor | None,
    independent_rows: bool = False,
) -> torch.Tensor:
    """Gaze one frame for every row. vision: (B, N, C) connector tokens. Returns ids (B, n) with EOS padding.

    ``independent_rows=False`` is the original's batched behaviour: a row that meets the task-loss
    requirement before its batch-mates has its last step fed inside the frame (at the frame's
    step positions) like everyone else's, which can change its later frames. With ``True`` each
    row behaves exactly as if gazed alone (the original at batch 1): once a row finishes, its
    last step is kept back as its own carry for the next frame, and what the batch feeds for it
    meanwhile is invisible padding (masked, position-neutral). Identical when no row stops early.
    """
    cfg = decoder.cfg
    k, eos, vocab = cfg.num_multi_token_pred, cfg.eos_token_id, cfg.vocab_size
    b, dev = vision.shape[0], vision.device
    embed = decoder.model.embed_tokens

    # Prefill: previous frame's last-step gazes (carry) + this frame's vision tokens.
    carry = state.carry
    new_mask = torch.ones(b, carry.shape[1] + vision.shape[1], dtype=torch.bool, device=dev)
    if carry.shape[1]:
        x = torch.cat([embed(carry), vision], dim=1)
        new_mask[:, : carry.shape[1]] = carry != eos
    else:
        x = vision
    q, start = x.shape[1], state.length
    pos = state.next_pos[:, None] + new_mask.long().cumsum(1) - 1
    state.next_pos = state.next_pos + new_mask.sum(1)
    steps_max = -(-cap // k)
    state.ensure(start + q + steps_max * k)
    state.key_mask[:, start : start + q] = new_mask
    mask = None if start == 0 and bool(new_mask.all()) else _chunk_mask(state.key_mask, start, q, x.dtype)
    h = decoder.forward_chunk(x, pos, state.cache, start, mask, last=EXACT_MIN_ROWS)
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
        else:
            state.key_mask[:, start : start + k] = True
        fed.append(toks)
        h = decoder.forward_chunk(
            embed(torch.from_numpy(toks).to(dev)), step_pos, state.cache, start,
            _chunk_mask(state.key_mask, start, k, vision.dtype), rope=rope, last=EXACT_MIN_ROWS,
        )  # fmt: skip
        state.length = start + k
        logits, task_loss = decoder.heads(h[:, -1:])

    # Frame over: its fed padding is masked from now on and does not advance positions.
    if fed:
        real = torch.from_numpy(np.concatenate(fed, axis=1) != eos).to(dev)
        state.key_mask[:, gen_start : state.length] = real
        state.next_pos = state.next_pos + real.sum(1)
    carry = own_carry[:, :own_len] if independent_rows else steps[-1]
    state.carry = torch.from_numpy(np.ascontiguousarray(carry)).to(dev)
    state.frames_done += 1
    return torch.from_numpy(np.concatenate(steps, axis=1)).to(dev)


def select_step(
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
    """Choose one step's tokens for every row, as the original's ``_sample`` does.

    logits (B, K, V) and task_loss (B, K) float32; ``banned`` (B, V) ids already gazed this frame
    (plus EOS); ``unfinished`` (B,) is updated in place. Returns (tokens (B, m), frame over?).
    Pure comparisons and argmaxes (first maximum, like torch), so numpy gives torch's exact choices
    at a fraction of the per-op overhead.
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
    toks = np.stack(chosen, axis=1)
    toks = np.where(unfinished[:, None], toks, eos)
    if requirement is not None:
        meet = task_loss[:, : toks.shape[1]] <= requirement[:, None]
        if first:
            meet[:, 0] = False
        toks = np.where(meet, eos, toks)
        unfinished &= ~meet.any(1)
    if n + toks.shape[1] >= cap:
        toks = toks[:, : cap - n]
        early = True
    if early:
        unfinished[:] = False
    return toks.astype(np.int64), not unfinished.any()
