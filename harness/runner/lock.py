"""An exclusive lock on a run's output directory, so two evals never write the same records.

Why ``flock``: the kernel drops it when its process dies (``kill -9`` included), so a lock can
never outlive its run; the holder line in the lock file (pid, host, start) only serves the
message. A lock file left by a killed run is simply taken over, with a note naming who left it.

Sharded runs (torchrun / accelerate): every rank locks its own file,
``.eval.rank{R:03d}-of-{W:03d}.lock`` (a single process: ``.eval.lock``), so the ranks of one run
never block each other and need no communication (they may start in any order). A rank refuses to
start while any lock of another world size is held: a single-process run and a sharded one, or
two sharded runs of different sizes, would each do samples the other does (in different record
files) and every such record would be written twice. Two runs of the same size collide on
each rank's own file. The acquire-and-check step is serialised by a short ``flock`` on the
directory itself, so two processes starting together cannot both see the other's lock as free
(and a probe never makes a real owner fail); lock files are removed on release under the same
``flock``, so no one can hold the lock on a file that is no longer in the directory.

Scope: local file systems (and NFSv4, where Linux maps ``flock`` to POSIX locks); one run on one
directory at a time, from any number of processes and hosts that share it.
"""

from __future__ import annotations

import datetime as dt
import errno
import fcntl
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

SINGLE = ".eval.lock"
PATTERN = ".eval*.lock"


class RunLockedError(RuntimeError):
    """Another eval holds the output directory; the message names it (pid, host, start time)."""


def lock_name(rank: int, world_size: int) -> str:
    return SINGLE if world_size <= 1 else f".eval.rank{rank:03d}-of-{world_size:03d}.lock"


def _world_of(name: str) -> int | None:
    """World size a lock file name belongs to (1 for ``.eval.lock``); None for other names."""
    if name == SINGLE:
        return 1
    stem = name.removeprefix(".eval.rank").removesuffix(".lock")
    _, sep, world = stem.partition("-of-")
    return int(world) if sep and world.isdigit() else None


def _holder(fd: int) -> dict[str, Any] | None:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 4096).decode("utf-8", "replace").strip()
    if not text:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return {"raw": text[:200]}
    return data if isinstance(data, dict) else {"raw": text[:200]}


def describe(holder: dict[str, Any] | None) -> str:
    """``pid 123 on host h, started 2026-01-01T12:00:00+00:00 (rank 0 of 2)`` from a holder line."""
    if not holder:
        return "a process that has not written its name yet"
    if "raw" in holder:
        return f"unknown holder ({holder['raw']!r})"
    text = f"pid {holder.get('pid')} on host {holder.get('host')}, started {holder.get('started')}"
    if int(holder.get("world_size") or 1) > 1:
        text += f" (rank {holder.get('rank')} of {holder.get('world_size')})"
    return text


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return False
        raise
    return True


class RunLock:
    """Hold ``directory`` for one rank of one run: ``with RunLock(out, rank, world): ...``.

    ``acquire`` raises ``RunLockedError`` at once (no waiting) when another run holds it;
    ``taken_over`` names the killed run whose lock file was found, if any.
    """

    def __init__(self, directory: str | Path, rank: int = 0, world_size: int = 1):
        self.directory = Path(directory)
        self.rank, self.world_size = int(rank), int(world_size)
        self.path = self.directory / lock_name(self.rank, self.world_size)
        self._fd: int | None = None
        self.taken_over: list[str] = []

    # ------------------------------------------------------------ the directory gate

    def _gate(self) -> int:
        fd = os.open(self.directory, os.O_RDONLY)
        fcntl.flock(fd, fcntl.LOCK_EX)  # held for microseconds: acquire-and-check, or release
        return fd

    @staticmethod
    def _ungate(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    # ------------------------------------------------------------ acquire / release

    def acquire(self) -> RunLock:
        self.directory.mkdir(parents=True, exist_ok=True)
        gate = self._gate()
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            if not _try_lock(fd):
                holder = _holder(fd)
                os.close(fd)
                raise RunLockedError(self._busy(holder))
            try:
                self._check_other_sizes()
            except BaseException:
                if _holder(fd) is None:  # we made it just now: leave nothing behind
                    self.path.unlink(missing_ok=True)
                os.close(fd)  # drops our lock
                raise
            left = _holder(fd)
            if left:
                self.taken_over.append(f"{self.path.name}: {describe(left)}")
            info = {"pid": os.getpid(), "host": socket.gethostname(),
                    "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                    "rank": self.rank, "world_size": self.world_size, "argv": " ".join(sys.argv)[:300]}
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
            os.fsync(fd)
            self._fd = fd
        finally:
            self._ungate(gate)
        return self

    def _check_other_sizes(self) -> None:
        """Refuse if a run of another world size holds a lock here; clear the files of dead ones."""
        for other in sorted(self.directory.glob(PATTERN)):
            world = _world_of(other.name)
            if world is None or world == self.world_size:
                continue
            try:
                fd = os.open(other, os.O_RDWR)
            except FileNotFoundError:
                continue
            try:
                if not _try_lock(fd):
                    raise RunLockedError(self._busy(_holder(fd), other_world=world))
                left = _holder(fd)
                if left:
                    self.taken_over.append(f"{other.name}: {describe(left)}")
                other.unlink()  # under the gate: no one else has it open to lock
            finally:
                os.close(fd)

    def _busy(self, holder: dict[str, Any] | None, other_world: int | None = None) -> str:
        what = "another eval" if other_world is None else (
            "another eval with a different number of processes "
            f"(WORLD_SIZE={other_world}, this one {self.world_size})")
        return (f"{self.directory} is in use by {what}: {describe(holder)}; two runs on one output "
                f"directory would write every record twice. Wait for it to finish, or use another output_dir")

    def release(self) -> None:
        if self._fd is None:
            return
        gate = self._gate() if self.directory.is_dir() else None
        try:
            if self.path.exists():
                self.path.unlink()
            os.close(self._fd)  # closing drops the flock
        finally:
            self._fd = None
            if gate is not None:
                self._ungate(gate)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
