"""``run_eval.py eval --config C.yaml [--set KEY=VALUE ...]``: run a config, one JSONL record per sample.

Rerunning the same command resumes (done samples are skipped). Under torchrun / accelerate
launch each rank takes its slice of the samples and writes its own record files.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

SHORTCUTS = {  # flag -> config key
    "model_path": "model.path",
    "model_family": "model.family",
    "device": "model.device",
    "dtype": "model.dtype",
    "prune_stage": "model.prune_stage",
    "benchmark": "benchmark.name",
    "limit": "benchmark.limit",
    "num_frames": "frames.num_frames",
    "max_new_tokens": "generation.max_new_tokens",
    "batch_size": "generation.batch_size",
    "output": "output_dir",
    "backend": "backend",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="YAML config (see configs/ and docs/runner.md)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set benchmark.limit=5 --set pruners.1.grid.gazing_ratio=[0.3]")
    parser.add_argument("--model-path", help="= --set model.path=...")
    parser.add_argument("--model-family", help="= --set model.family=...")
    parser.add_argument("--device", help="= --set model.device=... (cpu, cuda, cuda:1)")
    parser.add_argument("--dtype", help="= --set model.dtype=...")
    parser.add_argument("--prune-stage", help="= --set model.prune_stage=... (post_vit, pre_vit, native)")
    parser.add_argument("--benchmark", help="= --set benchmark.name=...")
    parser.add_argument("--limit", type=int, help="= --set benchmark.limit=N (first N samples)")
    parser.add_argument("--num-frames", type=int, help="= --set frames.num_frames=N")
    parser.add_argument("--max-new-tokens", type=int, help="= --set generation.max_new_tokens=N")
    parser.add_argument("--batch-size", type=int,
                        help="= --set generation.batch_size=N (requests per generate_batch call; vLLM backend)")
    parser.add_argument("--output", help="= --set output_dir=DIR")
    parser.add_argument("--backend", help="= --set backend=... (transformers, vllm)")
    parser.add_argument("--pruners", help="comma-separated pruner names to keep from the config's list")
    parser.add_argument("--dry-run", action="store_true", help="validate, print the runs it would make, exit")
    parser.add_argument("--no-retry-failed", action="store_true", help="on resume, also skip samples that failed")
    parser.add_argument("--no-gaze-cache", action="store_true",
                        help="= --set cache.gaze=false (compute every gaze; read and write no cache entry)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--no-report", action="store_true",
                        help="print the summary only; skip writing OUTPUT/report (plots, thumbnails)")


def _overrides(args: argparse.Namespace) -> list[str]:
    out = []
    for attr, key in SHORTCUTS.items():
        value = getattr(args, attr, None)
        if value is not None:
            out.append(f"{key}={value}")
    if getattr(args, "no_gaze_cache", False):
        out.append("cache.gaze=false")
    return out + list(args.overrides)


def run(args: argparse.Namespace) -> int:
    from harness.runner.config import ConfigError, load_config, preflight
    from harness.runner.sweep import expand

    try:
        cfg = load_config(args.config, _overrides(args))
        if args.pruners:
            keep = [p.strip() for p in args.pruners.split(",") if p.strip()]
            known = sorted({p.name for p in cfg.pruners})
            unknown = [p for p in keep if p not in known]
            if unknown:
                raise ConfigError(f"--pruners {','.join(unknown)}: not in the config; valid choices: {', '.join(known)}")
            cfg.pruners = [p for p in cfg.pruners if p.name in keep]
        preflight(cfg)
        plans = [(plan, expand(plan.pruners)) for plan in cfg.plans()]
    except ConfigError as exc:
        print(f"run_eval.py eval: config error: {exc}", file=sys.stderr)
        return 2
    print(f"experiment {cfg.name!r} -> {cfg.output_dir}")
    for plan, settings in plans:
        tag = "  [tiny random-weight model: numbers are plumbing checks, not accuracy]" if plan.model.is_tiny else ""
        print(f"  model {plan.model.label} ({plan.model.family}, {plan.model.path}){tag}")
        for s in settings:
            print(f"    run {s.label}")
    if args.dry_run:
        return 0

    from benchmarks.data import DataNotFoundError, DatasetError
    from harness.report.build import build_report, console_summary
    from harness.report.load import ReportError
    from harness.runner.engine import Evaluator
    from harness.runner.lock import RunLockedError

    try:
        result = Evaluator(cfg, retry_failed=not args.no_retry_failed, progress=not args.no_progress).run()
    except ConfigError as exc:
        print(f"run_eval.py eval: config error: {exc}", file=sys.stderr)
        return 2
    except RunLockedError as exc:
        print(f"run_eval.py eval: {exc}", file=sys.stderr)
        return 2
    except (DataNotFoundError, DatasetError) as exc:  # the benchmark's data: missing, or unusable as is
        print(f"run_eval.py eval: benchmark data: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: finished samples are on disk; rerun the same command to resume", file=sys.stderr)
        return 130
    print(f"\n{result.written} records written ({result.errors} failed), {result.skipped} already done, "
          f"in {cfg.output_dir}")
    report_dir = None if args.no_report else Path(cfg.output_dir) / "report"
    try:
        report = build_report([result.output_dir], out_dir=report_dir)
    except ReportError as exc:
        print(f"no summary: {exc}")
        return 1
    print(console_summary(report))
    if report_dir is not None:
        print(f"report (tables, plots, per-sample view): {report_dir / 'report.html'}")
    if result.written and result.errors == result.written:
        print("every sample failed: see the 'error' field of the records", file=sys.stderr)
        return 1
    return 0
