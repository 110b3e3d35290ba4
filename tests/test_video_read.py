"""Reading frames: exact content vs a plain PyAV decode, seeking, chunking, resizing, backends, fallback."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

import harness.video.api as video_api
from harness.video import (
    FrameChunk,
    VideoError,
    available_backends,
    decord_backend,
    open_video,
    probe,
    read_frames,
    sample_indices,
    write_video,
)
from harness.video.pyav_backend import INTERPOLATION

pytestmark = pytest.mark.timeout(120)

HAS_DECORD = decord_backend.available()
needs_decord = pytest.mark.skipif(not HAS_DECORD, reason="decord (decord2) is not installed")


def pattern(i: int, h: int, w: int) -> np.ndarray:
    """Frame i: a gray level and a bar position that both encode i, plus a fixed gradient."""
    frame = np.zeros((h, w, 3), np.uint8)
    frame[..., 0] = (20 + 7 * i) % 230
    frame[..., 1] = np.linspace(0, 255, w, dtype=np.uint8)[None, :]
    x = (5 * i) % max(1, w - 8)
    frame[:, x : x + 8, 2] = 250
    return frame


@pytest.fixture(scope="module")
def gop_video(tmp_path_factory) -> Path:
    """60 frames, 160x120, keyframe every 8 frames and 2 B-frames: exercises seeking and reordering."""
    path = tmp_path_factory.mktemp("video") / "gop.mp4"
    opts = {"preset": "veryfast", "x264-params": "keyint=8:min-keyint=8:bframes=2:scenecut=0"}
    return write_video(path, (pattern(i, 120, 160) for i in range(60)), fps=25, options=opts)


@pytest.fixture(scope="module")
def reference(gop_video) -> np.ndarray:
    """Every frame from a plain sequential PyAV decode, converted exactly as our PyAV backend does."""
    with av.open(str(gop_video)) as c:
        return np.stack([f.to_ndarray(format="rgb24", width=160, height=120, interpolation=INTERPOLATION)
                         for f in c.decode(video=0)])


def test_fixture_really_has_b_frames_and_several_keyframes(gop_video):
    with av.open(str(gop_video)) as c:
        packets = [p for p in c.demux(video=0) if p.size]
    assert sum(p.is_keyframe for p in packets) >= 7
    assert any(p.pts != p.dts for p in packets)  # reordered: B-frames present


def test_probe_reports_container_facts_without_decoding(gop_video):
    m = probe(gop_video, backend="pyav")
    assert (m.num_frames, m.width, m.height, m.codec, m.decoder) == (60, 160, 120, "h264", "pyav")
    assert m.fps == pytest.approx(25.0)
    assert m.duration_s == pytest.approx(60 / 25)
    assert m.path == str(gop_video)
    assert probe(gop_video).decoder == available_backends()[0]


@pytest.mark.parametrize("order", ["sequential", "random", "reverse", "duplicates", "sampled"])
def test_pyav_frames_equal_sequential_decode(gop_video, reference, order):
    rng = np.random.default_rng(0)
    idx = {
        "sequential": np.arange(60),
        "random": rng.permutation(60)[:25],
        "reverse": np.arange(59, -1, -3),
        "duplicates": np.array([5, 5, 6, 40, 40, 3, 3, 59]),
        "sampled": sample_indices(probe(gop_video, backend="pyav"), num_frames=16),
    }[order]
    with open_video(gop_video, backend="pyav") as reader:
        chunks = list(reader.iter_chunks(idx, chunk_size=7))
    assert [len(c) for c in chunks] == [min(7, len(idx) - s) for s in range(0, len(idx), 7)]
    frames = np.concatenate([c.frames for c in chunks])
    np.testing.assert_array_equal(np.concatenate([c.indices for c in chunks]), idx)
    np.testing.assert_array_equal(frames, reference[idx])
    np.testing.assert_allclose(np.concatenate([c.timestamps for c in chunks]), idx / 25.0, atol=1e-6)


def test_decoded_content_matches_what_was_encoded(gop_video):
    chunk = read_frames(gop_video, [0, 13, 59], backend="pyav")
    for k, i in enumerate([0, 13, 59]):
        diff = np.abs(chunk.frames[k].astype(int) - pattern(i, 120, 160).astype(int))
        assert diff.mean() < 4, (i, diff.mean())


def test_sequential_chunks_never_seek_and_far_jumps_do(gop_video):
    with open_video(gop_video, backend="pyav") as reader:
        for _ in reader.iter_chunks(np.arange(60), chunk_size=16):
            pass
        assert reader.seeks == 0
    with open_video(gop_video, backend="pyav") as reader:
        list(reader.iter_chunks([0, 1, 2, 50, 51], chunk_size=2))
        assert reader.seeks == 1  # 2 -> 50 jumps over keyframes: one seek, then forward again
        list(reader.iter_chunks([10], chunk_size=2))
        assert reader.seeks == 2  # backwards needs a seek


def test_chunks_are_lazy(gop_video):
    with open_video(gop_video, backend="pyav") as reader:
        it = reader.iter_chunks(np.arange(60), chunk_size=4)
        first = next(it)
        assert first.indices.tolist() == [0, 1, 2, 3]
        assert reader._pos < 8  # nothing beyond the first chunk (plus decoder lookahead) was pulled


@pytest.mark.parametrize(("size", "keep_aspect", "shape"), [
    (80, True, (60, 80)), ((60, 60), True, (45, 60)), ((50, 70), False, (50, 70)), (None, True, (120, 160))])
def test_resize_on_the_fly(gop_video, reference, size, keep_aspect, shape):
    with open_video(gop_video, backend="pyav") as reader:
        chunk = next(reader.iter_chunks([3, 30], size=size, keep_aspect=keep_aspect))
    assert chunk.frames.shape == (2, *shape, 3) and chunk.frames.dtype == np.uint8
    # the resized frame is a faithful downscale: compare with area-averaging the native frame
    ref = reference[[3, 30]].astype(np.float64)
    h, w = shape
    if (120 % h, 160 % w) == (0, 0):
        pooled = ref.reshape(2, h, 120 // h, w, 160 // w, 3).mean(axis=(2, 4))
        assert np.abs(pooled - chunk.frames).mean() < 3


def test_out_of_range_and_malformed_indices_raise_video_error(gop_video):
    with open_video(gop_video, backend="pyav") as reader:
        with pytest.raises(VideoError, match=r"gop\.mp4.*index 60 out of range"):
            list(reader.iter_chunks([0, 60]))
        with pytest.raises(VideoError, match="integers"):
            list(reader.iter_chunks(np.array([0.5])))
        with pytest.raises(ValueError):
            list(reader.iter_chunks([0], chunk_size=0))


def test_read_frames_returns_one_chunk(gop_video, reference):
    chunk = read_frames(gop_video, [1, 2, 40], backend="pyav")
    assert isinstance(chunk, FrameChunk) and len(chunk) == 3
    np.testing.assert_array_equal(chunk.frames, reference[[1, 2, 40]])


def write_vfr(path: Path, pts_ms: list[int], size=(48, 64)) -> Path:
    """H.264 with explicit millisecond pts: a variable frame rate the writer cannot express."""
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = size[1], size[0], "yuv420p"
        s.codec_context.time_base = Fraction(1, 1000)
        for k, t in enumerate(pts_ms):
            fr = av.VideoFrame.from_ndarray(pattern(k, *size), format="rgb24")
            fr.pts, fr.time_base = t, Fraction(1, 1000)
            for p in s.encode(fr):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


@pytest.mark.parametrize("backend", ["pyav", pytest.param("decord", marks=needs_decord)])
def test_variable_frame_rate_timestamps_come_from_pts(tmp_path, backend):
    pts = [0, 33, 66, 200, 210, 500, 1000, 1033, 1500]
    path = write_vfr(tmp_path / "vfr.mp4", pts)
    with open_video(path, backend=backend) as reader:
        assert reader.meta.num_frames == len(pts)
        np.testing.assert_allclose(reader.timestamps, np.array(pts) / 1000, atol=1e-4)
        chunk = next(reader.iter_chunks([6, 3, 8]))
        np.testing.assert_allclose(chunk.timestamps, [1.0, 0.2, 1.5], atol=1e-4)
        for k, i in enumerate([6, 3, 8]):  # the red level encodes the frame number
            assert abs(chunk.frames[k, ..., 0].mean() - pattern(i, 48, 64)[..., 0].mean()) < 4
        # duration from pts (last frame + median interval), not from a constant-rate assumption
        assert reader.meta.duration_s == pytest.approx(1.5 + np.median(np.diff(pts)) / 1000, abs=1e-3)
        assert reader.meta.fps == pytest.approx(len(pts) / reader.meta.duration_s, rel=1e-3)


@needs_decord
def test_decord_and_pyav_agree(gop_video, reference):
    idx = np.array([0, 7, 8, 9, 33, 59, 21])
    with open_video(gop_video, backend="decord") as reader:
        assert reader.meta.decoder == "decord" and reader.meta.num_frames == 60
        native = np.concatenate([c.frames for c in reader.iter_chunks(idx, chunk_size=3)])
        small = next(reader.iter_chunks(idx, chunk_size=16, size=80)).frames
        np.testing.assert_allclose(reader.timestamps, np.arange(60) / 25, atol=1e-4)
    assert np.abs(native.astype(int) - reference[idx].astype(int)).mean() < 1.0
    with open_video(gop_video, backend="pyav") as reader:
        pyav_small = next(reader.iter_chunks(idx, chunk_size=16, size=80)).frames
    assert small.shape == pyav_small.shape == (7, 60, 80, 3)
    assert np.abs(small.astype(int) - pyav_small.astype(int)).mean() < 3.0  # bicubic vs area filters


def test_auto_falls_back_when_a_backend_fails_mid_read(gop_video, reference, monkeypatch):
    class Failing(video_api.PyAVReader):
        def read_chunk(self, indices, out_hw):
            if indices[0] >= 20:
                raise VideoError(self.path, "simulated decoder failure")
            return super().read_chunk(indices, out_hw)

    class Tagged(video_api.PyAVReader):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            self.meta = type(self.meta)(**{**self.meta.__dict__, "decoder": "second"})

    monkeypatch.setattr(video_api, "BACKENDS", {"first": Failing, "second": Tagged})
    monkeypatch.setattr(video_api, "available_backends", lambda: ["first", "second"])
    with open_video(gop_video) as reader:
        assert reader.meta.decoder == "pyav"
        chunks = list(reader.iter_chunks(np.arange(0, 60, 2), chunk_size=5))
        assert reader.meta.decoder == "second"  # reports which decoder produced the later frames
    np.testing.assert_array_equal(np.concatenate([c.frames for c in chunks]), reference[0:60:2])


def test_fallback_failing_everywhere_names_both_causes(gop_video, monkeypatch):
    class Failing(video_api.PyAVReader):
        def read_chunk(self, indices, out_hw):
            raise VideoError(self.path, f"boom in {type(self).__name__}")

    class AlsoFailing(Failing):
        pass

    monkeypatch.setattr(video_api, "BACKENDS", {"first": Failing, "second": AlsoFailing})
    monkeypatch.setattr(video_api, "available_backends", lambda: ["first", "second"])
    with open_video(gop_video) as reader, pytest.raises(VideoError) as info:
        reader.read([0, 1])
    assert str(gop_video) in str(info.value)
    assert "boom in Failing" in info.value.cause and "second: boom in AlsoFailing" in info.value.cause
    with open_video(gop_video) as reader:
        assert reader.seeks == 0  # backend extras reach through the fallback wrapper


def test_auto_falls_back_when_decord_is_missing(gop_video, monkeypatch):
    monkeypatch.setattr(decord_backend, "_decord", None)
    assert "decord" not in available_backends()
    assert probe(gop_video).decoder == "pyav"
    with pytest.raises(VideoError, match="decord is not installed"):
        open_video(gop_video, backend="decord")


def test_unknown_backend_is_a_value_error(gop_video):
    with pytest.raises(ValueError, match="unknown video backend"):
        open_video(gop_video, backend="opencv")


def test_keyframe_lookup():
    from harness.video.pyav_backend import PacketIndex

    keys = np.zeros(20, bool)
    keys[[0, 5, 12]] = True
    index = PacketIndex(pts=np.arange(20), keyframe=keys)
    assert [index.keyframe_before(i) for i in (0, 4, 5, 11, 12, 19)] == [0, 0, 5, 5, 12, 12]
    late = np.zeros(5, bool)
    late[2] = True  # no keyframe flagged at 0: fall back to the start
    assert [PacketIndex(pts=np.arange(5), keyframe=late).keyframe_before(i) for i in range(5)] == [0, 0, 2, 2, 2]


def test_reader_keeps_no_reference_to_yielded_frames(gop_video):
    """Bounded memory: once the caller drops a chunk, nothing in the reader keeps its frames alive."""
    import gc
    import weakref

    with open_video(gop_video, backend="pyav") as reader:
        refs = []
        for chunk in reader.iter_chunks(np.arange(60), chunk_size=8, size=64):
            refs.append(weakref.ref(chunk.frames))
            del chunk
        gc.collect()
        assert len(refs) == 8 and all(r() is None for r in refs)


@pytest.mark.parametrize(("num_frames", "fps"), [(16, None), (8, 2.0), (100, None)])
def test_same_frames_as_lmms_eval_read_video(gop_video, num_frames, fps):
    """Peer check: lmms-eval's own PyAV loader picks and decodes the very same pixels."""
    import importlib.util

    spec = importlib.util.find_spec("lmms_eval")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("lmms-eval is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / "model_utils" / "load_video.py"
    mod_spec = importlib.util.spec_from_file_location("_lmms_load_video", path)
    lmms = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(lmms)  # the package __init__ needs deps we do not install
    expected = lmms.read_video(str(gop_video), num_frm=num_frames, fps=fps, backend="pyav")
    ours = read_frames(gop_video, sample_indices(probe(gop_video), num_frames=num_frames, fps=fps))
    np.testing.assert_array_equal(ours.frames, expected)
