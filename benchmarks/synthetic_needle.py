"""Synthetic needle benchmark: the embedded default, runnable anywhere without downloads.

Why: pruning matters most for long, high-resolution video where the answer occupies a tiny
region of a few frames; public benchmarks with that property are 150 GB (HLVid). Here each
video is procedurally generated, and built so that a pruner only scores by *finding* the answer:

- **Background**: a random texture seen through a panning camera (drift plus sway, so every
  token changes every frame) with ``moving_shapes`` solid discs and rectangles moving on their
  own: neither a static-frame nor a temporal-difference heuristic singles out the needle.
- **Needle**: for ``needle_frames`` consecutive frames (a short window anywhere in the video),
  a plate placed uniformly at random over the frame shows a short code (``kind="code"``, e.g.
  ``7K3``) or a coloured shape (``kind="shape"``, e.g. ``red triangle``). Its size is drawn
  from ``sizes`` (plate height / frame height); the glyph stroke is ``unit`` pixels, so the
  smallest sizes are legible only at high resolution (``Evidence.detail_px``).
- **Distractors**: ``distractors`` plates of the same style and size, each showing one of the
  wrong options, with a different border colour, elsewhere in the frame (the first one during
  the needle's window, the others at random times). The question names the border colour of
  the needle's plate, never where or when it is: finding *a* plate is not finding the answer.

Every sample carries its ``evidence`` (frame range, pixel box, detail size), and its metadata
the distractors', so pruners can be scored without any MLLM (benchmarks/evidence.py).

Deterministic by seed: video i uses ``numpy.random.default_rng([seed, i])``. Generated on first
use into ``<cache>/synthetic_needle/<params-hash>/`` (``<cache>`` = ``$HARNESS_CACHE_DIR`` or
``~/.cache/harness``), outside the repository; a finished directory has ``samples.json`` and is
reused. Generation writes to a temporary sibling and renames it, so concurrent runners never
see half a data set. Frames are produced one at a time (bounded memory at 3840x2160 x 1,000).
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
from benchmarks.evidence import score_evidence
from benchmarks.mcq import MultipleChoiceBenchmark, lettered
from benchmarks.needle_render import (
    BORDERS,
    CODE_ALPHABET,
    COLOURS,
    PLATE_UNITS,
    SHAPES,
    MovingShapes,
    MovingTexture,
    draw_code,
    draw_shape,
    plate_size,
)

GENERATOR_VERSION = 2  # bump when the pixels or questions change: it is part of the cache key
KINDS = ("code", "shape")
OPTION_PROMPT = (
    "Select the best answer to the following multiple-choice question based on the video. "
    "Respond with only the letter (A, B, C, or D) of the correct option."
)
QUESTIONS = {
    "code": "Several plates showing short codes appear briefly during the video, each with a coloured "
    "border. Which code is on the plate with the {border} border?",
    "shape": "Several grey plates showing coloured shapes appear briefly during the video, each with a "
    "coloured border. Which shape is on the plate with the {border} border?",
}
PLACEMENT_TRIES = 200  # rejection sampling for a distractor's position; one that finds none is left out


@dataclass(frozen=True)
class NeedleConfig:
    num_videos: int = 8
    width: int = 448
    height: int = 448
    num_frames: int = 64
    fps: float = 8.0
    needle_frames: int = 4
    sizes: tuple[float, ...] = (0.1, 0.06, 0.03)  # plate height / frame height; one drawn per video
    distractors: int = 3
    moving_shapes: int = 24
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
        sizes = tuple(float(x) for x in self.sizes)
        if not sizes or any(not 0 < x <= 0.5 for x in sizes):
            problems.append("sizes must be a non-empty list of plate heights in (0, 0.5] of the frame height")
        if not 0 <= self.distractors <= 8:
            problems.append("distractors must be in [0, 8]")
        if self.moving_shapes < 0:
            problems.append("moving_shapes must be >= 0")
        if not self.kinds or any(k not in KINDS for k in self.kinds):
            problems.append(f"kinds must be a non-empty subset of {KINDS}")
        if self.code_length < 1:
            problems.append("code_length must be >= 1")
        if not problems:
            for size in sizes:
                w, h = plate_size("code" if "code" in self.kinds else "shape", self.code_length, plate_unit(self, size))
                if w > self.width or h > self.height:
                    problems.append(f"a plate of size {size:g} is {w}x{h}, larger than the frame; lower sizes")
        if problems:
            raise ValueError(f"bad synthetic needle config {self}: " + "; ".join(problems))
        object.__setattr__(self, "kinds", tuple(self.kinds))
        object.__setattr__(self, "sizes", sizes)

    def key(self) -> str:
        payload = json.dumps({**asdict(self), "version": GENERATOR_VERSION}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def plate_unit(cfg: NeedleConfig, size: float) -> int:
    """Pixels per glyph stroke for a plate ``size`` of the frame height (at least 1)."""
    return max(1, int(round(size * cfg.height / PLATE_UNITS)))


def default_cache_root() -> Path:
    return Path(os.environ.get("HARNESS_CACHE_DIR", Path.home() / ".cache" / "harness")).expanduser()


@dataclass
class Plate:
    """One plate on screen: frames [start, end), box (x0, y0, x1, y1), what it shows, its border."""

    start: int
    end: int
    box: tuple[int, int, int, int]
    text: str
    border: str
    shape: tuple[str, str] | None = None  # (shape, colour) for shape plates

    def to_dict(self) -> dict[str, Any]:
        return {"frame_start": self.start, "frame_end": self.end, "box": list(self.box),
                "text": self.text, "border": self.border}


@dataclass
class _Plan:
    """Everything about one video except its pixels (decided before drawing, from the seed)."""

    index: int
    kind: str
    size: float
    unit: int
    needle: Plate
    distractors: list[Plate]
    options: list[str]
    answer: str
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def plates(self) -> list[Plate]:
        return [self.needle, *self.distractors]


def _apart(a: tuple[int, int, int, int], b: tuple[int, int, int, int], gap: int) -> bool:
    """Whether boxes a and b are at least ``gap`` pixels apart horizontally or vertically."""
    return a[2] + gap <= b[0] or b[2] + gap <= a[0] or a[3] + gap <= b[1] or b[3] + gap <= a[1]


def _place(rng: np.random.Generator, cfg: NeedleConfig, w: int, h: int) -> tuple[int, int, int, int]:
    """A box of w x h placed uniformly over the frame."""
    x0 = int(rng.integers(0, cfg.width - w + 1))
    y0 = int(rng.integers(0, cfg.height - h + 1))
    return x0, y0, x0 + w, y0 + h


def plan_video(cfg: NeedleConfig, index: int) -> tuple[_Plan, np.random.Generator]:
    rng = np.random.default_rng([cfg.seed, index])
    kind = cfg.kinds[index % len(cfg.kinds)]
    size = cfg.sizes[int(rng.integers(len(cfg.sizes)))]
    unit = plate_unit(cfg, size)
    w, h = plate_size(kind, cfg.code_length, unit)
    nf, last = cfg.needle_frames, cfg.num_frames - cfg.needle_frames
    start = int(rng.integers(0, last + 1))
    borders = list(BORDERS)
    border = borders[int(rng.integers(len(borders)))]
    other_borders = [b for b in borders if b != border]
    shape = None
    if kind == "code":
        answer_text = "".join(rng.choice(list(CODE_ALPHABET), cfg.code_length))
        wrong = _code_distractors(rng, answer_text)
    else:
        shape = (SHAPES[int(rng.integers(len(SHAPES)))], list(COLOURS)[int(rng.integers(len(COLOURS)))])
        answer_text = f"{shape[1]} {shape[0]}"
        wrong = _shape_distractors(rng, shape)
    needle = Plate(start, start + nf, _place(rng, cfg, w, h), answer_text, border, shape)
    gap = max(h, min(cfg.width, cfg.height) // 8)  # distractors never share a token with the needle
    distractors: list[Plate] = []
    for k in range(cfg.distractors):
        if k == 0:  # one distractor is on screen during the needle's window: timing alone cannot tell
            d_start = int(rng.integers(max(0, start - nf + 1), min(last, start + nf - 1) + 1))
        else:
            d_start = int(rng.integers(0, last + 1))
        text = wrong[k % len(wrong)]
        d_shape = None if kind == "code" else (text.split()[1], text.split()[0])
        for _ in range(PLACEMENT_TRIES):
            box = _place(rng, cfg, w, h)
            clash = [p for p in [needle, *distractors] if p is needle or (p.start < d_start + nf and d_start < p.end)]
            if all(_apart(box, p.box, gap) for p in clash):
                distractors.append(Plate(d_start, d_start + nf, box, text, other_borders[k % 3], d_shape))
                break
    slot = int(rng.integers(4))
    options = wrong[:slot] + [answer_text] + wrong[slot:]
    plan = _Plan(index, kind, size, unit, needle, distractors, options, chr(ord("A") + slot))
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
    """The video's frames, one at a time (memory: the texture, the shapes' masks, one frame)."""
    background = MovingTexture(rng, cfg.width, cfg.height)
    shapes = MovingShapes(rng, cfg.width, cfg.height, cfg.moving_shapes)
    for t in range(cfg.num_frames):
        frame = background.frame(t)
        shapes.draw(frame, t)
        for plate in plan.plates:
            if plate.start <= t < plate.end:
                if plan.kind == "code":
                    draw_code(frame, plate.box, plate.text, plan.unit, plate.border)
                else:
                    assert plate.shape is not None
                    draw_shape(frame, plate.box, plate.shape[0], plate.shape[1], plan.unit, plate.border)
        yield frame


def sample_record(cfg: NeedleConfig, plan: _Plan, video: str) -> dict[str, Any]:
    """The manifest entry of one video: question, options, evidence and distractors."""
    needle = plan.needle
    return {
        "id": f"needle-{plan.index:04d}",
        "video": video,
        "kind": plan.kind,
        "size": f"{plan.size:g}",
        "border": needle.border,
        "question": QUESTIONS[plan.kind].format(border=needle.border),
        "options": plan.options,
        "answer": plan.answer,
        "answer_text": needle.text,
        "evidence": {"frame_start": needle.start, "frame_end": needle.end, "box": list(needle.box),
                     "detail_px": plan.unit},
        "distractors": [d.to_dict() for d in plan.distractors],
    }


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
            records.append(sample_record(cfg, plan, name))
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
    group_columns = ("kind", "size")
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
        for key in ("kinds", "sizes"):  # "code,shape" / "0.1,0.03" from a --set on the command line
            if isinstance(config.get(key), str):
                config[key] = tuple(k.strip() for k in config[key].split(","))
        if "sizes" in config:
            config["sizes"] = tuple(float(x) for x in config["sizes"])
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
                    "size": rec["size"],
                    "border": rec["border"],
                    "answer_text": rec["answer_text"],
                    "distractors": rec["distractors"],
                    "width": cfg.width,
                    "height": cfg.height,
                    "num_frames": cfg.num_frames,
                    "fps": cfg.fps,
                },
                evidence=[Evidence(ev["frame_start"], ev["frame_end"], tuple(ev["box"]), ev["detail_px"])],
            )

    def build_prompt(self, sample: Sample, **kwargs: Any) -> str:
        return f"{OPTION_PROMPT}\n{sample.question}\n{lettered(sample.options)}\nThe best answer is:"

    def evidence_scores(self, sample: Sample, selection: Any, frame_indices: Any = None) -> dict[str, Any]:
        """Pruner-only scores of ``selection`` (over frames ``frame_indices`` of the video).

        The keys of ``benchmarks.evidence.EvidenceScores``: recall, coverage, kept_share, chance,
        skill, hit, findable, reason.
        """
        size = (self.config.width, self.config.height)
        return score_evidence(selection, sample, None, frame_indices, size).to_dict()
