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


def prefill_last_hidden(adapter: Any, run: Any) -> tuple[Any, torch.Tensor]:
    """``run()``'s result and the text model's last hidden state at the last prompt position (prefill).

    Why the hidden state and not just the ids: a tiny random model's greedy ids can survive a
    wrong input by chance; the prefill state moves with any change to the tokens or positions.
    """
    states: list[torch.Tensor] = []

    def hook(_module, _args, output):  # noqa: ANN001 - torch hook signature
        if not states:
            states.append(output.last_hidden_state[:, -1].detach().float().clone())

    handle = adapter.model.model.language_model.register_forward_hook(hook)
    try:
        result = run()
    finally:
        handle.remove()
    return result, states[0]


def assert_keep_all_equals_stock(
    adapter: Any, frames: Any, prompt: str, *, fps: float, prune_stage: str, max_new_tokens: int = 4
) -> None:
    """A keep-all ``Selection`` through ``adapter.generate`` answers exactly as the stock model.

    Stock = ``model.generate`` on ``adapter.stock_inputs`` (the stock processor's output): same
    greedy ids, same prefill hidden state, and every visual token (+ the family's newline
    tokens) counted as seen. Works for every MRopeAdapter and PooledAdapter family.
    """
    from harness.pruning.selection import Selection

    stock_inputs = adapter.stock_inputs(frames, prompt, fps=fps)
    with torch.inference_mode():
        stock, stock_state = prefill_last_hidden(
            adapter, lambda: adapter.model.generate(**stock_inputs, max_new_tokens=max_new_tokens, do_sample=False)
        )
    stock_ids = stock[0, stock_inputs["input_ids"].shape[1] :].tolist()
    geometry = adapter.token_geometry(*frames.shape[:3])
    gen, state = prefill_last_hidden(
        adapter,
        lambda: adapter.generate(
            frames, Selection.keep_all(geometry), prompt, fps=fps, max_new_tokens=max_new_tokens,
            prune_stage=prune_stage,
        ),
    )
    torch.testing.assert_close(state, stock_state, rtol=1e-4, atol=1e-4, msg=f"{adapter.name} {prune_stage}")
    assert gen.extra["output_ids"] == stock_ids, (adapter.name, prune_stage, gen.extra["output_ids"], stock_ids)
    newline = getattr(adapter, "newline_tokens", 0)
    assert gen.tokens.visual_before == gen.tokens.visual_after == geometry.total_tokens + newline
    assert gen.tokens.prompt == stock_inputs["input_ids"].shape[1]
