"""Throughput (samples/s) of the transformers backend vs the vLLM backend on the same samples.

    python -m harness.perf.vllm_throughput [--family qwen2_5_vl] [--model DIR] [--samples 16]
        [--frames 16 --size 224] [--ratio 0.3] [--max-new-tokens 16] [--device cuda]
        [--transformers-python .venv/bin/python] [--backend both|vllm|transformers]

Run it in the vLLM venv (docs/vllm.md). Both backends answer the SAME samples (synthetic clips,
random selections keeping ``--ratio`` of the tokens, same seeds) greedily:

- transformers: ``adapter.generate`` one sample after another (what the runner does today);
- vLLM: ``VLLMBackend.generate_batch`` on all samples at once (continuous batching).

The transformers adapters need transformers >= 5.24 while vLLM pins 5.19, so ``--backend both``
runs the transformers half in a child process with ``--transformers-python`` (default: the
main venv) and ``--backend transformers`` there. Without ``--model`` a tiny random model is
built (heads of dim 32, which vLLM's CPU attention needs): on CPU it measures overheads, not
what a real checkpoint gains; meant for a GPU with a real checkpoint. Each backend is timed
after one warm-up call. Also reported: the fraction of samples whose greedy ids agree (the
backends feed the LLM the same input, so 1.0 up to float noise; bf16 on a GPU may flip ties).
Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.perf.adapters import synthetic_clip
from harness.pruning.selection import Selection, TokenGeometry

REPO = Path(__file__).resolve().parents[2]
PROMPT = "What happens in the video? Answer in one word."
FPS = 2.0


def make_samples(
    args: argparse.Namespace, geometry: TokenGeometry
) -> list[tuple[np.ndarray, Selection | None]]:
    """``--samples`` clips (different seeds) with random selections keeping ``--ratio`` of the tokens."""
    samples = []
    for i in range(args.samples):
        clip = synthetic_clip(args.frames, args.size, seed=i)
        selection = None
        if args.ratio < 1.0:
            g = torch.Generator().manual_seed(1000 + i)
            keep = torch.rand(geometry.grid_t, geometry.grid_h, geometry.grid_w, generator=g) < args.ratio
            keep.view(-1)[0] = True
            selection = Selection(geometry, keep, pruner="random")
        samples.append((clip, selection))
    return samples


def run_transformers(args: argparse.Namespace, model_dir: str) -> dict[str, Any]:
    from harness.models.registry import get_adapter_class

    adapter = get_adapter_class(args.family).from_pretrained(model_dir, device=args.device, dtype=args.dtype)
    geometry = adapter.token_geometry(args.frames, args.size, args.size)
    samples = make_samples(args, geometry)
    adapter.generate(samples[0][0], samples[0][1], PROMPT, fps=FPS, max_new_tokens=args.max_new_tokens)
    start = time.perf_counter()
    ids = [
        adapter.generate(clip, sel, PROMPT, fps=FPS, max_new_tokens=args.max_new_tokens).extra["output_ids"]
        for clip, sel in samples
    ]
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "samples_per_s": len(samples) / seconds, "ids": ids}


def run_vllm(args: argparse.Namespace, model_dir: str) -> dict[str, Any]:
    from harness.backends.vllm import BatchItem, VLLMBackend

    engine_kwargs: dict[str, Any] = {"max_model_len": args.max_model_len}
    if args.device == "cpu":
        engine_kwargs.update(enforce_eager=True)
    backend = VLLMBackend.from_pretrained(
        args.family, model_dir, dtype=args.dtype, device=args.device, **engine_kwargs
    )
    geometry = backend.token_geometry(args.frames, args.size, args.size)
    samples = make_samples(args, geometry)
    items = [BatchItem(clip, sel, PROMPT, FPS) for clip, sel in samples]
    backend.generate_batch(items[:1], max_new_tokens=args.max_new_tokens)
    start = time.perf_counter()
    outputs = backend.generate_batch(items, max_new_tokens=args.max_new_tokens, logprobs=False)
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "samples_per_s": len(items) / seconds,
        "ids": [o.extra["output_ids"] for o in outputs],
    }


def transformers_in_child(args: argparse.Namespace, model_dir: str) -> dict[str, Any]:
    python = args.transformers_python or str(REPO / ".venv" / "bin" / "python")
    if not Path(python).exists():
        raise FileNotFoundError(f"{python}: no transformers-backend python (pass --transformers-python)")
    cmd = [python, "-m", "harness.perf.vllm_throughput", "--backend", "transformers", "--model", model_dir]
    for name in ("family", "samples", "frames", "size", "ratio", "max_new_tokens", "device", "dtype"):
        cmd += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"transformers run failed: {' '.join(cmd)}\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])["transformers"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="qwen2_5_vl")
    parser.add_argument("--model", default=None, help="HF-layout dir; default: a tiny random model")
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--ratio", type=float, default=0.3, help="kept fraction (1.0: no pruning)")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--max-model-len", type=int, default=8192)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--backend", choices=["both", "vllm", "transformers"], default="both")
    parser.add_argument("--transformers-python", default=None)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model
        if model_dir is None:
            from harness.backends.vllm.tiny import build_vllm_tiny_model

            model_dir = str(build_vllm_tiny_model(args.family, Path(tmp) / args.family))
        result: dict[str, Any] = {
            "family": args.family,
            "model": args.model or "tiny-random",
            "device": args.device,
            "samples": args.samples,
            "frames": args.frames,
            "size": args.size,
            "ratio": args.ratio,
            "max_new_tokens": args.max_new_tokens,
        }
        if args.backend == "transformers":
            result["transformers"] = run_transformers(args, model_dir)
        else:
            result["vllm"] = run_vllm(args, model_dir)
            if args.backend == "both":
                result["transformers"] = transformers_in_child(args, model_dir)
                t, v = result["transformers"], result["vllm"]
                result["speedup"] = v["samples_per_s"] / t["samples_per_s"]
                result["ids_agree"] = float(np.mean([a == b for a, b in zip(t["ids"], v["ids"])]))
                print(
                    f"{args.family} {args.samples} samples, {args.frames}x{args.size}px, keep {args.ratio:.0%}: "
                    f"transformers {t['samples_per_s']:.2f}/s, vLLM {v['samples_per_s']:.2f}/s "
                    f"(x{result['speedup']:.2f}), ids agree {result['ids_agree']:.0%}"
                )
    if args.backend != "transformers":  # a child's ids go back to its parent
        for part in ("transformers", "vllm"):
            result.get(part, {}).pop("ids", None)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
