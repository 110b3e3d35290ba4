"""The worker side: ``python -m harness.runtime.worker`` runs one adapter in this interpreter.

Started by :class:`harness.runtime.client.WorkerAdapter` in the venv a config's ``model.runtime``
names. Reads requests from stdin, answers on the original stdout (``protocol.py``); anything the
model or its libraries print goes to stderr, because fd 1 is pointed at stderr before any import
that could print. An exception inside a request is a reply (``ok: false``), so one bad sample
never ends the worker; only a crash (segfault, OOM kill) does, and the client restarts it.
"""

from __future__ import annotations

import os
import platform
import signal
import sys
import traceback
from typing import IO, Any

from harness.runtime.protocol import (
    PROTOCOL,
    generation_to_wire,
    geometry_to_wire,
    load_array,
    receive,
    selection_from_wire,
    send,
)


def _protocol_streams() -> tuple[IO[bytes], IO[bytes]]:
    """(requests in, replies out): the reply pipe is a private copy of fd 1, then fd 1 -> stderr."""
    out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return sys.stdin.buffer, out


def versions() -> dict[str, str | None]:
    """The stack this worker runs on (recorded in the run's metadata and printed at start)."""
    out: dict[str, str | None] = {"python": platform.python_version(), "executable": sys.executable}
    for name in ("numpy", "torch", "transformers", "vllm"):
        module = sys.modules.get(name)
        if module is None:
            try:
                from importlib.metadata import version

                out[name] = version(name)
            except Exception:  # noqa: BLE001 - not installed here
                out[name] = None
        else:
            out[name] = getattr(module, "__version__", None)
    return out


def build_adapter(family: str, path: str, backend: str, device: str, dtype: str, seed: int,
                  kwargs: dict[str, Any]) -> Any:
    """The adapter a worker serves: the same constructors ``components.load_adapter`` uses."""
    if backend == "transformers":
        from harness.models.registry import get_adapter_class

        return get_adapter_class(family).from_pretrained(path, device=device, dtype=dtype, **kwargs)
    if backend == "vllm":
        from harness.backends.vllm.engine import VLLMBackend

        return VLLMBackend.from_pretrained(family, path, dtype=dtype, device=device, seed=seed, **kwargs)
    raise ValueError(f"unknown backend {backend!r}; valid choices: transformers, vllm")


class Worker:
    """Dispatches requests to one adapter (loaded by the first ``load``)."""

    def __init__(self) -> None:
        self.adapter: Any = None

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op == "load":
            self.adapter = build_adapter(request["family"], request["path"], request["backend"], request["device"],
                                         request["dtype"], int(request.get("seed", 0)), request.get("kwargs") or {})
            return {"name": getattr(self.adapter, "name", request["family"]),
                    "batch": callable(getattr(self.adapter, "generate_batch", None)),
                    "wants_video_path": bool(getattr(self.adapter, "wants_video_path", False)),
                    "versions": versions()}
        if self.adapter is None:
            raise RuntimeError(f"request {op!r} before 'load'")
        if op == "geometry":
            geometry = self.adapter.token_geometry(int(request["num_frames"]), int(request["height"]),
                                                   int(request["width"]))
            return {"geometry": geometry_to_wire(geometry)}
        if op == "generate":
            return {"generation": generation_to_wire(self._generate(request["request"], request))}
        if op == "generate_batch":
            from harness.models.request import BatchItem

            items = [BatchItem(load_array(r["frames"]), selection_from_wire(r.get("selection")), r["prompt"],
                               float(r["fps"]), r.get("video")) for r in request["requests"]]
            gens = self.adapter.generate_batch(items, max_new_tokens=int(request["max_new_tokens"]),
                                               prune_stage=request["prune_stage"])
            return {"generations": [generation_to_wire(g) for g in gens]}
        raise ValueError(f"unknown op {op!r}")

    def _generate(self, item: dict[str, Any], request: dict[str, Any]) -> Any:
        extra = {"video_path": item["video"]} if item.get("video") else {}
        return self.adapter.generate(load_array(item["frames"]), selection_from_wire(item.get("selection")),
                                     item["prompt"], fps=float(item["fps"]),
                                     max_new_tokens=int(request["max_new_tokens"]),
                                     prune_stage=request["prune_stage"], **extra)


def main() -> int:
    # Ctrl-C in the runner's terminal reaches this process group too: the runner decides when the
    # worker ends (shutdown, or end of stdin if the runner died), so the worker ignores SIGINT.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    requests, replies = _protocol_streams()
    send(replies, {"ok": True, "hello": PROTOCOL, "pid": os.getpid(), "versions": versions()})
    worker = Worker()
    while True:
        request = receive(requests)
        if request is None or request.get("op") == "shutdown":
            if request is not None:
                send(replies, {"ok": True})
            return 0
        try:
            reply = {"ok": True, **worker.handle(request)}
        except Exception as exc:  # noqa: BLE001 - the client records it against the sample
            tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
            reply = {"ok": False, "type": type(exc).__name__, "message": str(exc), "traceback": "".join(tb[-6:])}
        send(replies, reply)


if __name__ == "__main__":
    sys.exit(main())
