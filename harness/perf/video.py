"""Video input benchmark: 4K x 1,000 frames through harness.video in bounded memory, vs a bare PyAV decode.

    python -m harness.perf.video [--width 3840 --height 2160 --frames 1000 --size 448]

Generates a synthetic H.264 video once (libx264 ultrafast, yuv420p, a low-entropy moving texture;
cached in ~/.cache/harness/perf/, outside the repo), then times, each in its own subprocess so that
peak RSS (ru_maxrss) belongs to that read alone:
  - sequential: every frame, in 16-frame chunks;
  - sampled: 64 frames (harness.video.sample_indices, lmms-eval convention), in 16-frame chunks;
for the bare decode (``av.open`` + ``container.decode`` + ``frame.to_ndarray`` at the same output size,
same threading, no index, no seeking: the floor we compare against) and for each harness backend.
Frames are resized while decoding to ``--size`` on the long side (448 -> 448x252 for 16:9).
Time includes opening the file (our packet index / decord's index). Wall-clock figures swing with
the load from other processes, so runs are interleaved rounds (best of ``--repeats``) and we also report
frames per CPU-second, whose ratio to the bare decode is insensitive to load. Last line: one JSON object.

Measured 2026-11-25 on the 2-core shared dev machine (load average ~9-11), 448x252 output, best of 2:
  3840x2160, 1,000 frames:  bare 87.4 fps | pyav 98.9 fps (x1.13 wall, x1.03 per CPU-s) | decord 47.0 fps
                            64 sampled: bare 9.1 | pyav 8.0 (x0.88 wall, x1.04 per CPU-s) | decord 7.7
                            peak RSS of the whole read: pyav 193 MB, decord 199 MB, bare 156 MB
  1280x720, 1,000 frames:   bare 641 fps | pyav 585 fps (x0.91, x0.98 per CPU-s) | decord 395 fps
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CACHE = Path(os.environ.get("HARNESS_PERF_CACHE", Path.home() / ".cache" / "harness" / "perf"))


def synthetic_frames(width: int, height: int, frames: int):
    """A smooth texture drifting 6 px/frame plus a moving bright box: cheap to make and to encode."""
    yy, xx = np.mgrid[0:height, 0 : width + 6 * 64].astype(np.float32)
    base = np.stack([128 + 60 * np.sin(xx / 97.0), 128 + 60 * np.cos(yy / 71.0),
                     128 + 40 * np.sin((xx + yy) / 53.0)], axis=-1).astype(np.uint8)
    box = max(8, min(width, height) // 10)
    for i in range(frames):
        off = (6 * i) % (6 * 64)
        frame = np.ascontiguousarray(base[:, off : off + width])
        x = (i * 17) % max(1, width - box)
        y = (i * 11) % max(1, height - box)
        frame[y : y + box, x : x + box] = 255
        yield frame


def ensure_video(width: int, height: int, frames: int, fps: float) -> Path:
    """Return the cached benchmark video, encoding it (atomically) on first use."""
    from harness.video.writer import write_video

    path = CACHE / f"synthetic_{width}x{height}_{frames}f_{fps:g}fps_x264ultrafast_v1.mp4"
    if path.exists():
        return path
    tmp = path.with_suffix(".partial.mp4")
    start = time.perf_counter()
    print(f"generating {path} ({width}x{height}, {frames} frames) ...", flush=True)
    write_video(tmp, synthetic_frames(width, height, frames), fps=fps, codec="libx264", pix_fmt="yuv420p")
    tmp.rename(path)
    print(f"  done in {time.perf_counter() - start:.1f} s, {path.stat().st_size / 2**20:.1f} MiB", flush=True)
    return path


def _peak_rss_mb() -> float:
    """Peak RSS of this process (MiB). VmHWM, not ru_maxrss: on Linux ru_maxrss survives fork+exec, so a
    child would report its parent's peak; VmHWM belongs to the child's own address space."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # no /proc: KiB on Linux, bytes on macOS
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def _child(spec: dict) -> dict:
    """One timed read in this (fresh) process; returns its figures."""
    import av

    from harness.video import open_video
    from harness.video.pyav_backend import INTERPOLATION

    path, indices = spec["path"], np.asarray(spec["indices"], dtype=np.int64)
    h, w = spec["out_hw"]
    rss_before = _peak_rss_mb()
    checksum = 0
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    if spec["mode"] == "bare":
        wanted = set(indices.tolist())
        last = int(indices.max())
        with av.open(path) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for i, frame in enumerate(container.decode(stream)):
                if i in wanted:
                    arr = frame.to_ndarray(format="rgb24", width=w, height=h, interpolation=INTERPOLATION)
                    checksum += int(arr[::16, ::16].sum())
                if i >= last:
                    break
        decoder = "bare-pyav"
    else:
        with open_video(path, backend=spec["mode"]) as reader:
            for chunk in reader.iter_chunks(indices, chunk_size=spec["chunk"], size=(h, w), keep_aspect=False):
                checksum += int(chunk.frames[:, ::16, ::16].sum())
            decoder = reader.meta.decoder
    elapsed = time.perf_counter() - start
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    return {"decoder": decoder, "frames": int(indices.size), "seconds": round(elapsed, 3),
            "fps": round(indices.size / elapsed, 2), "cpu_s": round(cpu, 3),
            "frames_per_cpu_s": round(indices.size / max(cpu, 1e-9), 2), "peak_rss_mb": round(_peak_rss_mb(), 1),
            "rss_before_read_mb": round(rss_before, 1), "checksum": checksum}


