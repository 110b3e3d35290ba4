"""``BatchItem``: one generation request, the arguments of ``adapter.generate`` as one value.

Why here, beside the adapter contract: the runner builds requests and hands them to whatever
serves the contract (an adapter one at a time, a batching backend such as vLLM, a model runtime's
worker). The type belongs to the contract, so the runner does not import a backend to name it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.pruning.selection import Selection


@dataclass
class BatchItem:
    """One sample for ``generate`` / ``generate_batch`` (the arguments of ``generate``)."""

    frames: np.ndarray
    selection: Selection | None
    prompt: str
    fps: float
    video: str | None = None  # the sample's own file, for adapters with ``wants_video_path`` (NVILA source)
    # with frames.fps_convention "source": the frames' source indices and the source's frame count,
    # for the processor's video metadata (Qwen3-VL timestamps); None = frames 0..T-1 at ``fps``
    indices: np.ndarray | None = None
    source_frames: int | None = None
