"""HLVid: high-resolution long-video QA (268 questions on 77 videos; AutoGaze paper).

Data: the Hugging Face dataset ``bfshi/HLVid`` as a local directory or from the HF cache:

- ``data/test-00000-of-00001.parquet``: question_id (int), question (stem, then option lines
  ``A. ...`` to ``D. ...``, then an answer instruction), category (``av`` / ``household``),
  video_path (e.g. ``clip_av_video_0_000.mp4``), answer (a letter);
- ``videos/<video_path>``, shipped as tar shards ``videos_part_0001.tar`` ... (about 150 GB)
  that the user extracts; :meth:`HLVid.video_report` names the missing videos and any shard
  that is present but not extracted.

Choices that could NOT be established from public material (the paper's evaluation code is
not public), each written down so a reader can judge a comparison with the published figures:

1. Prompt: the question text exactly as stored (stem + options + its own answer instruction),
   preceded by ``Question: `` and placed after the video, as NVILA-HD-Video's model card shows
   (``<video>\\n\\nQuestion: {question}``). :meth:`build_prompt` returns the text part
   ``Question: {question}``; the adapter inserts the visual placeholder (``PROMPT_TEMPLATE``
   records the full layout). No system prompt, no extra post-prompt.
2. Decoding: greedy, at most 16 new tokens (``generation_kwargs``), as lmms-eval's MCQ video
   tasks use; the paper does not state it.
3. Extraction: ``lmms-eval-regex`` by default (first A-D after stripping answer prefixes);
   the other conventions are selectable; the paper does not say which was used.
4. Options: parsed from the question text (lines ``X. text`` with consecutive letters from A);
   the letters scanned by the extractors are those parsed (A-D in every released question).
5. Frame sampling / resolution are the model's (not part of the benchmark definition here).
6. Confidence intervals: clustered by video (``video_path``), like lmms-eval's for Video-MME.

Published accuracies (AutoGaze project page) are in ``PUBLISHED`` for reports.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.base import Sample
from benchmarks.data import (
    UnsafePathError,
    check_unique_ids,
    contained_path,
    read_parquet_checked,
    resolve_dataset_dir,
    text_cells,
)
from benchmarks.mcq import MultipleChoiceBenchmark

DATASET_IDS = ("bfshi/HLVid",)
PARQUET = Path("data") / "test-00000-of-00001.parquet"
COLUMNS = ("question_id", "question", "category", "video_path", "answer")
PROMPT_TEMPLATE = "<video>\n\nQuestion: {question}"
PUBLISHED: dict[str, float] = {
    "NVILA-8B-HD-Video": 52.6,
    "NVILA-8B-Video": 42.5,
    "Qwen2.5-VL-7B": 48.1,
    "GPT-4o": 49.3,
}
_OPTION_LINE = re.compile(r"^([A-Z])\.\s*(.*)$")


def parse_question(text: str) -> tuple[str, list[str], str]:
    """(stem, option texts in letter order, trailing instruction) from an HLVid question.

    Options are the first run of lines ``A. ...``, ``B. ...``, ... with consecutive letters;
    everything before is the stem, everything after the instruction.
    """
    lines = text.split("\n")
    stem: list[str] = []
    options: list[str] = []
    tail: list[str] = []
    for line in lines:
        match = _OPTION_LINE.match(line.strip())
        if not tail and match and match.group(1) == chr(ord("A") + len(options)):
            options.append(match.group(2).strip())
        elif options:
            tail.append(line)
        else:
            stem.append(line)
    return "\n".join(stem).strip(), options, "\n".join(tail).strip()


class HLVid(MultipleChoiceBenchmark):
    name = "hlvid"
    group_columns = ("category",)
    cluster_column = "video_id"
    fixed_choices = None  # scan the letters parsed from each question
    published = PUBLISHED

    def __init__(
        self,
        data_dir: str | Path = DATASET_IDS[0],
        extraction: str | None = None,
        reasoning_tags: bool | list | None = None,
        allow_symlinks_out: bool = False,
    ) -> None:
        super().__init__(extraction, reasoning_tags)
        self.root = resolve_dataset_dir(data_dir, DATASET_IDS)
        self.allow_symlinks_out = bool(allow_symlinks_out)  # follow links out of videos/ (docs/security.md)
        self.table = read_parquet_checked(self.root / PARQUET, COLUMNS)
        check_unique_ids(self.table, "question_id", self.root / PARQUET)

    def samples(self, limit: int | None = None) -> Iterator[Sample]:
        rows = self.table if limit is None else self.table.head(limit)
        for row in rows.itertuples(index=False):
            yield self._sample(row._asdict())

    def _sample(self, row: dict[str, Any]) -> Sample:
        cells, refused = text_cells(row, ("question_id", "question", "answer", "video_path"))
        sid, question, video_name = cells["question_id"], cells["question"], cells["video_path"]
        stem, options, instruction = parse_question(question)
        answer = cells["answer"].strip()
        problems = list(refused)  # a cell that is not text: the checks below would only mislead
        letters = [chr(ord("A") + i) for i in range(len(options))]
        if not refused and len(options) < 2:
            problems.append(f"found {len(options)} option line(s) ('A. ...') in the question text")
        if not refused and answer not in letters:
            problems.append(f"answer {answer!r} is not among the option letters {letters}")
        path: Path | None = None
        if not refused:
            try:
                path = contained_path(self.root / "videos", video_name, "video_path", self.allow_symlinks_out)
            except UnsafePathError as exc:
                refused.append(str(exc))
        return Sample(
            id=sid,
            video_path=str(path) if path is not None else "",
            question=question,
            options=options,
            answer=answer,
            metadata={
                "video_id": video_name,
                "category": row["category"],
                "stem": stem,
                "instruction": instruction,
                "video_exists": path is not None and path.is_file(),
            },
            invalid_reason="; ".join(problems) or None,
            data_error=f"sample {sid}: {'; '.join(refused)}; refused, nothing opened" if refused else None,
        )

    def missing_videos(self) -> list[str]:
        """video_path names absent under ``videos/`` (each once; refused paths are not 'missing')."""
        return sorted(
            {
                s.metadata["video_id"]
                for s in self.samples()
                if not s.metadata["video_exists"] and s.data_error is None
            }
        )

    def build_prompt(self, sample: Sample, **kwargs: Any) -> str:
        return f"Question: {sample.question}"

    def video_report(self) -> str:
        """A sentence naming the missing videos and shards not yet extracted ('' when complete)."""
        missing = self.missing_videos()
        if not missing:
            return ""
        total = self.table["video_path"].nunique()
        shards = sorted(
            {
                p.name
                for p in [*self.root.glob("videos_part_*.tar"), *self.root.glob("videos/videos_part_*.tar")]
            }
        )
        msg = f"HLVid: {len(missing)} of {total} videos missing under {self.root / 'videos'}: {', '.join(missing)}."
        if shards:
            msg += f" Tar shards present: {', '.join(shards)}; extract them into videos/ (tar -xf SHARD -C videos)."
        else:
            msg += " No videos_part_*.tar shard found either: download and extract the shards holding them."
        return msg
