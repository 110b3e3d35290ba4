"""Find and load an AutoGaze checkpoint: a local directory or a Hugging Face cache id, never a download.

The harness runs on machines without internet; a silent download attempt would hang or fail
with an obscure network error, so hub ids are resolved with ``local_files_only=True`` and a
miss says exactly what to do. Weights load with strict key checking: a checkpoint whose keys
do not match the network is refused with the missing/unexpected/mis-shaped keys named, and so is
one with NaN/inf values (a corrupt file or a diverged training run loads fine and then gazes at
random: all-NaN weights kept about half the tokens, silently). A checkpoint must ship
``preprocessor_config.json``: the resize/normalisation the gaze model was trained with decides its
gazes, and guessing defaults would change results without a word.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
PREPROCESSOR_NAME = "preprocessor_config.json"


class CheckpointError(ValueError):
    """The checkpoint cannot be found or does not match the network; the message says which file/keys."""


def resolve_checkpoint(path_or_id: str | Path) -> Path:
    """Return the local directory holding ``config.json`` + ``model.safetensors`` for a path or hub id."""
    path = Path(path_or_id).expanduser()
    if path.is_dir():
        _require_files(path)
        return path
    if path.exists():
        raise CheckpointError(f"{path}: expected a checkpoint directory, got a file")
    text = str(path_or_id)
    if text.count("/") != 1 or text.startswith((".", "/", "~")):
        raise CheckpointError(f"{text}: no such directory (and not a Hugging Face id like 'nvidia/AutoGaze')")
    try:
        from huggingface_hub import snapshot_download

        local = Path(snapshot_download(repo_id=text, local_files_only=True))
    except Exception as exc:  # huggingface_hub raises several types for "not cached"
        from huggingface_hub import constants

        raise CheckpointError(
            f"{text}: not a local directory and not in the Hugging Face cache ({constants.HF_HUB_CACHE}); "
            f"nothing is downloaded here. Fetch it on a machine with internet "
            f"(`huggingface-cli download {text}`) and copy the cache or pass the directory. ({type(exc).__name__})"
        ) from None
    _require_files(local)
    return local


def _require_files(directory: Path) -> None:
    missing = [n for n in (CONFIG_NAME, WEIGHTS_NAME, PREPROCESSOR_NAME) if not (directory / n).is_file()]
    if missing:
        hint = (" (the frame resize/normalisation the model was trained with; copy it from the published "
                "nvidia/AutoGaze checkpoint)" if missing == [PREPROCESSOR_NAME] else "")
        raise CheckpointError(f"{directory}: checkpoint directory lacks {', '.join(missing)}{hint}")


def load_weights_strict(module: torch.nn.Module, weights_file: Path) -> None:
    """Load ``weights_file`` into ``module``; refuse missing, unexpected or mis-shaped keys, naming them."""
    try:
        state = load_file(str(weights_file))
    except Exception as exc:
        raise CheckpointError(f"{weights_file}: cannot read safetensors ({exc})") from None
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = sorted(
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    )
    problems = []
    if missing:
        problems.append(f"missing keys ({len(missing)}): {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {', '.join(unexpected)}")
    if shapes:
        problems.append(f"shape mismatches ({len(shapes)}): {'; '.join(shapes)}")
    if problems:
        raise CheckpointError(
            f"{weights_file}: checkpoint does not match the AutoGaze network: " + " | ".join(problems)
        )
    bad = non_finite_tensors(state)
    if bad:
        shown = ", ".join(bad[:5]) + (f", ... ({len(bad) - 5} more)" if len(bad) > 5 else "")
        raise CheckpointError(
            f"{weights_file}: corrupt checkpoint: non-finite values (NaN/inf) in {len(bad)} tensor(s): {shown}"
        )
    module.load_state_dict(state, strict=True)


def non_finite_tensors(state: dict[str, torch.Tensor]) -> list[str]:
    """``name (k of n values)`` for each floating tensor holding NaN or inf, in key order."""
    out = []
    for name in sorted(state):
        tensor = state[name]
        if tensor.is_floating_point() or tensor.is_complex():
            finite = torch.isfinite(tensor)
            if not bool(finite.all()):
                out.append(f"{name} ({int((~finite).sum())} of {tensor.numel()} values)")
    return out
