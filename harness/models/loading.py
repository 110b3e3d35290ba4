"""Where model weights come from: a local HF-layout directory or the HF cache, never a silent download."""

from __future__ import annotations

import os
from pathlib import Path

import torch


def resolve_model_dir(
    path_or_id: str | Path, cache_dir: str | Path | None = None, local_files_only: bool = True
) -> Path:
    """The local HF-layout directory for a path or an HF repo id; never downloads by default.

    A repo id ``org/name`` is looked up in the HF cache (``cache_dir``, else ``HF_HUB_CACHE`` as
    set NOW, else huggingface_hub's default) with ``local_files_only``: evaluation runs offline,
    and a silent download would change what is measured. ``local_files_only=False`` allows the
    download for interactive use.
    """
    path = Path(path_or_id).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(
                f"{path}: directory exists but holds no config.json (not an HF model dir)"
            )
        return path
    text = str(path_or_id)
    if path.is_absolute() or text.startswith((".", "~")) or text.count("/") != 1:
        raise FileNotFoundError(
            f"{text}: no such model directory (and not an HF repo id of the form org/name)"
        )
    from huggingface_hub import snapshot_download

    # huggingface_hub reads HF_HUB_CACHE once at import; honour a value set later (tests, runners).
    cache_dir = cache_dir if cache_dir is not None else os.environ.get("HF_HUB_CACHE")
    try:
        return Path(snapshot_download(repo_id=text, cache_dir=cache_dir, local_files_only=local_files_only))
    except Exception as exc:  # huggingface_hub raises several types for "not cached"
        where = str(cache_dir) if cache_dir is not None else "the HF cache (HF_HUB_CACHE / HF_HOME)"
        raise FileNotFoundError(
            f"{text}: not a local directory and not found in {where}; download it first "
            f"(`hf download {text}`) or pass a local path. Cause: {type(exc).__name__}: {exc}"
        ) from exc


def parse_dtype(dtype: str | torch.dtype) -> str | torch.dtype:
    """``"auto"`` (the checkpoint's dtype) or a torch dtype from its name."""
    if isinstance(dtype, torch.dtype) or dtype == "auto":
        return dtype
    value = getattr(torch, str(dtype), None)
    if not isinstance(value, torch.dtype):
        raise ValueError(f"unknown dtype {dtype!r}: use 'auto', 'float32', 'bfloat16' or 'float16'")
    return value
