"""harness.video.overlay: outlines (not fills) per mask, dimmed un-kept area, text bands and legend."""

from __future__ import annotations

import numpy as np

from harness.cli.gaze import draw_frame
from harness.video.overlay import COLOURS, annotate, outline_mask, outline_overlay, scale_legend


def _frame(h=64, w=96):
    rng = np.random.default_rng(0)
    return rng.integers(60, 200, size=(h, w, 3), dtype=np.uint8)


def test_outline_keeps_the_picture_inside_a_kept_cell():
    frame = _frame()
    mask = np.zeros((4, 6), dtype=bool)  # 16x16 px cells
    mask[1, 2] = True
    out = outline_overlay(frame, [mask], thickness=2)
    cell = (slice(16, 32), slice(32, 48))
    inner = (slice(18, 30), slice(34, 46))
    np.testing.assert_array_equal(out[inner], frame[inner])  # not tinted: the picture itself
    border = outline_mask(64, 96, mask, thickness=2)
    assert border[cell].sum() == 16 * 16 - 12 * 12 and border.sum() == border[cell].sum()
    assert (out[border] == COLOURS[0]).all()
    outside = np.ones((64, 96), dtype=bool)
    outside[cell] = False
    assert (out[outside].astype(int) < frame[outside].astype(int)).all()  # dimmed


def test_finer_scale_outlines_drawn_last():
    frame = _frame()
    coarse, fine = np.ones((1, 1), dtype=bool), np.zeros((4, 6), dtype=bool)
    fine[0, 0] = True  # its top/left border coincides with the coarse one's
    out = outline_overlay(frame, [coarse, fine], thickness=1)
    assert tuple(out[0, 0]) == COLOURS[1] and tuple(out[0, 50]) == COLOURS[0]


def test_annotate_draws_bands_with_text_and_legend():
    frame = np.full((120, 200, 3), 128, dtype=np.uint8)
    out = annotate(frame, top="frame 7", legend=scale_legend([32, 64]))
    assert out.shape == frame.shape
    assert (out[:12] > 200).all(-1).any()  # white text in the top band
    np.testing.assert_array_equal(out[40:80], frame[40:80])  # the middle is untouched
    bottom = out[-12:].reshape(-1, 3)
    assert any((bottom == c).all(-1).any() for c in [COLOURS[0], COLOURS[1]])  # legend swatches
    assert scale_legend(None)[0][0] == "kept tokens"


def test_draw_frame_writes_index_and_count_and_side_by_side():
    frame = _frame(96, 128)
    masks = [np.eye(2, dtype=bool), np.zeros((6, 8), dtype=bool)]
    a = draw_frame(frame, masks, [32, 224], index=3, kept=2, per_frame=52)
    b = draw_frame(frame, masks, [32, 224], index=4, kept=2, per_frame=52)
    assert a.shape == frame.shape and not np.array_equal(a[:14], b[:14])  # the index is on the frame
    np.testing.assert_array_equal(a[20:70], b[20:70])
    both = draw_frame(frame, masks, [32, 224], index=3, kept=2, per_frame=52, side_by_side=True)
    assert both.shape == (96, 256, 3)
    np.testing.assert_array_equal(both[20:80, :128], frame[20:80])  # the original, as decoded
    np.testing.assert_array_equal(both[:, 128:], a)
