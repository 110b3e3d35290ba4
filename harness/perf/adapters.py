"""Visual tokens and prefill latency per adapter: no pruning vs AutoGaze-like selections.

    python -m harness.perf.adapters [--families qwen2_5_vl qwen3_vl ...] [--frames 64 --size 224]
                                    [--ratios 0.1 0.3 0.75] [--pruner auto|autogaze|random]
                                    [--stages post_vit pre_vit] [--repeats 5] [--device cpu|cuda]

Every model family whose adapter module AND tiny builder exist is built (random weights, in a
temporary directory) and run through ``adapter.generate(max_new_tokens=1)`` on one synthetic
64-frame clip: once with no pruning, once per ratio. ``--pruner auto`` uses the ``autogaze``
pruner (``gazing_ratio`` = the ratio) when it loads and runs here, else ``random`` at the same
ratio, and SAYS which it used (the first output line and the JSON ``pruner`` field). Prune stage
``pre_vit`` is run only for families whose spec lists it (``prune_stages``, harness/models/families/).

Reported per setting: the LLM's visual tokens and the best-of-``--repeats`` ``prefill`` (time to
first token) and ``vision`` (encoder) seconds (runs interleaved across settings after one
warm-up each), each also as a ratio to the unpruned run of the same adapter. With ``autogaze``
the ratio is AutoGaze's ``gazing_ratio``: the tokens the model keeps follow from the gaze mapping
(``expand`` + temporal union), so ``x tok`` shows what it really kept. Tiny models on CPU say how the cost SCALES with tokens,
not what a real checkpoint costs. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from harness.models.registry import all_specs, get_adapter_class, get_spec
from harness.models.tiny import build_tiny_model
from harness.pruning.selection import Selection

FPS = 2.0
PROMPT = "What happens in the video? Answer in one word."


def runnable_families() -> list[str]:
    """Families with both an adapter module and a tiny builder in this checkout."""
    found = []
    for family, spec in all_specs().items():
        module = spec.adapter.split(":")[0]
        if spec.tiny is not None and importlib.util.find_spec(module) and importlib.util.find_spec(spec.tiny):
            found.append(family)
    return found


def synthetic_clip(frames: int, size: int, seed: int = 0) -> np.ndarray:
    """A bright square moving over a textured background: motion for gaze/temporal pruners."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    background = 90 + 60 * np.sin(12 * x) * np.cos(9 * y)
    clip = np.empty((frames, size, size, 3), np.uint8)
    side = size // 5
    for t in range(frames):
        img = background + rng.normal(0, 6, (size, size))
        x0 = int((size - side) * t / max(frames - 1, 1))
        img[size // 3 : size // 3 + side, x0 : x0 + side] = 240
        clip[t] = np.clip(img, 0, 255).astype(np.uint8)[..., None]
    return clip


class SelectionMaker:
    """Selections at a ratio: AutoGaze if requested/available, else seeded random tokens."""

    def __init__(self, mode: str, device: str):
        self.mode = mode
        self.device = device
        self.used = "random"
        self.note = ""
        if mode in ("auto", "autogaze"):
            try:
                from harness.pruning.registry import build_pruner

                self._autogaze = lambda r: build_pruner("autogaze", gazing_ratio=r, device=device)
                probe = synthetic_clip(16, 224)
                from harness.pruning.selection import TokenGeometry

                self._autogaze(0.1).select(probe, TokenGeometry(16, 224, 224, 14, 2, 2), fps=FPS)
                self.used = "autogaze"
            except Exception as exc:  # missing module/checkpoint: fall back, and say so
                if mode == "autogaze":
                    raise
                self.note = f"autogaze unavailable ({type(exc).__name__}: {str(exc)[:160]}); random tokens at the same ratios"

    def select(self, frames: np.ndarray, adapter: Any, ratio: float) -> Selection:
        from harness.pruning.registry import build_pruner

        geometry = adapter.token_geometry(*frames.shape[:3])
        if self.used == "autogaze":
            from harness.models.frames import resize_frames

            model_frames = resize_frames(frames, geometry.height, geometry.width)
            return self._autogaze(ratio).select(model_frames, geometry, fps=FPS)
        return build_pruner("random", ratio=ratio).select(frames, geometry, fps=FPS)


def time_settings(
    adapter: Any, frames: np.ndarray, selections: list[Selection | None], stage: str, repeats: int
) -> list[dict]:
    """Best-of-``repeats`` prefill/vision seconds per selection, runs interleaved round-robin.

    Why min and interleaving: on a shared machine other processes inflate single runs at random;
    interleaving spreads that over all settings and the minimum is the least-disturbed run.
    """
    runs: list[list[Any]] = [[] for _ in selections]
    for sel in selections:  # warm-up
        adapter.generate(frames, sel, PROMPT, fps=FPS, max_new_tokens=1, prune_stage=stage)
    for _ in range(repeats):
        for i, sel in enumerate(selections):
            runs[i].append(
                adapter.generate(frames, sel, PROMPT, fps=FPS, max_new_tokens=1, prune_stage=stage)
            )
    return [
        {
            "visual_tokens": r[0].tokens.visual_after,
            "prompt_tokens": r[0].tokens.prompt,
            "prefill_s": min(g.timings["prefill"] for g in r),
            "vision_s": min(g.timings["vision"] for g in r),
            "prefill_median_s": statistics.median(g.timings["prefill"] for g in r),
        }
        for r in runs
    ]


def bench_family(
    family: str, frames: np.ndarray, maker: SelectionMaker, args: argparse.Namespace, root: Path
) -> list[dict]:
    model_dir = build_tiny_model(family, root / family, seed=0)
    adapter = get_adapter_class(family).from_pretrained(str(model_dir), device=args.device)
    stages = [s for s in args.stages if s in get_spec(family).prune_stages]
    ratios: list[float | None] = [None, *args.ratios]
    selections = [None if r is None else maker.select(frames, adapter, r) for r in ratios]
    rows = []
    for stage in stages:
        measured = time_settings(adapter, frames, selections, stage, args.repeats)
        base = measured[0]
        for ratio, m in zip(ratios, measured):
            rows.append(
                {
                    "family": family,
                    "stage": stage,
                    "ratio": ratio,
                    **m,
                    "tokens_ratio": m["visual_tokens"] / base["visual_tokens"],
                    "prefill_ratio": m["prefill_s"] / base["prefill_s"],
                    "vision_ratio": m["vision_s"] / base["vision_s"],
                }
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harness.perf.adapters", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--families", nargs="*", default=None, help="default: every runnable family")
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.1, 0.3, 0.75])
    parser.add_argument("--pruner", choices=["auto", "autogaze", "random"], default="auto")
    parser.add_argument(
        "--stages", nargs="+", choices=["post_vit", "pre_vit"], default=["post_vit", "pre_vit"]
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    available = runnable_families()
    families = args.families or available
    missing = [f for f in families if f not in available]
    if missing:
        parser.error(f"no adapter/tiny builder for {missing}; runnable here: {available}")
    frames = synthetic_clip(args.frames, args.size)
    maker = SelectionMaker(args.pruner, args.device)
    print(f"selections: {maker.used}" + (f" -- {maker.note}" if maker.note else ""))
    print(
        f"clip: {args.frames} frames of {args.size}x{args.size}, tiny random-weight models, device {args.device}"
    )
    header = (
        f"{'family':<16}{'stage':<10}{'sel':>6}{'tokens':>8}{'x tok':>8}{'prefill ms':>12}{'x prefill':>11}"
    )
    print(header + f"{'vision ms':>11}{'x vision':>10}")
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="perf-adapters-") as tmp:
        for family in families:
            for row in bench_family(family, frames, maker, args, Path(tmp)):
                rows.append(row)
                sel = "none" if row["ratio"] is None else f"{row['ratio']:.2f}"
                print(
                    f"{row['family']:<16}{row['stage']:<10}{sel:>6}{row['visual_tokens']:>8}"
                    f"{row['tokens_ratio']:>8.3f}{row['prefill_s'] * 1e3:>12.2f}{row['prefill_ratio']:>11.3f}"
                    f"{row['vision_s'] * 1e3:>11.2f}{row['vision_ratio']:>10.3f}"
                )
    summary = {
        "benchmark": "adapters",
        "selections": maker.used,
        "note": maker.note,
        "frames": args.frames,
        "size": args.size,
        "device": args.device,
        "weights": "random (tiny models)",
        "results": rows,
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
