"""The three published answer-extraction conventions for multiple-choice video QA.

Why three: the same model outputs give different accuracies depending on which scorer read
them (e.g. ``"Answer: C."`` is ``A`` for the two regex scorers, which take the first capital
A-D after stripping a few prefixes, and ``C`` for the ranked extractor). A number is only
comparable with a published one when it was extracted the same way, so every accuracy this
harness reports names its convention.

``lmms-eval-regex``
    lmms-eval's videomme task up to v0.7.1 (``extract_characters_regex``): strip the literal
    prefixes below (case-sensitive ``str.replace``), return the first of A-D anywhere in what
    is left, ``""`` when there is none. Every question counts (no letter = wrong).
    The prefix list has two missing commas in the source, so Python concatenates
    ``"The best option is" "The correct option is"`` and ``"Best answer:" "Best option:"``
    into two strings that almost never occur; we keep them concatenated to stay exact.
``lmms-eval-mcq``
    lmms-eval v0.7.2 and later (``_task_utils/mcq_extract.py``, ``extract_mcq_answer``): collect
    candidate letters in several formats (``(B)``, ``B.``, ``B:``, ``B)``, ``B `` , after an
    answer phrase, at the start, at the end, anywhere as a fallback), rank by format priority
    and then by position (later wins). Every question counts.
``videomme-official``
    The Video-MME authors' ``evaluation/eval_your_results.py`` (BradyFU/Video-MME, last
    version 4e7566d before the file was removed from the repository in June 2024): the very
    same prefix list and regex as ``lmms-eval-regex``, but a response with no extractable
    letter is left out of the denominator ("answered" counts only extracted letters).

All three return the letter in upper case or ``""``; :func:`extract` maps ``""`` to ``None``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

CONVENTIONS: tuple[str, ...] = ("lmms-eval-regex", "lmms-eval-mcq", "videomme-official")
DEFAULT_CONVENTION = CONVENTIONS[0]

# Prefixes removed by both regex scorers, in their order. The 5th and 6th entries are two
# string literals each, joined by Python because the source lacks a comma between them.
REGEX_ANSWER_PREFIXES: tuple[str, ...] = (
    "The best answer is",
    "The correct answer is",
    "The answer is",
    "The answer",
    "The best option is" + "The correct option is",
    "Best answer:" + "Best option:",
)

# Answer phrases of the ranked extractor, in its order (lower-cased match, then the first
# choice letter at or after the phrase, case-sensitive).
MCQ_ANSWER_PHRASES: tuple[str, ...] = (
    "the answer is",
    "answer is",
    "the correct answer is",
    "correct answer is",
    "the best answer is",
    "best answer is",
    "the correct option is",
    "correct option is",
    "the best option is",
    "best option is",
    "the choice is",
    "choice is",
    "the correct choice is",
    "correct choice is",
    "i choose",
    "i select",
    "i pick",
    "my answer is",
    "my choice is",
    "옵션",
    "정답은",
    "답은",
    "답:",
    "答案是",
    "答案为",
    "选",
    "答えは",
)

# Format -> priority in the ranked extractor (higher wins; ties go to the later position).
MCQ_FORMAT_PRIORITY: dict[str, int] = {
    "start": 10,
    "end": 9,
    "phrase": 7,
    "parentheses": 6,
    "period": 5,
    "colon": 4,
    "right_paren": 3,
    "space": 2,
    "fallback": 0,
}
MCQ_DEFAULT_CHOICES: tuple[str, ...] = tuple("ABCDEFGH")
# Characters trimmed from both ends, one character class after the other (order matters:
# '"B."' loses the quotes but keeps the period, because '.' was tried before '"').
_MCQ_TRIM_ORDER: tuple[str, ...] = (",", ".", "!", "?", ";", ":", "'", '"')


def check_convention(convention: str) -> str:
    if convention not in CONVENTIONS:
        raise ValueError(
            f"unknown extraction convention {convention!r}; valid choices: {', '.join(CONVENTIONS)}"
        )
    return convention


def counts_unanswered(convention: str) -> bool:
    """Whether a response with no extractable letter stays in the denominator (as wrong)."""
    return check_convention(convention) != "videomme-official"


def regex_extract(response: str, choices: Sequence[str] = ("A", "B", "C", "D")) -> str:
    """The regex scorers' extraction (lmms-eval <= 0.7.1 and the Video-MME authors' script).

    ``choices`` defaults to A-D, which is what both scripts hard-code; the words-count guard
    of the original (``> 10`` words and no letter) cannot change the result, so it is implied.
    """
    text = response.strip()
    for prefix in REGEX_ANSWER_PREFIXES:
        text = text.replace(prefix, "")
    letters = "".join(re.escape(c) for c in choices)
    match = re.search(f"[{letters}]", text)
    return match.group(0) if match else ""


def mcq_extract(response: str, choices: Sequence[str] | None = None) -> str:
    """The ranked extractor of lmms-eval >= 0.7.2 (same inputs, same letter)."""
    if not response or not response.strip():
        return ""
    letters = list(choices) if choices else list(MCQ_DEFAULT_CHOICES)
    text = response.strip()
    for ch in _MCQ_TRIM_ORDER:
        text = text.strip(ch)
    padded = f" {text} "
    best: tuple[int, int, str] | None = None  # (priority, position, letter)

    def offer(letter: str, position: int, fmt: str) -> None:
        nonlocal best
        key = (MCQ_FORMAT_PRIORITY[fmt], position)
        # Strictly greater: among equal keys the first offered wins, as a stable sort would keep.
        if best is None or key > best[:2]:
            best = (key[0], key[1], letter)

    for fmt, template in (
        ("parentheses", "({})"),
        ("period", "{}."),
        ("colon", "{}:"),
        ("right_paren", "{})"),
        ("space", "{} "),
    ):
        for letter in letters:
            token = template.format(letter)
            if token in padded:
                offer(letter, padded.rfind(token), fmt)
    lowered = padded.lower()
    for phrase in MCQ_ANSWER_PHRASES:
        at = lowered.find(phrase)
        if at == -1:
            continue
        for letter in letters:
            pos = padded.find(letter, at + len(phrase))
            if pos != -1:
                offer(letter, pos, "phrase")
    core = padded.strip()
    for letter in letters:
        if core.startswith(letter) and (len(core) == 1 or not core[1].isalpha()):
            offer(letter, 0, "start")
    for letter in letters:
        if core.endswith(letter) and (len(core) == 1 or not core[-2].isalpha()):
            offer(letter, len(padded) - 1, "end")
    if best is None:
        for letter in letters:
            if letter in padded:
                offer(letter, padded.rfind(letter), "fallback")
    return best[2] if best is not None else ""


# lmms-eval's default pairs when a task opts into stripping reasoning blocks.
REASONING_TAGS: tuple[tuple[str, str], ...] = (("<think>", "</think>"), ("<thinking>", "</thinking>"))


def strip_reasoning(text: str, tag_pairs: Sequence[Sequence[str]] = REASONING_TAGS) -> str:
    """Remove reasoning blocks (``<think>...</think>``) before the answer is extracted.

    Why: a reasoning model's thoughts mention every option letter, so extracting from the raw
    output scores the first letter it *considered*. Semantics follow lmms-eval's
    ``strip_reasoning_tags`` (its tests compare): case-sensitive tags; each complete block is
    removed; a closing tag with no opening one (templates that prefill ``<think>``) keeps only
    what follows the last closing tag; an unclosed opening tag is left as is; the result is stripped.
    """
    for start_tag, end_tag in tag_pairs:
        while True:
            start = text.find(start_tag)
            end = text.find(end_tag, start) if start != -1 else -1
            if start == -1 or end == -1:
                break
            text = text[:start] + text[end + len(end_tag) :]
        if end_tag in text and start_tag not in text:
            text = text.rsplit(end_tag, 1)[-1]
    return text.strip()


def extract(
    response: str | None,
    convention: str = DEFAULT_CONVENTION,
    choices: Sequence[str] | None = None,
    reasoning_tags: Sequence[Sequence[str]] | None = None,
) -> str | None:
    """The letter ``response`` chose under ``convention``, or None when there is none.

    ``choices`` are the sample's option letters; None means the convention's own default
    (A-D for the regex scorers and for lmms-eval's videomme task, A-H for the bare ranked
    extractor). ``reasoning_tags`` (e.g. ``REASONING_TAGS``) strips reasoning blocks first.
    """
    check_convention(convention)
    if response is None:
        return None
    if reasoning_tags:
        response = strip_reasoning(response, reasoning_tags)
    if convention == "lmms-eval-mcq":
        letter = mcq_extract(response, choices if choices else ("A", "B", "C", "D"))
    else:
        letter = regex_extract(response, choices if choices else ("A", "B", "C", "D"))
    return letter or None


# Which extractor each lmms-eval release's videomme task used (the log's own letters tell which).
LMMS_EVAL_EXTRACTORS: tuple[tuple[str, str], ...] = (
    ("lmms-eval-mcq", "lmms-eval >= 0.7.2"),
    ("lmms-eval-regex", "lmms-eval <= 0.7.1"),
)


def conventions_matching(
    written: Sequence[tuple[str | None, str]], choices: Sequence[str] = ("A", "B", "C", "D")
) -> list[str]:
    """The lmms-eval conventions that reproduce every ``(output, letter the log wrote)`` pair.

    Why: an lmms-eval samples log keeps, per question, the letter its task extracted
    (``pred_answer``); the extractor that reproduces all of them is the one that wrote the log,
    which is more reliable than a version string (lmms-eval records ``branch@commit``, or
    ``unknown@unknown`` when installed from a wheel).
    """
    return [
        convention
        for convention, _ in LMMS_EVAL_EXTRACTORS
        if all((extract(output, convention, choices) or "") == letter for output, letter in written)
    ]
