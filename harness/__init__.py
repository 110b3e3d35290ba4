"""Evaluation harness for visual-token pruning (AutoGaze and baselines) in video MLLMs.

Data flows one way, each arrow a small typed value (see docs/architecture.md):
video file -> ``harness.video`` (FrameChunk) -> ``harness.pruning`` (Selection)
-> ``harness.models`` (Generation) -> ``harness.runner`` (JSONL record) -> ``harness.report``.
"""

__version__ = "0.1.0"
