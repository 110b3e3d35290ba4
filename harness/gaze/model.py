"""The AutoGaze network: conv video encoder, connector, LLaMA-style multi-token gaze decoder.

Module and parameter names mirror the published checkpoint (``gazing_model.vision_model...``,
``gazing_model.gaze_decoder.model.layers.N.self_attn.q_proj.weight`` ...) so ``model.safetensors``
loads with strict key checking. The arithmetic follows the original op for op (float32 RMSNorm,
llama3 rope frequencies, rotate-half rope, sdpa attention) because gazing is a chain of argmaxes:
a float difference that flips one choice changes every later one.

The decoder does not own a cache: ``GazeDecoder.forward_chunk`` writes keys/values into a
preallocated ``KVCache`` at a given offset and attends over its filled prefix, which is what lets
the greedy loop (``harness.gaze.generate``) avoid the original's per-step cache deep copies.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from harness.gaze.config import AutoGazeConfig, DecoderConfig, VisionConfig

# ---------------------------------------------------------------- vision encoder


class CausalConvBlock(nn.Module):
    """3D conv over (time, h, w), causal in time: zero-padded (or fed from a cache) on the past side."""

    def __init__(self, dim: int, temporal_kernel: int, spatial_kernel: int):
        super().__init__()
        self.temporal_kernel = temporal_kernel
        pad = (spatial_kernel - 1) // 2
        self.conv3d = nn.Conv3d(
            dim, dim, (temporal_kernel, spatial_kernel, spatial_kernel), padding=(0, pad, pad)
        )

    def forward(self, x: torch.Tensor, past: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B, C, T, H, W). ``past`` holds the previous ``temporal_kernel - 1`` input frames (streaming)."""
        keep = self.temporal_kernel - 1
        if past is None:
            x = F.pad(x, (0, 0, 0, 0, keep, 0))
        else:
            x = torch.cat([past, x], dim=2)
        new_past = x[:, :, x.shape[2] - keep :]
        return F.relu(self.conv3d(x)), new_past


