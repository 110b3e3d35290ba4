"""Paths taken from dataset files never reach outside the dataset: refused before anything is opened.

A crafted parquet (``..``, absolute paths, a symlink shipped in the data that points out,
``/etc/passwd``, ``/proc/self/environ``) fails those samples with one line naming the sample, the
key and the value; the run goes on and the good samples are decoded and scored.
"""

from __future__ import annotations

import builtins
import io
import os
from pathlib import Path

import pandas as pd
import pytest

from benchmarks.data import UnsafePathError, contained_path
from benchmarks.hlvid import HLVid
from benchmarks.videomme import VideoMME
from harness.runner import components as real_components
from harness.runner.config import load_config
from harness.runner.engine import Evaluator
from harness.runner.records import read_run_records
from harness.runner.sharding import ShardInfo
from harness.runner.testing import FakeAdapter, fake_components
from tests.test_bench_data import hlvid_rows, make_hlvid, make_videomme, tiny_video, videomme_rows


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A real video outside every dataset directory: opening it would succeed, so it must never be."""
    return tiny_video(tmp_path / "outside" / "secret.mp4", frames=8)


class OpenLog:
    """Every path handed to open()/io.open()/os.open()/av.open() while installed (and where its links lead)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import av

        self.paths: list[str] = []
        for owner, name in ((builtins, "open"), (io, "open"), (os, "open"), (av, "open")):  # io: pathlib's
            monkeypatch.setattr(owner, name, self._wrap(getattr(owner, name)))

    def _wrap(self, fn):
        def opener(file, *args, **kwargs):
            if isinstance(file, str | bytes | os.PathLike):
                self.paths += [os.fsdecode(file), os.path.realpath(file)]  # as given, and links followed
            return fn(file, *args, **kwargs)

        return opener

    def touched(self, *needles: str) -> list[str]:
        return [p for p in self.paths if any(n in p for n in needles)]


def _run(tmp_path: Path, bench, pruners=("none",)) -> list[dict]:
    cfg = load_config(data={"name": "t", "output_dir": str(tmp_path / "out"),
                            "model": {"family": "qwen2_5_vl", "path": "/m", "name": "fake"},
                            "benchmark": {"name": "fake"}, "frames": {"num_frames": 4},
                            "pruners": list(pruners)})
    comps = fake_components(bench, FakeAdapter())
    comps.load_frames = real_components.load_frames  # real decoding: the opener log sees every open
    Evaluator(cfg, comps, ShardInfo(), progress=False).run()
    return read_run_records(tmp_path / "out" / "fake" / "none")


BAD_HLVID = {
    200: "../../outside/secret.mp4",  # relative escape
    201: "ABSOLUTE",  # replaced by the outside video's absolute path
    202: "linkout.mp4",  # a symlink inside videos/ pointing at the outside video
    203: "/etc/passwd",
    204: "/proc/self/environ",
    205: "sub/../../../outside/secret.mp4",
}


def _hlvid_with_bad_rows(tmp_path: Path, outside: Path) -> Path:
    rows = hlvid_rows()[:2]
    for qid, value in BAD_HLVID.items():
        row = dict(hlvid_rows()[0], question_id=qid)
        row["video_path"] = str(outside) if value == "ABSOLUTE" else value
        rows.append(row)
    root = make_hlvid(tmp_path / "hlvid", rows[:2])
    pd.DataFrame(rows).to_parquet(root / "data" / "test-00000-of-00001.parquet")
    (root / "videos" / "linkout.mp4").symlink_to(outside)
    return root


