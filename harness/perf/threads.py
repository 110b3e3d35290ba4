"""Idle-thread policy on a busy machine: OpenMP threads that spin vs sleep while waiting.

    python -m harness.perf.threads [--threads 2] [--clips 3] [--hog 1]

Why: a user's first run (``make demo``) on a 2-core machine with another job running took 4.5x the
CPU time of the same run on an idle one; spinning OpenMP workers that wait for a busy core are
the suspect. ``run_eval.py`` now sets ``OMP_WAIT_POLICY=PASSIVE`` unless the user set it. This
runs one AutoGaze workload (the tiny random-weight checkpoint, batch 1, ratio 0.3, 16-frame clips)
in a fresh process under each policy (and with none set: the runtime's default), with ``--hog`` busy-loop processes competing for the cores,
and reports wall and CPU seconds of each. Outputs of the two runs are checked identical. Last line JSON.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import subprocess
import sys
import time

WORKLOAD = """
import json, time, torch
from harness.gaze import AutoGaze
torch.set_num_threads({threads})
model = AutoGaze.from_pretrained("tiny")
g = torch.Generator().manual_seed(0)
clips = torch.randn({clips}, 1, 16, 3, 224, 224, generator=g) * 0.5
model.gaze(clips[0], gazing_ratio=0.3)  # warm-up
start = time.perf_counter()
ids = [model.gaze(c, gazing_ratio=0.3).gazing_pos.tolist() for c in clips]
print(json.dumps({{"seconds": time.perf_counter() - start, "ids": ids}}))
"""


def _hog(stop: float) -> None:
    x = 0
    while time.time() < stop:
        x += 1


def _run(policy: str, threads: int, clips: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if policy != "unset":  # unset: the OpenMP runtime's default (libgomp spins a while, then sleeps)
        env["OMP_WAIT_POLICY"] = policy
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", WORKLOAD.format(threads=threads, clips=clips)], env=env,
                         capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return {"policy": policy, "gaze_seconds": round(result["seconds"], 2), "process_wall_s": round(wall, 2),
            "process_cpu_s": round((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), 2),
            "ids": result["ids"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.perf.threads", description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the workload (default 2)")
    ap.add_argument("--clips", type=int, default=3, help="16-frame clips gazed per run (default 3)")
    ap.add_argument("--hog", type=int, default=1, help="busy-loop processes competing for cores (default 1)")
    ap.add_argument("--policies", default="unset,ACTIVE,PASSIVE",
                    help="comma-separated OMP_WAIT_POLICY values to compare ('unset' = runtime default)")
    ap.add_argument("--repeats", type=int, default=2, help="runs of each policy, interleaved (default 2)")
    args = ap.parse_args(argv)
    _run("PASSIVE", args.threads, 1)  # builds the tiny checkpoint once, outside the timings
    hogs = [mp.Process(target=_hog, args=(time.time() + 3600,), daemon=True) for _ in range(args.hog)]
    for h in hogs:
        h.start()
    try:
        policies = [p.strip() for p in args.policies.split(",") if p.strip()]
        rows = [_run(policy, args.threads, args.clips) for _ in range(args.repeats) for policy in policies]
    finally:
        for h in hogs:
            h.terminate()
    same = all(r["ids"] == rows[0]["ids"] for r in rows)
    for r in rows:
        r.pop("ids")
        print(f"OMP_WAIT_POLICY={r['policy']:<8} gaze {r['gaze_seconds']:6.2f} s   process wall "
              f"{r['process_wall_s']:6.2f} s   cpu {r['process_cpu_s']:6.2f} s", flush=True)
    best = {p: min((r for r in rows if r["policy"] == p), key=lambda r: r["gaze_seconds"]) for p in policies}
    print(json.dumps({"threads": args.threads, "clips": args.clips, "hogs": args.hog, "outputs_identical": same,
                      "runs": rows, "best_gaze_seconds": {p: r["gaze_seconds"] for p, r in best.items()},
                      "best_cpu_seconds": {p: r["process_cpu_s"] for p, r in best.items()}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
