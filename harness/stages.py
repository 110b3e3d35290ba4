"""Latency stage names, defined once: adapters' ``Generation.timings``, records' ``latency`` and
the report's ``lat_*`` columns all use these.

Why a module of its own at the bottom of the package: the adapters (``harness.models``), the
runner's record schema and the report each need the names, and none of them may import another
just for a tuple. Keep them stable: reports compare runs recorded by different versions.

``prune`` is a baseline pruner's selection time (random, uniform_frames, ...); ``gaze`` is reserved
for pruners that run a gaze model (AutoGaze) and for adapters that gaze inside their own processor
(NVILA-HD-Video), so a ``gaze`` latency means a gaze model ran.
"""

from __future__ import annotations

STAGES: tuple[str, ...] = ("decode", "gaze", "prune", "vision", "prefill", "generate")
#: A selection made from a cached gaze: counted in ``total`` but kept apart from ``gaze``.
CACHED_GAZE = "gaze_cached"
#: The sum of the stages a record has (``decode`` present: the sample was decoded).
TOTAL = "total"
#: Every key a record's ``latency`` may hold.
LATENCY_KEYS: tuple[str, ...] = (*STAGES, CACHED_GAZE, TOTAL)
