"""Synthetic needle benchmark: the embedded default, runnable anywhere without downloads.

Why: pruning matters most for long, high-resolution video where the answer occupies a tiny
region of a few frames; public benchmarks with that property are 150 GB (HLVid). Here each
video is procedurally generated: a drifting, pulsing random texture (so no frame is trivially
redundant) and, for ``needle_frames`` consecutive frames, a small plate in one corner showing
either a short code (``kind="code"``, e.g. ``7K3``) or a coloured shape (``kind="shape"``,
e.g. ``red triangle``). The question asks what was shown; four options, one correct.

Every sample carries its ``evidence`` (frame range + pixel box), so pruners can be scored
without any MLLM (benchmarks/evidence.py: evidence recall / hit).

Deterministic by seed: video i uses ``numpy.random.default_rng([seed, i])``. Generated on first
use into ``<cache>/synthetic_needle/<params-hash>/`` (``<cache>`` = ``$HARNESS_CACHE_DIR`` or
``~/.cache/harness``), outside the repository; a finished directory has ``samples.json`` and is
reused. Generation writes to a temporary sibling and renames it, so concurrent runners never
see half a data set. Frames are produced one at a time (bounded memory at 3840x2160 x 1,000+).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.base import Evidence, Sample
from benchmarks.evidence import evidence_hit, evidence_recall
from benchmarks.mcq import MultipleChoiceBenchmark, lettered
from benchmarks.needle_render import (
    CODE_ALPHABET,
    COLOURS,
    SHAPES,
    MovingTexture,
    code_box_size,
    draw_code,
    draw_shape,
)

GENERATOR_VERSION = 1  # bump when the pixels or questions change: it is part of the cache key
KINDS = ("code", "shape")
CORNERS = ("top-left", "top-right", "bottom-left", "bottom-right")
OPTION_PROMPT = (
    "Select the best answer to the following multiple-choice question based on the video. "
    "Respond with only the letter (A, B, C, or D) of the correct option."
)
QUESTIONS = {
    "code": "A short code is shown briefly in one corner of the video. Which code is it?",
    "shape": "A coloured shape is shown briefly in one corner of the video. Which one is it?",
}


@dataclass(frozen=True)
class NeedleConfig:
    num_videos: int = 8
    width: int = 448
    height: int = 448
    num_frames: int = 64
    fps: float = 8.0
    needle_frames: int = 4
    needle_frac: float = 0.12  # plate size relative to min(width, height)
    code_length: int = 3
    kinds: tuple[str, ...] = KINDS
    seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        if self.num_videos < 1:
            problems.append("num_videos must be >= 1")
        if self.width % 2 or self.height % 2 or self.width < 32 or self.height < 32:
            problems.append("width and height must be even and >= 32 (H.264 yuv420p)")
        if not 1 <= self.needle_frames <= self.num_frames:
            problems.append("needle_frames must be in [1, num_frames]")
        if not 0 < self.needle_frac <= 0.5:
            problems.append("needle_frac must be in (0, 0.5]")
        if not self.kinds or any(k not in KINDS for k in self.kinds):
            problems.append(f"kinds must be a non-empty subset of {KINDS}")
        if self.code_length < 1:
            problems.append("code_length must be >= 1")
        if problems:
            raise ValueError(f"bad synthetic needle config {self}: " + "; ".join(problems))
        object.__setattr__(self, "kinds", tuple(self.kinds))

    def key(self) -> str:
        payload = json.dumps({**asdict(self), "version": GENERATOR_VERSION}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def default_cache_root() -> Path:
    return Path(os.environ.get("HARNESS_CACHE_DIR", Path.home() / ".cache" / "harness")).expanduser()


@dataclass
class _Plan:
    """Everything about one video except its pixels (decided before drawing, from the seed)."""

    index: int
    kind: str
    corner: str
    start: int
    box: tuple[int, int, int, int]
    answer_text: str
    options: list[str]
    answer: str
    shape: tuple[str, str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def plan_video(cfg: NeedleConfig, index: int) -> tuple[_Plan, np.random.Generator]:
    rng = np.random.default_rng([cfg.seed, index])
    kind = cfg.kinds[index % len(cfg.kinds)]
    corner = CORNERS[int(rng.integers(len(CORNERS)))]
    start = int(rng.integers(0, cfg.num_frames - cfg.needle_frames + 1))
    side = max(9, round(cfg.needle_frac * min(cfg.width, cfg.height)))
    shape = None
    if kind == "code":
        answer_text = "".join(rng.choice(list(CODE_ALPHABET), cfg.code_length))
        distractors = _code_distractors(rng, answer_text)
        bw, bh = code_box_size(cfg.code_length, side)
    else:
        shape = (SHAPES[int(rng.integers(len(SHAPES)))], list(COLOURS)[int(rng.integers(len(COLOURS)))])
        answer_text = f"{shape[1]} {shape[0]}"
        distractors = _shape_distractors(rng, shape)
        bw = bh = side
    if bw > cfg.width // 2 or bh > cfg.height // 2:
        raise ValueError(
            f"needle plate {bw}x{bh} does not fit a corner of {cfg.width}x{cfg.height}; lower needle_frac"
        )
    margin = max(2, min(cfg.width, cfg.height) // 32)
    x0 = margin if corner.endswith("left") else cfg.width - margin - bw
    y0 = margin if corner.startswith("top") else cfg.height - margin - bh
    slot = int(rng.integers(4))
    options = distractors[:slot] + [answer_text] + distractors[slot:]
    plan = _Plan(
        index,
        kind,
        corner,
        start,
        (x0, y0, x0 + bw, y0 + bh),
        answer_text,
        options,
        chr(ord("A") + slot),
        shape,
    )
    return plan, rng


def _code_distractors(rng: np.random.Generator, code: str) -> list[str]:
    """Three other codes, each one character away from the answer (reading it is required)."""
    out: list[str] = []
    while len(out) < 3:
        pos = int(rng.integers(len(code)))
        ch = str(rng.choice([c for c in CODE_ALPHABET if c != code[pos]]))
        cand = code[:pos] + ch + code[pos + 1 :]
        if cand not in out:
            out.append(cand)
    return out


def _shape_distractors(rng: np.random.Generator, shape: tuple[str, str]) -> list[str]:
    """Same shape other colour, same colour other shape, and one more: colour AND shape matter."""
    kind, colour = shape
    other_colours = [c for c in COLOURS if c != colour]
    other_shapes = [s for s in SHAPES if s != kind]
    first = f"{other_colours[int(rng.integers(len(other_colours)))]} {kind}"
    second = f"{colour} {other_shapes[int(rng.integers(len(other_shapes)))]}"
    rest = [
        f"{c} {s}" for s in SHAPES for c in COLOURS if f"{c} {s}" not in (first, second, f"{colour} {kind}")
    ]
    return [first, second, rest[int(rng.integers(len(rest)))]]


def video_frames(cfg: NeedleConfig, plan: _Plan, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """The video's frames, one at a time."""
    background = MovingTexture(rng, cfg.width, cfg.height)
    for t in range(cfg.num_frames):
        frame = background.frame(t)
        if plan.start <= t < plan.start + cfg.needle_frames:
            if plan.kind == "code":
                draw_code(frame, plan.box, plan.answer_text)
            else:
                assert plan.shape is not None
                draw_shape(frame, plan.box, plan.shape[0], plan.shape[1])
        yield frame