def test_hlvid_paths_outside_are_refused_and_never_opened(tmp_path, outside, monkeypatch, capsys):
    bench = HLVid(_hlvid_with_bad_rows(tmp_path, outside))
    by_id = bench.sample_by_id()
    for qid, value in BAD_HLVID.items():
        err = by_id[str(qid)].data_error
        shown = str(outside) if value == "ABSOLUTE" else value
        assert err is not None and err.startswith(f"sample {qid}: video_path {shown!r}"), err
        assert "\n" not in err and by_id[str(qid)].video_path == ""
    assert "absolute path" in by_id["203"].data_error and "'..'" in by_id["200"].data_error
    assert "through a symlink" in by_id["202"].data_error
    assert by_id["100"].data_error is None and by_id["101"].data_error is None
    assert bench.missing_videos() == []  # refused is not 'missing'

    log = OpenLog(monkeypatch)
    records = _run(tmp_path, bench)
    assert log.touched(str(outside.parent), "/etc/passwd", "/proc/self") == []
    assert log.touched("clip_av_video_0_000.mp4")  # the log does see opens: the good videos were decoded
    by_rec = {r["sample_id"]: r for r in records}
    assert len(records) == 8
    for qid in BAD_HLVID:
        assert by_rec[str(qid)]["error"]["stage"] == "data"
        assert by_rec[str(qid)]["error"]["message"] == by_id[str(qid)].data_error
    assert by_rec["100"]["error"] is None and by_rec["100"]["correct"] is True
    assert by_rec["101"]["error"] is None and by_rec["101"]["frames"]["num"] == 4
    err = capsys.readouterr().err
    assert err.count("warning: sample ") == len(BAD_HLVID)


def test_the_opener_log_catches_an_outside_open(tmp_path, outside, monkeypatch):
    """The check above can fail: with links followed on request, the outside video IS opened."""
    bench = HLVid(_hlvid_with_bad_rows(tmp_path, outside), allow_symlinks_out=True)
    assert bench.sample_by_id()["202"].data_error is None  # the link is followed...
    assert bench.sample_by_id()["200"].data_error is not None  # ...but '..' is refused whatever the flag
    log = OpenLog(monkeypatch)
    records = {r["sample_id"]: r for r in _run(tmp_path, bench)}
    assert log.touched(str(outside.parent)) and records["202"]["error"] is None


BAD_VIDEOMME = {
    "esc": "../../outside/secret",
    "abs": "ABSOLUTE",
    "link": "linkout",
    "passwd": "/etc/passwd",
    "environ": "/proc/self/environ",
}


def _videomme_with_bad_rows(tmp_path: Path, outside: Path) -> Path:
    rows = videomme_rows()[:3]  # one good video, with subtitles
    for name, value in BAD_VIDEOMME.items():
        rows.append(dict(rows[0], question_id=f"bad-{name}",
                         videoID=str(outside.with_suffix("")) if value == "ABSOLUTE" else value))
    root = make_videomme(tmp_path / "vmme", rows[:3])
    pd.DataFrame(rows).to_parquet(root / "videomme" / "test-00000-of-00001.parquet")
    (root / "data" / "linkout.mp4").symlink_to(outside)
    (outside.parent / "secret.srt").write_text("1\n00:00:00,000 --> 00:00:01,000\nsecret\n")
    return root


@pytest.mark.parametrize("subtitles", [False, True])
def test_videomme_ids_outside_are_refused_and_never_opened(tmp_path, outside, monkeypatch, subtitles):
    bench = VideoMME(_videomme_with_bad_rows(tmp_path, outside), subtitles=subtitles)
    by_id = bench.sample_by_id()
    for name, value in BAD_VIDEOMME.items():
        err = by_id[f"bad-{name}"].data_error
        shown = str(outside.with_suffix("")) if value == "ABSOLUTE" else value
        assert err is not None and err.startswith(f"sample bad-{name}: videoID {shown!r}"), err
        assert by_id[f"bad-{name}"].metadata["subtitle_path"] is None
    assert by_id["001-1"].data_error is None and by_id["001-1"].metadata["video_exists"]
    if subtitles:  # a refused sample's subtitle file is never opened, even when asked for its prompt
        with pytest.raises(ValueError, match="bad-esc"):
            bench.build_prompt(by_id["bad-esc"])

    log = OpenLog(monkeypatch)
    records = {r["sample_id"]: r for r in _run(tmp_path, bench)}
    assert log.touched(str(outside.parent), "/etc/passwd", "/proc/self") == []
    assert log.touched("fFjv93ACGo8.mp4")
    if subtitles:
        assert log.touched("fFjv93ACGo8.srt")  # the good sample's subtitles were read
    assert all(records[f"bad-{n}"]["error"]["stage"] == "data" for n in BAD_VIDEOMME)
    assert [records[f"001-{q}"]["error"] for q in (1, 2, 3)] == [None, None, None]


