"""End-to-end benchmark: a 4K (3840x2160), 1,000-frame video through the runner: decode, AutoGaze, a tiny adapter.

    python -m harness.perf.e2e [--width 3840 --height 2160 --frames 1000 --size 224 --gazing-ratio 0.1]
                               [--family qwen2_5_vl --model tiny --gaze-model DIR --device cpu]

What it shows: the whole path holds a long high-resolution video in bounded memory. The video
(cached outside the repo by ``harness.perf.video``) is decoded in 16-frame chunks resized while
decoding to ``--size`` (longer side), so only the sampled frames at that size are ever resident;
AutoGaze gazes it clip by clip; the tiny random-weight adapter (numbers are plumbing checks, not
accuracy) sees the kept tokens. It runs through ``harness.runner.Evaluator`` with a one-sample
benchmark, so the record it writes is the same a real evaluation writes; per-stage seconds come
from that record. Peak RSS (ru_maxrss) is printed after each phase. A benchmark, not a test:
nothing here asserts a time. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness.models.common import peak_rss_mb
from harness.stages import STAGES, TOTAL


class OneVideoBenchmark:
    """A benchmark of one multiple-choice question about one video (the runner's contract)."""

    name = "e2e_one_video"
    group_columns = ()
    default_extraction = "lmms-eval-regex"

    def __init__(self, video: Path):
        from benchmarks.base import Sample

        self.sample = Sample(id="e2e-0", video_path=str(video), question="What moves across the video?",
                             options=["a white box", "a red ball", "a car", "nothing"], answer="A")

    def __len__(self) -> int:
        return 1

    def samples(self, limit: int | None = None):
        yield self.sample

    def build_prompt(self, sample: Any, **kwargs: Any) -> str:
        options = "\n".join(f"{'ABCD'[i]}. {o}" for i, o in enumerate(sample.options))
        return f"{sample.question}\n{options}\nAnswer with the option's letter."

    def extract_answer(self, output: str, sample: Any, convention: str | None = None) -> str | None:
        from benchmarks.extraction import extract

        return extract(output, convention or self.default_extraction, ("A", "B", "C", "D"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.perf.e2e", description=__doc__.split("\n")[0])
    parser.add_argument("--width", type=int, default=3840)
    parser.add_argument("--height", type=int, default=2160)
    parser.add_argument("--frames", type=int, default=1000, help="frames in the video; all are sampled")
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--size", type=int, default=224, help="longer side the frames are decoded to")
    parser.add_argument("--gazing-ratio", type=float, default=0.1)
    parser.add_argument("--family", default="qwen2_5_vl")
    parser.add_argument("--model", default="tiny", help="'tiny' (built on first use) or a model directory")
    parser.add_argument("--gaze-model", default=None, help="AutoGaze checkpoint (default: the parity checkpoint)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--max-new-tokens", type=int, default=4)
    parser.add_argument("--prune-stage", default="post_vit", choices=["post_vit", "pre_vit"])
    args = parser.parse_args(argv)

    from harness.perf.video import ensure_video
    from harness.runner.config import load_config
    from harness.runner.engine import Evaluator
    from harness.runner.records import read_run_records
    from harness.runner.sharding import ShardInfo

    rss: dict[str, float] = {"start": peak_rss_mb()}
    t0 = time.perf_counter()
    video = ensure_video(args.width, args.height, args.frames, args.fps)
    rss["video_ready"] = peak_rss_mb()
    gaze_params: dict[str, Any] = {"gazing_ratio": args.gazing_ratio, "device": args.device}
    if args.gaze_model:
        gaze_params["model"] = args.gaze_model

    with tempfile.TemporaryDirectory(prefix="harness-e2e-") as tmp:
        cfg = load_config(data={
            "name": "e2e", "output_dir": tmp,
            "model": {"family": args.family, "path": args.model, "device": args.device, "dtype": "float32",
                      "prune_stage": args.prune_stage},
            "benchmark": {"name": "e2e_one_video"},
            "frames": {"num_frames": args.frames, "resolution": args.size, "chunk_size": 16},
            "generation": {"max_new_tokens": args.max_new_tokens},
            "pruners": [{"name": "autogaze", "params": gaze_params}],
            "cache": {"gaze": False},  # it measures gazing: a gaze read from the cache would time nothing
        })
        from harness.runner.components import Components

        evaluator = Evaluator(cfg, Components(load_benchmark=lambda _cfg: OneVideoBenchmark(video)),
                              ShardInfo(), progress=False)
        start = time.perf_counter()
        evaluator.run()
        wall = time.perf_counter() - start
        rss["after_run"] = peak_rss_mb()
        rec = next(r for d in evaluator.output_dir.rglob("run.json") for r in read_run_records(d.parent))

    if rec.get("error"):
        print(f"the sample failed at stage {rec['error']['stage']}: {rec['error']['message']}", file=sys.stderr)
        print(rec["error"].get("traceback", ""), file=sys.stderr)
    lat = rec.get("latency") or {}
    tokens = rec.get("tokens") or {}
    frames = rec.get("frames") or {}
    print(f"video: {args.width}x{args.height}, {args.frames} frames -> {frames.get('num')} frames at "
          f"{frames.get('width')}x{frames.get('height')} (decoder {frames.get('decoder')})")
    for stage in STAGES:
        if lat.get(stage) is not None:
            print(f"  {stage:<9} {lat[stage]:8.2f} s")
    print(f"  visual tokens: {tokens.get('visual_before')} -> {tokens.get('visual_after')} "
          f"(AutoGaze gazing_ratio {args.gazing_ratio})")
    print(f"  peak RSS: {rss['after_run']:.0f} MiB (after video ready: {rss['video_ready']:.0f} MiB); "
          f"run wall {wall:.1f} s, total {time.perf_counter() - t0:.1f} s")
    print("  tiny random-weight model: numbers are plumbing checks, not accuracy")
    result = {
        "benchmark": "e2e_4k_1000f",
        "video": {"width": args.width, "height": args.height, "frames": args.frames},
        "decoded": {"frames": frames.get("num"), "width": frames.get("width"), "height": frames.get("height")},
        "seconds": {k: lat.get(k) for k in (*STAGES, TOTAL)},
        "run_wall_s": wall,
        "visual_tokens_before": tokens.get("visual_before"),
        "visual_tokens_after": tokens.get("visual_after"),
        "peak_rss_mb": rss["after_run"],
        "peak_rss_mb_by_phase": rss,
        "device": args.device,
        "error": None if not rec.get("error") else f"{rec['error']['stage']}: {rec['error']['message']}",
    }
    print(json.dumps(result))
    return 0 if not rec.get("error") else 1


if __name__ == "__main__":
    raise SystemExit(main())
