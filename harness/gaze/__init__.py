"""Our AutoGaze: config, model, processor, loader, lean greedy loop, any-resolution tiling."""

from harness.gaze.autogaze import AutoGaze, GazeStream
from harness.gaze.config import AutoGazeConfig, ConfigError
from harness.gaze.loader import CheckpointError, resolve_checkpoint
from harness.gaze.output import GazeOutput
from harness.gaze.processor import AutoGazeImageProcessor
from harness.gaze.tiling import VideoGaze, gaze_video, tile_layout

__all__ = [
    "AutoGaze",
    "AutoGazeConfig",
    "AutoGazeImageProcessor",
    "CheckpointError",
    "ConfigError",
    "GazeOutput",
    "GazeStream",
    "VideoGaze",
    "gaze_video",
    "resolve_checkpoint",
    "tile_layout",
]
