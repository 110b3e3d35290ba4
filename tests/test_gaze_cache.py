"""The gaze cache (harness.gaze.cache): exact reuse, verified reads, misses on any change, safe writers.

The tiny random-weight AutoGaze gazes small random videos; every check compares a cached gaze
with the one computed without the cache.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.gaze import cache
from harness.pruning.autogaze import AutoGazePruner
from harness.pruning.native_gaze import native_target_for

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def gaze_cache(tmp_path):
    """The cache on, in a directory of this test's own; restored afterwards."""
    old = cache.configure(True, max_gb=1.0, root=tmp_path / "gaze")
    yield tmp_path / "gaze"
    cache.restore(old)


def _frames(seed: int = 0, t: int = 4, side: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (t, side, side, 3), dtype=np.uint8)


def _pruner(**kw) -> AutoGazePruner:
    return AutoGazePruner(**{"model": "tiny", "gazing_ratio": 0.3, "task_loss_requirement": None, "clip_len": 4,
                             **kw})


def _same(a, b) -> bool:
    return (np.array_equal(a.frame_indices, b.frame_indices) and np.array_equal(a.gazed_per_frame, b.gazed_per_frame)
            and a.frame_indices.dtype == b.frame_indices.dtype and a.gazed_per_frame.dtype == b.gazed_per_frame.dtype
            and (a.height, a.width, list(a.scales), a.tokens_per_frame) == (b.height, b.width, list(b.scales),
                                                                           b.tokens_per_frame)
            and len(a.scale_masks) == len(b.scale_masks)
            and all(torch.equal(x, y) and x.dtype == y.dtype for x, y in zip(a.scale_masks, b.scale_masks, strict=True)))


def _entries(root: Path) -> list[Path]:
    return sorted(root.glob("*/*.safetensors"))


def test_cached_gaze_equals_computed_and_off_computes(gaze_cache):
    frames = _frames()
    pruner = _pruner()
    first = pruner.gaze(frames)
    second = pruner.gaze(frames.copy())  # same content, another array: the key is content, not identity
    assert (first.cache_status, second.cache_status) == ("miss", "hit")
    assert _same(first, second) and second.seconds == first.seconds  # the stored compute time, not the read's
    assert len(_entries(gaze_cache)) == 1
    with cache.bypass():
        off = pruner.gaze(frames)
    assert off.cache_status == "off" and _same(off, first)
    # the mapped selection is the same too (the record's selection, token for token)
    from harness.pruning.selection import TokenGeometry

    geo = TokenGeometry(num_frames=4, height=64, width=64, patch_size=8, temporal_patch_size=1, spatial_merge_size=1)
    a, b = pruner.select(frames, geo), pruner.select(frames, geo)
    assert torch.equal(a.keep, b.keep) and b.info["_gaze_cache"] == "hit"


def test_native_gaze_cached_equals_computed(gaze_cache):
    frames = _frames(1, t=4, side=112)
    pruner = _pruner()
    target = native_target_for(4, 28, 112)
    first, second = pruner.gaze_native(frames, target), pruner.gaze_native(frames, target)
    assert (first.cache_status, second.cache_status) == ("miss", "hit")
    for name in ("gazing_pos", "if_padded_gazing", "num_gazing_each_frame"):
        x, y = getattr(first.gazing, name), getattr(second.gazing, name)
        assert torch.equal(x, y) and x.dtype == y.dtype, name
    assert second.target == target and second.count == first.count
    other = native_target_for(4, 14, 56)  # another ViT: another key
    assert pruner.gaze_native(frames[:, :56, :56], other).cache_status == "miss"


def _flip_mask_byte(path: Path) -> None:
    """Flip one bit of a packed mask (a well-formed file that decodes to a different gaze)."""
    data = bytearray(path.read_bytes())
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8: 8 + n])
    start, _ = header["mask3"]["data_offsets"]
    data[8 + n + start] ^= 0x80
    path.write_bytes(bytes(data))


def test_corrupt_entry_is_detected_and_recomputed(gaze_cache, capsys):
    frames = _frames(2)
    pruner = _pruner()
    truth = pruner.gaze(frames)
    (entry,) = _entries(gaze_cache)
    _flip_mask_byte(entry)

    # The check can fail: without verification the corrupted entry would be used, and it differs.
    cache.settings().verify = False
    try:
        used = pruner.gaze(frames)
    finally:
        cache.settings().verify = True
    assert used.cache_status == "hit" and not _same(used, truth)

    again = pruner.gaze(frames)  # verified: refused, recomputed, rewritten
    assert again.cache_status == "miss" and _same(again, truth)
    assert "content does not match its hash" in capsys.readouterr().err
    after = pruner.gaze(frames)
    assert after.cache_status == "hit" and _same(after, truth)

    entry.write_bytes(entry.read_bytes()[:100])  # a truncated file (e.g. a full disk)
    assert pruner.gaze(frames).cache_status == "miss"
    assert "unreadable" in capsys.readouterr().err

    # an intact entry stored under the wrong name (key) is refused too
    other = _pruner(gazing_ratio=0.6)
    other.gaze(frames)
    a, b = _entries(gaze_cache)
    shutil.copyfile(a, b)
    statuses = {_pruner().gaze(frames).cache_status, other.gaze(frames).cache_status}
    assert "miss" in statuses


