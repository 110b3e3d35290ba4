"""Answer extraction: each convention against the real thing (lmms-eval's extractor) or its source."""

from __future__ import annotations

import pytest

from benchmarks.extraction import CONVENTIONS, counts_unanswered, extract, mcq_extract, regex_extract
from tests.test_bench_reference import lmms_mcq_extract

MESSY = [
    "The answer is (B).",
    "b",
    "B",
    "Answer: C. Because the man is running.",
    "",
    "   ",
    "\n",
    "I cannot tell from the video.",
    "there is no letter here at all, only lower case words that go on and on and on",
    "A and B",
    "B or C, probably C",
    "(D)",
    "D.",
    '"B."',
    "C)",
    "The best answer is: A",
    "Best answer: C",
    "Best option: D",
    "The correct option is D",
    "Certainly! The answer is B",
    "Option C",
    "My answer is B, not A.",
    "The answer is probably Because of the hat",
    "答案是C",
    "<think>A or D?</think> D",
    "E",
    "A. The red car\nB. The blue car",
    "I choose d",
    "The correct answer is (A) apple, not (C).",
    "Answer:B",
    "B: the dog",
    "a) cat",
    "AB",
    "  C  ",
    "It's D!",
    "Both A) and C) fit; final answer: C",
]


@pytest.mark.parametrize("output", MESSY)
def test_mcq_convention_equals_lmms_eval(output):
    reference = lmms_mcq_extract()
    ours = extract(output, "lmms-eval-mcq")
    assert (ours or "") == reference(output, choices=["A", "B", "C", "D"])
    # and with its default A-H choices, and with a 5-option list
    assert mcq_extract(output) == reference(output)
    assert mcq_extract(output, list("ABCDE")) == reference(output, choices=list("ABCDE"))


# Worked out by hand from lmms-eval <= 0.7.1 utils.extract_characters_regex and the Video-MME
# authors' eval_your_results.py (same prefixes, two of them glued by a missing comma).
REGEX_EXPECTED = {
    "The answer is (B).": "B",
    "b": None,  # case-sensitive
    "Answer: C. Because the man is running.": "A",  # the 'A' of "Answer"
    "": None,
    "I cannot tell from the video.": None,
    "A and B": "A",
    "B or C, probably C": "B",
    "The best answer is: A": "A",
    "Best answer: C": "B",  # "Best answer:" is never stripped (glued to "Best option:")
    "Best option: D": "B",
    "The correct option is D": "D",
    "Certainly! The answer is B": "C",  # the 'C' of "Certainly"
    "Option C": "C",
    "The answer is probably Because of the hat": "B",
    "答案是C": "C",
    "E": None,
    "I choose d": None,
    "The answer: D": "D",  # "The answer" is a prefix
}


@pytest.mark.parametrize(("output", "letter"), sorted(REGEX_EXPECTED.items()))
def test_regex_conventions_match_the_published_scripts(output, letter):
    assert extract(output, "lmms-eval-regex") == letter
    assert extract(output, "videomme-official") == letter
    assert regex_extract(output) == (letter or "")


def test_conventions_differ_where_documented():
    # The example: "Answer: C." is A for the regex scorers, C for the ranked extractor.
    out = "Answer: C."
    assert extract(out, "lmms-eval-regex") == "A"
    assert extract(out, "videomme-official") == "A"
    assert extract(out, "lmms-eval-mcq") == "C"
    # lower-case answers: only the ranked extractor's fallback finds nothing either (case-sensitive)
    assert extract("b", "lmms-eval-mcq") is None
    # no letter: wrong for lmms-eval, out of the denominator for the official script
    assert counts_unanswered("lmms-eval-regex") and counts_unanswered("lmms-eval-mcq")
    assert not counts_unanswered("videomme-official")


def test_unknown_convention_lists_choices():
    with pytest.raises(ValueError, match="lmms-eval-regex, lmms-eval-mcq, videomme-official"):
        extract("A", "first-letter")
    assert set(CONVENTIONS) == {"lmms-eval-regex", "lmms-eval-mcq", "videomme-official"}


def test_none_output_is_unanswered():
    for convention in CONVENTIONS:
        assert extract(None, convention) is None
