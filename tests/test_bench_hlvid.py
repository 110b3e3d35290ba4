"""HLVid: options parsed from the question text, prompt, missing videos, per-category scoring."""

from __future__ import annotations

import pytest

from benchmarks.hlvid import PUBLISHED, HLVid, parse_question
from benchmarks.registry import get_benchmark
from tests.test_bench_data import fake_hf_cache, hlvid_rows, make_hlvid


def test_parse_question_splits_stem_options_instruction():
    text = "What is written on the van?\nIt is far away.\nA. FEDEX\nB. UPS\nC. DHL\nD. USPS\nAnswer with the option's letter."
    stem, options, tail = parse_question(text)
    assert stem == "What is written on the van?\nIt is far away."
    assert options == ["FEDEX", "UPS", "DHL", "USPS"]
    assert tail == "Answer with the option's letter."
    # an 'A.' inside the stem sentence does not start the options; letters must run A, B, C...
    stem, options, _ = parse_question("Is Plan A. better?\nA. yes\nC. no")
    assert options == ["yes"] and stem == "Is Plan A. better?"


def test_samples_prompt_and_scoring(tmp_path):
    root = make_hlvid(tmp_path / "hlvid")
    bench = HLVid(root)
    samples = list(bench.samples())
    assert [s.id for s in samples] == [str(r["question_id"]) for r in hlvid_rows()]
    s0 = samples[0]
    assert s0.options == ["red", "green", "blue", "white"] and s0.answer == "A"
    assert s0.video_path.endswith("videos/clip_av_video_0_000.mp4") and s0.metadata["video_exists"]
    assert bench.build_prompt(s0) == "Question: " + hlvid_rows()[0]["question"]
    assert bench.generation_kwargs == {"max_new_tokens": 16, "do_sample": False}
    assert bench.published == PUBLISHED and PUBLISHED["NVILA-8B-HD-Video"] == 52.6
    # av: 2 of 3 right; household: 1 of 3 right, one with no letter
    outputs = {"100": "A", "101": "The answer is B", "102": "A", "103": "D", "104": "no idea", "105": "C"}
    table = bench.aggregate(bench.score(outputs))
    get = lambda split, group: table[(table["split"] == split) & (table["group"] == group)].iloc[0]  # noqa: E731
    assert get("category", "av")["correct"] == 2 and get("category", "household")["correct"] == 1
    assert get("overall", "all")["accuracy"] == pytest.approx(50.0)
    assert get("category", "household")["unanswered"] == 1
    official = bench.aggregate(bench.score(outputs, "videomme-official"))
    assert official.iloc[0]["scored"] == 5 and official.iloc[0]["accuracy"] == pytest.approx(60.0)


def test_missing_videos_and_shards_are_named(tmp_path):
    root = make_hlvid(tmp_path / "hlvid")
    (root / "videos" / "clip_household_video_2_000.mp4").unlink()
    (root / "videos_part_0002.tar").write_bytes(b"")
    bench = HLVid(root)
    assert bench.missing_videos() == ["clip_household_video_2_000.mp4"]
    report = bench.video_report()
    assert "1 of 4 videos missing" in report and "clip_household_video_2_000.mp4" in report
    assert "videos_part_0002.tar" in report
    # missing videos do not stop scoring (it needs no video); samples are still yielded
    assert len(list(bench.samples())) == 6


def test_bad_rows_are_invalid_not_scored(tmp_path):
    rows = hlvid_rows()
    rows[0]["answer"] = "E"
    rows[1]["question"] = "A question with its options on one line: A) red B) green"
    bench = HLVid(make_hlvid(tmp_path / "hlvid", rows, videos=False))
    by_id = bench.sample_by_id()
    assert "answer 'E' is not among the option letters" in by_id["100"].invalid_reason
    assert "found 0 option line(s)" in by_id["101"].invalid_reason
    table = bench.aggregate(bench.score({str(r["question_id"]): r["answer"] for r in rows}))
    assert (
        table.iloc[0]["invalid_sample"] == 2
        and table.iloc[0]["scored"] == 4
        and table.iloc[0]["correct"] == 4
    )
    rows = [{k: v for k, v in r.items() if k != "category"} for r in hlvid_rows()]
    with pytest.raises(ValueError, match=r"missing column\(s\) \['category'\]"):
        HLVid(make_hlvid(tmp_path / "h2", rows, videos=False))


def test_loads_from_hf_cache(tmp_path, monkeypatch):
    src = make_hlvid(tmp_path / "src", videos=False)
    parquet = (src / "data" / "test-00000-of-00001.parquet").read_bytes()
    fake_hf_cache(tmp_path / "hub", "bfshi/HLVid", {"data/test-00000-of-00001.parquet": parquet})
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    bench = get_benchmark("hlvid")  # default data_dir is the dataset id
    assert len(list(bench.samples())) == 6 and len(bench.missing_videos()) == 4
