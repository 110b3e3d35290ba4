"""Draw token/gaze masks on frames: cell outlines per scale, a text banner and a colour legend.

Used by ``run_eval.py gaze`` (the overlay video) and the HTML report (thumbnail strips).

Why outlines, not fills: a tinted cell looks like the video's own colour; a coloured box around
a kept cell cannot be mistaken for picture content, and the picture inside stays visible. Area
no mask keeps is dimmed, so what the model (or AutoGaze) looked at stands out. A mask is a bool
(rows, cols) grid stretched over the whole frame, whatever the frame's pixel size.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

#: one colour per scale, coarse -> fine (blue, green, yellow, red): finer scales drawn on top
COLOURS: list[tuple[int, int, int]] = [(40, 110, 255), (40, 220, 80), (255, 220, 0), (255, 40, 40)]
TOKEN_COLOUR = (255, 60, 200)  # kept LLM tokens (one grid, no scales): magenta, rare in video


def _cell_index(n_px: int, n_cells: int) -> np.ndarray:
    """Cell of every pixel along one axis (cells spread evenly over the pixels)."""
    return (np.arange(n_px) * n_cells) // n_px


def _edge_distances(n_px: int, n_cells: int) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel along one axis: distance to its cell's first pixel and to its last pixel."""
    cell = _cell_index(n_px, n_cells)
    start = np.searchsorted(cell, cell, side="left")  # first pixel of each pixel's cell
    stop = np.searchsorted(cell, cell, side="right") - 1  # last pixel
    pos = np.arange(n_px)
    return pos - start, stop - pos


def outline_mask(height: int, width: int, mask: np.ndarray, thickness: int | None = None,
                 regions: bool = False) -> np.ndarray:
    """Bool (height, width): the borders of the True cells of ``mask`` (rows, cols) over the frame.

    ``regions``: only the borders between kept and not-kept cells (one outline around each kept
    area), for masks where most cells are kept and a box per cell would hide the picture.
    """
    rows, cols = mask.shape
    if thickness is None:  # 1 px on small cells, 2 px once a cell is big enough to hold it
        thickness = 1 if min(height / rows, width / cols) < 14 else 2
    m = np.asarray(mask, dtype=bool)
    ys, xs = _cell_index(height, rows), _cell_index(width, cols)
    to_top, to_bottom = (d < thickness for d in _edge_distances(height, rows))
    to_left, to_right = (d < thickness for d in _edge_distances(width, cols))
    if not regions:
        edge = (to_top | to_bottom)[:, None] | (to_left | to_right)[None, :]
        return m[ys][:, xs] & edge
    # a side counts when the cell across it is not kept (or lies outside the frame)
    pad = np.pad(m, 1)
    open_up, open_down = ~pad[:-2, 1:-1], ~pad[2:, 1:-1]
    open_left, open_right = ~pad[1:-1, :-2], ~pad[1:-1, 2:]
    edge = ((open_up[ys][:, xs] & to_top[:, None]) | (open_down[ys][:, xs] & to_bottom[:, None])
            | (open_left[ys][:, xs] & to_left[None, :]) | (open_right[ys][:, xs] & to_right[None, :]))
    return m[ys][:, xs] & edge


def covered(height: int, width: int, masks: Sequence[np.ndarray]) -> np.ndarray:
    """Bool (height, width): pixels inside a True cell of any mask."""
    out = np.zeros((height, width), dtype=bool)
    for mask in masks:
        rows, cols = mask.shape
        out |= np.asarray(mask, dtype=bool)[_cell_index(height, rows)][:, _cell_index(width, cols)]
    return out


def outline_overlay(frame: np.ndarray, masks: Sequence[np.ndarray],
                    colours: Sequence[tuple[int, int, int]] = COLOURS, dim: float = 0.55,
                    thickness: int | None = None, regions: bool = False) -> np.ndarray:
    """``frame`` (H, W, 3) uint8 with area outside every mask dimmed and each mask's cells outlined
    in its colour (``masks`` coarse -> fine; finer outlines drawn over coarser ones; ``regions``: see
    ``outline_mask``)."""
    h, w = frame.shape[:2]
    out = frame.astype(np.float32)
    out[~covered(h, w, masks)] *= dim
    out = out.astype(np.uint8)
    for s, mask in enumerate(masks):
        out[outline_mask(h, w, mask, thickness, regions)] = colours[s % len(colours)]
    return out


@lru_cache(maxsize=8)
def font(size: int):
    """PIL's built-in scalable font at ``size`` px (the bitmap default where FreeType is missing)."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, AttributeError):
        return ImageFont.load_default()


def font_size(height: int) -> int:
    return max(9, min(28, round(height / 20)))


def annotate(frame: np.ndarray, top: str = "", legend: Sequence[tuple[str, tuple[int, int, int]]] = (),
             size: int | None = None) -> np.ndarray:
    """Write ``top`` on a dark band at the frame's top and a colour legend (outlined swatch + name per
    entry) on a band at its bottom; the bands are translucent so the picture shows through."""
    from PIL import Image, ImageDraw

    h, w = frame.shape[:2]
    size = size or font_size(h)
    fnt = font(size)
    pad = max(2, size // 4)
    band = size + 2 * pad
    img = Image.fromarray(np.ascontiguousarray(frame, dtype=np.uint8)).convert("RGBA")
    layer = Image.new("RGBA", img.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    if top:
        draw.rectangle([0, 0, w, band], fill=(0, 0, 0, 170))
        draw.text((pad, pad), top, font=fnt, fill=(255, 255, 255, 255))
    if legend:
        draw.rectangle([0, h - band, w, h], fill=(0, 0, 0, 170))
        x = pad
        for name, colour in legend:
            draw.rectangle([x, h - band + pad, x + size, h - pad], outline=(*colour, 255), width=2)
            x += size + pad
            draw.text((x, h - band + pad), name, font=fnt, fill=(255, 255, 255, 255))
            x += int(draw.textlength(name, font=fnt)) + 2 * pad
    return np.asarray(Image.alpha_composite(img, layer).convert("RGB"))


def scale_legend(scales: Sequence[int] | None) -> list[tuple[str, tuple[int, int, int]]]:
    """Legend entries: one per gaze scale (``32px`` ... coarse -> fine), or one for kept LLM tokens."""
    if not scales:
        return [("kept tokens", TOKEN_COLOUR)]
    return [(f"{s}px", COLOURS[i % len(COLOURS)]) for i, s in enumerate(scales)]


def resize(frame: np.ndarray, height: int) -> np.ndarray:
    """Resize to ``height`` px high, aspect kept (PIL bilinear)."""
    from PIL import Image

    h, w = frame.shape[:2]
    width = max(1, round(w * height / h))
    return np.asarray(Image.fromarray(frame).resize((width, height), Image.BILINEAR))
