"""Video-MME: loading, prompts and subtitles against lmms-eval's own task code, scoring, bad input."""

from __future__ import annotations

import math
import sys
import types

import pytest

from benchmarks.extraction import CONVENTIONS
from benchmarks.registry import get_benchmark
from benchmarks.scoring import PredictionError, index_predictions
from benchmarks.subtitles import NO_SUBTITLES, parse_srt, subtitles_for_frames
from benchmarks.videomme import VideoMME
from tests.test_bench_data import fake_hf_cache, make_videomme, videomme_rows
from tests.test_bench_reference import lmms_clustered_stderr, lmms_mcq_extract, lmms_videomme_utils


@pytest.fixture(scope="module")
def hf_home(tmp_path_factory):
    """An HF_HOME whose ``videomme/`` is both our data dir and lmms-eval's cache dir."""
    home = tmp_path_factory.mktemp("hf_home")
    make_videomme(home / "videomme")
    return home


@pytest.fixture
def lmms(monkeypatch, hf_home):
    return lmms_videomme_utils(monkeypatch, hf_home)


def _doc(row: dict) -> dict:
    return dict(row)


def test_samples_follow_the_parquet(hf_home):
    bench = VideoMME(hf_home / "videomme")
    samples = list(bench.samples())
    assert [s.id for s in samples] == [r["question_id"] for r in videomme_rows()]
    first = samples[0]
    assert first.options == ["apple 0", "banana 0", "cherry 0", "date 0"]
    assert first.metadata["raw_options"][0] == "A. apple 0"
    assert first.answer == "B" and first.invalid_reason is None
    assert first.metadata["duration"] == "short" and first.metadata["video_id"] == "fFjv93ACGo8"
    # the upper-case .MP4 file is found (lmms-eval tries .mp4, .MP4, .mkv)
    paths = {s.metadata["video_id"]: s.video_path for s in samples}
    assert paths["abcDEF12345"].endswith("data/abcDEF12345.MP4")
    assert all(s.metadata["video_exists"] for s in samples)
    assert len(list(bench.samples(limit=2))) == 2


@pytest.mark.parametrize("style", ["default", "llava_vid", "gpt4v", "qwen3_vl"])
def test_prompt_equals_lmms_eval(hf_home, lmms, style):
    import yaml

    text = (lmms.Path(lmms.__file__).parent / "videomme.yaml").read_text()
    config = yaml.safe_load("".join(line for line in text.splitlines(True) if "!function" not in line))
    kwargs = config["lmms_eval_specific_kwargs"][style]
    bench = VideoMME(hf_home / "videomme", prompt_style=style)
    for row, sample in zip(videomme_rows(), bench.samples()):
        assert bench.build_prompt(sample) == lmms.videomme_doc_to_text(_doc(row), kwargs)


@pytest.mark.parametrize("frame_num", [32, 8, 3])
def test_subtitle_prompt_equals_lmms_eval(hf_home, lmms, frame_num):
    bench = VideoMME(hf_home / "videomme", subtitles=True, subtitle_frames=frame_num)
    assert bench.name == "videomme_w_subtitle"
    prompts = []
    for row, sample in zip(videomme_rows(), bench.samples()):
        ours = bench.build_prompt(sample)
        assert ours == lmms.videomme_doc_to_text_subtitle(_doc(row), {"frame_num": frame_num})
        prompts.append(ours)
    # the first video has subtitles, the others none
    assert "Hello there" in prompts[0] and NO_SUBTITLES in prompts[-1]
    assert prompts[0].startswith("This video's subtitles are listed below: \n")


def test_qwen3_vl_subtitle_prompt_equals_lmms_eval(hf_home, lmms):
    kwargs = {
        "frame_num": 8,
        "format": "qwen3_vl",
        "pre_prompt": "Question: ",
        "post_prompt": "Answer with the option letter only.",
    }
    bench = VideoMME(hf_home / "videomme", subtitles=True, prompt_style="qwen3_vl", subtitle_frames=8)
    for row, sample in zip(videomme_rows(), bench.samples()):
        assert bench.build_prompt(sample) == lmms.videomme_doc_to_text_subtitle(_doc(row), kwargs)


