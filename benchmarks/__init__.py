"""Benchmark definitions: samples, prompts, answer extraction, aggregation (see benchmarks/base.py)."""
