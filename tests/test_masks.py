"""harness.runner.masks: a few frames' keep masks in the record, packed, read back exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from harness.pruning.autogaze import selection_from_gaze
from harness.pruning.selection import Selection, TokenGeometry
from harness.runner.masks import decode_masks, mask_record, strip_positions


class _Gaze:
    """A hand-made VideoGaze stand-in: 2 scales over 6 frames."""

    def __init__(self, t=6):
        rng = np.random.default_rng(1)
        self.scales = [32, 112]
        self.scale_masks = [torch.from_numpy(rng.random((t, 2, 2)) < 0.5),
                            torch.from_numpy(rng.random((t, 7, 7)) < 0.2)]
        self.seconds = 0.1
        self.gazed_per_frame = np.array([int(m[i].sum()) for i in range(t) for m in self.scale_masks][:t])
        self.tokens_per_frame = 4 + 49

    def to_grid(self, rows, cols, policy):
        return torch.zeros(len(self.scale_masks[0]), rows, cols, dtype=torch.bool) | True


def test_strip_positions():
    assert strip_positions(16, 8) == [0, 2, 4, 6, 9, 11, 13, 15]
    assert strip_positions(3, 8) == [0, 1, 2] and strip_positions(0) == []


def test_gaze_masks_round_trip_through_json():
    geometry = TokenGeometry(num_frames=6, height=64, width=64, patch_size=8, temporal_patch_size=2)
    gaze = _Gaze()
    sel = selection_from_gaze(gaze, geometry, "expand")
    entry = mask_record(sel, np.arange(100, 106), count=4)
    entry = json.loads(json.dumps(entry))  # what a record line holds
    assert entry["kind"] == "gaze" and entry["scales"] == [32, 112] and entry["grids"] == [[2, 2], [7, 7]]
    assert entry["positions"] == [0, 2, 3, 5] and entry["frames"] == [100, 102, 103, 105]
    for got, want in zip(decode_masks(entry), gaze.scale_masks):
        np.testing.assert_array_equal(got, want.numpy()[[0, 2, 3, 5]])


def test_token_masks_show_each_frame_its_group():
    geometry = TokenGeometry(num_frames=4, height=32, width=32, patch_size=8, temporal_patch_size=2)
    keep = torch.zeros(2, 4, 4, dtype=torch.bool)
    keep[0, 0, 0] = keep[1, 3, 3] = True
    entry = mask_record(Selection(geometry, keep), np.arange(4))
    (masks,) = decode_masks(entry)
    assert entry["kind"] == "tokens" and entry["scales"] is None and entry["positions"] == [0, 1, 2, 3]
    np.testing.assert_array_equal(masks, keep.numpy()[[0, 0, 1, 1]])
    assert mask_record(Selection.keep_all(geometry), np.arange(4)) is None  # nothing to draw


def test_masks_shrink_to_fit_the_size_cap_and_never_raise():
    geometry = TokenGeometry(num_frames=16, height=256, width=256, patch_size=8)
    keep = torch.rand(16, 32, 32) < 0.5
    sel = Selection(geometry, keep)
    full = mask_record(sel, np.arange(16))
    assert len(full["positions"]) == 8
    small = mask_record(sel, np.arange(16), max_bytes=300)  # 8 x 128 B does not fit, 2 x 128 B does
    assert len(small["positions"]) == 2
    assert mask_record(sel, np.arange(16), max_bytes=10) is None
    broken = type("Broken", (), {"info": {}, "geometry": geometry, "num_kept": 1, "keep": None})()
    with pytest.warns(UserWarning, match="masks not recorded: AttributeError"):
        assert mask_record(broken, np.arange(16)) is None  # warned, never raised into the sample
