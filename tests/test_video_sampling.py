"""Frame-index sampling and output sizes: pure functions, checked against lmms-eval and transformers."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from harness.video import VideoMeta, frame_window, output_size, sample_indices


def meta(n: int, fps: float = 30.0) -> VideoMeta:
    return VideoMeta(path="synthetic.mp4", num_frames=n, fps=fps, duration_s=n / fps, width=64, height=48,
                     codec="h264", decoder="pyav")


def _lmms_load_video():
    """lmms-eval's load_video.py, loaded by path: the package __init__ needs deps we do not install."""
    spec = importlib.util.find_spec("lmms_eval")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("lmms-eval is not installed; the parity test needs its load_video.py")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / "model_utils" / "load_video.py"
    mod_spec = importlib.util.spec_from_file_location("_lmms_load_video", path)
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    return module


CASES = [(n, k) for n in (1, 2, 7, 16, 17, 100, 1000, 4321) for k in (1, 2, 8, 16, 32, 64, 1000)]


@pytest.mark.parametrize("fps", [None, 1.0, 0.5, 2.0])
def test_matches_lmms_eval_uniform_sampling(fps):
    lm = _lmms_load_video()
    for n, k in CASES:
        video_fps = 30.0
        expected = lm._compute_uniform_indices(n, lm._compute_sample_count(n, k, fps, video_fps))
        got = sample_indices(meta(n, video_fps), num_frames=k, fps=fps)
        np.testing.assert_array_equal(got, expected, err_msg=f"n={n} k={k} fps={fps}")


def test_matches_transformers_default_sampler():
    video_utils = pytest.importorskip("transformers.video_utils")
    for n, k in CASES:
        if k > n:
            continue  # transformers raises there; we clamp
        md = video_utils.VideoMetadata(total_num_frames=n, fps=30.0)
        expected = video_utils.default_sample_indices_fn(md, num_frames=k)
        got = sample_indices(meta(n), num_frames=k, convention="transformers")
        np.testing.assert_array_equal(got, expected, err_msg=f"n={n} k={k}")
    for n, target in [(300, 1.0), (300, 2.0), (1000, 0.5), (95, 3.0)]:
        md = video_utils.VideoMetadata(total_num_frames=n, fps=30.0)
        expected = video_utils.default_sample_indices_fn(md, fps=target)
        np.testing.assert_array_equal(sample_indices(meta(n), fps=target, convention="transformers"), expected)


def test_first_and_last_frame_included_and_indices_strictly_increasing():
    for n, k in CASES:
        idx = sample_indices(meta(n), num_frames=k)
        assert idx.dtype == np.int64
        assert len(idx) == min(n, k)
        assert idx[0] == 0 and (k == 1 or idx[-1] == n - 1)
        assert np.all(np.diff(idx) > 0)


def test_target_fps_with_max_frames_cap():
    m = meta(900, fps=30.0)  # 30 s
    assert len(sample_indices(m, fps=1.0)) == 30
    assert len(sample_indices(m, fps=2.0)) == 60
    capped = sample_indices(m, fps=2.0, max_frames=16)
    assert len(capped) == 16 and capped[0] == 0 and capped[-1] == 899
    assert len(sample_indices(m, fps=0.01)) == 1  # at least one frame
    assert len(sample_indices(m)) == 900  # nothing asked: every frame
    assert len(sample_indices(m, max_frames=10)) == 10


def test_time_window_uses_seconds_inclusive():
    m = meta(300, fps=10.0)  # 30 s, frame i at i / 10 s
    assert frame_window(m, 2.0, 4.0) == (20, 41)
    idx = sample_indices(m, num_frames=5, start_s=2.0, end_s=4.0)
    np.testing.assert_array_equal(idx, [20, 25, 30, 35, 40])
    # 100 frames (10.0 s) at 1 fps -> 10 frames spread over the window, first and last included
    assert sample_indices(m, fps=1.0, start_s=10.0, end_s=19.95).tolist() == [100, 111, 122, 133, 144, 155, 166,
                                                                             177, 188, 199]
    assert sample_indices(m, num_frames=3, start_s=29.0).tolist() == [290, 294, 299]
    with pytest.raises(ValueError, match="no frames"):
        sample_indices(m, num_frames=3, start_s=40.0)
    with pytest.raises(ValueError, match="before"):
        sample_indices(m, num_frames=3, start_s=5.0, end_s=1.0)


def test_time_window_with_variable_frame_rate_timestamps():
    ts = np.array([0.0, 0.033, 0.066, 0.2, 0.21, 0.5, 1.0, 1.033])
    m = meta(len(ts), fps=7.5)
    assert frame_window(m, 0.1, 0.6, timestamps=ts) == (3, 6)
    np.testing.assert_array_equal(sample_indices(m, start_s=0.1, end_s=0.6, timestamps=ts), [3, 4, 5])
    # without pts, index/fps would put the window elsewhere: the reason readers expose timestamps
    assert frame_window(m, 0.1, 0.6) != (3, 6)


def test_deterministic_and_rejects_bad_arguments():
    m = meta(500)
    a = sample_indices(m, num_frames=37, fps=0.7, max_frames=20, start_s=1.0, end_s=12.0)
    b = sample_indices(m, num_frames=37, fps=0.7, max_frames=20, start_s=1.0, end_s=12.0)
    np.testing.assert_array_equal(a, b)
    for kwargs in ({"num_frames": 0}, {"fps": 0.0}, {"max_frames": 0}):
        with pytest.raises(ValueError):
            sample_indices(m, **kwargs)
    with pytest.raises(ValueError, match="convention"):
        sample_indices(m, num_frames=4, convention="nope")


def test_output_size_rules():
    assert output_size((2160, 3840), None) == (2160, 3840)
    assert output_size((2160, 3840), 448) == (252, 448)
    assert output_size((7680, 4320), 448) == (448, 252)  # portrait: the long side is the height
    assert output_size((2160, 3840), (448, 448)) == (252, 448)  # fit inside, aspect kept
    assert output_size((2160, 3840), (448, 448), keep_aspect=False) == (448, 448)
    assert output_size((5, 7), 448) == (320, 448)  # upscaling is allowed
    assert output_size((1, 1000), 10) == (1, 10)  # never below one pixel
    with pytest.raises(ValueError):
        output_size((10, 10), 0)
    with pytest.raises(ValueError):
        output_size((10, 10), (1, 2, 3))
