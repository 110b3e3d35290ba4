"""Drawing for the synthetic needle benchmark: textured moving background, codes and shapes.

Kept apart from the benchmark definition so the pixels can be tested on their own and the
generator stays readable. Everything is numpy and seeded: the same parameters give the same
frames on every machine (no font files: a built-in 5x7 bitmap font draws the codes).
"""

from __future__ import annotations

import numpy as np

# 5x7 glyphs, '#' = ink. Characters chosen to be unambiguous at low resolution.
GLYPHS: dict[str, tuple[str, ...]] = {
    "0": (" ### ", "#   #", "#  ##", "# # #", "##  #", "#   #", " ### "),
    "1": ("  #  ", " ##  ", "  #  ", "  #  ", "  #  ", "  #  ", " ### "),
    "2": (" ### ", "#   #", "    #", "   # ", "  #  ", " #   ", "#####"),
    "3": ("#####", "   # ", "  #  ", "   # ", "    #", "#   #", " ### "),
    "4": ("   # ", "  ## ", " # # ", "#  # ", "#####", "   # ", "   # "),
    "5": ("#####", "#    ", "#### ", "    #", "    #", "#   #", " ### "),
    "6": ("  ## ", " #   ", "#    ", "#### ", "#   #", "#   #", " ### "),
    "7": ("#####", "    #", "   # ", "  #  ", " #   ", " #   ", " #   "),
    "8": (" ### ", "#   #", "#   #", " ### ", "#   #", "#   #", " ### "),
    "9": (" ### ", "#   #", "#   #", " ####", "    #", "   # ", " ##  "),
    "A": (" ### ", "#   #", "#   #", "#####", "#   #", "#   #", "#   #"),
    "C": (" ### ", "#   #", "#    ", "#    ", "#    ", "#   #", " ### "),
    "E": ("#####", "#    ", "#    ", "#### ", "#    ", "#    ", "#####"),
    "F": ("#####", "#    ", "#    ", "#### ", "#    ", "#    ", "#    "),
    "H": ("#   #", "#   #", "#   #", "#####", "#   #", "#   #", "#   #"),
    "K": ("#   #", "#  # ", "# #  ", "##   ", "# #  ", "#  # ", "#   #"),
    "P": ("#### ", "#   #", "#   #", "#### ", "#    ", "#    ", "#    "),
    "X": ("#   #", "#   #", " # # ", "  #  ", " # # ", "#   #", "#   #"),
}
CODE_ALPHABET = "".join(GLYPHS)
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (230, 30, 30),
    "green": (30, 200, 60),
    "blue": (40, 80, 240),
    "yellow": (250, 220, 30),
}
SHAPES = ("circle", "square", "triangle")


def glyph_bitmap(code: str) -> np.ndarray:
    """Bool (7, 6 * len(code) - 1): the code in the bitmap font, one blank column between glyphs."""
    cols = []
    for i, ch in enumerate(code):
        if ch not in GLYPHS:
            raise ValueError(f"character {ch!r} has no glyph; codes use {CODE_ALPHABET!r}")
        if i:
            cols.append(np.zeros((7, 1), dtype=bool))
        cols.append(np.array([[c == "#" for c in row] for row in GLYPHS[ch]], dtype=bool))
    return np.concatenate(cols, axis=1)


def code_box_size(code_len: int, side: int) -> tuple[int, int]:
    """(width, height) of the plate holding a code whose plate height is about ``side / 2``."""
    scale = max(1, side // 18)
    width = (6 * code_len - 1) * scale + 2 * scale
    height = 7 * scale + 2 * scale
    return width, height


def draw_code(frame: np.ndarray, box: tuple[int, int, int, int], code: str) -> None:
    """Black code on a white plate filling ``box`` (x0, y0, x1, y1), in place."""
    x0, y0, x1, y1 = box
    frame[y0:y1, x0:x1] = 255
    bitmap = glyph_bitmap(code)
    scale = max(1, (y1 - y0) // 9)
    big = np.kron(bitmap, np.ones((scale, scale), dtype=bool))
    h, w = big.shape
    oy, ox = y0 + scale, x0 + scale
    region = frame[oy : oy + h, ox : ox + w]
    region[big[: region.shape[0], : region.shape[1]]] = 0


def draw_shape(frame: np.ndarray, box: tuple[int, int, int, int], shape: str, colour: str) -> None:
    """A coloured shape on a neutral grey plate filling ``box``, in place."""
    x0, y0, x1, y1 = box
    frame[y0:y1, x0:x1] = 128
    h, w = y1 - y0, x1 - x0
    yy, xx = np.mgrid[0:h, 0:w]
    margin = max(1, min(h, w) // 8)
    if shape == "circle":
        cy, cx, r = (h - 1) / 2, (w - 1) / 2, min(h, w) / 2 - margin
        inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    elif shape == "square":
        inside = (yy >= margin) & (yy < h - margin) & (xx >= margin) & (xx < w - margin)
    elif shape == "triangle":
        top, bottom = margin, h - margin
        frac = np.clip((yy - top) / max(1, bottom - top), 0, 1)
        half = frac * (w / 2 - margin)
        inside = (yy >= top) & (yy < bottom) & (np.abs(xx - (w - 1) / 2) <= half)
    else:
        raise ValueError(f"unknown shape {shape!r}; valid: {SHAPES}")
    frame[y0:y1, x0:x1][inside] = COLOURS[colour]


class MovingTexture:
    """A seamless random texture that drifts and pulses: a background that is never static.

    One texture of the frame's size is built once (coarse colour blobs plus fine grain);
    frame t is that texture rolled by ``t * velocity`` (wrapping) with a slow brightness
    wave, so memory stays at two frames whatever the video length.
    """

    def __init__(self, rng: np.random.Generator, width: int, height: int, cell: int = 32) -> None:
        coarse = rng.integers(40, 200, size=(height // cell + 2, width // cell + 2, 3), dtype=np.int16)
        blobs = np.repeat(np.repeat(coarse, cell, axis=0), cell, axis=1)[:height, :width]
        grain = rng.integers(-25, 26, size=(height, width, 1), dtype=np.int16)
        self.texture = np.clip(blobs + grain, 0, 255).astype(np.uint8)
        self.velocity = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        self.pulse_period = float(rng.uniform(20, 60))

    def frame(self, t: int) -> np.ndarray:
        dy, dx = self.velocity
        frame = np.roll(self.texture, shift=(t * dy, t * dx), axis=(0, 1))
        gain = 0.85 + 0.15 * np.sin(2 * np.pi * t / self.pulse_period)
        lut = (np.arange(256) * gain).astype(np.uint8)  # a lookup keeps 4K frames in uint8
        return lut[frame]
