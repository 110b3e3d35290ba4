"""Measurement helpers every adapter shares: stage timing (CUDA-synchronised) and peak memory.

Why here and not in each adapter: the numbers in every table must mean the same thing for
every model family, so they are taken one way.
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch


def _sync(device: torch.device | str | None) -> None:
    if device is not None and torch.device(device).type == "cuda" and torch.cuda.is_available():
        torch.cuda.synchronize(device)


class StageTimer:
    """Accumulates wall-clock seconds (and calls) per stage name; synchronises CUDA around each stage.

    ``stage(name)`` is a context; ``start(name)``/``stop(name)`` pair up (a stack per name, so
    nested calls are safe) for forward hooks, where a context cannot span the pre- and post-hook
    of a model call we do not control (NVILA's vision tower, its processor's AutoGaze).
    """

    def __init__(self, device: torch.device | str | None = None):
        self.device = device
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._starts: dict[str, list[float]] = {}

    def start(self, name: str) -> None:
        _sync(self.device)
        self._starts.setdefault(name, []).append(time.perf_counter())

    def stop(self, name: str) -> None:
        _sync(self.device)
        elapsed = time.perf_counter() - self._starts[name].pop()
        self.seconds[name] = self.seconds.get(name, 0.0) + elapsed
        self.calls[name] = self.calls.get(name, 0) + 1

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self.start(name)
        try:
            yield
        finally:
            self.stop(name)

    def reset(self) -> None:
        self.seconds, self.calls, self._starts = {}, {}, {}


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (MiB).

    Read from /proc VmHWM on Linux: ``ru_maxrss`` is inherited across fork, so a child process
    would report its parent's peak. Falls back to ``ru_maxrss`` elsewhere (KiB on Linux, bytes on macOS).
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def reset_peak_memory(device: torch.device | str | None) -> bool:
    """Start a new peak: CUDA's allocator peak, or on CPU the process's RSS high-water mark.

    Why the CPU reset: without it every record reported the process's lifetime peak (the same
    number for every run of a config). Linux resets VmHWM when "5" is written to
    /proc/self/clear_refs (since 4.0). Returns False where no reset is possible: the figure is then
    the process-wide peak, and records say so (``peak_memory_scope``).
    """
    if device is not None and torch.device(device).type == "cuda" and torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats(device)
        return True
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        return True
    except OSError:
        return False


def peak_memory_mb(device: torch.device | str | None) -> float:
    """Peak accelerator memory since the last reset on CUDA; peak RSS since the last reset on CPU."""
    if device is not None and torch.device(device).type == "cuda" and torch.cuda.is_available():
        return torch.cuda.max_memory_allocated(device) / (1024 * 1024)
    return peak_rss_mb()
