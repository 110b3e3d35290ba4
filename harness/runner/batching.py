"""Generation requests -> outcomes, one call per request or batched through ``adapter.generate_batch``.

Why a module of its own: the evaluation loop (``engine.py``) decides WHEN requests are sent
(ordering, resume, matched budgets); this module decides HOW: one ``generate`` per request, or
one ``generate_batch`` for many, which is what gives a serving backend (vLLM: continuous
batching) its throughput. Either way each request ends as an :class:`Outcome` of its own, so a
failure stays with the one sample that caused it.

Latency under batching: a batched call's wall time cannot be split per request honestly. The
stage times a backend reports per request are kept as reported; when it reports no per-request
``prefill``/``generate`` time at all, each request is given the call's unattributed wall time
divided by the batch size (``Outcome.amortized_seconds``), and every batched outcome carries its
batch size so records and reports can say their latencies were shared.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from harness.models.base import Generation
from harness.models.request import BatchItem
from harness.stages import STAGES


@dataclass
class Outcome:
    """What one request got: a ``generation`` or the ``error`` raised for it.

    ``batch_size``: how many requests shared the call that produced it (1 = generated alone).
    ``amortized_seconds``: set only when the batched backend reported no per-request model time:
    the call's unattributed wall time divided by ``batch_size``.
    """

    generation: Generation | None = None
    error: BaseException | None = None
    batch_size: int = 1
    amortized_seconds: float | None = None


def supports_batching(adapter: Any) -> bool:
    """Duck typing: any adapter with a callable ``generate_batch`` (today: the vLLM backend)."""
    return callable(getattr(adapter, "generate_batch", None))


def generate_one(adapter: Any, item: BatchItem, *, max_new_tokens: int, prune_stage: str) -> Outcome:
    """The single-request path: ``adapter.generate``; an ``Exception`` becomes the outcome's error."""
    # the sample's own video file, only to adapters that ask for it (NVILA's video_input: source)
    extra: dict[str, Any] = {"video_path": item.video} if getattr(adapter, "wants_video_path", False) else {}
    if item.indices is not None:  # frames.fps_convention: source (Qwen3-VL's timestamps)
        extra.update(frame_indices=item.indices, source_frames=item.source_frames)
    try:
        gen = adapter.generate(item.frames, item.selection, item.prompt, fps=item.fps,
                               max_new_tokens=max_new_tokens, prune_stage=prune_stage, **extra)
    except Exception as exc:  # noqa: BLE001 - recorded against this request's sample
        return Outcome(error=exc)
    return Outcome(generation=gen)


def generate_many(adapter: Any, items: Sequence[BatchItem], *, max_new_tokens: int, prune_stage: str,
                  batched: bool) -> list[Outcome]:
    """One outcome per item, in order.

    ``batched`` and more than one item: one ``generate_batch`` call. If that call raises (or
    returns the wrong number of generations) every item is retried alone with ``generate``, so
    one bad sample never costs the others their answers; the batch's error is not recorded
    against anyone because it cannot be attributed. ``KeyboardInterrupt`` always propagates.
    """
    if not batched or len(items) < 2:
        return [generate_one(adapter, it, max_new_tokens=max_new_tokens, prune_stage=prune_stage) for it in items]
    start = time.perf_counter()
    failure: str | None = None
    try:
        gens = list(adapter.generate_batch(list(items), max_new_tokens=max_new_tokens, prune_stage=prune_stage))
        if len(gens) != len(items):
            failure = f"it returned {len(gens)} generations for {len(items)} requests"
    except Exception as exc:  # noqa: BLE001 - retried one by one below
        failure = f"{type(exc).__name__}: {exc}"
    seconds = time.perf_counter() - start
    if failure is not None:
        # Retried outside the except block: a request's own error must not carry the batch's as context.
        warnings.warn(f"generate_batch failed on a batch of {len(items)} ({failure}); retrying each request alone",
                      RuntimeWarning, stacklevel=2)
        return [generate_one(adapter, it, max_new_tokens=max_new_tokens, prune_stage=prune_stage) for it in items]
    return [Outcome(generation=g, batch_size=len(items), amortized_seconds=share)
            for g, share in zip(gens, _amortized(gens, seconds), strict=True)]


def _amortized(gens: Sequence[Generation], seconds: float) -> list[float | None]:
    """Per-request share of the call's wall time, only when the backend timed no request itself.

    Stage times the backend did report (e.g. ``vision`` of vLLM's 1D route) are taken out of the
    wall time first so the same seconds are not counted twice in ``latency.total``.
    """
    reported = [dict(g.timings or {}) for g in gens]
    if any(k in t for t in reported for k in ("prefill", "generate")):
        return [None] * len(gens)
    attributed = sum(float(v) for t in reported for k, v in t.items() if k in STAGES and v is not None)
    share = max(0.0, seconds - attributed) / len(gens)
    return [share] * len(gens)
