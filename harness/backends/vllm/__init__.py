"""vLLM backend: the adapter contract served by vLLM (see docs/vllm.md).

``VLLMBackend.from_pretrained(family, path)`` needs vLLM; ``requests`` (the request-building
logic) does not, so it is unit-tested in the main environment.
"""

from harness.backends.vllm.engine import ROUTES, BatchItem, VLLMBackend

__all__ = ["ROUTES", "BatchItem", "VLLMBackend"]
