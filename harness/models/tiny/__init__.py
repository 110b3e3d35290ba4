"""Builders of tiny random-weight MLLMs written to a local HF-layout directory (no network).

Why: tests, the demo and the perf benchmarks need the *real* transformers classes and stock
processors of every family, but no weights can be downloaded. Each ``tiny/<family>.py`` exposes
``build(out_dir: Path, seed: int) -> Path`` that writes config, safetensors weights, a tokenizer
trained on the fly (``tiny/tokenizer.py``), processor/video-processor configs and a chat
template, so ``AutoProcessor.from_pretrained(dir)`` and the model class load it offline.
Models built here have RANDOM weights: their answers are meaningless; label them so.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

# family -> module exposing ``build(out_dir, seed) -> Path``; imported lazily (one family's
# missing dependency never blocks another).
BUILDERS: dict[str, str] = {
    "qwen2_5_vl": "harness.models.tiny.qwen2_5_vl",
    "qwen3_vl": "harness.models.tiny.qwen3_vl",
    "llava_onevision": "harness.models.tiny.llava_onevision",
    "internvl3": "harness.models.tiny.internvl3",
}


def available_families() -> list[str]:
    """Families whose builder module is present in this checkout."""
    found = []
    for family, module in BUILDERS.items():
        if importlib.util.find_spec(module) is not None:
            found.append(family)
    return found


def build_tiny_model(family: str, out_dir: str | Path, seed: int = 0) -> Path:
    """Write a complete tiny ``family`` model into ``out_dir`` and return that directory."""
    if family not in BUILDERS:
        raise KeyError(
            f"no tiny builder for model family {family!r}; valid choices: {', '.join(sorted(BUILDERS))}"
        )
    try:
        module = importlib.import_module(BUILDERS[family])
    except ModuleNotFoundError as exc:
        if exc.name == BUILDERS[family]:
            raise KeyError(f"tiny builder {BUILDERS[family]} for {family!r} is not written yet") from exc
        raise
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return Path(module.build(out, seed=seed))
