"""Drawing for the synthetic needle benchmark: panning textured background, moving shapes, plates.

Kept apart from the benchmark definition so the pixels can be tested on their own and the
generator stays readable. Everything is numpy and seeded: the same parameters give the same
frames on every machine (no font files: a built-in 5x7 bitmap font draws the codes).
"""

from __future__ import annotations

from dataclasses import dataclass

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


# Plate border colours: the question names one, so finding *a* plate is not finding *the* plate.
# Disjoint from the shape colours, so "the plate with the orange border" never names a shape.
BORDERS: dict[str, tuple[int, int, int]] = {
    "magenta": (220, 0, 220),
    "cyan": (0, 215, 235),
    "orange": (255, 140, 0),
    "black": (0, 0, 0),
}
PLATE_UNITS = 11  # plate height in units: border, padding, 7-unit glyph, padding, border


def plate_size(kind: str, code_length: int, unit: int) -> tuple[int, int]:
    """(width, height) of a plate whose finest detail (glyph stroke, border) is ``unit`` pixels.

    Code plates: border + padding + ``6 * len - 1`` glyph columns + padding + border; shape plates
    are square. Both are ``PLATE_UNITS`` units high.
    """
    if unit < 1:
        raise ValueError(f"plate unit must be >= 1 pixel, got {unit}")
    if kind == "code":
        return (6 * code_length + 3) * unit, PLATE_UNITS * unit
    return PLATE_UNITS * unit, PLATE_UNITS * unit


def _bordered(frame: np.ndarray, box: tuple[int, int, int, int], unit: int, border: str, fill: int):
    """Paint the border colour over ``box`` and ``fill`` inside it; returns the inner view."""
    x0, y0, x1, y1 = box
    frame[y0:y1, x0:x1] = BORDERS[border]
    inner = frame[y0 + unit : y1 - unit, x0 + unit : x1 - unit]
    inner[...] = fill
    return inner


def draw_code(frame: np.ndarray, box: tuple[int, int, int, int], code: str, unit: int, border: str) -> None:
    """Black code on a white plate with a ``border``-coloured rim, filling ``box``, in place."""
    inner = _bordered(frame, box, unit, border, 255)
    big = np.kron(glyph_bitmap(code), np.ones((unit, unit), dtype=bool))
    region = inner[unit : unit + big.shape[0], unit : unit + big.shape[1]]
    region[big[: region.shape[0], : region.shape[1]]] = 0


def draw_shape(
    frame: np.ndarray, box: tuple[int, int, int, int], shape: str, colour: str, unit: int, border: str
) -> None:
    """A coloured shape on a grey plate with a ``border``-coloured rim, filling ``box``, in place."""
    inner = _bordered(frame, box, unit, border, 128)
    h, w = inner.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    margin = unit
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
    inner[inside] = COLOURS[colour]


def _bounce(start: float, velocity: float, t: int, span: int) -> int:
    """Position at time t of a point moving at ``velocity`` and bouncing inside [0, span]."""
    if span <= 0:
        return 0
    p = (start + velocity * t) % (2 * span)
    return int(round(span - abs(p - span)))


