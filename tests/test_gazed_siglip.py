"""Gazed multi-scale SigLIP/SigLIP2 vs the stock transformers towers (tiny random-init configs).

Equivalences checked: one scale + every patch + frame-independent attention == the stock tower
run frame by frame (SigLIP and SigLIP2-NaFlex, eager and sdpa); multi-scale embeddings == the
stock embedding of the resized frame with interpolated positions; a selection change touches
exactly the tokens the attention pattern says it may; padding never changes a real token; the
AutoGaze parity fixture's gazes (format of the reference) drive the encoder as documented.
"""

from __future__ import annotations

import pytest
import torch
from transformers import Siglip2VisionConfig, Siglip2VisionModel, SiglipVisionConfig, SiglipVisionModel

from harness.models.gazed_siglip import (
    ATTN_TYPES,
    GazedSiglipVisionEncoder,
    GazingInfo,
    MultiScaleLayout,
)
from harness.models.siglip_kept import bilinear_half_pool, encode_kept_patches, vit_keep_for_pooled_keep

ATOL = 2e-5


def _siglip(attn: str = "eager", image_size: int = 32, patch: int = 8, seed: int = 0) -> SiglipVisionModel:
    torch.manual_seed(seed)
    cfg = SiglipVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=image_size,
        patch_size=patch,
        attn_implementation=attn,
    )
    return SiglipVisionModel(cfg).eval()


def _random_keep(b: int, t: int, n: int, ratio: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    keep = torch.rand(b, t, n, generator=g) < ratio
    keep[..., 0] = True  # at least one real gaze per frame
    return keep


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_single_scale_every_patch_frame_independent_equals_stock(attn: str) -> None:
    tower = _siglip(attn)
    x = torch.randn(2, 3, 3, 32, 32)
    enc = GazedSiglipVisionEncoder(tower, attn_type="frame_independent")
    with torch.no_grad():
        ref = tower(x.flatten(0, 1), output_hidden_states=True)
        out = enc(x)
        feat = enc(x, feature_layer=-1)
    assert out.features.shape == (2, 3 * 16, 32)
    torch.testing.assert_close(
        out.last_hidden_state.reshape(6, 16, 32), ref.last_hidden_state, atol=ATOL, rtol=0
    )
    # LLaVA-style feature layer (pre post-layernorm) matches the stock hidden_states index
    torch.testing.assert_close(feat.features.reshape(6, 16, 32), ref.hidden_states[-1], atol=ATOL, rtol=0)
    assert not torch.allclose(ref.hidden_states[-1], ref.last_hidden_state)  # the two really differ


def test_single_frame_every_mode_equals_stock() -> None:
    """With T=1 and no padding every attention type reduces to full attention inside the frame."""
    tower = _siglip("sdpa")
    x = torch.randn(2, 1, 3, 32, 32)
    with torch.no_grad():
        ref = tower(x[:, 0]).last_hidden_state
        for mode in ("block_causal", "bidirectional", "frame_independent"):
            out = GazedSiglipVisionEncoder(tower, attn_type=mode)(x)
            torch.testing.assert_close(out.last_hidden_state, ref, atol=ATOL, rtol=0)


def test_siglip2_naflex_every_patch_equals_stock() -> None:
    torch.manual_seed(1)
    cfg = Siglip2VisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_patches=16,
        patch_size=8,
        attn_implementation="sdpa",
    )
    tower = Siglip2VisionModel(cfg).eval()
    x = torch.randn(1, 2, 3, 32, 32)
    frames = x[0]
    # the stock NaFlex input: (F, n, p*p*C) patches in (p, p, C) order + spatial shapes + mask
    patches = frames.reshape(2, 3, 4, 8, 4, 8).permute(0, 2, 4, 3, 5, 1).reshape(2, 16, 192)
    with torch.no_grad():
        ref = tower(
            pixel_values=patches,
            pixel_attention_mask=torch.ones(2, 16, dtype=torch.long),
            spatial_shapes=torch.tensor([[4, 4], [4, 4]]),
        ).last_hidden_state
        out = GazedSiglipVisionEncoder(tower, attn_type="frame_independent")(x)
    torch.testing.assert_close(out.last_hidden_state.reshape(2, 16, 32), ref, atol=ATOL, rtol=0)


def test_multiscale_embedding_equals_stock_embedding_of_resized_frame() -> None:
    tower = _siglip(image_size=32, patch=8)
    enc = GazedSiglipVisionEncoder(tower, scales="16+32+48")
    assert enc.layout.tokens_per_scale == (4, 16, 36) and enc.layout.tokens_per_frame == 56
    x = torch.randn(1, 2, 3, 32, 32)
    with torch.no_grad():
        emb = enc.embed(x, GazingInfo.full(1, 2, enc.layout)).view(2, 56, 32)
        for scale, off, n in zip(
            (16, 32, 48), enc.layout.scale_offsets, enc.layout.tokens_per_scale, strict=True
        ):
            frames = x[0]
            if scale != 32:
                frames = torch.nn.functional.interpolate(
                    frames, size=(scale, scale), mode="bicubic", align_corners=False
                )
            ref = tower.embeddings(frames, interpolate_pos_encoding=True)
            torch.testing.assert_close(emb[:, off : off + n], ref, atol=ATOL, rtol=0)


def _run(enc: GazedSiglipVisionEncoder, x: torch.Tensor, gazing: GazingInfo) -> torch.Tensor:
    with torch.no_grad():
        return enc(x, gazing).last_hidden_state


def _frame_slices(g: GazingInfo) -> list[slice]:
    out, start = [], 0
    for n in g.num_gazing_each_frame.tolist():
        out.append(slice(start, start + n))
        start += n
    return out


@pytest.mark.parametrize("mode", ["frame_independent", "block_causal"])
def test_changing_one_frames_selection_changes_exactly_the_frames_allowed_to_see_it(mode: str) -> None:
    tower = _siglip("sdpa")
    enc = GazedSiglipVisionEncoder(tower, scales="16+32", attn_type=mode)
    n = enc.layout.tokens_per_frame  # 4 + 16
    x = torch.randn(1, 3, 3, 32, 32)
    keep_a = _random_keep(1, 3, n, 0.5, seed=3)
    keep_b = keep_a.clone()
    # frame 1: swap one kept id for an unkept one, same count, so every slot index lines up
    on, off = keep_a[0, 1].nonzero()[0, 0], (~keep_a[0, 1]).nonzero()[0, 0]
    keep_b[0, 1, on], keep_b[0, 1, off] = False, True
    ga, gb = GazingInfo.from_masks(keep_a, enc.layout), GazingInfo.from_masks(keep_b, enc.layout)
    oa, ob = _run(enc, x, ga), _run(enc, x, gb)
    f0, f1, f2 = _frame_slices(ga)
    torch.testing.assert_close(oa[:, f0], ob[:, f0], atol=0, rtol=0)  # earlier frame: untouched
    assert not torch.allclose(oa[:, f1], ob[:, f1], atol=1e-4)
    if mode == "frame_independent":
        torch.testing.assert_close(oa[:, f2], ob[:, f2], atol=ATOL, rtol=0)  # later frame cannot see frame 1
    else:
        assert not torch.allclose(oa[:, f2], ob[:, f2], atol=1e-4)  # block-causal: frame 2 sees frame 1


def test_causal_changes_only_the_later_slots() -> None:
    tower = _siglip("eager")
    enc = GazedSiglipVisionEncoder(tower, attn_type="causal")
    x = torch.randn(1, 2, 3, 32, 32)
    keep = _random_keep(1, 2, 16, 0.6, seed=5)
    ga = GazingInfo.from_masks(keep, enc.layout)
    gb = GazingInfo(ga.gazing_pos.clone(), ga.if_padded_gazing, ga.num_gazing_each_frame)
    last = ga.gazing_pos.shape[1] - 1
    free = sorted(set(range(16, 32)) - set(ga.gazing_pos[0].tolist()))
    gb.gazing_pos[0, last] = free[0]  # re-aim the very last slot only
    oa, ob = _run(enc, x, ga), _run(enc, x, gb)
    torch.testing.assert_close(oa[:, :last], ob[:, :last], atol=0, rtol=0)
    assert not torch.allclose(oa[:, last], ob[:, last], atol=1e-4)


@pytest.mark.parametrize("mode", ATTN_TYPES)
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_padding_never_changes_a_real_token(mode: str, attn: str) -> None:
    tower = _siglip(attn)
    enc = GazedSiglipVisionEncoder(tower, scales="16+32", attn_type=mode)
    n = enc.layout.tokens_per_frame
    x = torch.randn(2, 3, 3, 32, 32)
    keep = _random_keep(2, 3, n, 0.4, seed=7)
    keep[1] = True  # clip 1 keeps everything, so clip 0 gets padding in every frame
    batched = GazingInfo.from_masks(keep, enc.layout)
    assert bool(batched.if_padded_gazing[0].any()) and not bool(batched.if_padded_gazing[1].any())
    alone = GazingInfo.from_masks(keep[:1], enc.layout)
    assert not bool(alone.if_padded_gazing.any())
    with torch.no_grad():
        out_b = enc(x, batched)
        out_a = enc(x[:1], alone)
    torch.testing.assert_close(out_b.real_features()[0], out_a.real_features()[0], atol=ATOL, rtol=0)
    # where padding slots point is irrelevant too
    moved = GazingInfo(batched.gazing_pos.clone(), batched.if_padded_gazing, batched.num_gazing_each_frame)
    moved.gazing_pos[moved.if_padded_gazing] = 5
    with torch.no_grad():
        out_m = enc(x, moved)
    for got, want in zip(out_m.real_features(), out_b.real_features(), strict=True):
        torch.testing.assert_close(got, want, atol=ATOL, rtol=0)
    assert torch.isfinite(out_m.features).all()


def test_frame_independent_regrouping_equals_explicit_mask() -> None:
    """The per-frame batching shortcut gives what the explicit (N x N) frame-equality mask gives."""
    tower = _siglip("eager")
    enc = GazedSiglipVisionEncoder(tower, scales="16+32", attn_type="frame_independent")
    x = torch.randn(2, 3, 3, 32, 32)
    g = GazingInfo.from_masks(_random_keep(2, 3, enc.layout.tokens_per_frame, 0.5, seed=11), enc.layout)
    with torch.no_grad():
        fast = enc(x, g, feature_layer=-1).features
        hidden = enc.embed(x, g)
        mask = enc._mask_format(enc.attention_allowed(g, hidden.device), hidden.dtype)
        slow = enc._run_layers(hidden, mask, len(tower.encoder.layers))[-1]
    real = ~g.if_padded_gazing
    torch.testing.assert_close(fast[real], slow[real], atol=ATOL, rtol=0)


def test_gazing_info_masks_round_trip_and_validation() -> None:
    layout = MultiScaleLayout.parse("32+64+112+224", 16)
    assert layout.tokens_per_frame == 265 and layout.scale_offsets == (0, 4, 20, 69)
    keep = _random_keep(2, 4, 265, 0.2, seed=2)
    g = GazingInfo.from_masks(
        [keep[..., o : o + c] for o, c in zip(layout.scale_offsets, layout.tokens_per_scale)], layout
    )
    back = torch.cat(g.to_masks(layout), -1)
    assert torch.equal(back, keep)
    assert g.num_real().tolist() == keep.sum((1, 2)).tolist()
    with pytest.raises(ValueError, match="sums to"):
        GazingInfo(g.gazing_pos, g.if_padded_gazing, g.num_gazing_each_frame + 1)
    with pytest.raises(ValueError, match="multiple of patch_size"):
        MultiScaleLayout.parse("30+60", 16)


def test_parity_fixture_gazes_drive_the_encoder(parity_dir) -> None:
    """The reference's tile448 case (scales 64+128+224+448, patch 16): our layout reproduces its
    per-scale masks from its gazing_pos, and the encoder embeds exactly its real gazes."""
    from safetensors.torch import load_file

    cases = load_file(str(parity_dir / "cases.safetensors"))
    key = "tile448_ratio020"
    g = GazingInfo(
        cases[f"{key}.gazing_pos"], cases[f"{key}.if_padded_gazing"], cases[f"{key}.num_gazing_each_frame"]
    )
    layout = MultiScaleLayout.parse("64+128+224+448", 16)
    assert layout.tokens_per_frame == 1060
    for i, m in enumerate(g.to_masks(layout)):
        assert torch.equal(m, cases[f"{key}.gazing_mask.{i}"].bool())
    tower = _siglip("sdpa", image_size=224, patch=16)
    enc = GazedSiglipVisionEncoder(tower, scales=layout.scales, attn_type="block_causal")
    video = cases["video448"]
    with torch.no_grad():
        out = enc(
            video,
            {
                "gazing_pos": g.gazing_pos,
                "if_padded_gazing": g.if_padded_gazing,
                "num_gazing_each_frame": g.num_gazing_each_frame,
            },
        )
    assert [f.shape[0] for f in out.real_features()] == g.num_real().tolist()
    assert torch.isfinite(out.features).all()
    # harness.gaze's GazeOutput is accepted as it is (same field names as the reference's dict)
    from harness.gaze import GazeOutput

    gaze_out = GazeOutput(
        gazing_pos=g.gazing_pos,
        if_padded_gazing=g.if_padded_gazing,
        num_gazing_each_frame=g.num_gazing_each_frame,
        gazing_mask=g.to_masks(layout),
        scales=list(layout.scales),
        num_vision_tokens_each_frame=layout.tokens_per_frame,
    )
    with torch.no_grad():
        again = enc(video, gaze_out)
    torch.testing.assert_close(again.features, out.features, atol=0, rtol=0)


def test_reuses_stock_parameters_and_loads_a_local_checkpoint(tmp_path) -> None:
    tower = _siglip("sdpa", seed=4)
    tower.save_pretrained(tmp_path)
    enc = GazedSiglipVisionEncoder.from_pretrained(
        tmp_path, scales="16+32", attn_type="block_causal", dtype=torch.float32
    )
    own = GazedSiglipVisionEncoder(tower, scales="16+32")
    # no new parameters: the state dict is the stock tower's, under "tower."
    assert {k.removeprefix("tower.") for k in enc.state_dict()} == set(tower.state_dict())
    assert own.parts.embeddings.patch_embedding.weight is tower.embeddings.patch_embedding.weight
    x = torch.randn(1, 2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(enc(x).last_hidden_state, own(x).last_hidden_state, atol=ATOL, rtol=0)
    with pytest.raises(FileNotFoundError, match="config.json"):
        GazedSiglipVisionEncoder.from_pretrained(tmp_path / "missing")


def test_pre_vit_helper_keeps_stock_features_of_fully_kept_frames() -> None:
    tower = _siglip("sdpa")
    x = torch.randn(3, 3, 32, 32)
    keep = torch.ones(3, 4, 4, dtype=torch.bool)
    keep[1] = _random_keep(1, 1, 16, 0.4, seed=9).view(4, 4)
    with torch.no_grad():
        ref = tower(x, output_hidden_states=True).hidden_states[-1]
    kept = encode_kept_patches(tower, x, keep, feature_layer=-1)
    assert kept.features.shape == (int(keep.sum()), 32)
    grid = kept.to_grid()
    torch.testing.assert_close(grid[0].reshape(16, 32), ref[0], atol=ATOL, rtol=0)
    torch.testing.assert_close(grid[2].reshape(16, 32), ref[2], atol=ATOL, rtol=0)
    assert not torch.allclose(
        grid[1][keep[1]], ref[1][keep[1].flatten()], atol=1e-4
    )  # frame 1 saw fewer patches
    assert torch.all(grid[1][~keep[1]] == 0)


def test_pooling_policy_reads_back_exact_pooled_values() -> None:
    """LLaVA-OV pooling (27x27 -> 14x14 bilinear): with the ViT keep from the policy, kept pooled
    cells computed from a zero-filled grid equal the pooling of the complete grid."""
    g = torch.Generator().manual_seed(0)
    pooled_keep = torch.rand(2, 14, 14, generator=g) < 0.3
    vit_keep = vit_keep_for_pooled_keep(pooled_keep, (27, 27), bilinear_half_pool)
    assert vit_keep.shape == (2, 27, 27)
    assert 0 < int(vit_keep.sum()) < vit_keep.numel()
    full = torch.randn(2, 8, 27, 27, generator=g)
    masked = full * vit_keep[:, None]
    want = bilinear_half_pool(full).permute(0, 2, 3, 1)[pooled_keep]
    got = bilinear_half_pool(masked).permute(0, 2, 3, 1)[pooled_keep]
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
    # and the keep is minimal: dropping any kept ViT patch breaks some kept pooled cell
    t, i, j = vit_keep.nonzero()[0].tolist()
    fewer = vit_keep.clone()
    fewer[t, i, j] = False
    broken = bilinear_half_pool(full * fewer[:, None]).permute(0, 2, 3, 1)[pooled_keep]
    assert not torch.allclose(broken, want, atol=1e-6)


def test_llava_onevision_pre_vit_chain_equals_stock_video_features(tmp_path) -> None:
    """On the tiny LLaVA-OneVision (stock classes): every pooled cell kept == the stock
    ``get_video_features`` (newline excluded); a partial keep leaves fully kept frames' tokens
    exactly as stock and returns one feature per kept cell."""
    from transformers import LlavaOnevisionForConditionalGeneration

    from harness.models.siglip_kept import pooled_features_pre_vit
    from harness.models.tiny import build_tiny_model

    d = build_tiny_model("llava_onevision", tmp_path / "llava", seed=0)
    model = LlavaOnevisionForConditionalGeneration.from_pretrained(d).eval()
    vc = model.config.vision_config
    t, size = 3, vc.image_size
    pix = torch.randn(1, t, 3, size, size)
    with torch.no_grad():
        stock = model.model.get_video_features(pixel_values_videos=pix, return_dict=True).pooler_output[
            0, :-1
        ]
    g = (size // vc.patch_size + 1) // 2
    tower, projector = model.model.vision_tower, model.model.multi_modal_projector
    layer = model.config.vision_feature_layer
    every = torch.ones(t, g, g, dtype=torch.bool)
    got, vit_keep = pooled_features_pre_vit(tower, projector, pix[0], every, feature_layer=layer)
    assert bool(vit_keep.all())
    torch.testing.assert_close(got, stock, atol=ATOL, rtol=0)
    keep = every.clone()
    keep[1] = torch.rand(g, g, generator=torch.Generator().manual_seed(0)) < 0.3
    keep[1, 0, 0] = True
    got, vit_keep = pooled_features_pre_vit(tower, projector, pix[0], keep, feature_layer=layer)
    assert got.shape[0] == int(keep.sum()) and not bool(vit_keep[1].all())
    per_frame = stock.view(t, g * g, -1)
    n0 = g * g
    torch.testing.assert_close(got[:n0], per_frame[0], atol=ATOL, rtol=0)
    torch.testing.assert_close(got[-n0:], per_frame[2], atol=ATOL, rtol=0)
