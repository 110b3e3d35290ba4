"""Output frame size: the one rule every backend applies so that their frames have the same shape."""

from __future__ import annotations

Size = int | tuple[int, int] | None


def output_size(src_hw: tuple[int, int], size: Size, keep_aspect: bool = True) -> tuple[int, int]:
    """(height, width) of the frames yielded for a source of ``src_hw``.

    - ``None``: native size.
    - ``int``: the longer side becomes ``size`` and the aspect ratio is kept (e.g. 448 "max side").
    - ``(h, w)`` with ``keep_aspect=False``: exactly ``(h, w)``; with ``keep_aspect=True``: the largest size
      of the source's aspect ratio that fits inside ``(h, w)``.
    Sides are rounded to the nearest pixel and never below 1.
    """
    src_h, src_w = int(src_hw[0]), int(src_hw[1])
    if size is None:
        return src_h, src_w
    if isinstance(size, int):
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        scale = size / max(src_h, src_w)
    else:
        if len(size) != 2:
            raise ValueError(f"size must be an int or (height, width), got {size!r}")
        h, w = int(size[0]), int(size[1])
        if h < 1 or w < 1:
            raise ValueError(f"size must be positive, got {size!r}")
        if not keep_aspect:
            return h, w
        scale = min(h / src_h, w / src_w)
    return max(1, round(src_h * scale)), max(1, round(src_w * scale))
