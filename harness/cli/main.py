"""``run_eval.py`` dispatcher.

Each subcommand lives in ``harness/cli/<name>.py`` exposing ``add_arguments(parser)`` and
``run(args) -> int``. Only the chosen subcommand's module is imported, so ``run_eval.py score``
never pays for torch/transformers imports and one subcommand's optional dependency cannot
break another.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

# Idle OpenMP threads sleep instead of spinning. Why: on a busy machine, torch's spinning worker
# threads burned CPU waiting for a core (the demo took 4.5x the CPU time when another job ran).
# Set before torch is imported by any subcommand; a user's own setting wins. `python -m
# harness.perf.threads` measures both policies side by side.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

SUBCOMMANDS: dict[str, str] = {
    "gaze": "Run AutoGaze on a video, write a visualisation and print tokens kept per frame.",
    "eval": "Run a config (model x benchmark x pruner grid) and append one JSONL record per sample.",
    "report": "Turn run directories into comparison tables (md/csv/html) and plots (png).",
    "compare": "CI gate: compare a run with a committed baseline; non-zero exit on a regression.",
    "score": "Score a predictions file (ours or lmms-eval's samples log) with a benchmark's scorer.",
    "cache": "Show the gaze cache's size, list its entries, or clear it.",
    "list": "List model families, pruners and their parameters, benchmarks, configs, extraction conventions.",
}


def _program() -> str:
    """The name the user typed: ``run_eval.py`` or the installed ``harness-eval`` command."""
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    return name if name and not name.startswith("-") and name not in ("__main__.py", "-c") else "run_eval.py"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = _program()
    if not argv or argv[0] in {"-h", "--help"} or argv[0] not in SUBCOMMANDS:
        lines = [f"  {name:<8} {text}" for name, text in SUBCOMMANDS.items()]
        msg = f"usage: {prog} {{" + ",".join(SUBCOMMANDS) + "} ...\n\nsubcommands:\n" + "\n".join(lines)
        if argv and argv[0] not in {"-h", "--help"}:
            print(f"{prog}: unknown subcommand {argv[0]!r}\n\n{msg}", file=sys.stderr)
            return 2
        print(msg)
        return 0
    name, rest = argv[0], argv[1:]
    module = importlib.import_module(f"harness.cli.{name}")
    parser = argparse.ArgumentParser(prog=f"{prog} {name}", description=SUBCOMMANDS[name])
    module.add_arguments(parser)
    args = parser.parse_args(rest)
    return int(module.run(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
