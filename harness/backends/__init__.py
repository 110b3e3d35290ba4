"""Inference backends other than the transformers adapters (``harness/models``): vLLM for now."""
