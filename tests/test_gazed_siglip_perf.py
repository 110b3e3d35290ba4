"""Smoke test of ``python -m harness.perf.gazed_vit``: token accounting and the JSON last line
(no timing assertions: speed is what the benchmark reports, not what a test checks)."""

from __future__ import annotations

import json

import torch

from harness.models.gazed_siglip import MultiScaleLayout
from harness.perf.gazed_vit import main, random_gazing, tile_clip


def test_tile_clip_is_autogaze_chopping() -> None:
    video = torch.arange(4 * 3 * 8 * 12, dtype=torch.float32).view(4, 3, 8, 12)
    clips = tile_clip(video, chunk=2, tile=4)
    assert clips.shape == (2 * 2 * 3, 2, 3, 4, 4)  # (time chunks x rows x cols), chunk, C, tile, tile
    # clip 1 = time chunk 0, tile row 0, tile col 1
    torch.testing.assert_close(clips[1], video[0:2, :, 0:4, 4:8])
    torch.testing.assert_close(clips[-1], video[2:4, :, 4:8, 8:12])


def test_random_gazing_caps_like_autogaze() -> None:
    layout = MultiScaleLayout.parse("32+64+112+224", 16)
    g = random_gazing(3, 4, layout, 0.3, seed=0)
    assert g.num_gazing_each_frame.tolist() == [int(0.3 * 265)] * 4
    frames = g.gazing_pos // 265
    assert torch.equal(frames, g.frame_of_slot().expand(3, -1))
    for row in g.gazing_pos:  # distinct ids within a frame
        assert row.unique().numel() == row.numel()


def test_benchmark_runs_and_ends_with_json(capsys) -> None:
    result = main(["--frames", "16", "--size", "224", "--repeats", "1", "--ratios", "0.1", "0.75"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(last) == json.loads(json.dumps(result))
    assert result["full_tokens"] == 16 * 196
    rows = {(r["attn"], r["ratio"]): r for r in result["gazed"]}
    assert set(rows) == {(a, r) for a in ("block_causal", "frame_independent") for r in (0.1, 0.75)}
    for (_, ratio), row in rows.items():
        assert row["tokens"] == 16 * int(ratio * 265)
        assert abs(row["tokens_vs_full"] - row["tokens"] / (16 * 196)) < 1e-12
        assert row["vit_s"] > 0 and row["full_vit_s"] > 0
