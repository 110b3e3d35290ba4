"""gaze_video (clips x tiles in batches, streamed or whole) and VideoGaze.to_grid geometry."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.gaze import AutoGaze, AutoGazeImageProcessor, VideoGaze, gaze_video, tile_layout
from harness.video.types import FrameChunk

# One torch thread per module (fixture in conftest.py): the greedy loop's small ops spin-wait otherwise.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _synthetic(masks: list[torch.Tensor]) -> VideoGaze:
    t = masks[0].shape[0]
    return VideoGaze(
        frame_indices=np.arange(t), height=64, width=64, scales=[1, 2][: len(masks)], scale_masks=masks,
        gazed_per_frame=np.array([int(sum(m[i].sum() for m in masks)) for i in range(t)]),
        tokens_per_frame=sum(m[0].numel() for m in masks), seconds=0.0,
    )  # fmt: skip


def test_to_grid_expand_and_drop_on_known_cells():
    coarse = torch.zeros(1, 2, 2, dtype=torch.bool)
    coarse[0, 0, 0] = True  # top-left quarter
    fine = torch.zeros(1, 4, 4, dtype=torch.bool)
    fine[0, 3, 3] = True  # bottom-right sixteenth
    vg = _synthetic([coarse, fine])

    expand = vg.to_grid(4, 4, "expand")[0]
    expected = torch.zeros(4, 4, dtype=torch.bool)
    expected[:2, :2] = True
    expected[3, 3] = True
    assert torch.equal(expand, expected)
    drop = vg.to_grid(4, 4, "drop")[0]
    assert drop.sum() == 1 and drop[3, 3]

    # Finer target grid: the fine gaze covers a 2x2 block, the coarse one a 4x4 block.
    fine8 = vg.to_grid(8, 8, "expand")[0]
    assert fine8[:4, :4].all() and fine8[6:, 6:].all() and fine8.sum() == 16 + 4
    # Coarser target grid: a fine gaze's centre still keeps the target cell it falls in.
    assert torch.equal(vg.to_grid(2, 2, "drop")[0], torch.tensor([[False, False], [False, True]]))
    assert torch.equal(vg.to_grid(1, 1, "drop")[0], torch.tensor([[True]]))


def test_to_grid_non_aligned_grids():
    fine = torch.zeros(1, 3, 3, dtype=torch.bool)
    fine[0, 1, 1] = True  # the centre third of the frame
    vg = _synthetic([fine])
    # On a 2x2 grid no target centre (1/4, 3/4) lies in the middle third, but the gazed
    # cell's centre (1/2, 1/2) lies on the corner shared by all four: it belongs to (1, 1).
    assert torch.equal(vg.to_grid(2, 2)[0], torch.tensor([[False, False], [False, True]]))
    # On a 6x6 grid the middle third is exactly rows/cols 2-3.
    grid = vg.to_grid(6, 6)[0]
    assert grid[2:4, 2:4].all() and grid.sum() == 4
    with pytest.raises(ValueError, match="policy"):
        vg.to_grid(2, 2, "nearest")


def test_patch_indices_are_raster_indices_of_to_grid():
    fine = torch.zeros(2, 2, 2, dtype=torch.bool)
    fine[0, 0, 1] = True
    fine[1, 1, 0] = True
    vg = _synthetic([fine])
    idx = vg.patch_indices(16)  # 64 px / 16 = 4x4 grid
    assert idx[0].tolist() == [2, 3, 6, 7] and idx[1].tolist() == [8, 9, 12, 13]


def test_tile_layout_policy():
    assert tile_layout(180, 320, 224) == (1, 1)
    assert tile_layout(448, 900, 224) == (2, 4)
    assert tile_layout(50, 50, 224) == (1, 1)
    rows, cols = tile_layout(2160, 3840, 224, max_tiles=12)
    assert rows * cols <= 12 and cols > rows


@pytest.fixture(scope="module")
def model(parity_dir):
    return AutoGaze.from_pretrained(parity_dir / "model")


@pytest.fixture(scope="module")
def frames():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, size=(1, 112, 224, 3), dtype=np.uint8)
    drift = np.stack([np.roll(base[0], 9 * i, axis=1) for i in range(6)])
    return drift  # 6 frames, 112x224 px -> 1x1 tile of 224 (resized), clip_len 4 -> 2 clips


@pytest.fixture(scope="module")
def whole(model, frames):
    return gaze_video(model, frames, gazing_ratio=0.05, clip_len=4, batch_size=4)


def test_gaze_video_shapes_and_counts(whole, frames):
    assert whole.frame_indices.tolist() == list(range(6))
    assert (whole.height, whole.width) == (112, 224)
    assert [tuple(m.shape) for m in whole.scale_masks] == [(6, 2, 2), (6, 4, 4), (6, 7, 7), (6, 14, 14)]
    assert all(m.dtype == torch.bool for m in whole.scale_masks)
    cap = int(0.05 * 265)
    assert whole.gazed_per_frame.tolist() == [cap] * 6
    assert [int(sum(m[t].sum() for m in whole.scale_masks)) for t in range(6)] == [cap] * 6
    assert whole.tokens_per_frame == 265 and whole.seconds > 0


def test_streamed_chunks_equal_array(model, frames, whole):
    chunks = [FrameChunk(frames[i : i + 4], np.arange(i, min(i + 4, 6)) + 50, np.zeros(len(frames[i : i + 4])))
              for i in (0, 4)]  # fmt: skip
    # Different chunking and batch size: real gazes do not change (ratio-only budget).
    streamed = gaze_video(model, iter(chunks), gazing_ratio=0.05, clip_len=4, batch_size=1)
    assert streamed.frame_indices.tolist() == list(range(50, 56))
    for a, b in zip(streamed.scale_masks, whole.scale_masks):
        assert torch.equal(a, b)
    assert streamed.gazed_per_frame.tolist() == whole.gazed_per_frame.tolist()


def test_tiles_map_back_to_their_frame_area(model, frames, parity_dir):
    """Two tiles side by side: each half of the frame-level masks is that tile's own gaze."""
    wide = np.concatenate([frames[:4], frames[:4, :, ::-1]], axis=2)  # 112x448 -> 1x2 tiles
    vg = gaze_video(model, wide, gazing_ratio=0.05, clip_len=4, batch_size=8)
    proc = AutoGazeImageProcessor.from_pretrained(parity_dir / "model")
    pixels = proc.preprocess(wide, size={"height": 224, "width": 448})
    tiles = torch.stack([pixels[..., :224], pixels[..., 224:]])
    out = model.gaze(tiles, gazing_ratio=0.05)
    for s, g in enumerate([2, 4, 7, 14]):
        for tile in range(2):
            own = out.gazing_mask[s][tile].view(4, g, g).bool()
            assert torch.equal(vg.scale_masks[s][:, :, tile * g : (tile + 1) * g], own)
    assert vg.tokens_per_frame == 2 * 265


