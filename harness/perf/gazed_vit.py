"""ViT time and tokens, full vs gazed: stock SigLIP frame by frame vs the gazed multi-scale path.

    python -m harness.perf.gazed_vit [--preset tiny|base|so400m] [--frames 64 --size 448]
                                     [--ratios 0.1 0.3 0.75] [--attn block_causal frame_independent]
                                     [--device cpu|cuda]

The clip (64 frames of 448x448, synthetic: timing does not depend on pixel content) is cut the
way AutoGaze runs on any-resolution video: 16-frame chunks x 224-px tiles (``--chunk``,
``--tile``), i.e. 4 x 4 = 16 clips of 16 frames.
- full: the stock ``SiglipVisionModel`` on every tile of every frame (256 images of 224 px,
  196 tokens each), in mini-batches of ``--batch`` images: what an MLLM's ViT does today.
- gazed at ratio r: per frame of every tile ``int(r * 265)`` multi-scale tokens (scales
  32+64+112+224, patch 16: 4+16+49+196 = 265 per frame; AutoGaze's cap rule) chosen at random,
  encoded by :class:`GazedSiglipVisionEncoder` with each ``--attn`` attention type:
  ``block_causal`` (what AutoGaze-trained towers such as NVILA-HD's use) attends across the 16
  frames of a clip, so its attention grows with (16 k)^2 where the stock tower's grows with
  16 k^2 -- on a tiny config (attention-bound) that can cost more than it saves at high ratios;
  ``frame_independent`` (what a stock tower does, the pre-ViT mode for LLaVA-style models)
  isolates the saving from fewer tokens.
  Time includes the per-scale resize and patchify. The gaze model's own time is not included
  (it is a separate stage, measured by the gaze benchmarks).
Both use the same random-init weights (``--preset``: tiny = hidden 64 / 2 layers; base =
SigLIP-base-like 768 / 12 layers; so400m = 1152 / 27 layers, patch 14 tiles of 392 with
56+112+196+392 when ``--tile 392 --patch 14 --scales 56+112+196+392`` are given).
Times are medians of ``--repeats`` runs after one warm-up, full and gazed run alternately
(so machine load biases neither side). Printed as ratios gazed / full;
last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch

from harness.models.common import _sync
from harness.models.gazed_siglip import GazedSiglipVisionEncoder, GazingInfo, MultiScaleLayout

PRESETS = {
    "tiny": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 256},
    "base": {
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
    },
    "so400m": {
        "hidden_size": 1152,
        "num_hidden_layers": 27,
        "num_attention_heads": 16,
        "intermediate_size": 4304,
    },
}


def build_tower(preset: str, tile: int, patch: int, device: str, dtype: torch.dtype):
    from transformers import SiglipVisionConfig, SiglipVisionModel

    torch.manual_seed(0)
    cfg = SiglipVisionConfig(image_size=tile, patch_size=patch, attn_implementation="sdpa", **PRESETS[preset])
    return SiglipVisionModel(cfg).eval().to(device=device, dtype=dtype)


def tile_clip(video: torch.Tensor, chunk: int, tile: int) -> torch.Tensor:
    """(T, C, H, W) -> (T/chunk * H/tile * W/tile, chunk, C, tile, tile): AutoGaze's any-res chopping."""
    t, c, h, w = video.shape
    if t % chunk or h % tile or w % tile:
        raise ValueError(f"clip {t}x{h}x{w} does not split into {chunk}-frame chunks of {tile}-px tiles")
    x = video.view(t // chunk, chunk, c, h // tile, tile, w // tile, tile)
    return x.permute(0, 3, 5, 1, 2, 4, 6).reshape(-1, chunk, c, tile, tile)


def random_gazing(clips: int, frames: int, layout: MultiScaleLayout, ratio: float, seed: int) -> GazingInfo:
    """``int(ratio * tokens_per_frame)`` (at least 1) distinct random ids per frame, no padding."""
    n = layout.tokens_per_frame
    k = max(1, int(ratio * n))
    g = torch.Generator().manual_seed(seed)
    ids = torch.rand(clips, frames, n, generator=g).argsort(-1)[..., :k].sort(-1).values
    pos = (ids + torch.arange(frames)[None, :, None] * n).reshape(clips, -1)
    return GazingInfo(pos, torch.zeros_like(pos, dtype=torch.bool), torch.full((frames,), k))


def _once(fn: Callable[[], object], device: str) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def timed_pair(
    full: Callable[[], object], gazed: Callable[[], object], device: str, repeats: int
) -> tuple[float, float, float | None]:
    """Median seconds of ``full`` and of ``gazed``, run alternately after a warm-up of each.

    Alternating matters on a shared machine: both medians come from the same time window, so
    load from other processes biases neither side of the ratio. Also the peak CUDA MiB of the
    gazed runs (None on CPU, where peak RSS is monotone and says nothing per run).
    """
    with torch.inference_mode():
        full()
        gazed()
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        full_t, gazed_t = [], []
        for _ in range(repeats):
            full_t.append(_once(full, device))
            gazed_t.append(_once(gazed, device))
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else None
    return statistics.median(full_t), statistics.median(gazed_t), peak


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    ap.add_argument("--frames", type=int, default=64)
    ap.add_argument("--size", type=int, default=448)
    ap.add_argument("--chunk", type=int, default=16)
    ap.add_argument("--tile", type=int, default=224)
    ap.add_argument("--patch", type=int, default=16)
    ap.add_argument("--scales", default="32+64+112+224")
    ap.add_argument("--ratios", type=float, nargs="+", default=[0.1, 0.3, 0.75])
    ap.add_argument(
        "--attn",
        nargs="+",
        default=["block_causal", "frame_independent"],
        help="attention types to time (block_causal is what AutoGaze-trained towers use)",
    )
    ap.add_argument("--batch", type=int, default=64, help="images per stock-tower call (full path)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default=None, help="float32 (CPU default) or bfloat16 (CUDA default)")
    args = ap.parse_args(argv)

    dtype = getattr(torch, args.dtype or ("bfloat16" if args.device.startswith("cuda") else "float32"))
    torch.set_grad_enabled(False)
    tower = build_tower(args.preset, args.tile, args.patch, args.device, dtype)
    encoders = {a: GazedSiglipVisionEncoder(tower, scales=args.scales, attn_type=a) for a in args.attn}
    layout = next(iter(encoders.values())).layout
    if layout.scales[-1] != args.tile:
        raise ValueError(f"the largest scale ({layout.scales[-1]}) must equal the tile size ({args.tile})")

    g = torch.Generator().manual_seed(0)
    video = torch.randn(args.frames, 3, args.size, args.size, generator=g).to(args.device, dtype)
    clips = tile_clip(video, args.chunk, args.tile)  # (clips, chunk, C, tile, tile)
    images = clips.flatten(0, 1)
    full_tokens = images.shape[0] * (args.tile // args.patch) ** 2

    def run_full() -> None:
        for i in range(0, images.shape[0], args.batch):
            tower(images[i : i + args.batch])

    print(
        f"{args.preset} SigLIP on {args.device} ({dtype}), {args.frames}x{args.size}px -> {clips.shape[0]} clips of "
        f"{args.chunk}x{args.tile}px; gazed scales {layout}; full = stock tower frame by frame, {full_tokens} tokens",
        flush=True,
    )
    rows = []
    for attn, encoder in encoders.items():
        for ratio in args.ratios:
            gazing = random_gazing(clips.shape[0], args.chunk, layout, ratio, seed=1).to(args.device)
            tokens = int(gazing.num_real().sum())
            full_s, secs, mem = timed_pair(
                run_full,
                lambda encoder=encoder, gazing=gazing: encoder(clips, gazing),
                args.device,
                args.repeats,
            )
            row = {
                "attn": attn,
                "ratio": ratio,
                "tokens": tokens,
                "tokens_vs_full": tokens / full_tokens,
                "vit_s": secs,
                "full_vit_s": full_s,
                "time_vs_full": secs / full_s,
                "speedup": full_s / secs,
                "peak_mem_mb": mem,
            }
            rows.append(row)
            print(
                f"gazed {attn:>17} ratio {ratio:>4}: tokens x{row['tokens_vs_full']:.3f} ({tokens}), "
                f"ViT time x{row['time_vs_full']:.3f} ({secs * 1e3:.1f} ms vs full {full_s * 1e3:.1f} ms, "
                f"{row['speedup']:.2f}x faster)",
                flush=True,
            )
    result = {
        "bench": "gazed_vit",
        "preset": args.preset,
        "device": args.device,
        "dtype": str(dtype).removeprefix("torch."),
        "frames": args.frames,
        "size": args.size,
        "tile": args.tile,
        "chunk": args.chunk,
        "scales": list(layout.scales),
        "patch": args.patch,
        "full_tokens": full_tokens,
        "gazed": rows,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
