"""AutoGaze building blocks vs peers, and every refusal naming its cause.

* decoder layers == transformers' LlamaModel (llama3 rope, GQA, padding mask), one-shot and
  chunked through our preallocated KV cache;
* conv encoder streamed in chunks == whole clip;
* config / checkpoint / hub-id / input-tensor errors name the key, file or shape at fault.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from harness.gaze import AutoGaze, AutoGazeConfig, CheckpointError, ConfigError, resolve_checkpoint
from harness.gaze.config import DecoderConfig
from harness.gaze.generate import _chunk_mask
from harness.gaze.model import EXACT_MIN_ROWS, GazeDecoder, KVCache, TailCausal, rope_inv_freq

# One torch thread per module (fixture in conftest.py): the greedy loop's small ops spin-wait otherwise.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


ROPE = {
    "factor": 8.0,
    "high_freq_factor": 4.0,
    "low_freq_factor": 1.0,
    "original_max_position_embeddings": 32,
    "rope_type": "llama3",
}


def _tiny_decoder() -> tuple[GazeDecoder, torch.nn.Module]:
    transformers = pytest.importorskip("transformers")
    cfg = DecoderConfig(
        hidden_size=64, intermediate_size=96, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=16,
        rms_norm_eps=1e-5, rope_theta=500000.0, rope_scaling=dict(ROPE), vocab_size=30, eos_token_id=29,
        num_multi_token_pred=3, attention_bias=False, mlp_bias=False,
    )  # fmt: skip
    hf_cfg = transformers.LlamaConfig(
        vocab_size=30, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, rms_norm_eps=1e-5, rope_theta=500000.0, rope_scaling=dict(ROPE),
        attn_implementation="sdpa",
    )  # fmt: skip
    torch.manual_seed(0)
    hf = transformers.LlamaModel(hf_cfg).eval()
    ours = GazeDecoder(cfg).eval()
    missing, unexpected = ours.model.load_state_dict(hf.state_dict(), strict=False)
    assert not missing and not unexpected
    return ours, hf


def test_rope_frequencies_match_transformers():
    ours, hf = _tiny_decoder()
    assert torch.allclose(ours.model.inv_freq, hf.rotary_emb.inv_freq, rtol=1e-6, atol=0)
    assert torch.equal(rope_inv_freq(ours.cfg), ours.model.inv_freq)


@torch.no_grad()
def test_decoder_matches_transformers_llama_with_padding_and_chunks():
    ours, hf = _tiny_decoder()
    b, n = 2, 40
    x = torch.randn(b, n, 64)
    keep = torch.ones(b, n, dtype=torch.bool)
    keep[0, 10:13] = False  # padded tokens: masked as keys, do not advance positions
    keep[1, 25] = False
    pos = keep.long().cumsum(1) - 1
    ref = hf(inputs_embeds=x, attention_mask=keep.long(), position_ids=pos).last_hidden_state

    def run(chunks: list[int]) -> torch.Tensor:
        cache = KVCache(2, b, 2, 16, capacity=8, dtype=torch.float32, device="cpu")
        key_mask = torch.zeros(b, n, dtype=torch.bool)
        outs, start = [], 0
        for q in chunks:
            cache.ensure(start + q)
            key_mask[:, start : start + q] = keep[:, start : start + q]
            mask = _chunk_mask(key_mask, start, q)
            outs.append(
                ours.forward_chunk(x[:, start : start + q], pos[:, start : start + q], cache, start, mask)
            )
            start += q
        return torch.cat(outs, dim=1)

    for chunks in ([n], [17, 3, 20], [1] * 5 + [35]):
        got = run(chunks)
        assert torch.allclose(got[keep], ref[keep], atol=2e-5, rtol=1e-4), chunks


@torch.no_grad()
def test_causal_no_cache_path_matches_masked_path():
    ours, _ = _tiny_decoder()
    x = torch.randn(1, 24, 64)
    pos = torch.arange(24)[None]
    causal = ours.forward_chunk(x, pos)
    cache = KVCache(2, 1, 2, 16, 24, torch.float32, "cpu")
    masked = ours.forward_chunk(x, pos, cache, 0, _chunk_mask(torch.ones(1, 24, dtype=torch.bool), 0, 24))
    assert torch.allclose(causal, masked, atol=1e-5)


@pytest.fixture(scope="module")
def model(parity_dir):
    return AutoGaze.from_pretrained(parity_dir / "model")


def test_chunk_mask_is_padding_and_causal_mask():
    """The two-fill mask equals the plain definition: key attended and not in the query's future."""
    torch.manual_seed(2)
    for b, start, q in ((1, 0, 196), (2, 300, 10), (3, 1000, 205), (1, 7, 1)):
        key_mask = torch.rand(b, start + q + 5) > 0.2
        causal = torch.arange(start + q)[None, :] <= (start + torch.arange(q))[:, None]
        allowed = key_mask[:, None, None, : start + q] & causal
        want = torch.zeros(allowed.shape).masked_fill_(~allowed, float("-inf"))
        assert torch.equal(_chunk_mask(key_mask, start, q), want), (b, start, q)


@torch.no_grad()
def test_rope_roll_is_bit_identical_to_rotate_half(model):
    """Our rope (roll against a sign-folded sin) == the original's x*cos + rotate_half(x)*sin."""
    dec = model.gazing_model.gaze_decoder
    pos = torch.tensor([[0, 5, 17, 4000], [3, 3, 9, 250]])
    cos, sin = dec.rope(pos, torch.float32)
    freqs = pos[:, :, None].float() * rope_inv_freq(dec.cfg)[None, None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    ref_cos, ref_sin = emb.cos()[:, :, None], emb.sin()[:, :, None]
    x = torch.randn(2, 4, 12, dec.cfg.head_dim)
    half = dec.cfg.head_dim // 2
    want = x * ref_cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * ref_sin
    assert torch.equal(cos, ref_cos)
    assert torch.equal(x * cos + torch.roll(x, half, -1) * sin, want)


@torch.no_grad()
def test_last_rows_only_matches_full_pass(model):
    """``forward_chunk(last=EXACT_MIN_ROWS)`` (the greedy loop's final-layer shortcut) gives the
    full pass's last rows and the same cache, at the checkpoint's real shapes: plain causal
    first chunk, then masked chunks with padded keys, as the loop feeds them.

    The cache must be bit-identical (same ops on the same input). The rows are compared to 1e-5,
    not bitwise: they were bit-identical on the machine this was built on, but a BLAS may pick
    another kernel for a different row count on another CPU; gaze exactness itself is what the
    parity tests check."""
    dec = model.gazing_model.gaze_decoder
    c = dec.cfg
    torch.manual_seed(3)
    chunks, b = [196, 10, 10, 205, 10], 2
    n = sum(chunks)
    x = torch.randn(b, n, c.hidden_size)
    keep = torch.ones(b, n, dtype=torch.bool)
    keep[1, 200:203] = False
    pos = keep.long().cumsum(1) - 1
    caches = [KVCache(c.num_layers, b, c.num_kv_heads, c.head_dim, n, torch.float32, "cpu") for _ in "ab"]
    start = 0
    for q in chunks:
        key_mask = keep[:, : start + q].clone()
        mask = None if start == 0 else _chunk_mask(key_mask, start, q)
        args = (x[:, start : start + q], pos[:, start : start + q])
        full = dec.forward_chunk(*args, caches[0], start, mask)
        last = dec.forward_chunk(*args, caches[1], start, mask, last=EXACT_MIN_ROWS)
        assert last.shape[1] == EXACT_MIN_ROWS
        torch.testing.assert_close(last, full[:, -EXACT_MIN_ROWS:], rtol=0, atol=1e-5, msg=str((start, q)))
        start += q
        assert torch.equal(caches[0].k[:, :, :, :start], caches[1].k[:, :, :, :start])
        assert torch.equal(caches[0].v[:, :, :, :start], caches[1].v[:, :, :, :start])


@torch.no_grad()
def test_tail_causal_mask_is_bit_identical_to_dense_mask(model):
    """With no key masked, ``TailCausal`` (one buffer, query rows reversed) gives the dense
    ``_chunk_mask``'s outputs and cache bit for bit, at the checkpoint's shapes: 10-token steps,
    200-token prefills (several flash query blocks), batch 1 and 3, last rows only. Without its
    causal part it differs (the check can fail)."""
    dec = model.gazing_model.gaze_decoder
    c = dec.cfg
    torch.manual_seed(4)
    for b, chunks in ((1, [196, 10, 10, 205, 10, 204]), (3, [196, 10, 206, 10])):
        n = sum(chunks)
        x = torch.randn(b, n, c.hidden_size)
        pos = torch.arange(n)[None].expand(b, -1)
        caches = [KVCache(c.num_layers, b, c.num_kv_heads, c.head_dim, n, torch.float32, "cpu") for _ in "ab"]
        key_mask = torch.ones(b, n, dtype=torch.bool)
        start = 0
        for q in chunks:
            args = (x[:, start : start + q], pos[:, start : start + q])
            for last in (None, EXACT_MIN_ROWS):
                dense = dec.forward_chunk(*args, caches[0], start, _chunk_mask(key_mask, start, q), last=last)
                tail = dec.forward_chunk(*args, caches[1], start, TailCausal(start, q, torch.float32, "cpu"), last=last)
                assert torch.equal(dense, tail), (b, start, q, last)
            assert torch.equal(caches[0].k, caches[1].k) and torch.equal(caches[0].v, caches[1].v)
            if start:
                bad = TailCausal(start, q, torch.float32, "cpu")
                bad.reversed_rows = torch.zeros(start + 2 * q - 1).as_strided((1, 1, q, start + q), (0, 0, 1, 1))
                scratch = KVCache(c.num_layers, b, c.num_kv_heads, c.head_dim, n, torch.float32, "cpu")
                scratch.k.copy_(caches[1].k)
                scratch.v.copy_(caches[1].v)
                off = dec.forward_chunk(*args, scratch, start, bad)
                assert not torch.equal(off[:, : q - 1], dense[:, : q - 1])
            start += q


@torch.no_grad()
def test_conv_encoder_streaming_equals_whole_clip(model):
    torch.manual_seed(1)
    video = torch.randn(2, 5, 3, 224, 224)
    whole, _ = model.gazing_model.encode(video)
    a, past = model.gazing_model.encode(video[:, :2])
    b, past = model.gazing_model.encode(video[:, 2:3], past)
    c, _ = model.gazing_model.encode(video[:, 3:], past)
    assert whole.shape == (2, 5, 196, 192)
    assert torch.allclose(torch.cat([a, b, c], dim=1), whole, rtol=1e-5, atol=1e-4)


def test_loaded_checkpoint_has_every_parameter(model, parity_dir):
    state = load_file(str(parity_dir / "model" / "model.safetensors"))
    ours = model.state_dict()
    assert set(ours) == set(state) and len(state) == 49
    assert all(torch.equal(ours[k], v) for k, v in state.items())
    assert sum(p.numel() for p in model.parameters()) == 3_258_240


# ---------------------------------------------------------------- refusals


def _checkpoint_copy(parity_dir, tmp_path, edit_state=None, edit_config=None):
    dst = tmp_path / "ckpt"
    dst.mkdir()
    shutil.copy(parity_dir / "model" / "preprocessor_config.json", dst)
    config = json.loads((parity_dir / "model" / "config.json").read_text())
    if edit_config:
        edit_config(config)
    (dst / "config.json").write_text(json.dumps(config))
    if edit_state:
        state = load_file(str(parity_dir / "model" / "model.safetensors"))
        edit_state(state)
        save_file(state, str(dst / "model.safetensors"))
    else:
        (dst / "model.safetensors").symlink_to(parity_dir / "model" / "model.safetensors")
    return dst


def test_missing_and_unexpected_keys_are_named(parity_dir, tmp_path):
    def edit(state):
        del state["gazing_model.gaze_decoder.task_loss_prediction_head.weight"]
        state["gazing_model.extra.weight"] = torch.zeros(2)

    ckpt = _checkpoint_copy(parity_dir, tmp_path, edit_state=edit)
    with pytest.raises(CheckpointError) as info:
        AutoGaze.from_pretrained(ckpt)
    msg = str(info.value)
    assert "missing keys (1): gazing_model.gaze_decoder.task_loss_prediction_head.weight" in msg
    assert "unexpected keys (1): gazing_model.extra.weight" in msg
    assert "model.safetensors" in msg


def test_shape_mismatch_is_named(parity_dir, tmp_path):
    def edit(state):
        state["gazing_model.connector.pos_embed"] = torch.zeros(100, 192)

    ckpt = _checkpoint_copy(parity_dir, tmp_path, edit_state=edit)
    with pytest.raises(CheckpointError, match=r"gazing_model.connector.pos_embed: checkpoint \(100, 192\)"):
        AutoGaze.from_pretrained(ckpt)


def test_wrong_config_names_keys(parity_dir, tmp_path):
    def edit(cfg):
        del cfg["gaze_model_config"]["gaze_decoder_config"]["hidden_size"]
        cfg["gaze_model_config"]["gaze_decoder_config"]["num_hidden_layers"] = "four"

    ckpt = _checkpoint_copy(parity_dir, tmp_path, edit_config=edit)
    with pytest.raises(ConfigError) as info:
        AutoGaze.from_pretrained(ckpt)
    msg = str(info.value)
    assert "config.json" in msg
    assert "gaze_model_config.gaze_decoder_config.hidden_size" in msg
    assert "gaze_model_config.gaze_decoder_config.num_hidden_layers='four'" in msg


def test_inconsistent_config_is_refused(parity_dir):
    config = json.loads((parity_dir / "model" / "config.json").read_text())
    config["gaze_model_config"]["gaze_decoder_config"]["vocab_size"] = 300
    config["gaze_model_config"]["gaze_decoder_config"]["rope_scaling"]["rope_type"] = "yarn"
    config["scales"] = "32+64+112"
    with pytest.raises(ConfigError) as info:
        AutoGazeConfig.from_dict(config, source="edited.json")
    msg = str(info.value)
    assert "vocab_size=300" in msg and "rope_type='yarn'" in msg and "scales='32+64+112'" in msg


def test_published_config_values(parity_dir):
    cfg = AutoGazeConfig.from_file(parity_dir / "model" / "config.json")
    assert cfg.scales == (32, 64, 112, 224)
    assert cfg.tokens_per_scale == [4, 16, 49, 196] and cfg.grid_per_scale == [2, 4, 7, 14]
    assert cfg.decoder.num_multi_token_pred == 10 and cfg.decoder.eos_token_id == 265
    assert cfg.default_gazing_ratio == 0.5 and cfg.default_task_loss_requirement == 0.7


def test_missing_directory_and_uncached_hub_id(tmp_path, monkeypatch):
    from huggingface_hub import constants

    with pytest.raises(CheckpointError, match="no such directory"):
        resolve_checkpoint(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="lacks config.json, model.safetensors"):
        resolve_checkpoint(tmp_path / "empty")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(CheckpointError, match="not in the Hugging Face cache.*nothing is downloaded"):
        resolve_checkpoint("nvidia/AutoGaze")


def test_hub_id_resolves_from_cache(parity_dir, tmp_path, monkeypatch):
    from huggingface_hub import constants

    repo = tmp_path / "hub" / "models--nvidia--AutoGaze"
    snap = repo / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    for name in ("config.json", "model.safetensors", "preprocessor_config.json"):
        (snap / name).symlink_to(parity_dir / "model" / name)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert resolve_checkpoint("nvidia/AutoGaze") == snap
    assert AutoGaze.from_pretrained("nvidia/AutoGaze").config.scales == (32, 64, 112, 224)


@pytest.mark.parametrize(
    ("video", "kwargs", "match"),
    [
        (torch.zeros(2, 3, 224, 224), {}, r"shape \(B, T, 3, H, W\).*got \(2, 3, 224, 224\)"),
        (torch.zeros(1, 2, 4, 224, 224), {}, r"got \(1, 2, 4, 224, 224\)"),
        (torch.zeros(1, 2, 3, 224, 224, dtype=torch.uint8), {}, "float tensor.*torch.uint8"),
        (torch.zeros(1, 0, 3, 224, 224), {}, "empty video"),
        ("not a tensor", {}, "torch.Tensor"),
        (torch.zeros(1, 2, 3, 224, 224), {"gazing_ratio": 1.5}, r"gazing_ratio must be a number in \[0, 1\]"),
        (
            torch.zeros(1, 2, 3, 224, 224),
            {"task_loss_requirement": "low"},
            "task_loss_requirement must be a number",
        ),
        (
            torch.zeros(1, 2, 3, 300, 300),
            {"gazing_ratio": 0.1, "target_scales": [64, 128, 224, 448], "target_patch_size": 16},
            "must be 448x448 px, got 300x300",
        ),
    ],
)
def test_bad_inputs_get_clear_errors(model, video, kwargs, match):
    with pytest.raises(ValueError, match=match):
        model.gaze(video, **kwargs)


def test_bfloat16_path_runs_and_stays_consistent(parity_dir):
    """bf16 as the original's mixed precision: float32 weights, autocast, bf16 KV cache, float32 heads.
    Not bit-identical to the float32 original, but coherent."""
    model = AutoGaze.from_pretrained(parity_dir / "model", dtype=torch.bfloat16)
    assert model.dtype == torch.float32 and model.compute_dtype == torch.bfloat16
    assert (
        model.gazing_model.gaze_decoder.rope(torch.arange(3)[None], torch.bfloat16)[0].dtype == torch.bfloat16
    )
    stream = model.stream(1, gazing_ratio=0.1, frames_hint=2)
    out = stream.gaze(torch.randn(1, 2, 3, 224, 224))
    assert stream.state.cache.k.dtype == torch.bfloat16
    assert out.num_gazing_each_frame.tolist() == [26, 26]
    assert int(sum(m.sum() for m in out.gazing_mask)) == 52


def test_heads_stay_float32_under_autocast(parity_dir):
    """Under bf16 autocast the heads compute in float32: logits equal a float32 pass of the same
    hidden state, and differ from a bf16 head (so the check can fail)."""
    dec = AutoGaze.from_pretrained(parity_dir / "model").gazing_model.gaze_decoder
    h = torch.randn(3, 1, dec.cfg.hidden_size)
    want, want_tl = dec.heads(h)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, got_tl = dec.heads(h.to(torch.bfloat16).float())
        bf16 = dec.lm_head(h)[:, -1].float().view(3, dec.cfg.num_multi_token_pred, -1)
    assert got.dtype == torch.float32
    h32 = h.to(torch.bfloat16).float()
    assert torch.equal(got, dec.heads(h32)[0]) and torch.equal(got_tl, dec.heads(h32)[1])
    assert not torch.equal(bf16, want)
