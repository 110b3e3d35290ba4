"""Mini data sets in each benchmark's real schema (used by the other test_bench_* files) and data resolution."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmarks.data import DataNotFoundError, find_video, resolve_dataset_dir
from harness.video.writer import write_video

VIDEOMME_COLUMNS = [
    "video_id", "duration", "domain", "sub_category", "url", "videoID",
    "question_id", "task_type", "question", "options", "answer",
]  # fmt: skip

SRT = """1
00:00:00,000 --> 00:00:01,000
<font color="white" size=".72c">Hello there</font>

2
00:00:01,000 --> 00:00:02,000
<font color="white" size=".72c">second line</font>
<font color="white" size=".72c">continued</font>

3
00:00:02,500 --> 00:00:02,900
no font tag here

4
00:00:02,000 --> 00:00:02,400
<font color="white" size=".72c">last words</font>
"""


def tiny_video(path: Path, frames: int = 30, fps: float = 10.0, size: int = 32) -> Path:
    def gen():
        for t in range(frames):
            yield np.full((size, size, 3), (t * 8) % 256, dtype=np.uint8)

    return write_video(path, gen(), fps=fps)


def videomme_rows() -> list[dict]:
    """Nine questions on three videos (short/medium/long), real column names and value styles."""
    specs = [
        ("001", "short", "Knowledge", "Humanity & History", "fFjv93ACGo8"),
        ("002", "medium", "Sports Competition", "Football", "abcDEF12345"),
        ("003", "long", "Knowledge", "Astronomy", "zzTop_99xyz"),
    ]
    tasks = ["Counting Problem", "OCR Problems", "Temporal Reasoning"]
    rows = []
    for vid, duration, domain, sub, youtube in specs:
        for q in range(3):
            rows.append(
                {
                    "video_id": vid,
                    "duration": duration,
                    "domain": domain,
                    "sub_category": sub,
                    "url": f"https://www.youtube.com/watch?v={youtube}",
                    "videoID": youtube,
                    "question_id": f"{vid}-{q + 1}",
                    "task_type": tasks[q],
                    "question": f"Question {q + 1} about video {vid}?",
                    "options": [f"A. apple {q}", f"B. banana {q}", f"C. cherry {q}", f"D. date {q}"],
                    "answer": "ABCD"[(int(vid) + q) % 4],
                }
            )
    return rows


def make_videomme(
    root: Path, rows: list[dict] | None = None, videos: bool = True, subtitles: bool = True
) -> Path:
    """``root`` laid out like the HF dataset after unzipping (parquet + data/ + subtitle/)."""
    rows = videomme_rows() if rows is None else rows
    (root / "videomme").mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(root / "videomme" / "test-00000-of-00001.parquet")
    ids = list(dict.fromkeys(r["videoID"] for r in rows if "videoID" in r))
    if videos:
        for i, vid in enumerate(ids):
            ext = ".MP4" if i == 1 else ".mp4"  # one upper-case extension, as some Video-MME files have
            tiny_video(root / "data" / f"{vid}{ext}")
    if subtitles and ids:
        (root / "subtitle").mkdir(parents=True, exist_ok=True)
        (root / "subtitle" / f"{ids[0]}.srt").write_text(SRT, encoding="utf-8")
    return root


def hlvid_question(stem: str, options: list[str]) -> str:
    lines = [stem] + [f"{chr(65 + i)}. {o}" for i, o in enumerate(options)]
    return "\n".join(lines) + "\nPlease answer directly with only the letter of the correct option."


def hlvid_rows() -> list[dict]:
    rows = []
    for i in range(6):
        cat = "av" if i < 3 else "household"
        rows.append(
            {
                "question_id": 100 + i,
                "question": hlvid_question(f"What colour is sign {i}?", ["red", "green", "blue", "white"]),
                "category": cat,
                "video_path": f"clip_{cat}_video_{i // 2}_000.mp4",
                "answer": "ABCD"[i % 4],
            }
        )
    return rows


def make_hlvid(root: Path, rows: list[dict] | None = None, videos: bool = True) -> Path:
    rows = hlvid_rows() if rows is None else rows
    (root / "data").mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(root / "data" / "test-00000-of-00001.parquet")
    if videos:
        for name in sorted({r["video_path"] for r in rows}):
            tiny_video(root / "videos" / name, frames=8)
    return root


def fake_hf_cache(hub: Path, repo_id: str, files: dict[str, bytes]) -> Path:
    """A dataset snapshot in huggingface_hub's cache layout (refs/main -> snapshots/<sha>)."""
    sha = "0123456789abcdef0123456789abcdef01234567"
    repo = hub / f"datasets--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(sha)
    snap = repo / "snapshots" / sha
    for rel, data in files.items():
        (snap / rel).parent.mkdir(parents=True, exist_ok=True)
        (snap / rel).write_bytes(data)
    return snap


def test_local_directory_is_used_as_is(tmp_path):
    assert resolve_dataset_dir(tmp_path) == tmp_path


@pytest.mark.parametrize("cached_as", ["lmms-lab/Video-MME", "lmms-eval/Video-MME"])
def test_hf_cache_id_and_its_alias_resolve(tmp_path, monkeypatch, cached_as):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    snap = fake_hf_cache(tmp_path / "hub", cached_as, {"videomme/test-00000-of-00001.parquet": b"x"})
    aliases = ("lmms-lab/Video-MME", "lmms-eval/Video-MME")
    for asked in aliases:  # either id finds the data cached under the other
        assert resolve_dataset_dir(asked, aliases).resolve() == snap.resolve()


def test_uncached_id_says_what_was_looked_for(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataNotFoundError, match="bfshi/HLVid.*nothing is downloaded"):
        resolve_dataset_dir("bfshi/HLVid", ("bfshi/HLVid",))
    with pytest.raises(DataNotFoundError, match="not a directory"):
        resolve_dataset_dir(tmp_path / "no" / "such" / "dir")


def test_find_video_tries_lmms_eval_extensions(tmp_path):
    (tmp_path / "a.mkv").write_bytes(b"")
    (tmp_path / "b.MP4").write_bytes(b"")
    assert find_video(tmp_path, "a") == tmp_path / "a.mkv"
    assert find_video(tmp_path, "b") == tmp_path / "b.MP4"
    assert find_video(tmp_path, "c") is None