def test_subtitle_selection_rules(tmp_path):
    srt = tmp_path / "x.srt"
    srt.write_text(
        '1\n00:00:00,000 --> 00:00:01,000\n<font color="white" size=".72c">one</font>\n\n'
        "2\n00:00:01,000 --> 00:00:02,000\nplain text, no font tag\n\n"
        '3\n00:00:00,000 --> 00:00:01,000\n<font color="white" size=".72c">one again</font>\n\n'
        "bad block\n"
    )
    blocks = parse_srt(srt)
    assert [b.text for b in blocks] == [
        '<font color="white" size=".72c">one again</font>',
        "plain text, no font tag",
    ]
    # frame 10 at 10 fps lies in [10, 20): block 2 only, which has no font tag -> nothing
    assert subtitles_for_frames(blocks, 10.0, [10]) == ""
    assert subtitles_for_frames(blocks, 10.0, [0, 9, 10]) == "one again"
    srt.write_text("1\n00:00:00.000 --> 00:00:01,000\ntext\n")
    with pytest.raises(ValueError, match="x.srt: bad subtitle time"):
        parse_srt(srt)


def _lmms_score(monkeypatch, lmms, rows, outputs):
    """lmms-eval 0.7.3's own process_results + aggregate on our outputs (its mcq extractor)."""
    mcq = types.ModuleType("lmms_eval.tasks._task_utils.mcq_extract")
    mcq.extract_mcq_answer = lmms_mcq_extract()
    for name in ("lmms_eval.tasks", "lmms_eval.tasks._task_utils"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "lmms_eval.tasks._task_utils.mcq_extract", mcq)
    results = [
        lmms.videomme_process_results(_doc(r), [outputs[r["question_id"]]])["videomme_perception_score"]
        for r in rows
    ]
    return lmms.videomme_aggregate_results(results), results


MESSY = [
    "The answer is (B).",
    "b",
    "Answer: C. Because...",
    "",
    "A and D",
    "I think (C)",
    "D",
    "B.",
    "no idea",
]


def test_mcq_accuracy_and_stderr_equal_lmms_eval(hf_home, lmms, monkeypatch):
    rows = videomme_rows()
    outputs = {r["question_id"]: MESSY[i] for i, r in enumerate(rows)}
    reference, results = _lmms_score(monkeypatch, lmms, rows, outputs)
    bench = VideoMME(hf_home / "videomme")
    scores = bench.score(outputs, "lmms-eval-mcq")
    table = bench.aggregate(scores)
    overall = table[table["split"] == "overall"].iloc[0]
    assert math.isclose(overall["accuracy"], reference)
    assert list(scores["pred"].fillna("")) == [r["pred_answer"] for r in results]
    se = lmms_clustered_stderr()([r["score"] for r in results], [r["videoID"] for r in results])
    assert math.isclose(overall["stderr"], 100 * se)
    assert math.isclose(overall["ci95_high"] - overall["accuracy"], 1.959963984540054 * 100 * se)


