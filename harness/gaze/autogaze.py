"""``AutoGaze``: load the checkpoint, gaze whole clips or streams, any resolution via tiles.

Public API (other packages rely on it exactly)::

    model = AutoGaze.from_pretrained(path_or_hub_id)
    out = model.gaze(video, gazing_ratio=0.75, task_loss_requirement=0.7,
                     target_scales=None, target_patch_size=None)
    stream = model.stream(batch_size=1, gazing_ratio=0.3)      # one frame / chunk at a time
    parts = [stream.gaze(chunk) for chunk in chunks]           # == model.gaze(whole clip)

Budget semantics follow the original's inference branch: a ratio caps gazes per frame at
``int(ratio * tokens_per_frame)`` (at least 1); a task-loss requirement stops a frame once the
predicted loss is <= it; with only a requirement the cap is every token; with neither, the
config's fixed inference defaults are used.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from harness.gaze.config import AutoGazeConfig
from harness.gaze.generate import GazeState, capacity_for, gaze_frame
from harness.gaze.loader import (
    CONFIG_NAME,
    PREPROCESSOR_NAME,
    WEIGHTS_NAME,
    CheckpointError,
    load_weights_strict,
    resolve_checkpoint,
)
from harness.gaze.model import GazingModel
from harness.gaze.output import GazeOutput
from harness.gaze.processor import AutoGazeImageProcessor
from harness.gaze.tiny import resolve_gaze_checkpoint

Ratio = float | Sequence[float] | None


class AutoGaze(nn.Module):
    """The AutoGaze gaze model (checkpoint prefix ``gazing_model.``)."""

    def __init__(self, config: AutoGazeConfig):
        super().__init__()
        self.config = config
        self.gazing_model = GazingModel(config)
        self.compute_dtype = torch.float32  # see from_pretrained(dtype=...)

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_pretrained(
        cls, path_or_id: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
    ) -> AutoGaze:
        """Local checkpoint dir or HF cache id (``nvidia/AutoGaze``); strict keys; never downloads.

        Refused (``CheckpointError``, one line): missing files (``preprocessor_config.json``
        included), mismatched keys/shapes, non-finite weights. ``model.processor`` is the
        checkpoint's ``AutoGazeImageProcessor``.

        ``"tiny"`` builds (once) and loads the random-weight AutoGaze of ``harness.gaze.tiny``.

        ``dtype``: the compute precision. float32 (default) is the original's CPU arithmetic.
        bfloat16/float16 keep the weights in float32 and gaze under ``torch.autocast`` with a
        low-precision KV cache, the heads in float32 (as the original's mixed-precision runs: the
        argmax then sees float32 scores instead of bf16 values full of ties).
        """
        directory = resolve_checkpoint(resolve_gaze_checkpoint(str(path_or_id)))
        config = AutoGazeConfig.from_file(directory / CONFIG_NAME)
        try:  # read now, so a broken preprocessor config fails the load, not the first video
            processor = AutoGazeImageProcessor.from_pretrained(directory / PREPROCESSOR_NAME)
        except (OSError, ValueError, TypeError) as exc:
            raise CheckpointError(f"{directory / PREPROCESSOR_NAME}: {exc}") from None
        model = cls(config)
        load_weights_strict(model, directory / WEIGHTS_NAME)
        model.checkpoint_dir = directory
        model.processor = processor
        if dtype not in (torch.float32, torch.bfloat16, torch.float16):
            raise ValueError(f"AutoGaze dtype must be float32, bfloat16 or float16, got {dtype}")
        model.compute_dtype = dtype
        return model.to(device=device).eval()

    @property
    def scales(self) -> list[int]:
        return list(self.config.scales)

    @property
    def device(self) -> torch.device:
        return self.gazing_model.connector.pos_embed.device

    @property
    def dtype(self) -> torch.dtype:
        return self.gazing_model.connector.pos_embed.dtype

    # ------------------------------------------------------------------ gazing

    @torch.no_grad()
    def gaze(
        self,
        video: torch.Tensor,
        gazing_ratio: Ratio = None,
        task_loss_requirement: float | None = None,
        target_scales: Sequence[int] | None = None,
        target_patch_size: int | None = None,
        *,
        independent_rows: bool = False,
        deterministic: bool = False,
        selection: str = "auto",
        static: bool | None = None,
    ) -> GazeOutput:
        """Greedy gazing of preprocessed clips ``video`` (B, T, 3, H, W) float.

        ``independent_rows``: False (default) reproduces the original batched run exactly,
        including its one batch effect: a row that meets ``task_loss_requirement`` before its
        batch-mates can gaze differently in later frames than it would alone. True makes every
        row gaze exactly as the original does at batch 1, whatever else is in the batch. The two
        agree whenever no row stops early (e.g. a ratio-only budget).

        ``deterministic``: batch-invariant gazing: a clip's gazes never depend on its batch-mates
        (see ``GazeStream``); implies ``independent_rows``. ``selection``/``static``: the loop's
        device options (``GazeStream``); they change speed, not the rules.

        ``target_scales``/``target_patch_size`` describe a downstream ViT whose largest scale
        exceeds the gaze model's: the clip (H == W == max target scale) is padded and cut into
        224-px tiles, gazed as a batch, and the masks stitched back (the original's
        ``input_res_adapt``); ``gazing_pos`` is then rebuilt from the masks in ascending order.
        """
        video = self._check_video(video)
        tiling = None
        if target_scales is not None and target_patch_size is not None:
            tiling = _Tiling.plan(self.config, list(target_scales), int(target_patch_size), video)
            if tiling is not None:
                video = tiling.split(video)
        b, t = video.shape[:2]
        stream = self.stream(
            b, gazing_ratio, task_loss_requirement, frames_hint=t, independent_rows=independent_rows,
            deterministic=deterministic, selection=selection, static=static,
        )  # fmt: skip
        out = stream.gaze(video)
        return tiling.merge(out) if tiling is not None else out

    def stream(
        self,
        batch_size: int,
        gazing_ratio: Ratio = None,
        task_loss_requirement: float | None = None,
        frames_hint: int = 16,
        independent_rows: bool = False,
        deterministic: bool = False,
        selection: str = "auto",
        static: bool | None = None,
    ) -> GazeStream:
        """Start gazing ``batch_size`` clips chunk by chunk, keeping the KV and conv caches between chunks.

        ``frames_hint`` only sizes the preallocated KV cache (it grows by doubling if exceeded);
        the other options as in ``gaze`` / ``GazeStream``."""
        return GazeStream(
            self, batch_size, gazing_ratio, task_loss_requirement, frames_hint, independent_rows,
            deterministic=deterministic, selection=selection, static=static,
        )  # fmt: skip

    def _check_video(self, video: torch.Tensor) -> torch.Tensor:
        if not isinstance(video, torch.Tensor):
            raise ValueError(
                f"AutoGaze.gaze: video must be a torch.Tensor (B, T, 3, H, W), got {type(video).__name__}"
            )
        if video.ndim != 5 or video.shape[2] != 3:
            raise ValueError(
                f"AutoGaze.gaze: video must have shape (B, T, 3, H, W) (preprocessed clips), got {tuple(video.shape)}"
            )
        if not video.is_floating_point():
            raise ValueError(
                f"AutoGaze.gaze: video must be a float tensor already preprocessed with AutoGazeImageProcessor, "
                f"got dtype {video.dtype}"
            )
        b, t, _, h, w = video.shape
        tp = self.config.vision.temporal_patch_size
        if b < 1 or t < 1 or h < 1 or w < 1:
            raise ValueError(f"AutoGaze.gaze: empty video of shape {tuple(video.shape)}")
        if t % tp:
            raise ValueError(f"AutoGaze.gaze: {t} frames is not a multiple of the temporal patch size {tp}")
        return video.to(device=self.device, dtype=self.dtype)

    def autocast(self) -> contextlib.AbstractContextManager:
        """Mixed precision for ``compute_dtype`` below float32 (weights stay float32), else nothing."""
        if self.compute_dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.compute_dtype)


class GazeStream:
    """Gaze a batch of clips one frame or chunk at a time; identical to gazing the whole clips at once.

    Loop options (the rules never change, only where and how the work runs):

    * ``selection``: ``"numpy"`` chooses each step's tokens on the host (CPU: fastest, the logits
      are already there), ``"torch"`` on the device without per-step host syncs (accelerators);
      ``"auto"`` (default) = numpy on CPU, torch elsewhere.
    * ``static``: fixed-shape decoding steps (KV cache written in place at a fixed capacity,
      attention over the whole capacity, masks from a preallocated buffer; CUDA-graph and
      ``torch.compile`` friendly). Default: on for accelerators, off on CPU, where attending over
      the unused capacity costs time and the sliced path is the one pinned to the original's bits.
    * ``deterministic``: batch invariance. Rows are independent (``independent_rows``) and the
      arithmetic cannot depend on the batch: on CPU the gaze runs at one torch thread (multi-thread
      BLAS splits work by row count; measured by ``python -m harness.perf.gaze_batch``), on an
      accelerator each row is gazed in its own batch of one (GPU GEMM kernels are chosen by
      shape).
    """

    def __init__(
        self,
        model: AutoGaze,
        batch_size: int,
        gazing_ratio: Ratio,
        requirement: float | None,
        frames_hint: int,
        independent_rows: bool = False,
        *,
        deterministic: bool = False,
        selection: str = "auto",
        static: bool | None = None,
    ):
        cfg = model.config
        self.model = model
        self.batch_size = batch_size
        self.deterministic = deterministic
        self.independent_rows = independent_rows or deterministic
        on_cpu = model.device.type == "cpu"
        if selection == "auto":
            selection = "numpy" if on_cpu else "torch"
        if selection not in ("numpy", "torch"):
            raise ValueError(f"selection must be 'auto', 'numpy' or 'torch', got {selection!r}")
        self.selection = selection
        self.static = (not on_cpu) if static is None else bool(static)
        if self.static and selection != "torch":
            raise ValueError("static=True needs selection='torch'")
        self.row_streams: list[GazeStream] | None = None
        if deterministic and not on_cpu and batch_size > 1:  # one batch of one per row
            self.row_streams = [
                GazeStream(model, 1, gazing_ratio, requirement, frames_hint, True, selection=selection,
                           static=static) for _ in range(batch_size)
            ]  # fmt: skip
        self.gazing_ratio, self.requirement = _resolve_budget(cfg, gazing_ratio, requirement)
        first_cap = self._cap(0)
        cap_hint = max(first_cap, 1)
        capacity = capacity_for(
            frames_hint, cfg.vision_tokens_per_frame, cap_hint, cfg.decoder.num_multi_token_pred
        )
        self.state = GazeState.empty(
            model.gazing_model.gaze_decoder, batch_size, capacity, model.compute_dtype, model.device
        )

    def _cap(self, frame: int) -> int:
        """Per-frame gaze cap, computed in float32 like the original (``int(ratio * N)``, at least 1)."""
        n = self.model.config.num_vision_tokens_each_frame
        r = self.gazing_ratio
        if isinstance(r, (list, tuple)):
            if frame >= len(r):
                raise ValueError(f"gazing_ratio has {len(r)} per-frame values but frame {frame} was reached")
            r = r[frame]
        value = (torch.ones(1) * r * n).to(torch.long).clamp(min=1)
        return int(value.item())

    @torch.no_grad()
    def gaze(self, chunk: torch.Tensor) -> GazeOutput:
        """Gaze the next frames ``chunk`` (B, t, 3, H, W) of every clip; returns their ``GazeOutput``."""
        model = self.model
        chunk = model._check_video(chunk)
        if chunk.shape[0] != self.batch_size:
            raise ValueError(
                f"GazeStream.gaze: chunk batch {chunk.shape[0]} != stream batch size {self.batch_size}"
            )
        if self.row_streams is not None:
            return GazeOutput.stack([s.gaze(chunk[i : i + 1]) for i, s in enumerate(self.row_streams)])
        threads = torch.get_num_threads()
        one_thread = self.deterministic and chunk.device.type == "cpu" and threads != 1
        if one_thread:
            torch.set_num_threads(1)
        try:
            with model.autocast():
                return self._gaze(chunk)
        finally:
            if one_thread:
                torch.set_num_threads(threads)

    def _gaze(self, chunk: torch.Tensor) -> GazeOutput:
        model, cfg = self.model, self.model.config
        b, t = chunk.shape[:2]
        size = cfg.input_img_size
        frames = chunk.flatten(0, 1)
        if frames.shape[-2:] != (size, size):  # at scale 1 bicubic is exactly the identity: skip it
            frames = F.interpolate(frames, size=(size, size), mode="bicubic", align_corners=False)
        vision, self.state.conv_past = model.gazing_model.encode(
            frames.view(b, t, 3, size, size), self.state.conv_past
        )
        n_tok = cfg.num_vision_tokens_each_frame
        req = None
        if self.requirement is not None:
            req = torch.ones(b, device=chunk.device) * self.requirement
        offset = self.state.frames_done
        ids_per_frame = []
        for i in range(vision.shape[1]):
            cap = self._cap(offset + i)
            ids = gaze_frame(
                model.gazing_model.gaze_decoder, self.state, vision[:, i], cap, req, self.independent_rows,
                self.selection, self.static,
            )  # fmt: skip
            ids_per_frame.append(ids)
        eos = cfg.decoder.eos_token_id
        gazing_pos = torch.cat([ids + n_tok * (offset + i) for i, ids in enumerate(ids_per_frame)], dim=1)
        padded = torch.cat([ids == eos for ids in ids_per_frame], dim=1)
        num = torch.tensor([ids.shape[1] for ids in ids_per_frame], dtype=torch.long, device=chunk.device)
        masks = _masks_from_ids(ids_per_frame, eos, n_tok, cfg.tokens_per_scale)
        return GazeOutput(
            gazing_pos=gazing_pos,
            if_padded_gazing=padded,
            num_gazing_each_frame=num,
            gazing_mask=masks,
            scales=list(cfg.scales),
            num_vision_tokens_each_frame=n_tok,
            frame_offset=offset,
            task_loss_requirement=self.requirement,
        )


def _resolve_budget(
    cfg: AutoGazeConfig, ratio: Ratio, requirement: float | None
) -> tuple[Ratio, float | None]:
    """Apply the original's inference rules for which of ratio/requirement is active."""
    if ratio is None and requirement is None:
        ratio, requirement = cfg.default_gazing_ratio, cfg.default_task_loss_requirement
        if ratio is None and requirement is None:
            raise ValueError(
                f"{cfg.source}: pass gazing_ratio and/or task_loss_requirement (the config has no fixed defaults)"
            )
    if ratio is None:
        ratio = 1.0
    values = list(ratio) if isinstance(ratio, (list, tuple)) else [ratio]
    for v in values:
        if (
            isinstance(v, bool)
            or not isinstance(v, (int, float))
            or not (0.0 <= float(v) <= 1.0)
            or math.isnan(v)
        ):
            raise ValueError(f"gazing_ratio must be a number in [0, 1] (or one per frame), got {ratio!r}")
    if requirement is not None and (
        isinstance(requirement, bool) or not isinstance(requirement, (int, float))
    ):
        raise ValueError(f"task_loss_requirement must be a number or None, got {requirement!r}")
    return (list(ratio) if isinstance(ratio, (list, tuple)) else float(ratio)), (
        None if requirement is None else float(requirement)
    )


