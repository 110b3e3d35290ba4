"""One command that checks every GPU path: ``python -m harness.perf.gpu_check`` (last line JSON).

On a machine with CUDA it runs, on the GPU:
1. ``gaze_parity``: AutoGaze's device loop (token choice on the device, fixed-shape steps) on the
   parity fixture's cases, share of gaze ids equal to the original's CPU results, in float32 and
   bf16 (autocast, float32 heads); float32 is expected near 1, bf16 lower (other roundings).
2. ``gaze_speed``: ms per 16x224 clip at batch 1/8/64 (ratio 0.75 and 0.3), float32 and bf16,
   with the same-run teacher-forced bound (``harness.perf.gaze``) and the share of it.
3. ``adapters_keep_all``: each adapter (tiny random-weight model) in bf16 on the GPU: generating
   with a keep-all selection equals generating with no pruning (same output ids; prefill inputs
   within the stated tolerance).
4. ``gazed_vit``: pre-ViT vision time, gazed vs full, on a real-width SigLIP (``harness.perf.gazed_vit``).
5. ``e2e``: the 4K, 1,000-frame video end to end (decode, gaze on the GPU, tiny MLLM) with peak
   GPU memory (``harness.perf.e2e``; needs PyAV, see docs).
Without a GPU it runs the same steps on the CPU at tiny sizes and says so (``"mode": "cpu-tiny"``),
so CI exercises every step. Each step reports ``ok``, ``failed: ...`` or ``skipped: ...``; one
failing step never stops the others. It needs only Python, torch, transformers, numpy and
safetensors (what a lent GPU machine has); PyAV is optional (the e2e step says when it is
missing). Exit code 1 if any step failed.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from harness.perf.carried import add_carried_packages

REPO = Path(__file__).resolve().parents[2]
# extra packages from `make gpu-wheels` (carried to the GPU machine as compressed wheels), appended to
# sys.path so the machine's own torch/transformers always win
CARRIED = add_carried_packages(REPO / ".gpu-wheels")
FIXTURE_CANDIDATES = [
    REPO / "shared" / "fixtures" / "autogaze-parity",  # the device machine carries shared/ inside the checkout
    REPO.parent / "shared" / "fixtures" / "autogaze-parity",  # developers and CI: ../shared beside the repo
]
TOLERANCE_BF16 = 0.05  # max |difference| of the LLM's prefill inputs, keep-all vs unpruned, bf16


def find_fixture() -> Path | None:
    for path in FIXTURE_CANDIDATES:
        if (path / "model" / "model.safetensors").exists() and (path / "cases.safetensors").exists():
            return path
    return None


def _quiet(fn: Callable[[], Any]) -> tuple[Any, str]:
    """Run ``fn`` with its stdout captured (the sub-benchmarks print their own lines)."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        value = fn()
    return value, buf.getvalue()


# ------------------------------------------------------------------ steps


def step_gaze_parity(device: str, tiny: bool) -> dict[str, Any]:
    from safetensors.torch import load_file

    from harness.gaze import AutoGaze

    fixture = find_fixture()
    if fixture is None:
        return {"status": "skipped: parity fixture not found (" + ", ".join(map(str, FIXTURE_CANDIDATES)) + ")"}
    data = load_file(str(fixture / "cases.safetensors"))
    cases = json.loads((fixture / "cases.json").read_text())["cases"]
    names = ["ratio004", "tile448_ratio020"] if tiny else sorted(cases)
    dtypes = [torch.float32] if tiny else [torch.float32, torch.bfloat16]
    result: dict[str, Any] = {"cases": names, "share_equal": {}}
    for dtype in dtypes:
        model = AutoGaze.from_pretrained(fixture / "model", device=device, dtype=dtype)
        shares = {}
        for name in names:
            args = dict(cases[name])
            video = data[args.pop("input", "video")].to(device)
            # On CPU the device loop is forced (selection torch, static steps): the GPU code path.
            out = model.gaze(video, selection="torch", static=True, **args)
            got, want = out.gazing_pos.cpu(), data[f"{name}.gazing_pos"]
            if got.shape == want.shape:
                shares[name] = round(float((got == want).float().mean()), 6)
            else:
                n = min(got.shape[1], want.shape[1])
                shares[name] = round(float((got[:, :n] == want[:, :n]).float().sum()) / want.numel(), 6)
        result["share_equal"][str(dtype).removeprefix("torch.")] = shares
    fp32 = result["share_equal"]["float32"]
    result["status"] = "ok" if (min(fp32.values()) == 1.0 or not tiny) else "failed: float32 device loop differs on CPU"
    return result