def test_changed_setting_checkpoint_code_or_video_misses(gaze_cache, tmp_path, monkeypatch):
    from harness.gaze.tiny import tiny_autogaze_dir

    frames = _frames(3)
    assert _pruner().gaze(frames).cache_status == "miss"
    assert _pruner().gaze(frames).cache_status == "hit"
    assert _pruner(policy="drop").gaze(frames).cache_status == "hit"  # mapping, not gazing
    assert _pruner(gazing_ratio=0.5).gaze(frames).cache_status == "miss"
    assert _pruner(clip_len=2).gaze(frames).cache_status == "miss"
    assert _pruner(tile_size=112).gaze(frames).cache_status == "miss"
    changed = frames.copy()
    changed[2, 10, 10, 0] ^= 1  # one pixel of one frame
    assert _pruner().gaze(changed).cache_status == "miss"
    assert _pruner().gaze(frames[:3]).cache_status == "miss"  # other frame indices

    # the checkpoint: a copy elsewhere hits (content, not path); a changed weight misses
    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_autogaze_dir(), ckpt)
    assert _pruner(model=str(ckpt)).gaze(frames).cache_status == "hit"
    from safetensors.torch import load_file, save_file

    weights = ckpt / "model.safetensors"
    tensors = load_file(weights)
    name = sorted(k for k, v in tensors.items() if v.is_floating_point())[0]
    tensors[name] = tensors[name] + 1e-3
    save_file(tensors, weights, metadata={"format": "pt"})
    other = tmp_path / "ckpt2"
    shutil.copytree(ckpt, other)  # a fresh path: the loaded-model memo does not hide the new weights
    assert _pruner(model=str(other)).gaze(frames).cache_status == "miss"

    monkeypatch.setattr(cache, "_CODE", "edited-gaze-core")  # the gaze code changed
    assert _pruner().gaze(frames).cache_status == "miss"


def test_cache_off_and_bypass_touch_nothing(tmp_path):
    old = cache.configure(False, root=tmp_path / "gaze")
    try:
        assert _pruner().gaze(_frames()).cache_status == "off"
    finally:
        cache.restore(old)
    assert not (tmp_path / "gaze").exists()


def test_eviction_keeps_the_recently_used(gaze_cache):
    from harness.pruning.autogaze import load_gaze_model

    frames = [_frames(10 + i) for i in range(3)]
    pruner = _pruner()
    model = load_gaze_model(pruner.model, pruner.device)
    paths = [cache.entry_path(cache.make_key("mapped", f, model, pruner.gaze_setting())[0], gaze_cache)
             for f in frames]
    for f in frames:
        pruner.gaze(f)
    assert all(p.is_file() for p in paths)
    size = max(p.stat().st_size for p in paths)
    for p, when in zip(paths, (30, 10, 20), strict=True):  # use order: 1, 2, 0 (oldest first)
        os.utime(p, (when, when))
    cache.evict(2 * size, gaze_cache)
    assert [p.is_file() for p in paths] == [True, False, True]  # the least recently used went
    # a read bumps the LRU clock: after reading entry 2, entry 0 is the least recently used
    assert pruner.gaze(frames[2]).cache_status == "hit"
    cache.evict(size, gaze_cache)
    assert [p.is_file() for p in paths] == [False, False, True]
    # a write evicts too, never the entry just written
    cache.configure(True, max_gb=size / 2**30, root=gaze_cache)
    assert pruner.gaze(frames[1]).cache_status == "miss"
    assert [p.is_file() for p in paths] == [False, True, False]


def _writer(root: str, start, rounds: int) -> None:
    cache.configure(True, root=root)
    value = _fake_gaze()
    corrupt_before = cache.stats()["corrupt"]  # forked: the parent's count comes along
    start.wait()
    for _ in range(rounds):
        cache.cached("ab" + "0" * 62, {"test": 1}, lambda: value, cache.encode_video_gaze, cache.decode_video_gaze)
        for path in Path(root).glob("*/*.safetensors"):
            path.unlink(missing_ok=True)  # race the other writer again
    if cache.stats()["corrupt"] > corrupt_before:  # a reader saw a half-written entry: the writes were not atomic
        os._exit(3)


def _fake_gaze():
    from harness.gaze.tiling import VideoGaze

    rng = np.random.default_rng(7)
    masks = [torch.from_numpy(rng.random((64, 8 * g, 8 * g)) < 0.3) for g in (2, 4, 7, 14)]
    return VideoGaze(np.arange(64), 896, 896, [32, 64, 112, 224], masks, np.full(64, 5), 265 * 64, 1.5)


