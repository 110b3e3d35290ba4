"""Our gazed multi-scale SigLIP vs the outputs of the AutoGaze authors' own SigLIP.

The fixture (tests/fixtures/authors_siglip/, README there) holds a tiny random-weight SigLIP,
a 2-clip x 3-frame video, multi-scale gazing info (4 scales, gazes at every scale of every
frame, in gaze order, with padding) and what NVlabs/AutoGaze's
``autogaze/vision_encoders/siglip`` returned on them, block-causal across frames (their
default) and frame-independent. Our encoder wraps the *stock* transformers tower loaded with
the same weights; it must give the same features of every real gaze. Each way of getting the
multi-scale recipe wrong (scale order, per-scale positions, attention layout, resize) is
shown to break the match, so the check can fail.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import SiglipVisionConfig, SiglipVisionModel

from harness.models.gazed_siglip import GazedSiglipVisionEncoder, GazingInfo, _tower_parts

FIXTURE = Path(__file__).parent / "fixtures" / "authors_siglip"
ATOL = 1e-5  # the authors' eager and sdpa runs differ by 1.2e-6 on these inputs


@pytest.fixture(scope="module")
def authors() -> dict:
    meta = json.loads((FIXTURE / "authors_siglip_multiscale.json").read_text())
    tensors = load_file(str(FIXTURE / "authors_siglip_multiscale.safetensors"))
    return {"meta": meta, "t": tensors}


def _tower(authors: dict, attn: str = "sdpa") -> SiglipVisionModel:
    cfg = dict(authors["meta"]["config"])
    cfg.pop("scales")
    tower = SiglipVisionModel(SiglipVisionConfig(**cfg, attn_implementation=attn)).eval()
    weights = {k.removeprefix("weights."): v for k, v in authors["t"].items() if k.startswith("weights.")}
    if not any(k.startswith("vision_model.") for k in tower.state_dict()):  # transformers 5 drops the wrapper
        weights = {k.removeprefix("vision_model."): v for k, v in weights.items()}
    missing, unexpected = tower.load_state_dict(weights, strict=False)
    assert not unexpected and not [k for k in missing if "position_ids" not in k], (missing, unexpected)
    return tower


def _gazing(authors: dict) -> GazingInfo:
    t = authors["t"]
    return GazingInfo(
        t["gazing_info.gazing_pos"], t["gazing_info.if_padded_gazing"], t["gazing_info.num_gazing_each_frame"]
    )


def _run(authors: dict, mode: str, attn: str = "sdpa", **kwargs) -> tuple[torch.Tensor, ...]:
    enc = GazedSiglipVisionEncoder(
        _tower(authors, attn), scales=authors["meta"]["config"]["scales"], attn_type=mode, **kwargs
    )
    with torch.no_grad():
        out = enc(authors["t"]["pixel_values"], _gazing(authors), output_hidden_states=True)
    return out.hidden_states[0], out.hidden_states[-1], out.last_hidden_state


def _real(x: torch.Tensor, authors: dict) -> torch.Tensor:
    return x[~authors["t"]["gazing_info.if_padded_gazing"]]


def test_fixture_is_multiscale_multiframe_with_padding(authors: dict) -> None:
    meta = authors["meta"]
    per_scale = torch.tensor(meta["real_gazes_per_clip_frame_scale"])  # (B, T, S)
    assert per_scale.shape == (2, 3, 4) and bool((per_scale > 0).all())  # gazes at every scale
    assert bool(authors["t"]["gazing_info.if_padded_gazing"].any())
    assert _gazing(authors).num_real().tolist() == meta["real_gazes_per_clip"]


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_block_causal_equals_authors(authors: dict, attn: str) -> None:
    emb, pre_norm, last = _run(authors, "block_causal", attn)
    ref = authors["t"]
    torch.testing.assert_close(
        _real(emb, authors), _real(ref["outputs.block_causal.hidden_states.0"], authors), atol=ATOL, rtol=0
    )
    torch.testing.assert_close(
        _real(pre_norm, authors),
        _real(ref["outputs.block_causal.hidden_states.-1"], authors),
        atol=ATOL,
        rtol=0,
    )
    torch.testing.assert_close(
        _real(last, authors), _real(ref["outputs.block_causal.last_hidden_state"], authors), atol=ATOL, rtol=0
    )


def test_frame_independent_equals_authors(authors: dict) -> None:
    _, pre_norm, last = _run(authors, "frame_independent")
    ref = authors["t"]
    torch.testing.assert_close(
        _real(pre_norm, authors),
        _real(ref["outputs.frame_independent.hidden_states.-1"], authors),
        atol=ATOL,
        rtol=0,
    )
    torch.testing.assert_close(
        _real(last, authors),
        _real(ref["outputs.frame_independent.last_hidden_state"], authors),
        atol=ATOL,
        rtol=0,
    )


def _max_diff(authors: dict, last: torch.Tensor) -> float:
    ref = authors["t"]["outputs.block_causal.last_hidden_state"]
    return float((_real(last, authors) - _real(ref, authors)).abs().max())


def test_wrong_attention_layout_breaks_the_match(authors: dict) -> None:
    for mode in ("bidirectional", "causal", "frame_independent"):
        assert _max_diff(authors, _run(authors, mode)[2]) > 1e-2, mode


def test_antialiased_resize_breaks_the_match(authors: dict) -> None:
    assert _max_diff(authors, _run(authors, "block_causal", antialias=True)[2]) > 1e-2


def test_wrong_scale_order_breaks_the_match(authors: dict) -> None:
    """Ids read as if the scales were listed finest first (same tokens per frame, other order)."""
    g = _gazing(authors)
    n = authors["meta"]["tokens_per_frame"]
    sizes = [4, 16, 36, 64]
    # id -> (scale, local) in ascending layout -> the same (scale, local) in a descending layout
    offs_asc = torch.tensor([0, 4, 20, 56])
    offs_desc = torch.tensor([116, 100, 64, 0])
    local = g.gazing_pos % n
    scale = torch.bucketize(local, offs_asc[1:], right=True)
    swapped = (g.gazing_pos // n) * n + offs_desc[scale] + (local - offs_asc[scale])
    assert sum(sizes) == n
    enc = GazedSiglipVisionEncoder(_tower(authors), scales="14+28+42+56")
    with torch.no_grad():
        out = enc(
            authors["t"]["pixel_values"], GazingInfo(swapped, g.if_padded_gazing, g.num_gazing_each_frame)
        )
    # the remapped ids now point at other cells (the swap is not an identity on these gazes)
    assert _max_diff(authors, out.last_hidden_state) > 1e-2


def test_uninterpolated_positions_break_the_match(authors: dict) -> None:
    """Every scale reading the first cells of the native position table (no per-scale resize)."""
    enc = GazedSiglipVisionEncoder(_tower(authors), scales="14+28+42+56")
    native = enc.parts.embeddings.position_embedding.weight.detach()

    def flat_table(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        rows = [native[: g * g] if g * g <= native.shape[0] else native[torch.arange(g * g) % native.shape[0]]
                for g in enc.layout.grid_sizes]  # fmt: skip
        return torch.cat(rows).to(device=device, dtype=dtype)

    enc._position_table = flat_table  # type: ignore[method-assign]
    with torch.no_grad():
        out = enc(authors["t"]["pixel_values"], _gazing(authors))
    assert _max_diff(authors, out.last_hidden_state) > 1e-2


def test_transposed_position_grid_breaks_the_match(authors: dict) -> None:
    tower = _tower(authors)
    with torch.no_grad():
        w = _tower_parts(tower).embeddings.position_embedding.weight
        w.copy_(w.view(6, 6, -1).transpose(0, 1).reshape(36, -1))
    enc = GazedSiglipVisionEncoder(tower, scales="14+28+42+56")
    with torch.no_grad():
        out = enc(authors["t"]["pixel_values"], _gazing(authors))
    assert _max_diff(authors, out.last_hidden_state) > 1e-2
