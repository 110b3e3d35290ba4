"""What a model runtime costs per request: frames through ``.npy`` files and a protocol round trip.

    python -m harness.perf.runtime [--frames 128 --size 896] [--repeats 3]

Measures, best of ``--repeats``:
  - ``transfer``: ``np.save`` of uint8 frames (T, S, S, 3) into the client's frame directory
    (``/dev/shm`` when writable) and ``np.load`` back (what one ``generate`` request adds on top of
    the model's own time, twice the array size of memory traffic);
  - ``round_trip``: one ``geometry`` request to a started worker (JSON both ways over the pipes,
    no model work: the protocol's fixed cost), on this interpreter with the tiny Qwen2.5-VL;
  - ``start``: starting that worker and loading the tiny model (paid once per run and per restart).
Last line: one JSON object.

Measured 2026-12-01 on the 2-core shared dev machine (load average ~3-4), defaults: 128 x 896 x 896
frames (294 MiB) through /dev/shm 0.33 s (~880 MiB/s, save + load); round trip 0.06 ms; worker
start + tiny model load 6.4 s.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from harness.runtime.client import WorkerAdapter, _shared_dir
from harness.runtime.protocol import load_array, save_array


def transfer_seconds(frames: np.ndarray, repeats: int) -> tuple[float, str]:
    directory = Path(_shared_dir("harness_perf_"))
    try:
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            back = load_array(save_array(directory, "frames", frames))
            best = min(best, time.perf_counter() - start)
            assert back.shape == frames.shape
        return best, str(directory.parent)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def worker_seconds(repeats: int) -> tuple[float, float]:
    from harness.runner.components import resolve_model_path
    from harness.runner.config import ModelConfig

    path = resolve_model_path(ModelConfig(family="qwen2_5_vl", path="tiny"))
    load = {"family": "qwen2_5_vl", "path": path, "backend": "transformers", "device": "cpu", "dtype": "float32",
            "seed": 0, "kwargs": {}}
    start = time.perf_counter()
    worker = WorkerAdapter(sys.executable, load, label="perf").start()
    started = time.perf_counter() - start
    try:
        best = float("inf")
        for i in range(max(repeats, 5)):
            t0 = time.perf_counter()
            worker._request({"op": "geometry", "num_frames": 8 + i, "height": 224, "width": 224}, "perf")
            best = min(best, time.perf_counter() - t0)
        return started, best
    finally:
        worker.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=128)
    parser.add_argument("--size", type=int, default=896)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    frames = np.random.default_rng(0).integers(0, 255, (args.frames, args.size, args.size, 3), dtype=np.uint8)
    transfer, where = transfer_seconds(frames, args.repeats)
    started, round_trip = worker_seconds(args.repeats)
    mb = frames.nbytes / 2**20
    print(f"transfer {args.frames}x{args.size}x{args.size}x3 ({mb:.0f} MiB) via {where}: {transfer:.3f} s "
          f"({mb / transfer:.0f} MiB/s); protocol round trip {round_trip * 1e3:.1f} ms; "
          f"worker start + tiny model load {started:.1f} s")
    print(json.dumps({"frames_shape": list(frames.shape), "frames_mib": round(mb, 1), "frames_dir": where,
                      "transfer_s": transfer, "round_trip_s": round_trip, "start_s": started}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
