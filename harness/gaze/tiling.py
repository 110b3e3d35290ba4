"""Any length, any resolution: gaze a whole video in 16-frame clips and 224-px tiles, in batches.

Policy (why each choice):

* **Resize, not pad.** Each frame is resized (the processor's resample, bilinear for the
  published model) to ``rows x cols`` tiles of ``tile_size`` px, where ``rows = round(H / tile)``
  and ``cols = round(W / tile)`` (at least 1 each; ``max_tiles`` shrinks both, keeping the aspect,
  when a frame would need more). Every gaze cell then covers real picture, and the cell grids
  span exactly the source frame area, which makes mapping onto any model's token grid a pure
  geometry question (``VideoGaze.to_grid``). Padding (the original's ``input_res_adapt``) would
  waste gazes on black borders.
* **Clips.** Frames are grouped into ``clip_len`` clips in order; the last clip is padded by
  repeating its last frame and the padded frames' results are dropped. Each (clip, tile) is one
  batch row, gazed independently (the model's causal temporal conv and decoder see only that
  tile's clip), ``batch_size`` rows per call. With ``independent_rows`` (default) each row gazes
  exactly as the original run on it alone, so batch composition never changes any gaze.
* **Bounded memory.** With an iterable of ``FrameChunk`` the video is consumed as it streams:
  at most one partial clip of frames plus ``batch_size`` preprocessed rows are held at a time.
  Only the small boolean gaze masks grow with the video.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from harness.gaze.autogaze import AutoGaze
from harness.gaze.processor import AutoGazeImageProcessor


@dataclass
class VideoGaze:
    """Frame-level gazes of a whole video; masks cover the whole source frame area at every scale."""

    frame_indices: np.ndarray  # (T,) source frame indices (arange if an array was given)
    height: int  # source frame size the masks refer to
    width: int
    scales: list[int]  # gaze scales, coarse -> fine
    scale_masks: list[torch.Tensor]  # per scale, bool (T, rows_s, cols_s) covering the whole frame area
    gazed_per_frame: np.ndarray  # (T,) real (non-padded) gazes per frame
    tokens_per_frame: int  # gaze tokens per frame if everything were gazed (all tiles, all scales)
    seconds: float  # gaze wall time (preprocessing + model), excluding waiting for decoded frames

    @property
    def num_frames(self) -> int:
        return int(self.frame_indices.shape[0])

    def to_grid(self, rows: int, cols: int, policy: str = "expand") -> torch.Tensor:
        """Gazes on a uniform ``rows x cols`` grid over the same frame area -> bool (T, rows, cols).

        A target cell is kept if its centre lies inside a gazed cell of a counted scale, OR the
        centre of a gazed cell of a counted scale lies inside it (so a fine gaze is never lost
        on a coarse grid, and a coarse gaze covers the fine cells under it). ``expand`` counts
        every scale: a coarse gaze keeps every target token it covers. ``drop`` counts only the
        finest scale (coarse gazes add nothing), for models that should see only fine detail.
        Centres are compared in exact integer arithmetic; a centre on a boundary belongs to the
        cell starting there.
        """
        if rows < 1 or cols < 1:
            raise ValueError(f"to_grid: rows and cols must be >= 1, got {rows}x{cols}")
        if policy not in ("expand", "drop"):
            raise ValueError(f"to_grid: policy must be 'expand' or 'drop', got {policy!r}")
        counted = self.scale_masks if policy == "expand" else self.scale_masks[-1:]
        out = torch.zeros(self.num_frames, rows, cols, dtype=torch.bool)
        for mask in counted:
            out |= _project(mask, rows, cols)
        return out

    def patch_indices(
        self, patch_size: int, height: int | None = None, width: int | None = None, policy: str = "expand"
    ) -> list[np.ndarray]:
        """Per frame, flat raster indices of the kept patches of a ``patch_size`` grid.

        The grid is that of a model seeing the frame at ``height x width`` px (default: the
        source size), i.e. ``height // patch_size`` rows by ``width // patch_size`` columns.
        """
        h = self.height if height is None else height
        w = self.width if width is None else width
        rows, cols = h // patch_size, w // patch_size
        if rows < 1 or cols < 1:
            raise ValueError(f"patch_indices: {h}x{w} px holds no {patch_size}-px patch")
        grid = self.to_grid(rows, cols, policy).flatten(1)
        return [np.flatnonzero(g.numpy()) for g in grid]


def _project(mask: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """One scale's bool (T, R, C) cells onto a (rows, cols) grid by the centre rule of ``to_grid``."""
    t, r, c = mask.shape
    # (a) target centre inside a gazed cell: source cell index of each target centre.
    src_r = ((2 * torch.arange(rows) + 1) * r) // (2 * rows)
    src_c = ((2 * torch.arange(cols) + 1) * c) // (2 * cols)
    out = mask[:, src_r][:, :, src_c].clone()
    # (b) gazed cell's centre inside a target cell.
    dst_r = ((2 * torch.arange(r) + 1) * rows) // (2 * r)
    dst_c = ((2 * torch.arange(c) + 1) * cols) // (2 * c)
    f, i, j = mask.nonzero(as_tuple=True)
    out[f, dst_r[i], dst_c[j]] = True
    return out


