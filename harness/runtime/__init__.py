"""Model runtimes: one adapter in its own interpreter (venv), driven by the runner over a pipe.

Why: video MLLMs pin incompatible library stacks (NVILA-8B-HD-Video's remote code wants
transformers 4.5x; this project runs on 5.x). A ``model.runtime`` entry names the interpreter;
the runner starts ``python -m harness.runtime.worker`` there and talks to it with
``harness.runtime.protocol`` (JSON lines + frames as ``.npy`` files, never pickles). Pruning,
scoring and records stay in the main process. Modules here import only the standard library
and numpy at import time, so a worker venv needs nothing of the main venv's stack
(docs/runtimes.md).
"""
