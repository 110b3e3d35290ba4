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

import torch


def _builders() -> dict[str, str]:
    from harness.models.registry import all_specs

    return {family: spec.tiny for family, spec in all_specs().items() if spec.tiny is not None}


def __getattr__(name: str) -> object:
    """``BUILDERS``: family -> module exposing ``build(out_dir, seed) -> Path``.

    Each family spec's ``tiny`` (a read-only view of harness/models/registry.py, computed on
    access). Builder modules are imported only when used (one family's missing dependency never
    blocks another).
    """
    if name == "BUILDERS":
        return _builders()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def available_families() -> list[str]:
    """Families whose builder module is present in this checkout."""
    found = []
    for family, module in _builders().items():
        if importlib.util.find_spec(module) is not None:
            found.append(family)
    return found


def build_tiny_model(family: str, out_dir: str | Path, seed: int = 0, answer_letters: bool = False) -> Path:
    """Write a complete tiny ``family`` model into ``out_dir`` and return that directory.

    ``answer_letters`` scales the LM-head rows of the option letters (see ``favour_letters``) so
    the random model's greedy answers are scoreable letters; the demo and CI runs use it.
    """
    builders = _builders()
    if family not in builders:
        raise KeyError(
            f"no tiny builder for model family {family!r}; valid choices: {', '.join(sorted(builders))}"
        )
    try:
        module = importlib.import_module(builders[family])
    except ModuleNotFoundError as exc:
        if exc.name == builders[family]:
            raise KeyError(f"tiny builder {builders[family]} for {family!r} is not written yet") from exc
        raise
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    built = Path(module.build(out, seed=seed))
    if answer_letters:
        favour_letters(built)
    return built


def favour_letters(model_dir: str | Path, letters: str = "ABCD", margin: float = 4.0, seed: int = 0) -> list[int]:
    """Rewrite the LM-head rows of ``letters`` so a random model answers with one of them.

    Why: a random-weight model almost never emits a letter, so every answer is "unanswered",
    accuracy is 0 for every pruner, and a regression gate on it could never fail.
    How: the final hidden states of a tiny random model share one dominant direction ``m``
    (cosine ~0.97 between unrelated inputs). Each letter's row becomes ``margin * m`` (so letters
    beat every other token, whatever the input) plus a random part orthogonal to ``m`` scaled by
    1/(spread of the hidden states around m) (so WHICH letter wins depends on the input). The
    weights stay random: accuracy stays near chance, but pruning changes answers. Returns the
    letters' token ids.
    """
    from safetensors.torch import load_file, save_file
    from transformers import AutoModelForImageTextToText, AutoTokenizer

    model_dir = Path(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    ids = []
    for letter in letters:
        encoded = tokenizer.encode(letter, add_special_tokens=False)
        if len(encoded) != 1:
            raise ValueError(f"{model_dir}: letter {letter!r} is not a single token ({encoded})")
        ids.append(encoded[0])

    model = AutoModelForImageTextToText.from_pretrained(model_dir).eval()
    head = model.get_output_embeddings()
    hidden: list[torch.Tensor] = []
    handle = head.register_forward_pre_hook(lambda _m, args: hidden.append(args[0][:, -1].detach()))
    gen = torch.Generator().manual_seed(seed)
    # Calibrate on prompts shaped like real ones (chat template, generation prompt): the last
    # position's hidden state is dominated by the template's final tokens, as in evaluation.
    words = ["what", "colour", "is", "the", "shape", "code", "in", "corner", "video", "option", "answer"]
    with torch.no_grad():
        for i in range(16):
            picks = torch.randint(0, len(words), (12,), generator=gen).tolist()
            text = f"Question {i}: " + " ".join(words[j] for j in picks) + "?\nA. x\nB. y\nC. z\nD. w"
            messages = [{"role": "user", "content": [{"type": "text", "text": text}]}]
            prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            model(input_ids=tokenizer(prompt, return_tensors="pt").input_ids)
    handle.remove()
    states = torch.cat(hidden).float()
    direction = states.mean(0)
    direction = direction / direction.norm()
    spread = (states - (states @ direction)[:, None] * direction).norm(dim=1).mean()
    rows = torch.randn(len(ids), states.shape[1], generator=gen)
    rows = rows - (rows @ direction)[:, None] * direction
    rows = rows / rows.norm(dim=1, keepdim=True) / spread.clamp_min(1e-6)
    base = (states @ direction).mean()
    rows = rows * margin + direction * (margin + (states @ head.weight.float().T).max()) / base

    weights_file = model_dir / "model.safetensors"
    state = load_file(weights_file)
    keys = [key for key in state if key.endswith("lm_head.weight")]
    if len(keys) != 1:
        raise ValueError(f"{weights_file}: expected one untied lm_head.weight, found {keys}")
    state[keys[0]][ids] = rows.to(state[keys[0]].dtype)
    save_file(state, weights_file, metadata={"format": "pt"})
    return ids