def test_conventions_score_the_same_outputs_differently(hf_home):
    bench = VideoMME(hf_home / "videomme")
    rows = videomme_rows()
    # answers of the first three questions: B, C, D
    outputs = {
        rows[0]["question_id"]: "Answer: B.",
        rows[1]["question_id"]: "Answer: C.",
        rows[2]["question_id"]: "none",
    }
    outputs |= {r["question_id"]: r["answer"] for r in rows[3:]}
    acc = {}
    for c in CONVENTIONS:
        t = bench.aggregate(bench.score(outputs, c))
        acc[c] = t[t["split"] == "overall"].iloc[0]
    assert (
        acc["lmms-eval-regex"]["correct"] == 6 and acc["lmms-eval-regex"]["scored"] == 9
    )  # "A" from "Answer"
    assert acc["lmms-eval-mcq"]["correct"] == 8 and acc["lmms-eval-mcq"]["scored"] == 9
    assert (
        acc["videomme-official"]["correct"] == 6 and acc["videomme-official"]["scored"] == 8
    )  # "none" leaves
    assert acc["videomme-official"]["unanswered"] == 1
    by = bench.aggregate(bench.score(outputs, "lmms-eval-mcq"))
    short = by[(by["split"] == "duration") & (by["group"] == "short")].iloc[0]
    assert short["n"] == 3 and short["correct"] == 2  # the "none" output is on a short video
    assert set(by["split"]) == {"overall", "duration", "domain", "sub_category", "task_type"}


def test_bad_input_is_never_scored_silently(tmp_path):
    rows = videomme_rows()
    rows[0]["answer"] = "E"  # not among A-D
    rows[1]["options"] = ["apple", "B. banana", "C. cherry", "D. date"]  # unlettered option
    root = make_videomme(tmp_path / "vm", rows)
    (root / "data" / "fFjv93ACGo8.mp4").unlink()  # one absent video
    bench = VideoMME(root)
    samples = bench.sample_by_id()
    assert "answer 'E' is not among" in samples[rows[0]["question_id"]].invalid_reason
    assert "does not start with 'A. '" in samples[rows[1]["question_id"]].invalid_reason
    assert bench.missing_videos() == ["fFjv93ACGo8"]
    outputs = {r["question_id"]: r["answer"] for r in rows[:-1]}  # last one has no prediction
    table = bench.aggregate(bench.score(outputs))
    overall = table[table["split"] == "overall"].iloc[0]
    assert overall["invalid_sample"] == 2 and overall["no_prediction"] == 1
    assert overall["scored"] == 7 and overall["correct"] == 6  # invalid out, missing counted wrong
    with pytest.raises(PredictionError, match="does not have: 999-1"):
        index_predictions([("001-1", "A"), ("999-1", "B")], samples)
    with pytest.raises(PredictionError, match="duplicate predictions for question\\(s\\) 001-1"):
        index_predictions([("001-1", "A"), ("001-1", "B")], samples)


def test_missing_columns_are_named(tmp_path):
    rows = [{k: v for k, v in r.items() if k not in ("task_type", "answer")} for r in videomme_rows()]
    root = make_videomme(tmp_path / "vm", rows, videos=False)
    with pytest.raises(ValueError, match=r"missing column\(s\) \['task_type', 'answer'\]"):
        VideoMME(root)


def test_registry_builds_both_variants(hf_home):
    bench = get_benchmark("videomme", data_dir=hf_home / "videomme")
    assert isinstance(bench, VideoMME) and not bench.subtitles
    assert get_benchmark("videomme_w_subtitle", data_dir=hf_home / "videomme").subtitles
    with pytest.raises(KeyError, match="valid choices: hlvid, synthetic_needle, videomme"):
        get_benchmark("videomme2")


def test_hf_cache_parquet_with_lmms_eval_unzipped_videos(tmp_path, monkeypatch):
    """lmms-eval's own layout: parquet in the hub cache, videos in $HF_HOME/videomme/data."""
    src = make_videomme(tmp_path / "hf_home" / "videomme")
    parquet = (src / "videomme" / "test-00000-of-00001.parquet").read_bytes()
    fake_hf_cache(tmp_path / "hub", "lmms-eval/Video-MME", {"videomme/test-00000-of-00001.parquet": parquet})
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    bench = get_benchmark("videomme")  # the default id lmms-lab/Video-MME finds the lmms-eval/ copy
    assert str(bench.root).startswith(str(tmp_path / "hub"))
    assert bench.missing_videos() == []
    assert all(
        s.video_path.startswith(str(tmp_path / "hf_home" / "videomme" / "data")) for s in bench.samples()
    )
