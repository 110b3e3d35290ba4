"""``run_eval.py cache [show|list|clear] [--dir DIR] [--config C.yaml]``: the gaze cache on disk.

Why: the gaze cache (``harness.gaze.cache``) grows with every sweep; a user needs to see where it
is, how big it is, what is in it, and to empty it, without knowing its layout. Reads entry headers
only (no torch import). ``clear`` removes gaze entries only, never the tiny models beside them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", nargs="?", default="show", choices=("show", "list", "clear"),
                        help="show: where and how big (default); list: one line per entry; clear: delete them")
    parser.add_argument("--dir", help="gaze cache directory (default: a config's cache.dir, "
                                      "$HARNESS_GAZE_CACHE_DIR, else $HARNESS_CACHE_DIR/gaze)")
    parser.add_argument("--config", help="take the directory and size cap from this config's cache section")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, as for eval (e.g. --set cache.dir=/scratch/gaze)")


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _describe(path: Path) -> str:
    from harness.gaze import cache

    try:
        meta = cache.read_meta(path)
    except (OSError, ValueError) as exc:
        return f"(unreadable header: {exc}; a read would recompute it)"
    facts = meta.get("facts") or {}
    setting = facts.get("setting") or {}
    source = meta.get("source") or {}
    shape = "x".join(str(x) for x in facts.get("frames_shape", [])[:3])
    where = source.get("video", "?")
    if source.get("first_index") is not None:
        where += f" [{source['first_index']}..{source['last_index']}]"
    return (f"{facts.get('kind', '?'):<6} frames {shape:<12} ratio {setting.get('gazing_ratio')} "
            f"tlr {setting.get('task_loss_requirement')} {where} (computed in {meta.get('seconds', 0):.2f} s)")


def run(args: argparse.Namespace) -> int:
    from harness.gaze import cache

    root, cap = None, None
    if args.config or args.overrides:
        from harness.runner.config import ConfigError, load_config

        try:
            cfg = load_config(args.config, args.overrides)
        except ConfigError as exc:
            print(f"run_eval.py cache: {exc}", file=sys.stderr)
            return 2
        root, cap = cfg.cache.dir, cfg.cache.gaze_max_gb
    if args.dir:
        root = args.dir
    old = cache.configure(True, cap, root)
    try:
        directory = cache.settings().directory
        max_bytes = cache.settings().max_bytes
    finally:
        cache.restore(old)
    if directory.exists() and not directory.is_dir():
        print(f"run_eval.py cache: {directory} is not a directory", file=sys.stderr)
        return 2
    items = cache.entries(directory)
    total = sum(e.size for e in items)
    if args.action == "clear":
        removed = cache.clear(directory)
        print(f"removed {removed} gaze cache entr{'y' if removed == 1 else 'ies'} ({_size(total)}) from {directory}")
        return 0
    print(f"gaze cache: {directory}")
    print(f"  {len(items)} entr{'y' if len(items) == 1 else 'ies'}, {_size(total)} of a {_size(max_bytes)} cap "
          f"(least recently used entries are evicted beyond it)")
    if args.action == "list":
        for e in reversed(items):  # most recently used first
            used = dt.datetime.fromtimestamp(e.mtime).strftime("%Y-%m-%d %H:%M")
            print(f"  {e.path.stem[:12]}  {_size(e.size):>10}  used {used}  {_describe(e.path)}")
    return 0