def test_two_concurrent_writers_leave_one_valid_entry(tmp_path):
    root = tmp_path / "gaze"
    ctx = mp.get_context("fork")
    start = ctx.Barrier(2)
    procs = [ctx.Process(target=_writer, args=(str(root), start, 20)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    # one last fill by both at once, then exactly one entry, whole, and no temporary file left
    start2 = ctx.Barrier(2)
    procs = [ctx.Process(target=_writer_once, args=(str(root), start2)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    files = [p for p in root.rglob("*") if p.is_file()]
    assert len(files) == 1 and files[0].suffix == ".safetensors"
    tensors, meta = cache.read_entry(files[0], "ab" + "0" * 62)
    got = cache.decode_video_gaze(tensors, meta)
    assert _same(got, _fake_gaze())


def _writer_once(root: str, start) -> None:
    cache.configure(True, root=root)
    value = _fake_gaze()
    start.wait()
    cache.cached("ab" + "0" * 62, {"test": 1}, lambda: value, cache.encode_video_gaze, cache.decode_video_gaze)


def test_a_reader_never_sees_a_half_written_entry(tmp_path, monkeypatch):
    """Deterministic: a writer paused mid-write. Atomic (temp file + rename): the reader finds no
    entry (a miss). Written in place, the same pause hands the reader a torn file, which only
    the verification catches (so the atomicity is what keeps reads whole, and the check can fail)."""
    import threading

    root = tmp_path / "gaze"
    key = "cd" + "0" * 62
    value = _fake_gaze()
    tensors, meta = cache.encode_video_gaze(value)
    path = cache.entry_path(key, root)
    paused, resume = threading.Event(), threading.Event()
    real_replace = os.replace

    def slow_replace(src, dst):  # the whole entry is written to the temp file; not yet renamed
        paused.set()
        resume.wait(10)
        real_replace(src, dst)

    monkeypatch.setattr(cache.os, "replace", slow_replace)
    writer = threading.Thread(target=cache.write_entry, args=(path, key, tensors, meta))
    writer.start()
    assert paused.wait(10)
    assert not path.exists()  # a reader now computes (a miss): it never sees the bytes being written
    resume.set()
    writer.join()
    got = cache.decode_video_gaze(*cache.read_entry(path, key))
    assert _same(got, value) and [p.name for p in path.parent.iterdir()] == [path.name]

    # the same pause without the rename: the reader gets half a file; verification refuses it
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(cache.CorruptEntry):
        cache.read_entry(path, key)


def test_packed_masks_are_compact():
    tensors, _ = cache.encode_video_gaze(_fake_gaze())
    packed = sum(t.numel() for k, t in tensors.items() if k.startswith("mask"))
    cells = sum(m.numel() for m in _fake_gaze().scale_masks)
    assert packed == sum((m.numel() + 7) // 8 for m in _fake_gaze().scale_masks) and packed * 8 < cells + 32


def test_cache_cli_shows_lists_and_clears(gaze_cache, capsys, tmp_path):
    from harness.cli.main import main

    pruner = _pruner()
    with cache.describing(video="clip.mp4", num_frames=4, first_index=0, last_index=3):
        pruner.gaze(_frames(20))
    pruner.gaze(_frames(21))
    (gaze_cache / "not-an-entry.txt").write_text("x")
    assert main(["cache", "--dir", str(gaze_cache)]) == 0
    out = capsys.readouterr().out
    assert str(gaze_cache) in out and "2 entries" in out
    assert main(["cache", "list", "--dir", str(gaze_cache)]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "frames 4x64x64" in ln]
    assert len(lines) == 2 and any("clip.mp4 [0..3]" in ln for ln in lines)
    assert all("mapped" in ln and "ratio 0.3" in ln for ln in lines)
    assert main(["cache", "clear", "--dir", str(gaze_cache)]) == 0
    assert "removed 2 gaze cache entries" in capsys.readouterr().out
    assert _entries(gaze_cache) == [] and (gaze_cache / "not-an-entry.txt").exists()
    # the directory comes from a config's cache section too; a bad config is one line, exit 2
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"cache:\n  dir: {tmp_path / 'elsewhere'}\n  gaze_max_gb: 0.5\n")
    assert main(["cache", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert str(tmp_path / "elsewhere") in out and "0 entries" in out and "512.0 MiB cap" in out
    assert main(["cache", "--set", "cache.gaze_max_gb=-1"]) == 2
    assert "gaze_max_gb" in capsys.readouterr().err


def test_an_unwritable_cache_costs_the_reuse_not_the_run(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    old = cache.configure(True, root=blocker / "gaze")  # every write fails (its parent is a file)
    before = cache.stats()["unwritable"]
    try:
        first, second = _pruner().gaze(_frames(30)), _pruner().gaze(_frames(31))
    finally:
        cache.restore(old)
    assert (first.cache_status, second.cache_status) == ("miss", "miss")
    assert cache.stats()["unwritable"] == before + 2
    assert capsys.readouterr().err.count("cannot write") == (1 if before == 0 else 0)  # said once a process
