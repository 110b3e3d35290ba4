"""``run_eval.py list [WHAT]``: what a config may name: model families, pruners (with parameters and
defaults), benchmarks, shipped configs and answer-extraction conventions.

Why: the valid names live in registries spread over packages; a new user should not have to read
code (or provoke an error) to learn them. Reads only the registries: no torch import.
"""

from __future__ import annotations

import argparse
import inspect
from pathlib import Path

SECTIONS = ("models", "pruners", "benchmarks", "configs", "extractions")
CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", nargs="?", choices=SECTIONS, help="one section (default: all)")


def _models() -> list[str]:
    from harness.models.registry import ADAPTERS
    from harness.models.tiny import BUILDERS

    return [f"{name:<16} {'path: tiny builds a random-weight model' if name in BUILDERS else 'real checkpoints only'}"
            for name in sorted(ADAPTERS)]


def _pruners() -> list[str]:
    from harness.pruning.registry import PRUNERS, pruner_params

    lines = []
    for name in sorted(PRUNERS):
        params = ", ".join(f"{k}={'(required)' if v is inspect.Parameter.empty else repr(v)}"
                           for k, v in pruner_params(name).items())
        lines.append(f"{name:<16} {params or '(no parameters)'}")
    return lines


def _benchmarks() -> list[str]:
    from benchmarks.registry import BENCHMARKS

    return [f"{name:<20} {target.split(':')[1]}{' ' + str(fixed) if fixed else ''}"
            for name, (target, fixed) in sorted(BENCHMARKS.items())]


def _configs() -> list[str]:
    lines = []
    for path in sorted(CONFIG_DIR.glob("*.yaml")):
        first = next((line.lstrip("# ").strip() for line in path.read_text().splitlines() if line.startswith("#")), "")
        lines.append(f"{'configs/' + path.name:<42} {first}")
    return lines


def _extractions() -> list[str]:
    from benchmarks.extraction import CONVENTIONS, DEFAULT_CONVENTION

    return [f"{name}{' (default)' if name == DEFAULT_CONVENTION else ''}" for name in CONVENTIONS]


def run(args: argparse.Namespace) -> int:
    listers = {"models": _models, "pruners": _pruners, "benchmarks": _benchmarks, "configs": _configs,
               "extractions": _extractions}
    chosen = [args.what] if args.what else list(SECTIONS)
    for i, section in enumerate(chosen):
        if len(chosen) > 1:
            print(("\n" if i else "") + f"{section}:")
        for line in listers[section]():
            print(("  " if len(chosen) > 1 else "") + line)
    return 0
