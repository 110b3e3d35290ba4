"""The worker protocol: one JSON object per line each way; arrays travel as ``.npy`` files.

Why files and not pickles: a pickle from one interpreter executes code in the other and ties
both sides to the same class layouts (numpy, torch versions); a ``.npy`` read with
``allow_pickle=False`` is plain data, readable by any numpy. The files go to a directory the
client owns (``/dev/shm`` when it has room, i.e. shared memory, else the temp dir) and are
deleted once the reply is in.

Requests (main -> worker), each ``{"op": ..., ...}``; replies ``{"ok": true, ...}`` or
``{"ok": false, "type", "message", "traceback"}``:

- ``load``: ``family, path, backend, device, dtype, seed, kwargs`` -> ``name, batch``
  (whether the adapter has ``generate_batch``), ``wants_video_path``, ``versions``.
- ``geometry``: ``num_frames, height, width`` -> ``geometry`` (TokenGeometry fields).
- ``generate``: ``request`` (below), ``max_new_tokens, prune_stage`` -> ``generation``.
- ``generate_batch``: ``requests`` (list), ``max_new_tokens, prune_stage`` -> ``generations``.
- ``shutdown``: the worker replies and exits.

A request: ``frames`` (path of a uint8 (T, H, W, 3) ``.npy``), ``prompt``, ``fps``, ``video`` (the
sample's own file, for adapters that read it themselves: ``wants_video_path`` in ``load``'s reply), and
``selection``: null or ``{geometry, keep (path of a bool .npy), pruner, info}``. A generation:
``text, tokens {visual_before, visual_after, prompt, generated}, timings, peak_memory_mb,
extra``. The worker announces itself first with ``{"ok": true, "hello": PROTOCOL, ...}``.
"""

from __future__ import annotations

import json
import math
from dataclasses import fields
from pathlib import Path
from typing import IO, Any

import numpy as np

PROTOCOL = 1
GEOMETRY_FIELDS = ("num_frames", "height", "width", "patch_size", "temporal_patch_size", "spatial_merge_size")


class ProtocolError(RuntimeError):
    """A message that is not one JSON object per line (the other side printed to the pipe, or died)."""


def plain(value: Any) -> Any:
    """Numpy/torch values, tuples, paths, NaN -> plain JSON (what the record writer does too)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        return plain(value.item())
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if hasattr(value, "tolist"):  # torch tensors
        return plain(value.tolist())
    return str(value)


def send(stream: IO[bytes], message: dict[str, Any]) -> None:
    stream.write(json.dumps(plain(message), allow_nan=False).encode() + b"\n")
    stream.flush()


def receive(stream: IO[bytes]) -> dict[str, Any] | None:
    """The next message; None at end of stream (the other side exited)."""
    line = stream.readline()
    if not line:
        return None
    try:
        message = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ProtocolError(f"not a protocol line: {line[:200]!r}") from exc
    if not isinstance(message, dict):
        raise ProtocolError(f"not a protocol object: {line[:200]!r}")
    return message


def save_array(directory: Path, name: str, array: np.ndarray) -> str:
    path = directory / f"{name}.npy"
    np.save(path, np.ascontiguousarray(array), allow_pickle=False)
    return str(path)


def load_array(path: str) -> np.ndarray:
    return np.load(path, allow_pickle=False)


def geometry_to_wire(geometry: Any) -> dict[str, int]:
    return {name: int(getattr(geometry, name)) for name in GEOMETRY_FIELDS}


def selection_to_wire(selection: Any, directory: Path, name: str) -> dict[str, Any] | None:
    """A Selection as JSON + a bool ``.npy``; ``_``-keys of ``info`` are in-process objects and stay."""
    if selection is None:
        return None
    if getattr(selection, "reducer", None) is not None or getattr(selection, "llm", None) is not None:
        # only the keep grid crosses: the worker would run the model unpruned under this pruner's name
        raise ValueError(f"the '{selection.pruner}' pruner acts inside the model (a feature-stage or in-LLM plan), "
                         "which cannot cross to a model runtime; run the model in this process")
    keep = selection.keep.detach().cpu().numpy().astype(bool)
    info = {k: plain(v) for k, v in (selection.info or {}).items() if not str(k).startswith("_")}
    return {"geometry": geometry_to_wire(selection.geometry), "keep": save_array(directory, name, keep),
            "pruner": selection.pruner, "info": info}


def selection_from_wire(wire: dict[str, Any] | None) -> Any:
    if wire is None:
        return None
    import torch

    from harness.pruning.selection import Selection, TokenGeometry

    keep = torch.from_numpy(load_array(wire["keep"]).astype(bool))
    return Selection(geometry=TokenGeometry(**wire["geometry"]), keep=keep, pruner=wire.get("pruner", "none"),
                     info=dict(wire.get("info") or {}))


def generation_to_wire(gen: Any) -> dict[str, Any]:
    tokens = {f.name: getattr(gen.tokens, f.name) for f in fields(gen.tokens)}
    return {"text": gen.text, "tokens": tokens, "timings": dict(gen.timings or {}),
            "peak_memory_mb": gen.peak_memory_mb, "extra": dict(gen.extra or {})}


def generation_from_wire(wire: dict[str, Any]) -> Any:
    from harness.models.base import Generation, TokenCounts

    return Generation(text=wire["text"], tokens=TokenCounts(**wire["tokens"]),
                      timings={k: float(v) for k, v in (wire.get("timings") or {}).items() if v is not None},
                      peak_memory_mb=wire.get("peak_memory_mb"), extra=dict(wire.get("extra") or {}))
