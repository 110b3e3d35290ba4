"""vLLM backend: the adapter contract served by vLLM (see docs/vllm.md).

``VLLMBackend.from_pretrained(family, path)`` needs vLLM; ``requests`` (the request-building
logic) does not, so it is unit-tested in the main environment. Which families it serves and how
is each family spec's ``vllm`` (``routes()``; ``ROUTES`` is the same as a read-only view).
"""

from harness.backends.vllm.engine import BatchItem, VLLMBackend, routes

__all__ = ["ROUTES", "BatchItem", "VLLMBackend", "routes"]


def __getattr__(name: str) -> object:
    if name == "ROUTES":
        return routes()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