class VideoConvEncoder(nn.Module):
    """Patchify conv (16x16, stride 16) -> LayerNorm -> causal conv blocks -> 1x1x1 conv."""

    def __init__(self, cfg: VisionConfig):
        super().__init__()
        k, tp = cfg.kernel_size, cfg.temporal_patch_size
        self.temporal_patch_size = tp
        self.temporal_conv = nn.Conv3d(3, cfg.hidden_dim, (tp, k, k), stride=(tp, k, k))
        self.norm = nn.LayerNorm(cfg.hidden_dim)
        self.blocks = nn.ModuleList(
            CausalConvBlock(cfg.hidden_dim, cfg.trunk_temporal_kernel_size, cfg.trunk_spatial_kernel_size)
            for _ in range(cfg.depth)
        )
        self.out_proj = nn.Conv3d(cfg.hidden_dim, cfg.out_dim, kernel_size=1)

    def forward(
        self, video: torch.Tensor, past: list[torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """video (B, T, 3, H, W) -> tokens (B, T', h*w, C) and the new per-block conv caches."""
        x = self.temporal_conv(video.permute(0, 2, 1, 3, 4))  # (B, C, T', h, w)
        # LayerNorm over channels; laid back out as (B, T', C, h, w) like the original so the
        # following convs see the same memory layout (and pick the same kernels).
        x = self.norm(x.permute(0, 2, 3, 4, 1)).permute(0, 1, 4, 2, 3).contiguous().permute(0, 2, 1, 3, 4)
        new_past = []
        for i, block in enumerate(self.blocks):
            x, p = block(x, None if past is None else past[i])
            new_past.append(p)
        x = self.out_proj(x)  # (B, C, T', h, w)
        return x.flatten(3).permute(0, 2, 3, 1), new_past


class Connector(nn.Module):
    """Adds a learned position embedding to each frame's vision tokens."""

    def __init__(self, num_tokens: int, hidden_dim: int):
        super().__init__()
        self.pos_embed = nn.Parameter(torch.zeros(num_tokens, hidden_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pos_embed


# ---------------------------------------------------------------- decoder


def rope_inv_freq(cfg: DecoderConfig) -> torch.Tensor:
    """Rotary inverse frequencies, with llama3 scaling when configured (float32, as transformers 4.51)."""
    dim = cfg.head_dim
    inv = 1.0 / (cfg.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
    rs = cfg.rope_scaling
    if rs is None or rs.get("rope_type", rs.get("type")) != "llama3":
        return inv
    factor, low, high = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
    old_len = rs["original_max_position_embeddings"]
    low_wavelen, high_wavelen = old_len / low, old_len / high
    wavelen = 2 * math.pi / inv
    scaled = torch.where(wavelen > low_wavelen, inv / factor, inv)
    smooth = (old_len / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < high_wavelen) * ~(wavelen > low_wavelen)
    return torch.where(medium, smoothed, scaled)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        h = x.to(torch.float32)
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(dtype)


def _fused_linear(owner: nn.Module, parts: list[nn.Linear]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Concatenated weight (and bias) of ``parts``, cached on ``owner`` until any of them changes.

    One GEMM instead of two or three per layer; on CPU BLAS every output element is the same
    dot product either way (checked bit-exact by the parity tests), it just costs fewer calls.
    """
    key = tuple((p.weight.data_ptr(), p.weight._version, p.weight.dtype) for p in parts)
    cached = getattr(owner, "_fused_cache", None)
    if cached is None or cached[0] != key:
        weight = torch.cat([p.weight.detach() for p in parts], dim=0)
        bias = None
        if parts[0].bias is not None:
            bias = torch.cat([p.bias.detach() for p in parts], dim=0)
        cached = (key, weight, bias)
        owner._fused_cache = cached
    return cached[1], cached[2]


class KVCache:
    """Preallocated keys/values for every layer: (layers, B, kv_heads, capacity, head_dim).

    Grows by doubling when a stream outlives its capacity (one copy per doubling, never per step).
    """

    def __init__(self, layers: int, batch: int, heads: int, head_dim: int, capacity: int, dtype, device):
        shape = (layers, batch, heads, capacity, head_dim)
        # Zeros, not empty: the static-shape path attends over unwritten entries (masked), and a
        # masked NaN/inf from uninitialised memory would still poison the sums (0 * NaN).
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)

    @property
    def capacity(self) -> int:
        return self.k.shape[3]

    def ensure(self, needed: int) -> None:
        if needed <= self.capacity:
            return
        cap = max(needed, 2 * self.capacity)
        shape = (*self.k.shape[:3], cap, self.k.shape[4])
        k = torch.zeros(shape, dtype=self.k.dtype, device=self.k.device)
        v = torch.zeros_like(k)
        k[:, :, :, : self.capacity] = self.k
        v[:, :, :, : self.capacity] = self.v
        self.k, self.v = k, v


# Rows the final decoder layer computes when the caller reads only the last hidden state. Not 1:
# on CPU (MKL) a 1- or 2-row GEMM / attention block takes a different kernel whose sums round
# differently from the same row inside a bigger block; from 4 rows on the rows match the full
# pass bit for bit (checked on every GEMM shape of the decoder). 8 leaves margin.
EXACT_MIN_ROWS = 8


def _causal_rows(start: int, q: int, keep: int, dtype: torch.dtype, device) -> torch.Tensor:
    """Additive mask (1, 1, keep, start+q) of the last ``keep`` queries of a causal chunk at ``start``."""
    end = start + q
    qpos = start + q - keep + torch.arange(keep, device=device)
    future = torch.arange(end, device=device)[None, :] > qpos[:, None]
    return torch.zeros(1, 1, keep, end, dtype=dtype, device=device).masked_fill_(future, float("-inf"))


class TailCausal:
    """The mask of a chunk at ``start`` whose ``q`` queries attend to every earlier key and causally
    to the chunk's own keys (a batch without padded gazes). Same attention as ``_chunk_mask``'s
    (B, 1, q, start+q) tensor, but held in one ``start+2q-1``-long buffer instead of q rows:

    With the query rows in reverse order (row r' = q-1-r), key c is in row r's future iff
    ``c + r' >= start + q``: a function of ``c + r'``, so every row is a window of the same buffer
    (zeros, then -inf from ``start+q`` on) and the mask is a (1, 1, q, start+q) view with strides
    (0, 0, 1, 1). sdpa's CPU flash kernel reads rows through their stride, so it reads kilobytes
    instead of ``q * (start+q)`` floats per head (megabytes for a 200-token prefill late in a
    clip). ``Attention`` reverses the queries, attends, and reverses the output back; rows of the
    flash kernel are independent, so the outputs are bit-identical to the dense mask's
    (``tests/test_gaze_model.py``)."""

    def __init__(self, start: int, q: int, dtype: torch.dtype, device: torch.device):
        end = start + q
        buf = torch.zeros(end + q - 1, dtype=dtype, device=device)
        buf[end:] = float("-inf")
        self.reversed_rows = buf.as_strided((1, 1, q, end), (0, 0, 1, 1))


class Attention(nn.Module):
    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
        self.q_proj = nn.Linear(cfg.hidden_size, cfg.num_heads * cfg.head_dim, bias=cfg.attention_bias)
        self.k_proj = nn.Linear(cfg.hidden_size, cfg.num_kv_heads * cfg.head_dim, bias=cfg.attention_bias)
        self.v_proj = nn.Linear(cfg.hidden_size, cfg.num_kv_heads * cfg.head_dim, bias=cfg.attention_bias)
        self.o_proj = nn.Linear(cfg.num_heads * cfg.head_dim, cfg.hidden_size, bias=cfg.attention_bias)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        cache_k: torch.Tensor | None,
        cache_v: torch.Tensor | None,
        start: int,
        mask: torch.Tensor | TailCausal | None,
        keep: int | None = None,
        slots: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x (B, q, hidden). With a cache, keys/values land at [start, start+q) and attention covers
        [0, start+q) under ``mask`` (additive (B, 1, q, start+q), or a ``TailCausal``);
        ``mask=None`` means plain causal.

        ``keep``: keys/values for all q tokens, but queries (and the output) only for the last
        ``keep`` of them (see ``GazeDecoder.forward_chunk``).

        ``slots`` (q,) long on the device: static-shape mode. Keys/values are written at those
        cache entries (``index_copy_``, no Python offsets) and attention covers the whole cache
        capacity under ``mask`` (B, 1, q, capacity), so every decoding step has the same shapes
        (CUDA graphs, ``torch.compile``). Same math; not the same float sums as the sliced path."""
        b, q, _ = x.shape
        weight, bias = _fused_linear(self, [self.q_proj, self.k_proj, self.v_proj])
        h, kv, d = self.heads, self.kv_heads, self.head_dim
        qkv = F.linear(x, weight, bias).view(b, q, h + 2 * kv, d)
        # Rope on queries and keys in one go, rotate-half as a roll against a sign-folded sin
        # (``rope``): -a * s == a * -s exactly, so same bits as the original's rotate_half.
        qk = qkv[:, :, : h + kv]
        qk = (qk * cos + torch.roll(qk, d // 2, -1) * sin).transpose(1, 2)
        qs, ks = qk[:, :h], qk[:, h:]
        vs = qkv[:, :, h + kv :].transpose(1, 2)
        rows = q
        tail = isinstance(mask, TailCausal)
        if tail:  # queries in reverse order (see TailCausal); the kept last rows are then the first
            qs, mask = qs.flip(2), mask.reversed_rows
            if keep is not None and keep < q:
                rows, qs, mask = keep, qs[:, :, :keep], mask[:, :, :keep]
        elif keep is not None and keep < q:
            rows, qs = keep, qs[:, :, -keep:]
            if mask is None:  # plain causal over [start, start+q): spell out the kept rows' part
                mask = _causal_rows(start, q, keep, x.dtype, x.device)
            else:
                mask = mask[:, :, -keep:]
        if cache_k is not None and slots is not None:  # static shapes: write in place, attend over the capacity
            cache_k.index_copy_(2, slots, ks.to(cache_k.dtype))
            cache_v.index_copy_(2, slots, vs.to(cache_v.dtype))
            ks, vs = cache_k, cache_v
        elif cache_k is not None:
            end = start + q
            cache_k[:, :, start:end] = ks
            cache_v[:, :, start:end] = vs
            ks, vs = cache_k[:, :, :end], cache_v[:, :, :end]
        if qs.dtype != ks.dtype:  # fp32 rope under autocast, low-precision cache: sdpa wants one dtype
            qs = qs.to(ks.dtype)
        if self.kv_heads != self.heads:
            rep = self.heads // self.kv_heads
            ks, vs = ks.repeat_interleave(rep, dim=1), vs.repeat_interleave(rep, dim=1)
        out = F.scaled_dot_product_attention(
            qs, ks, vs, attn_mask=mask, is_causal=mask is None and q > 1, scale=self.head_dim**-0.5
        )
        if tail:
            out = out.flip(2)
        return self.o_proj(out.transpose(1, 2).reshape(b, rows, -1).to(x.dtype))


class MLP(nn.Module):
    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=cfg.mlp_bias)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=cfg.mlp_bias)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=cfg.mlp_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = _fused_linear(self, [self.gate_proj, self.up_proj])
        gate, up = F.linear(x, weight, bias).chunk(2, dim=-1)
        return self.down_proj(F.silu(gate) * up)


class DecoderLayer(nn.Module):
    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        self.self_attn = Attention(cfg)
        self.mlp = MLP(cfg)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(self, x, cos, sin, cache_k, cache_v, start, mask, keep: int | None = None, slots=None):
        """``keep``: compute the output for the last ``keep`` tokens only (their keys/values are all cached)."""
        a = self.self_attn(self.input_layernorm(x), cos, sin, cache_k, cache_v, start, mask, keep, slots)
        if keep is not None and keep < x.shape[1]:
            x = x[:, -keep:]
        x = x + a
        return x + self.mlp(self.post_attention_layernorm(x))


class DecoderBody(nn.Module):
    """Token embedding, decoder layers, final norm (the ``model.`` prefix of the checkpoint)."""

    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.num_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.register_buffer("inv_freq", rope_inv_freq(cfg), persistent=False)


class GazeDecoder(nn.Module):
    """LLaMA body + multi-token gaze head (K x vocab logits) + task-loss head (K predictions)."""

    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        self.cfg = cfg
        self.model = DecoderBody(cfg)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size * cfg.num_multi_token_pred, bias=False)
        self.task_loss_prediction_head = nn.Linear(cfg.hidden_size, cfg.num_multi_token_pred, bias=False)
        self._inv_freq_f32: dict[torch.device, torch.Tensor] = {}

    def rope(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sign-folded sin (B, q, 1, head_dim) for integer positions (B, q); float32 math as
        the original. The sin's first half is negated so that ``Attention`` can rotate with a roll
        (x * cos + roll(x) * sin == the original's x * cos + rotate_half(x) * sin, bit for bit).

        Frequencies come from a float32 copy per device, so ``model.to(torch.bfloat16)`` (which
        also casts buffers) cannot degrade them."""
        inv = self._inv_freq_f32.get(positions.device)
        if inv is None:
            inv = rope_inv_freq(self.cfg).to(positions.device)
            self._inv_freq_f32[positions.device] = inv
        freqs = positions[:, :, None].float() * inv[None, None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        sin = emb.sin().to(dtype)
        half = sin.shape[-1] // 2
        sin = torch.cat((-sin[..., :half], sin[..., half:]), dim=-1)
        return emb.cos().to(dtype)[:, :, None], sin[:, :, None]

    def forward_chunk(
        self,
        x: torch.Tensor,
        positions: torch.Tensor,
        cache: KVCache | None = None,
        start: int = 0,
        mask: torch.Tensor | TailCausal | None = None,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
        last: int | None = None,
        slots: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Run embeddings ``x`` (B, q, hidden) at rope ``positions`` (B, q); return final-norm hidden states.

        ``rope``: precomputed ``self.rope(positions, x.dtype)`` (the greedy loop reuses it for every
        step of a frame, whose positions do not change).

        ``last``: return only the last ``last`` tokens' states (B, min(last, q), hidden). The final
        layer's keys/values come from its input, so every token is still cached, but its queries,
        attention, o_proj and MLP run for those rows only: the greedy loop reads one row, and a
        196-token prefill then skips most of a layer. Rows come out bit-identical to the full pass
        as long as ``last`` >= ``EXACT_MIN_ROWS`` (CPU BLAS takes another path for 1-2-row GEMMs).

        ``slots``: static-shape mode (see ``Attention.forward``)."""
        cos, sin = rope if rope is not None else self.rope(positions, x.dtype)
        n = len(self.model.layers)
        for i, layer in enumerate(self.model.layers):
            ck = cache.k[i] if cache is not None else None
            cv = cache.v[i] if cache is not None else None
            x = layer(x, cos, sin, ck, cv, start, mask, last if i == n - 1 else None, slots)
        return self.model.norm(x)

    def heads(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """h (B, 1, hidden) at the last position -> logits (B, K, vocab) float32, task loss (B, K) float32."""
        k, v = self.cfg.num_multi_token_pred, self.cfg.vocab_size
        if torch.is_autocast_enabled(h.device.type):
            # Mixed precision: the heads run in float32 (weights are float32 under autocast), so the
            # argmax sees float32 scores, not bf16 ones with their many ties.
            with torch.autocast(h.device.type, enabled=False):
                return self._heads(h.float(), k, v)
        return self._heads(h, k, v)

    def _heads(self, h: torch.Tensor, k: int, v: int) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.lm_head(h)[:, -1].float().view(h.shape[0], k, v)
        tl = self.task_loss_prediction_head(h)[:, -1].float()
        return logits, tl


class GazingModel(nn.Module):
    """The ``gazing_model`` submodule of the checkpoint."""

    def __init__(self, cfg: AutoGazeConfig):
        super().__init__()
        self.vision_model = VideoConvEncoder(cfg.vision)
        self.connector = Connector(cfg.num_connector_tokens, cfg.vision.out_dim)
        self.gaze_decoder = GazeDecoder(cfg.decoder)

    def encode(
        self, video: torch.Tensor, conv_past: list[torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Preprocessed frames (B, T, 3, S, S) at the input size -> vision tokens (B, T', N, C) + conv caches."""
        feats, conv_past = self.vision_model(video, conv_past)
        return self.connector(feats), conv_past
