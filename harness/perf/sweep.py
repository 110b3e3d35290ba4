"""Sweep benchmark: 2 models x 3 AutoGaze thresholds x 3 matched baselines, run twice.

    python -m harness.perf.sweep [--samples 3 --frames 16 --size 224 --cache-dir DIR]

What it shows: how much work a sweep reuses (docs/runner.md, "Reusing work"). Both runs use a
fresh output directory and one gaze cache (a temporary one unless ``--cache-dir``): the first
run computes every gaze (3 per sample per model, stored) and decodes each video once for both
models (their frame settings are equal, so the second model gets the first's frames); the second
run reads every gaze back. Printed: each run's wall and CPU time (CPU time is steadier on a shared machine), the share of gaze and decode work
reused, and whether the second run's records equal the first's (timings and cache fields
aside). Tiny random-weight models (numbers are plumbing checks, not accuracy). A benchmark,
not a test: nothing asserts a time. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

#: Record fields that are timings or say where work came from: everything else must be equal.
VOLATILE = ("latency", "latency_batched", "latency_amortized", "finished", "started", "peak_memory_mb",
            "gaze_cache", "frames_shared", "rank")
VOLATILE_INFO = ("seconds", "gaze_seconds")


def comparable(rec: dict[str, Any]) -> dict[str, Any]:
    """A record without its timings and reuse fields (what a cached rerun must reproduce)."""
    out = {k: v for k, v in rec.items() if k not in VOLATILE}
    sel = out.get("selection")
    if isinstance(sel, dict) and isinstance(sel.get("info"), dict):
        out["selection"] = {**sel, "info": {k: v for k, v in sel["info"].items() if k not in VOLATILE_INFO}}
    extra = out.get("generation_extra")
    if isinstance(extra, dict):  # the adapter's own timings (preprocess_s, ...)
        out["generation_extra"] = {k: v for k, v in extra.items() if not k.endswith("_s")}
    return json.loads(json.dumps(out, default=str))


def run_records(output_dir: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """(run id, sample id) -> record, over every run directory under ``output_dir``."""
    from harness.runner.records import read_run_records

    out = {}
    for run_file in sorted(Path(output_dir).rglob("run.json")):
        for rec in read_run_records(run_file.parent):
            out[(rec["run_id"], rec["sample_id"])] = rec
    return out


def sweep_config(output_dir: Path, *, samples: int = 3, frames: int = 16, size: int = 224,
                 families: tuple[str, ...] = ("qwen2_5_vl", "llava_onevision"),
                 ratios: tuple[float, ...] = (0.1, 0.2, 0.3),
                 baselines: tuple[str, ...] = ("random", "uniform_frames", "temporal_diff"),
                 gaze_cache: bool = True, cache_dir: Path | None = None, clip_len: int = 16) -> Any:
    """The sweep's config: every model entry has the same frame settings (so frames are shared)."""
    from harness.runner.config import load_config

    return load_config(data={
        "name": "sweep", "output_dir": str(output_dir),
        "model": {"path": "tiny", "device": "cpu", "dtype": "float32"},
        "models": [{"family": f} for f in families],
        "benchmark": {"name": "synthetic_needle", "limit": samples,
                      "kwargs": {"num_videos": samples, "width": 224, "height": 224, "num_frames": 32,
                                 "fps": 8.0, "needle_frames": 4}},
        "frames": {"num_frames": frames, "resolution": size},
        "generation": {"max_new_tokens": 2},
        "pruners": [{"name": "autogaze", "params": {"model": "tiny", "task_loss_requirement": None,
                                                       "clip_len": clip_len},
                     "grid": {"gazing_ratio": list(ratios)}},
                    *({"name": b, "budget": "matched"} for b in baselines)],
        "cache": {"gaze": gaze_cache, "dir": None if cache_dir is None else str(cache_dir)},
    })


def _run(cfg: Any) -> tuple[float, dict[str, Any]]:
    from harness.runner.engine import Evaluator
    from harness.runner.sharding import ShardInfo

    ev = Evaluator(cfg, shard_info=ShardInfo(), progress=False)
    start, cpu = time.perf_counter(), time.process_time()
    ev.run()
    wall = time.perf_counter() - start
    shared = ev.shared_frames
    return wall, {"decoded": shared.decoded, "decodes_reused": shared.reused, "cpu_s": time.process_time() - cpu}


def _gaze_counts(records: dict[tuple[str, str], dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for rec in records.values():
        status = rec.get("gaze_cache")
        if status is not None:
            out[status] = out.get(status, 0) + 1
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.perf.sweep", description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--cache-dir", default=None, help="gaze cache directory (default: a fresh temporary one)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="harness-sweep-") as tmp:
        root = Path(tmp)
        cache_dir = Path(args.cache_dir) if args.cache_dir else root / "gaze-cache"
        walls, reuse, records = [], [], []
        for name in ("first", "second"):
            cfg = sweep_config(root / name, samples=args.samples, frames=args.frames, size=args.size,
                               cache_dir=cache_dir)
            wall, frames = _run(cfg)
            recs = run_records(root / name)
            walls.append(wall)
            records.append(recs)
            gazes = _gaze_counts(recs)
            total = sum(gazes.values())
            reuse.append({"cpu_s": frames["cpu_s"], "gazes": gazes, "gaze_reused": gazes.get("hit", 0) / total if total else 0.0,
                          "decodes": frames["decoded"] + frames["decodes_reused"],
                          "decode_reused": frames["decodes_reused"] / max(1, frames["decoded"] + frames["decodes_reused"])})
            print(f"{name} run: {wall:6.1f} s ({frames['cpu_s']:.1f} s CPU), {len(recs)} records; gazes {gazes} "
                  f"({reuse[-1]['gaze_reused']:.0%} read from the cache); decodes "
                  f"{reuse[-1]['decodes']} ({reuse[-1]['decode_reused']:.0%} shared between models)")
        first, second = records
        equal = first.keys() == second.keys() and all(comparable(first[k]) == comparable(second[k]) for k in first)
        errors = sum(r.get("error") is not None for r in (*first.values(), *second.values()))
        print(f"second run's records equal the first's (timings and cache fields aside): {equal}; "
              f"errors: {errors}")
        print("  tiny random-weight models: numbers are plumbing checks, not accuracy")
    result = {"benchmark": "sweep_2x3x3", "samples": args.samples, "frames": args.frames, "size": args.size,
              "first_s": walls[0], "second_s": walls[1], "speedup": walls[0] / walls[1] if walls[1] else None,
              "first": reuse[0], "second": reuse[1], "records_equal": equal, "errors": errors}
    print(json.dumps(result))
    return 0 if equal and not errors else 1


if __name__ == "__main__":
    raise SystemExit(main())
