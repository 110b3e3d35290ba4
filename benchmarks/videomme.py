"""Video-MME (900 videos, 2,700 questions; short/medium/long), as lmms-eval runs and scores it.

Data: the Hugging Face dataset ``lmms-lab/Video-MME`` (newer lmms-eval: ``lmms-eval/Video-MME``,
same files), as a local directory or from the HF cache:

- ``videomme/test-00000-of-00001.parquet``: video_id, duration, domain, sub_category, url,
  videoID, question_id, task_type, question, options (["A. ...", ..., "D. ..."]), answer;
- ``data/<videoID>.mp4`` (or .MP4 / .mkv) unzipped from ``videos_chunked_*.zip``;
- ``subtitle/<videoID>.srt`` unzipped from ``subtitle.zip``.

lmms-eval itself keeps the parquet in the hub cache and unzips into ``$HF_HOME/videomme/``;
that directory is used for videos and subtitles when ``data_dir`` has no ``data/``, and
``video_root`` names any other one.

Prompts (lmms-eval 0.7.x ``videomme_doc_to_text`` / ``videomme_doc_to_text_subtitle``):

- without subtitles: ``OPTION_PROMPT + "\\n" + question + "\\n" + options + "\\n" + post_prompt``;
  note that OPTION_PROMPT mentions subtitles even here (it does in lmms-eval);
  post_prompt per model style (``default``: "\\nAnswer with the option's letter from the given
  choices directly.", so a blank line precedes it);
- with subtitles (``videomme_w_subtitle``): ``"This video's subtitles are listed below: \\n" +
  subtitles + "\\n" + OPTION_PROMPT + "\\n" + question + "\\n" + options + "\\nThe best answer is:"``
  (the post_prompt is ignored there, as in lmms-eval); subtitles are those of 32 uniformly
  sampled frames (768 for llava_vid / qwen3_vl), see benchmarks/subtitles.py.

One deliberate difference: lmms-eval reads fps for subtitle timing from ``<videoID>.mp4``
even when the file is ``.MP4``/``.mkv`` (then OpenCV reports 0 fps and no subtitle matches);
we read the file that exists.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.base import Sample
from benchmarks.data import (
    UnsafePathError,
    check_unique_ids,
    contained_path,
    find_video,
    read_parquet_checked,
    resolve_dataset_dir,
    text_cells,
)
from benchmarks.mcq import MultipleChoiceBenchmark
from benchmarks.subtitles import subtitle_text

DATASET_IDS = ("lmms-lab/Video-MME", "lmms-eval/Video-MME")
PARQUET = Path("videomme") / "test-00000-of-00001.parquet"
COLUMNS = (
    "video_id",
    "duration",
    "domain",
    "sub_category",
    "url",
    "videoID",
    "question_id",
    "task_type",
    "question",
    "options",
    "answer",
)
OPTION_PROMPT = (
    "Select the best answer to the following multiple-choice question based on the video and the subtitles. "
    "Respond with only the letter (A, B, C, or D) of the correct option."
)
SUBTITLES_PROMPT = "This video's subtitles are listed below: \n"
# lmms_eval_specific_kwargs of videomme.yaml: style -> (pre_prompt, post_prompt).
PROMPT_STYLES: dict[str, tuple[str, str]] = {
    "default": ("", "\nAnswer with the option's letter from the given choices directly."),
    "gpt4v": ("", "Answer the question with A, B, C, or D."),
    "llava_vid": ("", "The best answer is:"),
    "qwen3_vl": ("Question: ", "Answer with the option letter only."),
}
# videomme_w_subtitle.yaml frame_num per style (subtitle selection only).
SUBTITLE_FRAMES: dict[str, int] = {"default": 32, "gpt4v": 32, "llava_vid": 768, "qwen3_vl": 768}


def default_media_root(root: Path) -> Path:
    """Where ``data/`` and ``subtitle/`` are: beside the parquet, else lmms-eval's unzip dir.

    lmms-eval keeps the parquet in the hub cache and unzips videos into ``$HF_HOME/videomme``
    (``cache_dir: videomme`` in videomme.yaml), so a user of both finds their videos there.
    """
    if (root / "data").is_dir():
        return root
    hf_home = Path(os.environ.get("HF_HOME", "~/.cache/huggingface")).expanduser()
    if (hf_home / "videomme" / "data").is_dir():
        return hf_home / "videomme"
    return root


class VideoMME(MultipleChoiceBenchmark):
    name = "videomme"
    group_columns = ("duration", "domain", "sub_category", "task_type")
    cluster_column = "video_id"  # lmms-eval clusters on videoID (cluster_key in videomme.yaml)

    def __init__(
        self,
        data_dir: str | Path = DATASET_IDS[0],
        subtitles: bool = False,
        prompt_style: str = "default",
        post_prompt: str | None = None,
        subtitle_frames: int | None = None,
        video_root: str | Path | None = None,
        extraction: str | None = None,
        reasoning_tags: bool | list | None = None,
        allow_symlinks_out: bool = False,
    ) -> None:
        super().__init__(extraction, reasoning_tags)
        self.allow_symlinks_out = bool(allow_symlinks_out)  # follow links out of data/ (docs/security.md)
        if prompt_style not in PROMPT_STYLES:
            raise ValueError(
                f"unknown Video-MME prompt_style {prompt_style!r}; valid choices: {', '.join(PROMPT_STYLES)}"
            )
        self.root = resolve_dataset_dir(data_dir, DATASET_IDS)
        self.media_root = Path(video_root).expanduser() if video_root else default_media_root(self.root)
        self.subtitles = subtitles
        self.prompt_style = prompt_style
        self.pre_prompt, default_post = PROMPT_STYLES[prompt_style]
        self.post_prompt = default_post if post_prompt is None else post_prompt
        self.subtitle_frames = (
            subtitle_frames if subtitle_frames is not None else SUBTITLE_FRAMES[prompt_style]
        )
        if subtitles:
            self.name = "videomme_w_subtitle"
        self.table = read_parquet_checked(self.root / PARQUET, COLUMNS)
        check_unique_ids(self.table, "question_id", self.root / PARQUET)

    def samples(self, limit: int | None = None) -> Iterator[Sample]:
        rows = self.table if limit is None else self.table.head(limit)
        for row in rows.itertuples(index=False):
            yield self._sample(row._asdict())

    def _sample(self, row: dict[str, Any]) -> Sample:
        cells, refused = text_cells(row, ("question_id", "question", "answer", "videoID"))
        numbered = {i: o for i, o in enumerate(row["options"], start=1)}
        option_cells, option_problems = text_cells(numbered, list(numbered))
        raw_options = [option_cells[i] for i in numbered]
        refused += [f"option {p}" for p in option_problems]
        options, problems = [], list(refused)
        for i, text in enumerate(raw_options):
            letter = chr(ord("A") + i)
            prefix = f"{letter}. "
            if text.startswith(prefix):
                options.append(text[len(prefix) :])
            else:
                options.append(text)
                problems.append(f"option {i + 1} {text!r} does not start with {prefix!r}")
        answer = cells["answer"].strip()
        letters = [chr(ord("A") + i) for i in range(len(raw_options))]
        if answer not in letters:
            problems.append(f"answer {answer!r} is not among the option letters {letters}")
        video_id, sid = cells["videoID"], cells["question_id"]
        video = path = subtitle = None
        if not refused:
            try:
                video, path, subtitle = self._media(video_id)
            except UnsafePathError as exc:
                refused.append(str(exc))
        return Sample(
            id=sid,
            video_path=str(path) if path is not None else "",
            question=cells["question"],
            options=options,
            answer=answer,
            metadata={
                "video_id": video_id,
                "duration": row["duration"],
                "domain": row["domain"],
                "sub_category": row["sub_category"],
                "task_type": row["task_type"],
                "url": row["url"],
                "raw_options": raw_options,
                "video_exists": video is not None,
                "subtitle_path": str(subtitle) if subtitle is not None else None,
            },
            invalid_reason="; ".join(problems) or None,
            data_error=f"sample {sid}: {'; '.join(refused)}; refused, nothing opened" if refused else None,
        )

    def _media(self, video_id: str) -> tuple[Path | None, Path, Path]:
        """(the video found or None, its path, its subtitle path), each checked to stay inside
        ``data/`` / ``subtitle/`` before anything is looked at (``UnsafePathError`` otherwise)."""
        data, subs, follow = self.media_root / "data", self.media_root / "subtitle", self.allow_symlinks_out
        contained_path(data, video_id, "videoID", follow)  # names the raw id when it escapes
        path = contained_path(data, f"{video_id}.mp4", "videoID", follow, video_id)
        video = find_video(data, video_id)
        if video is not None:  # the extension found is another file, which may be a link out
            video = contained_path(data, str(video.relative_to(data)), "videoID", follow, video_id)
        subtitle = contained_path(subs, f"{video_id}.srt", "videoID", follow, video_id)
        return video, video if video is not None else path, subtitle

    def missing_videos(self) -> list[str]:
        """videoIDs whose file is absent under ``data/`` (each listed once; refused ids are not 'missing')."""
        return sorted(
            {
                s.metadata["video_id"]
                for s in self.samples()
                if not s.metadata["video_exists"] and s.data_error is None
            }
        )

    def build_prompt(self, sample: Sample, frame_indices: list[int] | None = None, **kwargs: Any) -> str:
        """lmms-eval's prompt; ``frame_indices`` (source frames) overrides subtitle sampling."""
        raw = sample.metadata.get("raw_options") or [
            f"{chr(65 + i)}. {o}" for i, o in enumerate(sample.options)
        ]
        options = "\n".join(raw)
        if self.prompt_style == "qwen3_vl":
            body = f"{self.pre_prompt}{sample.question}\nOptions:\n{options}\n{self.post_prompt}"
        elif self.subtitles:
            body = OPTION_PROMPT + "\n" + sample.question + "\n" + options + "\nThe best answer is:"
        else:
            body = OPTION_PROMPT + "\n" + sample.question + "\n" + options + "\n" + self.post_prompt
        if not self.subtitles:
            return body
        if sample.data_error:  # its subtitle path was refused: never open it
            raise ValueError(sample.data_error)
        text = subtitle_text(
            sample.metadata["subtitle_path"], sample.video_path, self.subtitle_frames, frame_indices
        )
        return SUBTITLES_PROMPT + text + "\n" + body
