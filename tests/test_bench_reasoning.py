"""Reasoning-block stripping before extraction: equal to lmms-eval's own ``strip_reasoning_tags``."""

from __future__ import annotations

import pytest

from benchmarks.extraction import REASONING_TAGS, extract, strip_reasoning
from tests.test_bench_reference import load_file

OUTPUTS = [
    "<think>A looks wrong, B maybe</think>The answer is C.",
    "<think>first</think> B <think>second D</think>",
    "thinking about A and B</think>\nD",  # template prefilled the opening tag
    "<think>never closed, A",  # unclosed: left untouched
    "<THINK>case matters</THINK> A",
    "<thinking>compare options</thinking>(B)",
    "<think>x</think><thinking>y</thinking>C",
    "no tags at all: B",
    "",
    "</think></think>A",
    "<think>a</think>B</think>C",
]


@pytest.fixture(scope="module")
def lmms_strip():
    return load_file("_lmms_reasoning", "api/reasoning.py").strip_reasoning_tags


@pytest.mark.parametrize("output", OUTPUTS)
def test_strip_equals_lmms_eval(lmms_strip, output):
    pairs = [list(pair) for pair in REASONING_TAGS]
    assert strip_reasoning(output, REASONING_TAGS) == lmms_strip(output, pairs)


def test_extraction_changes_only_when_asked():
    output = "<think>A looks wrong, B maybe</think>The answer is C."
    assert extract(output, "lmms-eval-regex") == "A"  # the first letter of the thoughts wins without stripping
    assert extract(output, "lmms-eval-regex", reasoning_tags=REASONING_TAGS) == "C"


def test_benchmark_option_strips_before_scoring(tmp_path):
    from benchmarks.registry import get_benchmark

    plain = get_benchmark("synthetic_needle", cache_dir=tmp_path, num_videos=1, num_frames=8,
                          width=64, height=64, needle_frames=2)
    stripping = get_benchmark("synthetic_needle", cache_dir=tmp_path, num_videos=1, num_frames=8,
                              width=64, height=64, needle_frames=2, reasoning_tags=True)
    sample = next(iter(plain.samples()))
    wrong = next(letter for letter in sample.letters if letter != sample.answer)
    output = f"<think>maybe {wrong}</think>{sample.answer}"
    assert stripping.extract_answer(output, sample, "lmms-eval-regex") == sample.answer
    assert plain.extract_answer(output, sample, "lmms-eval-regex") == wrong
