"""Benchmark name -> class, imported lazily (a benchmark's dependencies never block another)."""

from __future__ import annotations

import importlib
from typing import Any

from benchmarks.base import Benchmark

# name -> ("module:ClassName", fixed constructor kwargs)
BENCHMARKS: dict[str, tuple[str, dict[str, Any]]] = {
    "synthetic_needle": ("benchmarks.synthetic_needle:SyntheticNeedle", {}),
    "videomme": ("benchmarks.videomme:VideoMME", {}),
    "videomme_w_subtitle": ("benchmarks.videomme:VideoMME", {"subtitles": True}),
    "hlvid": ("benchmarks.hlvid:HLVid", {}),
}
DEFAULT_BENCHMARK = "synthetic_needle"


def canonical_name(name: str) -> str:
    """Accept ``synthetic-needle`` / ``Video-MME``-style spellings; unknown names list the choices."""
    key = name.strip().lower().replace("-", "_")
    if key not in BENCHMARKS:
        raise KeyError(f"unknown benchmark {name!r}; valid choices: {', '.join(sorted(BENCHMARKS))}")
    return key


def get_benchmark_class(name: str) -> type[Benchmark]:
    module_name, class_name = BENCHMARKS[canonical_name(name)][0].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def get_benchmark(name: str = DEFAULT_BENCHMARK, **kwargs: Any) -> Benchmark:
    """A ready Benchmark; kwargs go to its constructor (e.g. data_dir=..., extraction=...)."""
    key = canonical_name(name)
    fixed = BENCHMARKS[key][1]
    return get_benchmark_class(key)(**{**fixed, **kwargs})
