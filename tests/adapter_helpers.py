"""Helpers the model-adapter tests share: watching the LLM's inputs, faking an HF hub cache.

Kept out of conftest.py because they are plain objects a test calls, not fixtures.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch

DEFAULT_COMMIT = "0123456789abcdef0123456789abcdef01234567"


class LLMInputRecorder:
    """Records what enters the language model (inputs_embeds, position_ids) on every call.

    Use as a context manager around ``adapter.generate``: ``calls[0]`` is the prefill, later
    entries the decode steps. ``adapter.model.model.language_model`` must be the text model (true
    for the LLaVA-OV and InternVL3 transformers classes).
    """

    def __init__(self, adapter: Any):
        self.calls: list[dict[str, torch.Tensor]] = []
        lm = adapter.model.model.language_model
        self.handle = lm.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs):  # noqa: ANN001 - torch hook signature
        self.calls.append({k: kwargs[k].detach().clone() for k in ("inputs_embeds", "position_ids")})

    def __enter__(self) -> LLMInputRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.remove()


def hf_cache_copy(model_dir: Path, cache: Path, repo_id: str, commit: str = DEFAULT_COMMIT) -> Path:
    """Lay ``model_dir`` out as the HF hub cache does (refs/main -> snapshots/<commit>/files).

    Returns the snapshot directory, so a test can check the adapter loaded from there.
    """
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    shutil.copytree(model_dir, snapshot)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot
