"""The main-process side of a model runtime: an adapter whose work happens in a worker process.

:class:`WorkerAdapter` has the adapter contract (``token_geometry``, ``generate``, and
``generate_batch`` when the served adapter has it), so the engine, batching, resume and sharding
code paths are the in-process ones. What it adds:

- start-up: the interpreter is checked and the worker must say hello and load the model before
  any sample; otherwise one :class:`RuntimeStartError` line names the interpreter and the cause
  (the last line the worker wrote to stderr, e.g. ``ModuleNotFoundError: No module named ...``);
- an adapter error comes back as an exception of the same type name and message, so the record's
  ``error`` reads as it would in-process;
- a worker that dies mid-request (segfault, OOM kill, ``kill -9``) fails that request with
  :class:`WorkerCrashed` (recorded against the sample) and is restarted, model reloaded, on the
  next request; the run goes on;
- ``close`` (called by the engine when the plan ends, and at interpreter exit) stops it.
"""

from __future__ import annotations

import collections
import contextlib
import os
import selectors
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import Any

import numpy as np

from harness.runtime.protocol import (
    PROTOCOL,
    ProtocolError,
    generation_from_wire,
    receive,
    save_array,
    selection_to_wire,
    send,
)

STDERR_LINES = 40
# the worker's stderr lines that are noise, not a cause (the traceback's frame lines)
_NOT_A_CAUSE = ("Traceback", "  ", "^", "~")


class RuntimeStartError(RuntimeError):
    """The worker could not start or load its model; the message is one line."""


class WorkerCrashed(RuntimeError):
    """The worker process ended while a request was outstanding (it is restarted on the next one)."""


class WorkerTimeout(WorkerCrashed):
    """No reply within ``runtime.timeout_s``: the worker is killed and restarted."""


_REMOTE_TYPES: dict[str, type[Exception]] = {}


def remote_error(name: str, message: str, remote_traceback: str = "") -> Exception:
    """An exception named like the worker's (``ValueError``...), so records read as in-process."""
    cls = _REMOTE_TYPES.setdefault(name, type(name, (RuntimeError,), {"__module__": "harness.runtime.remote"}))
    exc = cls(message)
    exc.remote_traceback = remote_traceback  # type: ignore[attr-defined]
    return exc


def harness_root() -> Path:
    """The directory holding the ``harness`` package the worker must import (this checkout)."""
    import harness

    return Path(harness.__file__).resolve().parent.parent


def _shared_dir(prefix: str) -> str:
    """Shared memory (``/dev/shm``) when it exists and is writable, else the temp dir."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return tempfile.mkdtemp(prefix=prefix, dir=shm)
    return tempfile.mkdtemp(prefix=prefix)


class _StderrTail(threading.Thread):
    """Forwards the worker's stderr to ours and keeps its last lines (for start-up causes)."""

    def __init__(self, stream: Any, label: str):
        super().__init__(daemon=True)
        self.stream, self.label = stream, label
        self.lines: collections.deque[tuple[int, str]] = collections.deque(maxlen=STDERR_LINES)
        self.count = 0  # lines read so far (a request's cause is looked for after its mark)

    def run(self) -> None:
        for raw in iter(self.stream.readline, b""):
            line = raw.decode(errors="replace").rstrip("\n")
            self.lines.append((self.count, line))
            self.count += 1
            print(f"[{self.label}] {line}", file=sys.stderr, flush=True)

    def cause(self, since: int = 0) -> str:
        """The last telling line written since line ``since`` (a progress bar or frame line is not one)."""
        for index, line in reversed(self.lines):
            if index < since:
                break
            text = line.split("\r")[-1].strip()
            if text and not line.startswith(_NOT_A_CAUSE) and "%|" not in text:
                return text
        return ""


class WorkerAdapter:
    """The adapter contract, served by ``python -m harness.runtime.worker`` in another interpreter."""

    def __init__(self, python: str, load: dict[str, Any], *, label: str = "model",
                 timeout_s: float | None = None, start_timeout_s: float | None = None):
        self.python = python
        self.load_request = {"op": "load", **load}
        self.label = label
        self.timeout_s = timeout_s
        self.start_timeout_s = start_timeout_s
        self.name = str(load.get("family", "worker"))
        self.versions: dict[str, Any] = {}
        self.restarts = 0
        self._batch = False
        self.wants_video_path = False  # the served adapter reads the sample's own file (NVILA source)
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: _StderrTail | None = None
        self._dir = Path(_shared_dir("harness_worker_"))
        self._spill: Path | None = None  # temp-dir fallback for frames too large for /dev/shm
        self._count = 0
        self._mark = 0  # stderr line count when the outstanding request was sent
        self._geometry: dict[tuple[int, int, int], Any] = {}
        self._finalizer = weakref.finalize(self, _stop, [None], self._dir)  # also runs at exit

    # ------------------------------------------------------------ process

    def start(self) -> WorkerAdapter:
        """Start the worker and load the model; raises :class:`RuntimeStartError` (one line)."""
        exe = Path(self.python).expanduser()
        if not exe.exists():
            raise RuntimeStartError(f"runtime python {self.python}: no such interpreter (build the environment "
                                    f"first, see docs/runtimes.md)")
        if not os.access(exe, os.X_OK) or exe.is_dir():
            raise RuntimeStartError(f"runtime python {self.python}: not an executable file")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(harness_root()), env.get("PYTHONPATH")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        try:
            proc = subprocess.Popen([str(exe), "-m", "harness.runtime.worker"], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        except OSError as exc:
            raise RuntimeStartError(f"runtime python {self.python}: cannot run it ({exc.strerror or exc})") from exc
        self._proc = proc
        self._finalizer.detach()
        self._finalizer = weakref.finalize(self, _stop, [proc], self._dir)
        self._stderr = _StderrTail(proc.stderr, f"{self.label} worker")
        self._stderr.start()
        try:
            hello = self._receive(self.start_timeout_s, "starting")
            if hello.get("hello") != PROTOCOL:
                raise RuntimeStartError(f"runtime python {self.python}: worker speaks protocol "
                                        f"{hello.get('hello')!r}, this runner {PROTOCOL}")
            self.versions = dict(hello.get("versions") or {})
            reply = self._call(self.load_request, self.start_timeout_s, "loading the model")
        except (WorkerCrashed, ProtocolError) as exc:
            self.kill()
            cause = self._stderr.cause() if self._stderr else ""
            raise RuntimeStartError(f"runtime python {self.python}: the worker did not start "
                                    f"({cause or exc})") from None
        except RuntimeStartError:
            self.kill()
            raise
        except Exception as exc:  # noqa: BLE001 - the worker's own load error, e.g. a missing snapshot
            self.kill()
            raise RuntimeStartError(f"runtime python {self.python}: the model did not load "
                                    f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") \
                from None
        self.name = str(reply.get("name", self.name))
        self._batch = bool(reply.get("batch"))
        self.wants_video_path = bool(reply.get("wants_video_path"))
        self.versions = dict(reply.get("versions") or self.versions)
        return self

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            _stop([proc], None)

    def close(self) -> None:
        """Ask the worker to exit (kill it if it does not) and remove the frame directory."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            try:
                send(proc.stdin, {"op": "shutdown"})
                proc.wait(timeout=10)
            except (OSError, ValueError, subprocess.TimeoutExpired):
                pass
        if proc is not None:
            _stop([proc], None)
        shutil.rmtree(self._dir, ignore_errors=True)
        if self._spill is not None:
            shutil.rmtree(self._spill, ignore_errors=True)

    def _ensure(self) -> None:
        if not self.alive():
            if self._proc is not None or self.restarts or self.versions:
                self.restarts += 1
                print(f"note: restarting the {self.label} worker ({self.python}), restart {self.restarts}",
                      file=sys.stderr, flush=True)
            self.kill()
            self._dir.mkdir(parents=True, exist_ok=True)
            self.start()

    # ------------------------------------------------------------ messages

    def _receive(self, timeout: float | None, doing: str) -> dict[str, Any]:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        if timeout is not None:
            with selectors.DefaultSelector() as sel:
                sel.register(proc.stdout, selectors.EVENT_READ)
                if not sel.select(timeout):
                    self.kill()
                    raise WorkerTimeout(f"{self.label} worker gave no reply within {timeout:g} s while {doing}; "
                                        f"killed, it restarts on the next request")
        message = receive(proc.stdout)
        if message is None:
            code = proc.wait()
            time.sleep(0.05)  # let the stderr thread read the last lines
            cause = self._stderr.cause(self._mark) if self._stderr else ""
            self._proc = None
            raise WorkerCrashed(f"{self.label} worker ({self.python}) exited with code {code} while {doing}"
                                + (f": {cause}" if cause else "") + "; it restarts on the next request")
        return message

    def _call(self, request: dict[str, Any], timeout: float | None, doing: str) -> dict[str, Any]:
        proc = self._proc
        assert proc is not None
        self._mark = self._stderr.count if self._stderr else 0
        with contextlib.suppress(OSError, ValueError):  # it died: the read below says how
            send(proc.stdin, request)
        reply = self._receive(timeout, doing)
        if not reply.get("ok"):
            raise remote_error(str(reply.get("type", "RuntimeError")), str(reply.get("message", "")),
                               str(reply.get("traceback", "")))
        return reply

    def _request(self, request: dict[str, Any], doing: str) -> dict[str, Any]:
        self._ensure()
        return self._call(request, self.timeout_s, doing)

    def _frames_dir(self, nbytes: int) -> Path:
        """The shared-memory directory when it has room for ``nbytes`` (a container's /dev/shm is
        often 64 MiB), else a directory in the temp dir."""
        if shutil.disk_usage(self._dir).free > nbytes + (64 << 20):
            return self._dir
        if self._spill is None:
            self._spill = Path(tempfile.mkdtemp(prefix="harness_worker_"))
        return self._spill

    def _item(self, frames: np.ndarray, selection: Any, prompt: str, fps: float,
              video: str | None = None) -> dict[str, Any]:
        self._count += 1
        n = self._count
        frames = np.asarray(frames)
        return {"frames": save_array(self._frames_dir(frames.nbytes), f"frames-{n}", frames),
                "selection": selection_to_wire(selection, self._dir, f"keep-{n}"),
                "prompt": prompt, "fps": float(fps), "video": video}

    def _clear(self) -> None:
        for directory in (self._dir, self._spill):
            for path in directory.glob("*.npy") if directory is not None else ():
                path.unlink(missing_ok=True)

    # ------------------------------------------------------------ the adapter contract

    def token_geometry(self, num_frames: int, height: int, width: int) -> Any:
        """Asked once per frame shape (a pure function of the model's processor settings)."""
        from harness.pruning.selection import TokenGeometry

        key = (int(num_frames), int(height), int(width))
        if key not in self._geometry:
            reply = self._request({"op": "geometry", "num_frames": key[0], "height": key[1], "width": key[2]},
                                  "computing the token geometry")
            self._geometry[key] = TokenGeometry(**reply["geometry"])
        return self._geometry[key]

    def generate(self, frames: np.ndarray, selection: Any, prompt: str, *, fps: float, max_new_tokens: int = 16,
                 prune_stage: str = "post_vit", video_path: str | None = None) -> Any:
        self._ensure()
        try:
            request = {"op": "generate", "request": self._item(frames, selection, prompt, fps, video_path),
                       "max_new_tokens": int(max_new_tokens), "prune_stage": prune_stage}
            reply = self._call(request, self.timeout_s, "generating")
        finally:
            self._clear()
        return generation_from_wire(reply["generation"])

    def __getattr__(self, name: str) -> Any:
        # generate_batch exists only when the served adapter has it (batching.supports_batching)
        if name == "generate_batch" and self.__dict__.get("_batch"):
            return self._generate_batch
        raise AttributeError(name)

    def _generate_batch(self, items: list[Any], *, max_new_tokens: int, prune_stage: str) -> list[Any]:
        self._ensure()
        try:
            request = {"op": "generate_batch",
                       "requests": [self._item(it.frames, it.selection, it.prompt, it.fps, it.video) for it in items],
                       "max_new_tokens": int(max_new_tokens), "prune_stage": prune_stage}
            reply = self._call(request, self.timeout_s, "generating a batch")
        finally:
            self._clear()
        return [generation_from_wire(g) for g in reply["generations"]]


def _stop(procs: list[Any], directory: Path | None) -> None:
    """Kill a worker that is still running (finalizer and ``kill``: no waiting on a polite exit)."""
    for proc in procs:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc is not None:
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
    if directory is not None:
        shutil.rmtree(directory, ignore_errors=True)