def tile_layout(height: int, width: int, tile_size: int, max_tiles: int | None = None) -> tuple[int, int]:
    """Tiles (rows, cols) for a source frame: nearest multiple of ``tile_size`` per side, >= 1."""
    rows = max(1, round(height / tile_size))
    cols = max(1, round(width / tile_size))
    if max_tiles is not None and rows * cols > max_tiles:
        scale = (max_tiles / (rows * cols)) ** 0.5
        rows, cols = max(1, int(rows * scale)), max(1, int(cols * scale))
        while rows * cols > max_tiles:
            rows, cols = (rows - 1, cols) if rows >= cols and rows > 1 else (rows, max(1, cols - 1))
    return rows, cols


def gaze_video(
    model: AutoGaze,
    frames,
    *,
    gazing_ratio: float | None = None,
    task_loss_requirement: float | None = None,
    tile_size: int = 224,
    clip_len: int = 16,
    batch_size: int = 8,
    processor: AutoGazeImageProcessor | None = None,
    max_tiles: int | None = None,
    independent_rows: bool = True,
    deterministic: bool = False,
) -> VideoGaze:
    """Gaze a whole video (uint8 (T, H, W, 3) array, or an iterable of ``FrameChunk``) -> ``VideoGaze``.

    See the module docstring for the resize / clip / batch policy. ``independent_rows`` (default
    True) makes every clip-tile gaze exactly as the original does when run on it alone, so results
    never depend on ``batch_size`` or on which clips/tiles share a batch (see ``AutoGaze.gaze``);
    False reproduces the original's batched run instead (differs only under a task-loss requirement).
    ``deterministic``: also make the arithmetic batch-invariant (``AutoGaze.gaze``): multi-thread
    CPU BLAS or GPU kernels chosen by batch shape can otherwise flip a near-tie argmax.
    """
    if clip_len < 1 or batch_size < 1 or tile_size < 1:
        raise ValueError(
            f"gaze_video: clip_len, batch_size, tile_size must be >= 1 (got {clip_len}, {batch_size}, {tile_size})"
        )
    if processor is None:
        processor = _default_processor(model)
    chunks = _chunks(frames)
    run = _Run(
        model, processor, gazing_ratio, task_loss_requirement, tile_size, clip_len, batch_size, max_tiles,
        independent_rows, deterministic,
    )  # fmt: skip
    pending: list[np.ndarray] = []
    pending_idx: list[np.ndarray] = []
    buffered = 0
    for chunk_frames, chunk_idx in chunks:
        t0 = time.perf_counter()
        run.start(chunk_frames)
        pending.append(chunk_frames)
        pending_idx.append(chunk_idx)
        buffered += len(chunk_frames)
        while buffered >= clip_len:
            all_frames, all_idx = np.concatenate(pending), np.concatenate(pending_idx)
            run.add_clip(all_frames[:clip_len], all_idx[:clip_len])
            pending, pending_idx = [all_frames[clip_len:]], [all_idx[clip_len:]]
            buffered -= clip_len
        run.seconds += time.perf_counter() - t0
    t0 = time.perf_counter()
    if buffered:
        all_frames, all_idx = np.concatenate(pending), np.concatenate(pending_idx)
        run.add_clip(all_frames, all_idx)
    run.flush()
    run.seconds += time.perf_counter() - t0
    return run.result()


def _default_processor(model: AutoGaze) -> AutoGazeImageProcessor:
    """The checkpoint's processor (``from_pretrained`` refuses a checkpoint without one); the
    published values only for a model built in code from a config, which has no checkpoint."""
    processor = getattr(model, "processor", None)
    if processor is not None:
        return processor
    if getattr(model, "checkpoint_dir", None) is not None:
        raise ValueError(f"{model.checkpoint_dir}: AutoGaze model has no preprocessor config")
    # The published preprocessor_config.json values.
    return AutoGazeImageProcessor(
        size={"shortest_edge": 224},
        resample=2,
        rescale_factor=1 / 127.5,
        offset=True,
        image_mean=(0.485, 0.456, 0.406),
        image_std=(0.229, 0.224, 0.225),
    )