def generate(cfg: NeedleConfig, cache_root: Path | None = None) -> Path:
    """Generate the data set if absent; return its directory (``samples.json`` + videos)."""
    root = (cache_root or default_cache_root()) / "synthetic_needle"
    final = root / cfg.key()
    if (final / "samples.json").is_file():
        return final
    from harness.video.writer import write_video

    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{cfg.key()}-", dir=root))
    try:
        records = []
        for i in range(cfg.num_videos):
            plan, rng = plan_video(cfg, i)
            name = f"needle_{i:04d}.mp4"
            write_video(work / name, video_frames(cfg, plan, rng), fps=cfg.fps)
            records.append(
                {
                    "id": f"needle-{i:04d}",
                    "video": name,
                    "kind": plan.kind,
                    "corner": plan.corner,
                    "question": QUESTIONS[plan.kind],
                    "options": plan.options,
                    "answer": plan.answer,
                    "answer_text": plan.answer_text,
                    "evidence": {
                        "frame_start": plan.start,
                        "frame_end": plan.start + cfg.needle_frames,
                        "box": list(plan.box),
                    },
                }
            )
        manifest = {"config": {**asdict(cfg), "version": GENERATOR_VERSION}, "samples": records}
        (work / "samples.json").write_text(json.dumps(manifest, indent=1))
        try:
            work.rename(final)
        except OSError:
            if not (final / "samples.json").is_file():  # someone else's half-finished dir: replace it
                shutil.rmtree(final, ignore_errors=True)
                work.rename(final)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return final


class SyntheticNeedle(MultipleChoiceBenchmark):
    name = "synthetic_needle"
    group_columns = ("kind",)
    cluster_column = "video_id"
    fixed_choices = None

    def __init__(
        self,
        cache_dir: str | Path | None = None,
        extraction: str | None = None,
        reasoning_tags: bool | list | None = None,
        **config: Any,
    ) -> None:
        super().__init__(extraction, reasoning_tags)
        if "kinds" in config and isinstance(config["kinds"], str):
            config["kinds"] = tuple(k.strip() for k in config["kinds"].split(","))
        self.config = NeedleConfig(**config)
        self.cache_root = Path(cache_dir).expanduser() if cache_dir else None
        self._dir: Path | None = None

    @property
    def directory(self) -> Path:
        """The generated data set (generated now if this is its first use)."""
        if self._dir is None:
            self._dir = generate(self.config, self.cache_root)
        return self._dir

    def samples(self, limit: int | None = None) -> Iterator[Sample]:
        manifest = json.loads((self.directory / "samples.json").read_text())
        records = manifest["samples"] if limit is None else manifest["samples"][:limit]
        cfg = self.config
        for rec in records:
            ev = rec["evidence"]
            yield Sample(
                id=rec["id"],
                video_path=str(self.directory / rec["video"]),
                question=rec["question"],
                options=list(rec["options"]),
                answer=rec["answer"],
                metadata={
                    "video_id": rec["video"],
                    "kind": rec["kind"],
                    "corner": rec["corner"],
                    "answer_text": rec["answer_text"],
                    "width": cfg.width,
                    "height": cfg.height,
                    "num_frames": cfg.num_frames,
                    "fps": cfg.fps,
                },
                evidence=[Evidence(ev["frame_start"], ev["frame_end"], tuple(ev["box"]))],
            )

    def build_prompt(self, sample: Sample, **kwargs: Any) -> str:
        return f"{OPTION_PROMPT}\n{sample.question}\n{lettered(sample.options)}\nThe best answer is:"

    def evidence_scores(
        self, sample: Sample, selection: Any, frame_indices: Any = None
    ) -> dict[str, float | bool]:
        """Pruner-only scores of ``selection`` (a Selection over frames ``frame_indices`` of the video)."""
        size = (self.config.width, self.config.height)
        return {
            "evidence_recall": evidence_recall(selection, sample, None, frame_indices, size),
            "evidence_hit": evidence_hit(selection, sample, None, frame_indices, size),
        }
