"""``run_eval.py gaze`` on a tiny generated video: output video, per-frame token report, errors."""

from __future__ import annotations

import av
import numpy as np
import pytest

from harness.cli.main import main
from harness.video.writer import write_video

# One torch thread per module (fixture in conftest.py): the greedy loop's small ops spin-wait otherwise.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _video(path, frames=6, h=96, w=160):
    yy, xx = np.mgrid[0:h, 0:w]
    out = []
    for i in range(frames):
        img = np.stack([(xx * 2 + i * 7) % 256, (yy * 3) % 256, ((xx + yy + 5 * i) * 2) % 256], -1)
        out.append(img.astype(np.uint8))
    write_video(path, out, fps=12)
    return path


def _decode(path):
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def test_cli_gaze_writes_video_and_reports_tokens(parity_dir, tmp_path, capsys):
    src = _video(tmp_path / "in.mp4")
    out = tmp_path / "gaze.mp4"
    rc = main(["gaze", "--video", str(src), "--model", str(parity_dir / "model"), "--out", str(out),
               "--gazing-ratio", "0.05", "--frames", "5", "--clip-len", "5"])  # fmt: skip
    assert rc == 0
    text = capsys.readouterr().out
    frame_lines = [line for line in text.splitlines() if line.startswith("frame")]
    assert len(frame_lines) == 5
    assert all("13/265 tokens kept" in line for line in frame_lines)  # int(0.05 * 265) per frame
    assert "total: 65/1325 tokens kept" in text
    written, source = _decode(out), _decode(src)
    assert len(written) == 5 and written[0].shape == source[0].shape
    # Highlighting changes the picture: un-gazed area is dimmed, gazed cells outlined, text bands drawn.
    assert np.abs(written[0].astype(int) - source[0].astype(int)).mean() > 10


def test_cli_gaze_reports_bad_model_dir(tmp_path, capsys):
    src = _video(tmp_path / "in.mp4", frames=2)
    rc = main(
        ["gaze", "--video", str(src), "--model", str(tmp_path / "missing"), "--out", str(tmp_path / "o.mp4")]
    )
    assert rc == 2
    assert "missing" in capsys.readouterr().err


def test_cli_gaze_side_by_side_puts_the_original_left(parity_dir, tmp_path, capsys):
    src = _video(tmp_path / "in.mp4", frames=2)
    out = tmp_path / "sbs.mp4"
    rc = main(["gaze", "--video", str(src), "--model", str(parity_dir / "model"), "--out", str(out),
               "--gazing-ratio", "0.05", "--clip-len", "2", "--side-by-side"])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    written, source = _decode(out), _decode(src)
    h, w = source[0].shape[:2]
    assert written[0].shape == (h, 2 * w, 3)
    # left half: the original (codec noise only) below the top band; right half: the overlay
    band = 16
    left = np.abs(written[0][band:, :w].astype(int) - source[0][band:].astype(int)).mean()
    right = np.abs(written[0][band:, w:].astype(int) - source[0][band:].astype(int)).mean()
    assert left < 6 < right, (left, right)