class MovingTexture:
    """A random texture seen through a panning camera, with a slow brightness wave.

    One texture of the frame's size is built once (coarse colour blobs plus fine grain); frame
    t is that texture shifted by the camera offset (wrapping): a constant drift plus a sinusoidal
    sway, so the pan changes speed and direction. Memory stays at two frames whatever the length.
    """

    def __init__(self, rng: np.random.Generator, width: int, height: int, cell: int | None = None) -> None:
        cell = cell or max(8, min(width, height) // 14)  # blobs scale with the frame (32 px at 448)
        coarse = rng.integers(0, 256, size=(height // cell + 2, width // cell + 2, 3), dtype=np.int16)
        blobs = np.repeat(np.repeat(coarse, cell, axis=0), cell, axis=1)[:height, :width]
        grain = rng.integers(-25, 26, size=(height, width, 1), dtype=np.int16)
        self.texture = np.clip(blobs + grain, 0, 255).astype(np.uint8)
        self.drift = (float(rng.uniform(-2, 2)), float(rng.uniform(-3, 3)))
        self.sway = float(rng.uniform(0.02, 0.06)) * min(width, height)
        self.sway_period = float(rng.uniform(40, 120))
        self.pulse_period = float(rng.uniform(20, 60))

    def offset(self, t: int) -> tuple[int, int]:
        sway = self.sway * np.sin(2 * np.pi * t / self.sway_period)
        return int(round(self.drift[0] * t + 0.5 * sway)), int(round(self.drift[1] * t + sway))

    def frame(self, t: int) -> np.ndarray:
        rolled = np.roll(self.texture, shift=self.offset(t), axis=(0, 1))
        gain = int(256 * (0.85 + 0.15 * np.sin(2 * np.pi * t / self.pulse_period)))
        # x * gain >> 8 in uint16: three times faster than a lookup table on a 4K frame
        wide = np.multiply(rolled, gain, dtype=np.uint16)
        np.right_shift(wide, 8, out=wide)
        return wide.astype(np.uint8)


@dataclass
class _Clutter:
    mask: np.ndarray  # bool (h, w): where the shape paints
    paint: np.ndarray  # uint8 (h, w, 3): what it paints there
    start: tuple[float, float]
    velocity: tuple[float, float]
    period: int  # flashes: ``paint`` for the first ``on`` frames of every ``period``, ``inverse`` after
    on: int
    phase: int

    inverse: np.ndarray  # 255 - paint
    solid: bool  # mask all True: drawn by a plain copy

class MovingShapes:
    """Clutter: discs, rectangles and blank bordered plates that move, bounce and blink.

    Why: a panning texture alone changes everywhere by about the same amount, so a plate popping
    up would be the one sudden event a temporal-difference pruner keeps. Here shapes move fast
    enough to change whole tokens every frame and about half of them pop in and out at random
    times, a third of those as blank plates in the needle's style (white or grey, coloured rim):
    the needle is one sudden event among many, and a plate detector finds many plates. Each
    shape's pixels are built once; drawing touches only its bounding box.
    """

    def __init__(self, rng: np.random.Generator, width: int, height: int, count: int = 12) -> None:
        self.width, self.height = width, height
        self.shapes: list[_Clutter] = []
        short = min(width, height)
        for _ in range(count):
            h = min(height, max(2, int(rng.uniform(0.04, 0.14) * short)))
            w = min(width, max(2, int(h * rng.uniform(0.6, 2.2))))
            yy, xx = np.mgrid[0:h, 0:w]
            style = rng.random()
            paint = np.empty((h, w, 3), dtype=np.uint8)
            paint[...] = rng.choice([0, 40, 215, 255], size=3)  # high contrast: changes as much as a plate
            if style < 0.4:  # disc
                mask = ((yy - (h - 1) / 2) / (h / 2)) ** 2 + ((xx - (w - 1) / 2) / (w / 2)) ** 2 <= 1
            else:
                mask = np.ones((h, w), dtype=bool)
                if style > 0.8:  # a blank plate: the needle's style without its text
                    rim = max(1, h // PLATE_UNITS)
                    paint[...] = list(BORDERS.values())[int(rng.integers(len(BORDERS)))]
                    paint[rim:-rim, rim:-rim] = 255 if rng.random() < 0.5 else 128
            speed = rng.uniform(0.01, 0.05) * short
            angle = rng.uniform(0, 2 * np.pi)
            period = int(rng.integers(4, 25))
            on = period if rng.random() < 0.2 else int(rng.integers(1, period))
            self.shapes.append(_Clutter(
                mask, paint, (rng.uniform(0, max(1, width - w)), rng.uniform(0, max(1, height - h))),
                (speed * np.cos(angle), speed * np.sin(angle)), period, on, int(rng.integers(period)),
                255 - paint, bool(mask.all())))

    def draw(self, frame: np.ndarray, t: int) -> None:
        for c in self.shapes:
            h, w = c.mask.shape
            x = _bounce(c.start[0], c.velocity[0], t, self.width - w)
            y = _bounce(c.start[1], c.velocity[1], t, self.height - h)
            paint = c.paint if (t + c.phase) % c.period < c.on else c.inverse
            region = frame[y : y + h, x : x + w]
            if c.solid:
                region[...] = paint
            else:
                np.copyto(region, paint, where=c.mask[..., None])
