"""``python -m harness.models.tiny FAMILY OUT_DIR [--seed N]``: build a tiny random-weight model.

Used by the demo and by anyone wanting a loadable model dir without a download; prints the
directory. The weights are RANDOM: outputs are meaningless, only the plumbing is real.
"""

from __future__ import annotations

import argparse
import sys

from harness.models.tiny import BUILDERS, build_tiny_model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.models.tiny", description=__doc__.split("\n")[0])
    parser.add_argument("family", choices=sorted(BUILDERS))
    parser.add_argument("out_dir")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        path = build_tiny_model(args.family, args.out_dir, seed=args.seed)
    except KeyError as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 2
    print(f"{path}  (tiny {args.family}, random weights)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
