"""Each published method against its authors' own code, on fixtures that code produced.

The fixtures (``tests/fixtures/pruning_refs``, provenance in its README) hold small random inputs
and what the reference function returned for them; these tests recompute with our
implementation and compare exactly (kept indices) or to float tolerance (merged features). Each
also shows that a deliberately broken variant (off-by-one layer, wrong ratio, wrong rule) fails.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.pruning.dycoke import dycoke_kv_step, dycoke_ttm
from harness.pruning.fastv import fastv_kept_positions
from harness.pruning.stages import LayerPruning, Reduction
from harness.pruning.vidcom2 import vidcom2_kept
from harness.pruning.visionzip import visionzip_reduction, visionzip_select

REFS = Path(__file__).parent / "fixtures" / "pruning_refs"


def _load(name: str) -> dict[str, np.ndarray]:
    return dict(np.load(REFS / name))


# -- FastV -----------------------------------------------------------------------------------


def _fastv(case: dict, attn: torch.Tensor, layer_offset: int = 0, ratio: float | None = None) -> list[int]:
    s = attn.shape[-1]
    visual = torch.zeros(s, dtype=torch.bool)
    visual[case["image_start"] : case["image_start"] + case["image_length"]] = True
    plan = LayerPruning(layer=case["K"], drop_ratio=case["r"] if ratio is None else ratio)
    row = attn[plan.layer - 1 + layer_offset, :, -1, :]
    return fastv_kept_positions(row, visual, plan.num_keep(case["image_length"])).tolist()


def test_fastv_matches_reference() -> None:
    attn = torch.from_numpy(_load("fastv.npz")["attentions"])
    cases = json.loads((REFS / "fastv_cases.json").read_text())
    for case in cases:
        assert _fastv(case, attn) == case["keep_positions"], case


def test_fastv_broken_variants_fail() -> None:
    attn = torch.from_numpy(_load("fastv.npz")["attentions"])
    cases = json.loads((REFS / "fastv_cases.json").read_text())
    # attention of layer K instead of K-1: some case must differ
    assert any(_fastv(c, attn, layer_offset=1) != c["keep_positions"] for c in cases if c["K"] < attn.shape[0] - 1)
    # wrong ratio
    assert any(_fastv(c, attn, ratio=c["r"] / 2) != c["keep_positions"] for c in cases)


def test_fastv_keeps_with_pythons_rounding() -> None:
    # 10 * (1 - 0.75) = 2.5 -> round() gives 2 (banker's), as the reference's round(); ceil would be 3
    assert LayerPruning(layer=2, drop_ratio=0.75).num_keep(10) == 2


# -- DyCoke ------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [0.3, 0.7])
def test_dycoke_matches_reference(k: float) -> None:
    fx = _load("dycoke_ttm.npz")
    feats, n = torch.from_numpy(fx["features"]), int(fx["tokens_per_frame"])
    red = dycoke_ttm(feats, n, int((1 - k) * n))
    ref = fx[f"out_order_k{k}"]
    assert red.keep.nonzero().squeeze(-1).tolist() == sorted(ref.tolist())
    assert len(set(ref.tolist())) == len(ref)  # the reference keeps each token once
    # a kept token's feature is itself (keep_target), and every dropped token is represented by the
    # same position of an earlier frame
    assert torch.equal(red.apply(feats), feats[red.keep])
    dropped = (~red.keep).nonzero().squeeze(-1)
    assert bool((red.merge_into[dropped] % n == dropped % n).all())
    assert bool((red.merge_into[dropped] < dropped).all())


def test_dycoke_broken_ratio_fails() -> None:
    fx = _load("dycoke_ttm.npz")
    feats, n = torch.from_numpy(fx["features"]), int(fx["tokens_per_frame"])
    red = dycoke_ttm(feats, n, int((1 - 0.3) * n) - 1)
    assert red.keep.nonzero().squeeze(-1).tolist() != sorted(fx["out_order_k0.3"].tolist())
    # features shifted per channel change every cosine: the kept set must change too
    other = dycoke_ttm(feats + torch.linspace(0, 3, feats.shape[1]), n, int(0.7 * n))
    assert other.keep.nonzero().squeeze(-1).tolist() != sorted(fx["out_order_k0.3"].tolist())


# -- VidCom2 -----------------------------------------------------------------------------------


@pytest.mark.parametrize("base", [0.25, 0.5])
def test_vidcom2_matches_reference(base: float) -> None:
    fx = _load("vidcom2.npz")
    kept = vidcom2_kept(torch.from_numpy(fx["features"]), int(fx["tokens_per_frame"]), base)
    assert kept.tolist() == fx[f"kept_base{base}"].tolist()


def test_vidcom2_broken_variants_fail() -> None:
    fx = _load("vidcom2.npz")
    feats, n = torch.from_numpy(fx["features"]), int(fx["tokens_per_frame"])
    ref = fx["kept_base0.25"].tolist()
    assert vidcom2_kept(feats, n, 0.3).tolist() != ref
    assert vidcom2_kept(feats, n * 2, 0.25).tolist() != ref  # frames split wrong
    assert vidcom2_kept(feats.flip(1), n, 0.25).tolist() == ref  # channel order does not matter
    assert vidcom2_kept(feats[torch.randperm(feats.shape[0], generator=torch.Generator().manual_seed(0))], n,
                        0.25).tolist() != ref


# -- VisionZip ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("dom", "ctx"), [(8, 4), (5, 6)])
def test_visionzip_matches_reference(dom: int, ctx: int) -> None:
    fx = _load("visionzip.npz")
    att, hid, metric = (torch.from_numpy(fx[k]) for k in ("attention", "hidden", "metric"))
    for b in range(att.shape[0]):
        red = visionzip_reduction(att[b], metric[b], dom, ctx)
        ref_idx = fx[f"indices_d{dom}_c{ctx}"][b]
        ref_feat = torch.from_numpy(fx[f"features_d{dom}_c{ctx}"][b])
        ours = red.apply(hid[b])  # raster order: dominant and targets interleaved
        kept = red.keep.nonzero().squeeze(-1)
        dominant = torch.tensor(sorted(ref_idx.tolist()))
        assert set(dominant.tolist()) <= set(kept.tolist())
        assert red.num_kept == dom + 1 + ctx
        # reference order: dominant (index order), then contextual (target order)
        targets = kept[~torch.isin(kept, dominant)]
        order = torch.cat([dominant, targets])
        slot = {int(t): i for i, t in enumerate(kept)}
        reordered = ours[[slot[int(t)] for t in order]]
        torch.testing.assert_close(reordered, ref_feat, rtol=1e-5, atol=1e-6)


def test_visionzip_broken_rule_fails() -> None:
    fx = _load("visionzip.npz")
    att, hid, metric = (torch.from_numpy(fx[k]) for k in ("attention", "hidden", "metric"))
    red = visionzip_reduction(att[0], metric[0], 8, 4)
    mean_rule = Reduction(keep=red.keep, merge_into=red.merge_into, rule="mean")
    ref = torch.from_numpy(fx["features_d8_c4"][0])
    assert not torch.allclose(torch.sort(mean_rule.apply(hid[0]).sum(1)).values, torch.sort(ref.sum(1)).values)
    assert torch.allclose(torch.sort(red.apply(hid[0]).sum(1)).values, torch.sort(ref.sum(1)).values, atol=1e-5)
    shifted = visionzip_reduction(att[0], metric[0], 7, 4)
    assert not torch.equal(shifted.keep, red.keep)


def test_vidcom2_budget_solves_for_the_rate() -> None:
    fx = _load("vidcom2.npz")
    feats, n = torch.from_numpy(fx["features"]), int(fx["tokens_per_frame"])
    for budget in (7, 22, 50, 80, 95):
        kept = vidcom2_kept(feats, n, 0.25, budget=budget)
        assert abs(kept.numel() - budget) <= 1, (budget, kept.numel())
    # at the budget the published rate gives, the same tokens as the reference
    ref = fx["kept_base0.25"]
    assert vidcom2_kept(feats, n, 0.25, budget=len(ref)).tolist() == ref.tolist()


@pytest.mark.parametrize(("dom", "ctx"), [(6, 2), (3, 5)])
def test_visionzip_without_cls_matches_the_llava_ov_port(dom: int, ctx: int) -> None:
    """Score = attention received (no CLS): DyToK's ``static_compression``, per frame."""
    fx = _load("visionzip_siglip.npz")
    hid, rec, metric = (torch.from_numpy(fx[k]) for k in ("hidden", "received", "metric"))
    for f in range(hid.shape[0]):
        red = visionzip_select(rec[f], metric[f], dom, ctx)
        kept = red.keep.nonzero().squeeze(-1)
        dominant = torch.tensor(sorted(fx[f"indices_d{dom}_c{ctx}"][f].tolist()))
        targets = kept[~torch.isin(kept, dominant)]
        slot = {int(t): i for i, t in enumerate(kept)}
        ours = red.apply(hid[f])[[slot[int(t)] for t in torch.cat([dominant, targets])]]
        torch.testing.assert_close(ours, torch.from_numpy(fx[f"features_d{dom}_c{ctx}"][f]), rtol=1e-5, atol=1e-6)
        # the check can fail: one dominant token fewer changes the kept set and the merged features
        assert not torch.equal(visionzip_select(rec[f], metric[f], dom - 1, ctx).keep, red.keep)


def test_dycoke_kv_step_matches_reference() -> None:
    fx = _load("dycoke_kv.npz")
    meta = json.loads((REFS / "dycoke_kv.json").read_text())
    start, length = meta["image_token_start_index"], meta["image_token_length"]
    keep = int(length * (1 - meta["dycoke_p"]))
    previous = None
    for i, step in enumerate(meta["steps"]):
        row = torch.from_numpy(fx[f"attention_step{i}"])
        visual = torch.zeros(row.shape[-1], dtype=torch.bool)
        visual[start : start + length] = True
        kept, previous = dycoke_kv_step(row, visual, previous, keep, meta["threshold"])
        if step["kv_cache"] is None:
            assert kept is None, i
        else:
            assert kept is not None and kept.tolist() == sorted(step["kv_cache"]), i
    # the check can fail: without the similarity test the third step would have pruned
    rows = [torch.from_numpy(fx[f"attention_step{i}"]) for i in range(3)]
    visual = torch.zeros(rows[2].shape[-1], dtype=torch.bool)
    visual[start : start + length] = True
    assert dycoke_kv_step(rows[2], visual, None, keep, meta["threshold"])[0] is not None
    assert meta["steps"][2]["kv_cache"] is None