def test_a_subtitle_link_out_refuses_the_sample(tmp_path, outside):
    root = make_videomme(tmp_path / "vmme", videomme_rows()[:3])
    srt = root / "subtitle" / "fFjv93ACGo8.srt"
    srt.unlink()
    (outside.parent / "secret.srt").write_text("secret")
    srt.symlink_to(outside.parent / "secret.srt")
    sample = VideoMME(root, subtitles=True).sample_by_id()["001-1"]
    assert "resolves (through a symlink)" in sample.data_error and "outside" in sample.data_error


def test_hf_cache_blob_links_and_a_linked_data_directory_are_inside(tmp_path):
    """The HF cache stores snapshot files as links to ../../blobs; a user may link videos/ to another disk."""
    repo = tmp_path / "hub" / "datasets--bfshi--HLVid"
    snap = repo / "snapshots" / ("0" * 40)
    (snap / "videos").mkdir(parents=True)
    (repo / "blobs").mkdir()
    (repo / "blobs" / "abc").write_bytes(b"x")
    (snap / "videos" / "a.mp4").symlink_to(Path("../../../blobs/abc"))
    assert contained_path(snap / "videos", "a.mp4", "video_path") == snap / "videos" / "a.mp4"
    disk = tmp_path / "disk"
    disk.mkdir()
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "videos").symlink_to(disk)
    assert contained_path(tmp_path / "ds" / "videos", "b.mp4", "video_path") == tmp_path / "ds" / "videos" / "b.mp4"
    (disk / "c.mp4").symlink_to(tmp_path / "hub" / "datasets--bfshi--HLVid" / "blobs" / "abc")
    with pytest.raises(UnsafePathError, match="through a symlink"):
        contained_path(tmp_path / "ds" / "videos", "c.mp4", "video_path")


@pytest.mark.parametrize("value", ["", "  ", "a\x00b", None, "C:\\x.mp4", "..", "a/../../b"])
def test_odd_values_are_refused(tmp_path, value):
    with pytest.raises(UnsafePathError, match="video_path"):
        contained_path(tmp_path, value, "video_path")


def test_binary_text_columns_are_decoded_or_refused(tmp_path):
    rows = hlvid_rows()[:3]
    rows[0]["question"] = rows[0]["question"].encode("utf-8")
    rows[1]["question"] = b"\xff\xfe not utf-8"
    rows[2]["video_path"] = rows[2]["video_path"].encode("utf-8")
    root = make_hlvid(tmp_path / "hlvid", hlvid_rows()[:3])
    pd.DataFrame(rows).to_parquet(root / "data" / "test-00000-of-00001.parquet")
    by_id = HLVid(root).sample_by_id()
    good = by_id["100"]
    assert good.question == hlvid_rows()[0]["question"] and good.options == ["red", "green", "blue", "white"]
    assert good.invalid_reason is None and good.data_error is None
    bad = by_id["101"]
    assert bad.invalid_reason == "question is binary and not UTF-8 text (bad byte at 0)"
    assert "option line" not in (bad.data_error or "") and "question is binary" in bad.data_error
    assert by_id["102"].video_path.endswith("videos/clip_av_video_1_000.mp4") and by_id["102"].data_error is None

    vrows = videomme_rows()[:3]
    vrows[0]["question"] = vrows[0]["question"].encode("utf-8")
    vrows[1]["question"] = b"\x80abc"
    vrows[2]["options"] = [o.encode("utf-8") for o in vrows[2]["options"][:3]] + [b"D. \xff"]
    vroot = make_videomme(tmp_path / "vmme", videomme_rows()[:3])
    pd.DataFrame(vrows).to_parquet(vroot / "videomme" / "test-00000-of-00001.parquet")
    vby = VideoMME(vroot).sample_by_id()
    assert vby["001-1"].question == videomme_rows()[0]["question"] and vby["001-1"].invalid_reason is None
    assert "question is binary and not UTF-8" in vby["001-2"].invalid_reason
    assert vby["001-3"].options[:3] == ["apple 2", "banana 2", "cherry 2"]
    assert vby["001-3"].invalid_reason == "option 4 is binary and not UTF-8 text (bad byte at 3)"