def step_gaze_speed(device: str, tiny: bool) -> dict[str, Any]:
    from harness.gaze import AutoGaze
    from harness.perf.gaze import time_configs

    fixture = find_fixture()
    path = str(fixture / "model") if fixture else "tiny"
    configs = [(1, 0.3), (2, 0.3)] if tiny else [(b, r) for r in (0.75, 0.3) for b in (1, 8, 64)]
    frames = 2 if tiny else 16
    dtypes = [torch.float32] if tiny else [torch.float32, torch.bfloat16]
    out: dict[str, Any] = {"model": path, "frames": frames}
    for dtype in dtypes:
        model = AutoGaze.from_pretrained(path, device=device, dtype=dtype)
        res, _ = _quiet(lambda model=model: time_configs(model, configs, frames=frames))
        out[str(dtype).removeprefix("torch.")] = {
            "ms_per_clip": res["ms_per_clip"],
            "bound_ms_per_clip": {k: round(1000 / v, 1) for k, v in res["bound_clips_per_s"].items()},
            "share_of_bound": res["share_of_bound"],
        }
    out["status"] = "ok"
    return out


def _llm_inputs(adapter: Any):
    """A hook that records the language model's prefill ``inputs_embeds`` (None if not reachable)."""
    lm = getattr(getattr(adapter.model, "model", None), "language_model", None)
    if lm is None:
        return None, []
    seen: list[torch.Tensor] = []

    def hook(module, args, kwargs):  # noqa: ANN001 - torch hook signature
        emb = kwargs.get("inputs_embeds")
        if emb is not None:
            seen.append(emb.detach().float().cpu())

    return lm.register_forward_pre_hook(hook, with_kwargs=True), seen


def step_adapters_keep_all(device: str, tiny: bool, root: Path) -> dict[str, Any]:
    from harness.models.registry import get_adapter_class
    from harness.models.tiny import build_tiny_model
    from harness.perf.adapters import PROMPT, runnable_families, synthetic_clip
    from harness.pruning.selection import Selection

    dtype = "float32" if tiny else "bfloat16"
    frames = synthetic_clip(4 if tiny else 16, 64 if tiny else 224)
    rows: dict[str, Any] = {}
    failed = []
    for family in runnable_families():
        try:
            model_dir = build_tiny_model(family, root / family, seed=0)
            adapter = get_adapter_class(family).from_pretrained(str(model_dir), device=device, dtype=dtype)
            geometry = adapter.token_geometry(*frames.shape[:3])
            outs, embeds = [], []
            for sel in (None, Selection.keep_all(geometry)):
                handle, seen = _llm_inputs(adapter)
                try:
                    g = adapter.generate(frames, sel, PROMPT, fps=2.0, max_new_tokens=4)
                finally:
                    if handle is not None:
                        handle.remove()
                outs.append(g.extra.get("output_ids", g.text))
                embeds.append(seen[0] if seen else None)
            diff = None
            if embeds[0] is not None and embeds[1] is not None and embeds[0].shape == embeds[1].shape:
                diff = float((embeds[0] - embeds[1]).abs().max())
            ok = outs[0] == outs[1] and (diff is None or diff <= TOLERANCE_BF16)
            rows[family] = {"same_output": outs[0] == outs[1], "max_abs_prefill_diff": diff, "ok": ok}
            failed += [] if ok else [family]
        except Exception as exc:  # one family's failure is reported, the others still run
            rows[family] = {"ok": False, "error": f"{type(exc).__name__}: {str(exc)[:200]}"}
            failed.append(family)
    status = "ok" if not failed else f"failed: {', '.join(failed)}"
    return {"status": status, "dtype": dtype, "tolerance": TOLERANCE_BF16, "families": rows}


