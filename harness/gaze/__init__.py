"""Our AutoGaze: config, model, processor, loader, lean greedy loop, any-resolution tiling."""

from harness.gaze.autogaze import AutoGaze, GazeStream
from harness.gaze.config import AutoGazeConfig, ConfigError
from harness.gaze.loader import CheckpointError, resolve_checkpoint
from harness.gaze.output import GazeOutput

__all__ = [
    "AutoGaze",
    "AutoGazeConfig",
    "CheckpointError",
    "ConfigError",
    "GazeOutput",
    "GazeStream",
    "resolve_checkpoint",
]
