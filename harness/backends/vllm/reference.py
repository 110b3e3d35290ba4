"""Transformers-backend reference answers (ids + per-token logprobs) for the vLLM equivalence test.

Why a separate command: vLLM pins transformers 5.19 in its own venv, and the transformers
adapters need 5.24 (their greedy loop uses the ``cache`` output/kwarg introduced after 5.19:
under 5.19 ``generate`` fails with ``AttributeError: '...CausalLMOutputWithPast' object has no
attribute 'cache'``). So the e2e test (vLLM venv) runs this module with the MAIN venv's python
on the same model directory, frames and keep masks, and compares.

For every selection it records the adapter's own ``generate`` ids and, from a greedy loop over
the SAME model inputs the adapter builds (checked to give the same ids), the log-probability of
each chosen token. With ``--compacted`` (1D-RoPE families) it also records the run at compacted
positions 0..L-1 (what a plain vLLM ``prompt_embeds`` request would get): docs/vllm.md.

    python -m harness.backends.vllm.reference --family F --model DIR --frames f.npy --fps 3 \
        --keep keep.pt --prompt "..." --max-new-tokens 4 --out ref.json

``keep.pt``: ``torch.save`` of a list whose entries are a bool keep grid or None (keep-all).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from harness.models.decoding import cache_kwargs, returned_cache
from harness.models.registry import all_specs, get_adapter_class
from harness.pruning.selection import Selection

# families whose LLM uses M-RoPE (their adapter is an MRopeAdapter): from the family specs
MROPE_FAMILIES = tuple(family for family, spec in all_specs().items() if spec.positions == "mrope")


@torch.inference_mode()
def greedy_with_logprobs(
    model: torch.nn.Module, inputs: dict[str, Any], max_new_tokens: int
) -> tuple[list[int], list[float]]:
    """The adapters' greedy loop (prefill, then one token at a time, positions last + 1), with logprobs."""
    from harness.models.decoding import stop_token_ids

    stop = stop_token_ids(model)
    attention_mask, positions = inputs["attention_mask"], inputs["position_ids"]
    out = model(**inputs, use_cache=True, logits_to_keep=1)
    ids: list[int] = []
    logprobs: list[float] = []
    while True:
        logp = out.logits[0, -1].float().log_softmax(-1)
        token = int(logp.argmax())
        ids.append(token)
        logprobs.append(float(logp[token]))
        if len(ids) >= max_new_tokens or token in stop:
            return ids, logprobs
        positions = positions[..., -1:] + 1
        attention_mask = F.pad(attention_mask, (0, 1), value=1)
        out = model(
            input_ids=torch.tensor([[token]], device=attention_mask.device),
            attention_mask=attention_mask,
            position_ids=positions,
            **cache_kwargs(model, returned_cache(out)),
            use_cache=True,
            logits_to_keep=1,
        )


def llm_inputs(
    adapter: Any, family: str, frames: np.ndarray, selection: Selection | None, prompt: str, fps: float
) -> dict[str, Any]:
    """The exact prefill inputs the adapter's ``generate`` builds (post-ViT pruning)."""
    if family in MROPE_FAMILIES:
        prepared = adapter.prepare(frames, prompt, fps=fps, selection=selection)
        kept = adapter.kept_indices(prepared, selection)
        features = adapter.visual_features(prepared, kept, "post_vit")
        return adapter.llm_inputs(prepared.batch, kept, features)
    geometry = adapter.model_geometry(frames, selection)
    selection = selection if selection is not None else Selection.keep_all(geometry)
    inputs = adapter.preprocess(frames, prompt, geometry)
    features = adapter.encode_video(inputs[adapter.pixel_key])
    return adapter.prune(inputs, features, selection).model_kwargs


def reference(
    family: str,
    model_dir: str,
    frames: np.ndarray,
    fps: float,
    keeps: list[torch.Tensor | None],
    prompt: str,
    max_new_tokens: int,
    compacted: bool = False,
    text_positions: str | None = None,
) -> list[dict[str, Any]]:
    pipeline = {"text_positions": text_positions} if text_positions else None
    adapter = get_adapter_class(family).from_pretrained(model_dir, dtype="float32", pipeline=pipeline)
    results = []
    for keep in keeps:
        selection = None
        if keep is not None:
            geometry = adapter.token_geometry(*frames.shape[:3])
            selection = Selection(geometry, keep.bool(), pruner="reference")
        generated = adapter.generate(frames, selection, prompt, fps=fps, max_new_tokens=max_new_tokens)
        inputs = llm_inputs(adapter, family, frames, selection, prompt, fps)
        ids, logprobs = greedy_with_logprobs(adapter.model, inputs, max_new_tokens)
        if ids != generated.extra["output_ids"]:
            raise RuntimeError(
                f"{family}: reference loop ids {ids} != adapter.generate ids {generated.extra['output_ids']}"
            )
        entry: dict[str, Any] = {"ids": ids, "logprobs": logprobs, "prompt_len": generated.tokens.prompt}
        if compacted and family not in MROPE_FAMILIES:
            compact = dict(inputs)
            length = compact["input_ids"].shape[1]
            compact["position_ids"] = torch.arange(length, device=compact["input_ids"].device)[None]
            entry["ids_compacted"], entry["logprobs_compacted"] = greedy_with_logprobs(
                adapter.model, compact, max_new_tokens
            )
        results.append(entry)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--frames", required=True, help=".npy uint8 (T, H, W, 3)")
    parser.add_argument("--fps", type=float, required=True)
    parser.add_argument("--keep", required=True, help="torch.save'd list of bool grids or None")
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--max-new-tokens", type=int, default=4)
    parser.add_argument("--out", required=True)
    parser.add_argument("--compacted", action="store_true", help="1D families: also run at positions 0..L-1")
    parser.add_argument("--text-positions", default=None, help="M-RoPE families: model.pipeline.text_positions")
    args = parser.parse_args(argv)
    frames = np.load(args.frames)
    keeps = torch.load(args.keep)
    results = reference(
        args.family, args.model, frames, args.fps, keeps, args.prompt, args.max_new_tokens, args.compacted,
        args.text_positions,
    )
    with open(args.out, "w") as f:
        json.dump(results, f)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