def test_last_clip_padding_does_not_leak(model, frames, whole):
    """The last (padded) clip's real frames equal gazing that clip on its own, padded the same way."""
    first = gaze_video(model, frames[:4], gazing_ratio=0.05, clip_len=4)
    for a, b in zip(first.scale_masks, whole.scale_masks):
        assert torch.equal(a, b[:4])
    tail = gaze_video(model, frames[4:], gazing_ratio=0.05, clip_len=4)
    for a, b in zip(tail.scale_masks, whole.scale_masks):
        assert torch.equal(a, b[4:])


def test_gaze_video_rejects_bad_frames(model):
    with pytest.raises(ValueError, match=r"uint8 \(T, H, W, 3\)"):
        gaze_video(model, np.zeros((2, 8, 8, 3), dtype=np.float32), gazing_ratio=0.1)
    with pytest.raises(ValueError, match="chunk 0"):
        gaze_video(model, [np.zeros((2, 8, 8, 3), dtype=np.uint8)], gazing_ratio=0.1)
    with pytest.raises(ValueError, match="no frames"):
        gaze_video(model, iter([]), gazing_ratio=0.1)


def test_requirement_results_do_not_depend_on_batching(model, frames):
    """Under a task-loss requirement tiles stop at different steps; with independent rows (the
    default) the result is the same whatever the batch size or the mix of clips and tiles."""
    wide = np.concatenate([frames, frames[:, :, ::-1]], axis=2)  # 2 tiles x 2 clips = 4 rows
    kwargs = {"gazing_ratio": 0.15, "task_loss_requirement": -3.0, "clip_len": 4}
    one = gaze_video(model, wide, batch_size=1, **kwargs)
    four = gaze_video(model, wide, batch_size=4, **kwargs)
    assert len(set(one.gazed_per_frame.tolist())) > 1, "rows should stop at different points"
    assert one.gazed_per_frame.tolist() == four.gazed_per_frame.tolist()
    for a, b in zip(one.scale_masks, four.scale_masks):
        assert torch.equal(a, b)