def step_gazed_vit(device: str, tiny: bool) -> dict[str, Any]:
    from harness.perf import gazed_vit

    argv = ["--device", device, "--repeats", "1" if tiny else "3", "--ratios", "0.3"]
    argv += ["--preset", "tiny", "--frames", "8", "--chunk", "8", "--size", "224"] if tiny else ["--preset", "so400m", "--tile",
                                                                                  "392", "--patch", "14", "--scales",
                                                                                  "56+112+196+392", "--size", "784"]
    res, _ = _quiet(lambda: gazed_vit.main(argv))
    rows = [{k: r[k] for k in ("attn", "ratio", "tokens_vs_full", "time_vs_full")} for r in res["gazed"]]
    return {"status": "ok", "preset": res["preset"], "rows": rows}


def step_e2e(device: str, tiny: bool) -> dict[str, Any]:
    try:
        import av  # noqa: F401 - the synthetic video is written with PyAV
    except ImportError:
        return {"status": "skipped: PyAV not installed (make gpu-wheels and carry .gpu-wheels, see docs/gpu.md)"}
    from harness.perf import e2e

    fixture = find_fixture()
    argv = ["--device", device, "--gaze-model", str(fixture / "model") if fixture else "tiny"]
    argv += ["--width", "320", "--height", "180", "--frames", "16"] if tiny else []
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    (rc, text) = _quiet(lambda: e2e.main(argv))
    res = json.loads(text.strip().splitlines()[-1])
    out = {k: res.get(k) for k in ("video", "visual_tokens_before", "visual_tokens_after", "peak_rss_mb")}
    out["stage_seconds"] = res.get("seconds")
    if torch.cuda.is_available():
        out["peak_gpu_mem_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    out["status"] = "ok" if rc == 0 else f"failed: {res.get('error')}"
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.perf.gpu_check", description=__doc__.split("\n")[0])
    ap.add_argument("--cpu", action="store_true", help="the CPU mode even where a GPU is present")
    ap.add_argument("--steps", default="gaze_parity,gaze_speed,adapters_keep_all,gazed_vit,e2e",
                    help="comma-separated steps to run")
    args = ap.parse_args(argv)
    gpu = torch.cuda.is_available() and not args.cpu
    device = "cuda" if gpu else "cpu"
    tiny = not gpu
    mode = "gpu" if gpu else "cpu-tiny"
    print(f"gpu_check: mode {mode} ({torch.cuda.get_device_name(0) if gpu else 'no GPU: CPU at tiny sizes'}), "
          f"torch {torch.__version__}", flush=True)
    if not gpu:
        torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    import tempfile

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        steps: dict[str, Callable[[], dict[str, Any]]] = {
            "gaze_parity": lambda: step_gaze_parity(device, tiny),
            "gaze_speed": lambda: step_gaze_speed(device, tiny),
            "adapters_keep_all": lambda: step_adapters_keep_all(device, tiny, Path(tmp)),
            "gazed_vit": lambda: step_gazed_vit(device, tiny),
            "e2e": lambda: step_e2e(device, tiny),
        }
        for name in [s.strip() for s in args.steps.split(",") if s.strip()]:
            if name not in steps:
                print(f"gpu_check: unknown step {name!r} (known: {', '.join(steps)})", file=sys.stderr)
                return 2
            start = time.perf_counter()
            try:
                res = steps[name]()
            except ModuleNotFoundError as exc:  # the lent GPU machine has no package index: say what to carry
                res = {"status": f"skipped: needs the Python package {exc.name!r} (make gpu-wheels, docs/gpu.md)"}
            except Exception as exc:
                res = {"status": f"failed: {type(exc).__name__}: {str(exc)[:300]}",
                       "traceback": traceback.format_exc(limit=4)}
            res["seconds"] = round(time.perf_counter() - start, 1)
            results[name] = res
            print(f"{name:>18}: {res['status']} ({res['seconds']} s)", flush=True)
    failed = [n for n, r in results.items() if r["status"].startswith("failed")]
    print(json.dumps({"mode": mode, "device": device, "torch": torch.__version__, "failed": failed,
                      "carried": CARRIED, "steps": results}))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
