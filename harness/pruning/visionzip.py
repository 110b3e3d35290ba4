"""VisionZip (Yang et al., CVPR 2025): dominant + contextual visual tokens, inside the vision tower.

Reference: dvlab-research/VisionZip ``visionzip/clip_encoder.py``
(``CLIPVisionTower_VisionZip.forward``; fixture and commit in
``tests/fixtures/pruning_refs/README.md``). At the tower's second-to-last layer, for one image
of N tokens (CLS first):

- **dominant**: the CLS token and the ``dominant`` patches the CLS attends to most (attention
  summed over heads), in index order;
- **contextual**: of the remaining ``m`` tokens, every ``max(1, m // contextual)``-th (the first
  ``contextual`` of them) is a target; each other remaining token joins the target its key
  (``metric``: the layer's keys averaged over heads, L2-normalised) is most cosine-similar to;
  a target's feature becomes ``target + mean(joined)`` (``Reduction`` rule ``target_plus_mean``).

The reference emits the dominant tokens, then the contextual ones in target order; here the
merged tokens sit at their targets' positions (the contract's one position rule).

Not a registered pruner yet: it needs the ViT's CLS attention and keys at layer -2, which the
adapters do not expose (LLaVA-OV's SigLIP and Qwen's ViT have no CLS token, and their LLM tokens
are pooled / merged 2x2 patches). The algorithm below reproduces the reference on its fixture so
that wiring it into a tower is the only step left.
"""

from __future__ import annotations

import torch

from harness.pruning.stages import Reduction


def visionzip_reduction(
    attention: torch.Tensor, metric: torch.Tensor, dominant: int, contextual: int, cls_index: int = 0
) -> Reduction:
    """VisionZip's choice over N tokens of one image.

    ``attention`` (H, N, N) at the tower's layer -2; ``metric`` (N, C) that layer's keys averaged
    over heads. ``dominant`` patches (besides the CLS) and ``contextual`` merged tokens.
    """
    n = attention.shape[-1]
    cls_row = attention[:, cls_index].sum(0)  # (N,) attention of the CLS, summed over heads
    others = torch.tensor([i for i in range(n) if i != cls_index])
    top = others[cls_row[others].topk(dominant).indices]
    keep = torch.zeros(n, dtype=torch.bool)
    keep[cls_index] = True
    keep[top] = True
    rest = (~keep).nonzero().squeeze(-1)  # in index order, as the reference's masked_select
    m = rest.numel()
    step = max(1, m // contextual)
    targets_local = torch.arange(0, m, step)[:contextual]
    is_target = torch.zeros(m, dtype=torch.bool)
    is_target[targets_local] = True
    normed = metric[rest] / metric[rest].norm(dim=-1, keepdim=True)
    sim = normed[~is_target] @ normed[targets_local].T
    joined = rest[~is_target]
    merge_into = torch.full((n,), -1, dtype=torch.long)
    targets = rest[targets_local]
    keep[targets] = True
    merge_into[keep] = keep.nonzero().squeeze(-1)
    merge_into[joined] = targets[sim.argmax(dim=1)]
    return Reduction(keep=keep, merge_into=merge_into, rule="target_plus_mean",
                     info={"dominant": dominant, "contextual": contextual})
