"""The harness cache: where artefacts built on first use live (tiny models, benchmark videos).

Why one module: the tiny MLLMs (``harness.models.tiny``) and the tiny AutoGaze
(``harness.gaze.tiny``) are both built once into the same cache and must be safe when several
processes (torchrun ranks, two runs) ask for them at once. ``build_once`` builds beside the
target and renames, so nobody ever sees half a checkpoint.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

COMPLETE_MARKER = ".complete"


def cache_dir() -> Path:
    """$HARNESS_CACHE_DIR, else ~/.cache/harness: outside the repository, shared by every run."""
    return Path(os.environ.get("HARNESS_CACHE_DIR") or Path.home() / ".cache" / "harness").expanduser()


def build_once(out: Path, build: Callable[[Path], object], what: str) -> Path:
    """Return ``out``, building it with ``build(tmp_dir)`` first if no complete build is there."""
    if (out / COMPLETE_MARKER).exists():
        return out
    print(f"building {what} into {out} (once; later runs reuse it)", flush=True)
    tmp = out.with_name(f"{out.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    build(tmp)
    (tmp / COMPLETE_MARKER).write_text("ok\n")
    try:
        if out.exists() and not (out / COMPLETE_MARKER).exists():  # a stale, incomplete build
            shutil.rmtree(out, ignore_errors=True)
        os.rename(tmp, out)
    except OSError:
        if not (out / COMPLETE_MARKER).exists():
            raise
        shutil.rmtree(tmp, ignore_errors=True)  # another process finished first: use its build
    return out
