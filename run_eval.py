#!/usr/bin/env python
"""Command-line entry point: ``python run_eval.py {gaze,eval,report,compare,score} ...``."""

from harness.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
