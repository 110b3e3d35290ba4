"""``GazeOutput``: what ``AutoGaze.gaze`` returns, with the same fields and meaning as the original."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class GazeOutput:
    """Gazes of a batch of clips.

    ``gazing_pos`` (B, N) are token ids counted from the first token of frame 0 of the clip
    (frame t adds ``num_vision_tokens_each_frame * t``); entries where ``if_padded_gazing`` is
    True are padding, not gazes (their value is meaningless). ``num_gazing_each_frame`` (T,) is
    how many of the N slots belong to each frame (padding included, batch-wide).
    ``gazing_mask`` is one float 0/1 tensor per scale (coarse -> fine), (B, T, cells of that scale).
    Streamed chunks carry ``frame_offset`` (their first frame's index in the stream), and their
    ``gazing_pos`` already count from the stream's frame 0, so ``GazeOutput.concat`` of the
    chunks equals the whole-clip output.
    """

    gazing_pos: torch.Tensor
    if_padded_gazing: torch.Tensor
    num_gazing_each_frame: torch.Tensor
    gazing_mask: list[torch.Tensor]
    scales: list[int]
    num_vision_tokens_each_frame: int
    frame_offset: int = 0
    task_loss_requirement: float | None = None

    @property
    def num_frames(self) -> int:
        return int(self.num_gazing_each_frame.shape[0])

    def gazed_per_frame(self) -> torch.Tensor:
        """Real (non-padded) gazes per clip and frame, (B, T) long."""
        parts = (~self.if_padded_gazing).split(self.num_gazing_each_frame.tolist(), dim=1)
        return torch.stack([p.sum(1) for p in parts], dim=1)

    @staticmethod
    def concat(outputs: list[GazeOutput]) -> GazeOutput:
        """Join consecutive streamed chunks (same batch) into one output over all their frames."""
        if not outputs:
            raise ValueError("GazeOutput.concat needs at least one output")
        first = outputs[0]
        return GazeOutput(
            gazing_pos=torch.cat([o.gazing_pos for o in outputs], dim=1),
            if_padded_gazing=torch.cat([o.if_padded_gazing for o in outputs], dim=1),
            num_gazing_each_frame=torch.cat([o.num_gazing_each_frame for o in outputs]),
            gazing_mask=[torch.cat(ms, dim=1) for ms in zip(*(o.gazing_mask for o in outputs))],
            scales=list(first.scales),
            num_vision_tokens_each_frame=first.num_vision_tokens_each_frame,
            frame_offset=first.frame_offset,
            task_loss_requirement=first.task_loss_requirement,
        )

    @staticmethod
    def stack(outputs: list[GazeOutput]) -> GazeOutput:
        """Join outputs of the same frames for different clips (each its own batch) into one batch.

        Each frame's slot count becomes the largest of the parts (what a batched run reports);
        shorter rows are padded (``if_padded_gazing`` True, value: the frame's EOS position)."""
        if not outputs:
            raise ValueError("GazeOutput.stack needs at least one output")
        first = outputs[0]
        n_tok = first.num_vision_tokens_each_frame
        counts = torch.stack([o.num_gazing_each_frame for o in outputs])  # (parts, T)
        widest = counts.max(0).values
        pos, pad = [], []
        for o in outputs:
            p_parts = o.gazing_pos.split(o.num_gazing_each_frame.tolist(), dim=1)
            m_parts = o.if_padded_gazing.split(o.num_gazing_each_frame.tolist(), dim=1)
            row_p, row_m = [], []
            for f, (p, m) in enumerate(zip(p_parts, m_parts)):
                extra = int(widest[f]) - p.shape[1]
                fill = n_tok * (first.frame_offset + f + 1)
                row_p.append(torch.cat([p, p.new_full((p.shape[0], extra), fill)], dim=1))
                row_m.append(torch.cat([m, m.new_ones((m.shape[0], extra))], dim=1))
            pos.append(torch.cat(row_p, dim=1))
            pad.append(torch.cat(row_m, dim=1))
        return GazeOutput(
            gazing_pos=torch.cat(pos, dim=0),
            if_padded_gazing=torch.cat(pad, dim=0),
            num_gazing_each_frame=widest,
            gazing_mask=[torch.cat(ms, dim=0) for ms in zip(*(o.gazing_mask for o in outputs))],
            scales=list(first.scales),
            num_vision_tokens_each_frame=n_tok,
            frame_offset=first.frame_offset,
            task_loss_requirement=first.task_loss_requirement,
        )
