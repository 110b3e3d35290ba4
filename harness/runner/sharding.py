"""Data-parallel sharding from the launcher's environment (torchrun / accelerate), no scheduler of ours.

Why strided slices (``i % world_size == rank``): every rank sees the same sample order from the
benchmark, takes every ``world_size``-th sample, and writes its own record file; the report
merges the files. Strided slicing spreads long/short videos evenly (benchmarks often list
videos grouped by duration) and needs no communication between ranks.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class ShardInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _int_env(env: dict[str, str], *names: str) -> int | None:
    for name in names:
        value = env.get(name)
        if value not in (None, ""):
            try:
                return int(value)
            except ValueError as exc:
                raise ValueError(f"environment variable {name}={value!r} is not an integer") from exc
    return None


def shard_from_env(env: dict[str, str] | None = None) -> ShardInfo:
    """RANK/WORLD_SIZE/LOCAL_RANK as torchrun and ``accelerate launch`` set them (1 process if unset)."""
    env = dict(os.environ if env is None else env)
    world = _int_env(env, "WORLD_SIZE") or 1
    rank = _int_env(env, "RANK") or 0
    local = _int_env(env, "LOCAL_RANK")
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"invalid sharding: RANK={rank} WORLD_SIZE={world} (need 0 <= RANK < WORLD_SIZE)")
    return ShardInfo(rank=rank, world_size=world, local_rank=rank if local is None else local)


def shard(items: Iterable[T], info: ShardInfo) -> Iterator[T]:
    """This rank's strided slice of ``items`` (lazily: a generator of samples stays a generator)."""
    for i, item in enumerate(items):
        if i % info.world_size == info.rank:
            yield item


def device_for_rank(device: str, info: ShardInfo) -> str:
    """``cuda`` -> ``cuda:LOCAL_RANK`` when several processes share a node; explicit indices are kept."""
    if device == "cuda" and info.world_size > 1:
        return f"cuda:{info.local_rank}"
    return device