def run_child(spec: dict) -> dict:
    proc = subprocess.run([sys.executable, "-m", "harness.perf.video", "--child", json.dumps(spec)],
                          capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        return {"error": (proc.stderr or proc.stdout).strip().splitlines()[-1:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--width", type=int, default=3840)
    ap.add_argument("--height", type=int, default=2160)
    ap.add_argument("--frames", type=int, default=1000)
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--size", type=int, default=448, help="output long side (aspect kept)")
    ap.add_argument("--chunk", type=int, default=16)
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--backends", default="pyav,decord")
    ap.add_argument("--repeats", type=int, default=2, help="rounds; best of N per measurement")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(_child(json.loads(args.child))))
        return 0

    from harness.video import DEFAULT_BACKEND, available_backends, output_size, probe, sample_indices

    path = ensure_video(args.width, args.height, args.frames, args.fps)
    meta = probe(path, backend="pyav")
    out_hw = output_size((meta.height, meta.width), args.size)
    reads = {
        f"sequential_{meta.num_frames}": np.arange(meta.num_frames),
        f"sampled_{args.samples}": sample_indices(meta, num_frames=args.samples),
    }
    backends = [b for b in args.backends.split(",") if b in available_backends()]
    print(f"video {path.name}: {meta.width}x{meta.height}, {meta.num_frames} frames, {meta.codec}; "
          f"output {out_hw[1]}x{out_hw[0]}, chunks of {args.chunk}; default backend {DEFAULT_BACKEND}")
    modes = ["bare", *backends]
    # Rounds interleave the modes so that load from other processes hits them alike; best of N rounds.
    runs: dict[str, dict[str, list[dict]]] = {name: {m: [] for m in modes} for name in reads}
    for rnd in range(args.repeats):
        for name, idx in reads.items():
            for mode in modes:
                spec = {"mode": mode, "path": str(path), "indices": idx.tolist(), "out_hw": out_hw,
                        "chunk": args.chunk}
                r = run_child(spec)
                runs[name][mode].append(r)
                shown = {k: v for k, v in r.items() if k != "checksum"}
                print(f"  round {rnd + 1} {name:>16} {mode:>7}: {shown}", flush=True)
    results: dict[str, dict[str, dict]] = {}
    for name in reads:
        results[name] = {}
        for mode in modes:
            ok = [r for r in runs[name][mode] if "fps" in r]
            if not ok:
                results[name][mode] = runs[name][mode][-1]
                continue
            best = dict(max(ok, key=lambda r: r["fps"]))
            best["peak_rss_mb"] = max(r["peak_rss_mb"] for r in ok)
            best["frames_per_cpu_s"] = max(r["frames_per_cpu_s"] for r in ok)
            best["rounds"] = len(ok)
            bare = results[name].get("bare", {})
            if mode != "bare" and "fps" in bare:
                best["ratio_to_bare_decode"] = round(best["fps"] / bare["fps"], 3)
                best["cpu_ratio_to_bare_decode"] = round(best["frames_per_cpu_s"] / bare["frames_per_cpu_s"], 3)
            results[name][mode] = best
        sums = {m: r.get("checksum") for m, r in results[name].items()}
        print(f"  {name}: pyav and bare frames identical: {sums.get('bare') == sums.get('pyav')}; checksums {sums}")
    for name in reads:
        for mode in modes:
            shown = {k: v for k, v in results[name][mode].items() if k != "checksum"}
            print(f"  best {name:>16} {mode:>7}: {shown}")

    default = DEFAULT_BACKEND if DEFAULT_BACKEND in backends else backends[0]
    dr = [results[n][default] for n in reads if "fps" in results[n][default]]
    summary = {
        "video": path.name, "width": meta.width, "height": meta.height, "frames": meta.num_frames,
        "out_hw": list(out_hw), "chunk": args.chunk, "cpu_count": os.cpu_count(),
        "default_backend": default,
        "fps": results[f"sequential_{meta.num_frames}"][default].get("fps"),
        "peak_rss_mb": max((r["peak_rss_mb"] for r in dr), default=None),
        "ratio_to_bare_decode": min((r["ratio_to_bare_decode"] for r in dr), default=None),
        "cpu_ratio_to_bare_decode": min((r["cpu_ratio_to_bare_decode"] for r in dr), default=None),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "per_decoder": {m: {n: {k: v for k, v in results[n][m].items() if k != "checksum"} for n in reads}
                        for m in modes},
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