def _masks_from_ids(
    ids_per_frame: list[torch.Tensor], eos: int, n_tok: int, per_scale: list[int]
) -> list[torch.Tensor]:
    """Per-scale float 0/1 masks (B, T, cells) of the real gazes of each frame (float like the original)."""
    b = ids_per_frame[0].shape[0]
    dev = ids_per_frame[0].device
    mask = torch.zeros(b, len(ids_per_frame), n_tok + 1, device=dev)
    for t, ids in enumerate(ids_per_frame):
        mask[:, t].scatter_(1, ids.clamp(max=eos), 1.0)  # padding (EOS) lands in the extra last column
    mask = mask[:, :, :n_tok]  # ... which is dropped
    return list(mask.split(per_scale, dim=-1))


class _Tiling:
    """Any-resolution support as the original's ``input_res_adapt`` / ``recover_output_from_res_adapt``."""

    def __init__(
        self, grid: list[int], rows: list[int], tiles_h: int, tiles_w: int, pad_h: int, pad_w: int, batch: int
    ):
        self.grid, self.rows, self.tiles_h, self.tiles_w = grid, rows, tiles_h, tiles_w
        self.pad_h, self.pad_w, self.batch = pad_h, pad_w, batch

    @classmethod
    def plan(cls, cfg: AutoGazeConfig, scales: list[int], patch: int, video: torch.Tensor) -> _Tiling | None:
        own = cfg.tokens_per_scale
        if scales == list(cfg.scales) and [(s // patch) ** 2 for s in scales] == own:
            return None  # the ViT's token grid is the gaze model's own: nothing to adapt
        if patch <= 0 or any(s <= 0 for s in scales):
            raise ValueError(f"target_scales {scales} and target_patch_size {patch} must be positive")
        if len(scales) != len(cfg.scales):
            raise ValueError(
                f"target_scales {scales} must have as many scales as the gaze model ({list(cfg.scales)})"
            )
        if scales != sorted(scales):
            raise ValueError(f"target_scales {scales} must be in ascending order")
        h, w = video.shape[-2:]
        if not (h == w == scales[-1]):
            raise ValueError(
                f"with target_scales {scales} the video must be {scales[-1]}x{scales[-1]} px, got {h}x{w}"
            )
        grid = [round(n**0.5) for n in own]
        rows = [s // patch for s in scales]
        tiles = math.ceil(rows[-1] / grid[-1])
        pad = tiles * grid[-1] * patch - h
        return cls(grid, rows, tiles, tiles, pad, pad, video.shape[0])

    def split(self, video: torch.Tensor) -> torch.Tensor:
        video = F.pad(video, (0, self.pad_w, 0, self.pad_h))
        b, t, c, hh, ww = video.shape
        sh, sw = hh // self.tiles_h, ww // self.tiles_w
        video = video.view(b, t, c, self.tiles_h, sh, self.tiles_w, sw).permute(0, 3, 5, 1, 2, 4, 6)
        return video.reshape(b * self.tiles_h * self.tiles_w, t, c, sh, sw)

    def merge(self, out: GazeOutput) -> GazeOutput:
        nh, nw, b = self.tiles_h, self.tiles_w, self.batch
        masks = []
        for m, g, r in zip(out.gazing_mask, self.grid, self.rows):
            t = m.shape[1]
            m = m.view(b, nh, nw, t, g, g).permute(0, 3, 1, 4, 2, 5).reshape(b, t, nh * g, nw * g)
            masks.append(m[:, :, :r, :r].flatten(2))
        n_tok = sum(m.shape[-1] for m in masks)
        flat = torch.cat(masks, dim=-1)  # (B, T, N)
        t = flat.shape[1]
        gazed = flat.to(torch.bool)
        counts = gazed.sum(-1)  # (B, T)
        per_frame = counts.max(dim=0).values  # (T,)
        idx = torch.arange(n_tok, device=flat.device).expand_as(gazed)
        # Gazed ids first in ascending order, then the rest (stable), like the original's sort key.
        order = torch.argsort((~gazed).long() * n_tok + idx, dim=-1, stable=True)
        pos_parts, pad_parts = [], []
        for f in range(t):
            k = int(per_frame[f])
            ids = order[:, f, :k]
            padded = torch.arange(k, device=flat.device)[None, :] >= counts[:, f : f + 1]
            pos_parts.append(ids.masked_fill(padded, -1) + n_tok * f)
            pad_parts.append(padded)
        return GazeOutput(
            gazing_pos=torch.cat(pos_parts, dim=1),
            if_padded_gazing=torch.cat(pad_parts, dim=1),
            num_gazing_each_frame=per_frame.to(torch.long),
            gazing_mask=masks,
            scales=list(out.scales),
            num_vision_tokens_each_frame=n_tok,
            frame_offset=out.frame_offset,
            task_loss_requirement=out.task_loss_requirement,
        )
