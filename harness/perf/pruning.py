"""Pruner overhead: seconds per ``select`` for every baseline (and autogaze, if asked).

    python -m harness.perf.pruning [--frames 64 --size 448] [--ratio 0.3] [--repeats 5] [--autogaze]

The clip is synthetic (smooth moving gradients plus noise, so temporal_diff has real work) at a
Qwen-like geometry (2-frame temporal patches, 28 px LLM tokens). Baselines run at the budget
``ratio * total tokens``; ``--autogaze`` also times the autogaze pruner (default checkpoint,
gaze model included) and runs the baselines at its kept count instead. Times are medians of
``--repeats`` runs after one warm-up; last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

from harness.pruning import TokenGeometry, build_pruner


def synthetic_clip(frames: int, size: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    clip = np.empty((frames, size, size, 3), np.uint8)
    for t in range(frames):
        base = 127 + 100 * np.sin(6.28 * (x + 0.03 * t)) * np.cos(6.28 * y)
        noise = rng.normal(0, 8, (size, size))
        clip[t] = np.clip(base + noise, 0, 255).astype(np.uint8)[..., None]
    return clip


def time_select(pruner, frames, geometry, budget, repeats: int) -> tuple[float, int]:
    sel = pruner.select(frames, geometry, budget=budget)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        sel = pruner.select(frames, geometry, budget=budget)
        times.append(time.perf_counter() - start)
    return statistics.median(times), sel.num_kept


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--size", type=int, default=448)
    parser.add_argument("--ratio", type=float, default=0.3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--autogaze", action="store_true")
    args = parser.parse_args(argv)

    geometry = TokenGeometry(args.frames, args.size, args.size, 14, 2, 2)
    frames = synthetic_clip(args.frames, args.size)
    budget = max(1, round(args.ratio * geometry.total_tokens))
    result: dict[str, object] = {"frames": args.frames, "size": args.size, "total_tokens": geometry.total_tokens}
    if args.autogaze:
        seconds, kept = time_select(build_pruner("autogaze", gazing_ratio=args.ratio), frames, geometry, None, 1)
        budget = kept
        result["autogaze"] = {"seconds": seconds, "kept": kept}
        print(f"autogaze        {seconds * 1e3:10.2f} ms  kept {kept}")
    result["budget"] = budget
    for name in ("none", "random", "uniform_frames", "temporal_diff", "downsample"):
        seconds, kept = time_select(build_pruner(name), frames, geometry, budget, args.repeats)
        result[name] = {"seconds": seconds, "kept": kept}
        print(f"{name:<15} {seconds * 1e3:10.2f} ms  kept {kept}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