def _chunks(frames) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (uint8 frames (t, H, W, 3), source indices (t,)) from an array or FrameChunks."""
    if isinstance(frames, np.ndarray):
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(
                f"gaze_video: frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}"
            )
        if len(frames) == 0:
            raise ValueError("gaze_video: no frames")
        yield frames, np.arange(len(frames), dtype=np.int64)
        return
    if not isinstance(frames, Iterable):
        raise ValueError(
            f"gaze_video: frames must be a uint8 array or an iterable of FrameChunk, got {type(frames).__name__}"
        )
    for i, chunk in enumerate(frames):
        arr = getattr(chunk, "frames", None)
        idx = getattr(chunk, "indices", None)
        if not isinstance(arr, np.ndarray) or arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
            raise ValueError(f"gaze_video: chunk {i} is not a FrameChunk with uint8 (t, H, W, 3) frames")
        if len(arr):
            yield arr, np.asarray(idx, dtype=np.int64)


class _Run:
    """Accumulates clip-tile rows, gazes them ``batch_size`` at a time, writes frame-level masks."""

    def __init__(
        self, model, processor, ratio, requirement, tile, clip_len, batch, max_tiles, independent_rows,
        deterministic=False,
    ):
        self.model, self.processor = model, processor
        self.independent_rows = independent_rows
        self.deterministic = deterministic
        self.ratio, self.requirement = ratio, requirement
        self.tile, self.clip_len, self.batch, self.max_tiles = tile, clip_len, batch, max_tiles
        cfg = model.config
        self.grid = cfg.grid_per_scale
        self.per_scale = cfg.tokens_per_scale
        self.eos = cfg.decoder.eos_token_id
        self.size: tuple[int, int] | None = None
        self.rows: list[
            tuple[torch.Tensor, int, int, int]
        ] = []  # (clip video, frame start, tile index, real frames)
        self.masks: list[list[torch.Tensor]] = []  # per clip-row of frames: per scale bool (t, R, C)
        self.counts: list[np.ndarray] = []
        self.indices: list[np.ndarray] = []
        self.frames_seen = 0
        self.seconds = 0.0

    def start(self, frames: np.ndarray) -> None:
        h, w = frames.shape[1:3]
        if self.size is None:
            self.size = (h, w)
            self.layout = tile_layout(h, w, self.tile, self.max_tiles)
        elif (h, w) != self.size:
            raise ValueError(f"gaze_video: frame size changed from {self.size} to {(h, w)} mid-video")

    def add_clip(self, frames: np.ndarray, indices: np.ndarray) -> None:
        real = len(frames)
        if real < self.clip_len:  # pad the last clip by repeating its last frame
            frames = np.concatenate([frames, np.repeat(frames[-1:], self.clip_len - real, axis=0)])
        nr, nc = self.layout
        # Resize in uint8 and cut tiles there; each tile is normalized to float only when its
        # batch is gazed (per-pixel ops, same numbers), so a big frame costs 1/4 of the memory.
        pixels = self.processor.resize(frames, size={"height": nr * self.tile, "width": nc * self.tile})
        t = pixels.shape[0]
        tiles = pixels.reshape(t, nr, self.tile, nc, self.tile, 3).transpose(1, 3, 0, 2, 4, 5)
        self.frames_seen += real
        self.indices.append(indices[:real])
        self.masks.append([torch.zeros(real, nr * g, nc * g, dtype=torch.bool) for g in self.grid])
        self.counts.append(np.zeros(real, dtype=np.int64))
        for r in range(nr):
            for c in range(nc):
                self.rows.append((tiles[r, c], len(self.masks) - 1, r * nc + c, real))
                if len(self.rows) >= self.batch:
                    self.flush()

    def flush(self) -> None:
        if not self.rows:
            return
        video = torch.stack([self.processor.normalize(row[0]) for row in self.rows])
        out = self.model.gaze(
            video,
            gazing_ratio=self.ratio,
            task_loss_requirement=self.requirement,
            independent_rows=self.independent_rows,
            deterministic=self.deterministic,
        )
        counts = out.gazed_per_frame().cpu().numpy()
        nc = self.layout[1]
        for b, (_, clip, tile_idx, real) in enumerate(self.rows):
            r, c = divmod(tile_idx, nc)
            for s, g in enumerate(self.grid):
                cells = out.gazing_mask[s][b, :real].view(real, g, g).to(torch.bool).cpu()
                self.masks[clip][s][:, r * g : (r + 1) * g, c * g : (c + 1) * g] = cells
            self.counts[clip] += counts[b, :real]
        self.rows = []

    def result(self) -> VideoGaze:
        if self.size is None:
            raise ValueError("gaze_video: no frames")
        nr, nc = self.layout
        return VideoGaze(
            frame_indices=np.concatenate(self.indices),
            height=self.size[0],
            width=self.size[1],
            scales=list(self.model.config.scales),
            scale_masks=[torch.cat([m[s] for m in self.masks]) for s in range(len(self.grid))],
            gazed_per_frame=np.concatenate(self.counts),
            tokens_per_frame=nr * nc * self.model.config.num_vision_tokens_each_frame,
            seconds=self.seconds,
        )
