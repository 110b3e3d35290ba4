"""``VLLMBackend``: the adapter contract (frames + Selection + prompt -> Generation) served by vLLM.

Routes per family (docs/vllm.md):

- ``qwen2_5_vl``, ``qwen3_vl`` (M-RoPE): raw frames + the keep mask go to vLLM; our registered
  subclasses (``qwen.py``) run the stock vLLM vision tower, keep the selected rows and give them
  their unpruned positions. Same model input as the transformers adapter (``post_vit``).
- ``llava_onevision``, ``internvl3`` (1D RoPE): the transformers adapter computes the pruned
  visual features (its own ``preprocess``/``encode_video``/``prune``); we stitch them into the
  text embeddings and send ``prompt_embeds`` whose placeholder ids carry the unpruned positions,
  which our subclasses (``one_d.py``) apply: the adapter's exact model input.

The transformers helper for the M-RoPE route is built on the ``meta`` device (no weights): it is
used only for the processor-derived geometry and the chat template, so the HF model never
occupies memory next to vLLM. For the 1D route it holds the real vision tower and embedding
table; its LLM decoder layers are released (vLLM runs the LLM).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from harness.backends.vllm.requests import (
    TEXT_POSITIONS,
    TEXT_POSITIONS_ATTR,
    embeds_request,
    mrope_overrides,
    mrope_request,
    stitch_prompt_embeds,
)
from harness.models.base import Generation, PruneStage, TokenCounts
from harness.models.registry import all_specs, get_adapter_class, get_spec
from harness.models.request import BatchItem
from harness.pruning.selection import Selection, TokenGeometry


def routes() -> dict[str, tuple[str, str]]:
    """family -> (route, vLLM architecture override), from each family spec's ``vllm``.

    Families whose spec says ``vllm=None`` are not served by vLLM (docs/vllm.md).
    """
    return {family: (s.vllm.route, s.vllm.architecture) for family, s in all_specs().items() if s.vllm}


def __getattr__(name: str) -> object:
    """``ROUTES``: ``routes()`` as a read-only view computed on access (edit the family specs)."""
    if name == "ROUTES":
        return routes()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass
class _Prepared:
    request: dict[str, Any]
    visual_before: int
    visual_after: int
    geometry: TokenGeometry
    vision_s: float = 0.0
    # a feature-stage method's facts (``stages.reduction_record``) and its keep over the grid: the
    # runner scores evidence on that keep (``Generation.kept_grid``), as on the transformers backend
    reduction: dict[str, Any] | None = None
    kept_grid: torch.Tensor | None = None


def _meta_adapter(family: str, local_dir: str) -> Any:
    """The family's transformers adapter around a weightless (meta-device) model."""
    from transformers import AutoConfig, AutoProcessor

    cls = get_adapter_class(family)
    config = AutoConfig.from_pretrained(local_dir, local_files_only=True)
    with torch.device("meta"):
        model = cls.model_class(config)
    processor = AutoProcessor.from_pretrained(local_dir, local_files_only=True)
    return cls(model, processor, source=local_dir)


def _release_llm_layers(adapter: Any) -> None:
    """Free the HF LLM decoder layers: only the vision path and the embedding table are used."""
    lm = getattr(adapter.model.model, "language_model", None)
    if lm is not None and hasattr(lm, "layers"):
        lm.layers = torch.nn.ModuleList()


class VLLMBackend:
    """frames + Selection + prompt -> Generation, through a vLLM engine (see the module docstring)."""

    name = "vllm"

    def __init__(self, family: str, llm: Any, adapter: Any, source: str = ""):
        if family not in routes():
            raise KeyError(
                f"no vLLM route for model family {family!r}; valid choices: {', '.join(sorted(routes()))}"
            )
        self.family = family
        self.route = routes()[family][0]
        # visual tokens the adapter appends after the grid (LLaVA-OV's trailing newline)
        self.newline_tokens = get_spec(family).newline_tokens
        self.llm = llm
        self.adapter = adapter
        self.source = source
        self.text_positions: str | None = None  # M-RoPE text rule (from_pretrained sets it)

    # -- loading -------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls,
        family: str,
        path_or_id: str,
        *,
        dtype: str = "auto",
        device: str | None = None,
        max_model_len: int = 32768,
        seed: int = 0,
        text_positions: str = "reference",
        **engine_kwargs: Any,
    ) -> VLLMBackend:
        """Start a vLLM engine on a local HF-layout dir or an HF cache id (never downloads).

        ``device``: where the 1D route's transformers vision tower runs (default: cuda if
        available). ``engine_kwargs`` go to ``vllm.LLM`` (``gpu_memory_utilization``,
        ``enforce_eager``, ``max_num_seqs``, ``tensor_parallel_size``...). ``text_positions``: the
        M-RoPE text rule after a video (``model.pipeline.text_positions``; M-RoPE families only).
        """
        if text_positions not in TEXT_POSITIONS:
            raise ValueError(f"text_positions {text_positions!r}; valid choices: {', '.join(TEXT_POSITIONS)}")
        if family not in routes():
            raise KeyError(
                f"no vLLM route for model family {family!r}; valid choices: {', '.join(sorted(routes()))}"
            )
        from vllm import LLM

        from harness.backends.vllm.plugin import entry_point_installed, register
        from harness.models.loading import resolve_model_dir

        register()
        local = str(resolve_model_dir(path_or_id))
        route, architecture = routes()[family]
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        kwargs: dict[str, Any] = {
            "model": local,
            "dtype": dtype,
            "max_model_len": max_model_len,
            "seed": seed,
            "hf_overrides": {"architectures": [architecture]},
        }
        if not entry_point_installed():
            # A spawned engine-core process would not know our architectures (they are
            # registered in THIS process only): keep the engine in-process.
            os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        if route == "mrope_keep_mask":
            adapter = _meta_adapter(family, local)
            kwargs["limit_mm_per_prompt"] = {"video": 1, "image": 0}
            # The frames given are the frames to use: never resample (Qwen3-VL's default is 2 fps).
            kwargs["mm_processor_kwargs"] = {"do_sample_frames": False}
            kwargs["hf_overrides"][TEXT_POSITIONS_ATTR] = text_positions
        else:
            adapter = get_adapter_class(family).from_pretrained(local, device=device, dtype=dtype)
            _release_llm_layers(adapter)
            text = adapter.model.config.get_text_config()
            head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
            rope = mrope_overrides(
                getattr(text, "rope_parameters", None), head_dim, getattr(text, "rope_theta", None)
            )
            kwargs["hf_overrides"]["text_config"] = {"rope_parameters": rope}
            kwargs["enable_prompt_embeds"] = True
            kwargs["limit_mm_per_prompt"] = {"video": 0, "image": 0}
        kwargs.update(engine_kwargs)
        backend = cls(family, LLM(**kwargs), adapter, source=str(path_or_id))
        backend.text_positions = text_positions if route == "mrope_keep_mask" else None
        return backend

    # -- geometry ------------------------------------------------------------------------------

    def token_geometry(self, num_frames: int, height: int, width: int) -> TokenGeometry:
        """The transformers adapter's geometry: selections are interchangeable between backends."""
        return self.adapter.token_geometry(num_frames, height, width)

    # -- requests ------------------------------------------------------------------------------

    def _prepare_mrope(self, item: BatchItem) -> _Prepared:
        from harness.models.frames import check_frames

        frames = item.frames
        check_frames(frames)
        t, h, w = frames.shape[:3]
        native = self.token_geometry(t, h, w)
        geometry, resized = native, False
        if item.selection is not None:
            # The transformers adapter's own checks and resize (its name is this family's).
            frames, geometry, resized = self.adapter.fit_to_selection(frames, native, item.selection)
            if item.selection.num_kept == 0:
                raise ValueError(
                    f"{self.family}: the selection keeps no visual token (at least one is needed)"
                )
        request = mrope_request(
            self.adapter.chat_text(item.prompt), frames, item.fps, item.selection, resized=resized
        )
        kept = geometry.total_tokens if item.selection is None else item.selection.num_kept
        return _Prepared(request, native.total_tokens, kept, geometry)

    @torch.inference_mode()
    def _prepare_embeds(self, item: BatchItem) -> _Prepared:
        a = self.adapter
        geometry = a.model_geometry(item.frames, item.selection)
        selection = item.selection if item.selection is not None else Selection.keep_all(geometry)
        inputs = a.preprocess(item.frames, item.prompt, geometry)
        start = time.perf_counter()
        signals = None
        if selection.reducer is not None and selection.reducer.needs:  # e.g. VisionZip: the tower's attention
            features, signals = a.encode_video_signals(inputs[a.pixel_key])
        else:
            features = a.encode_video(inputs[a.pixel_key])
        vision_s = time.perf_counter() - start
        pruned = a.prune(inputs, features, selection, **({} if signals is None else {"signals": signals}))
        encoded = pruned.model_kwargs["mm_encoder_outputs"][a.modality]
        kept = encoded.pooler_output.reshape(-1, features.shape[-1])
        ids = pruned.model_kwargs["input_ids"][0]
        embeds = stitch_prompt_embeds(ids, a.placeholder_id, a.model.get_input_embeddings()(ids), kept)
        positions = pruned.model_kwargs["position_ids"][0].tolist()
        vocab = a.model.config.get_text_config().vocab_size
        native = a.token_geometry(len(item.frames), *item.frames.shape[1:3])
        return _Prepared(
            embeds_request(embeds.detach().to("cpu"), positions, vocab),
            native.total_tokens + self.newline_tokens,
            pruned.visual_after,
            geometry,
            vision_s,
            reduction=getattr(pruned, "reduction", None),
            kept_grid=getattr(pruned, "kept_grid", None),
        )

    def prepare(self, item: BatchItem) -> _Prepared:
        sel = item.selection
        # in-LLM pruning (FastV) needs the transformers decoding loop; the keep-mask route never
        # sees the features a feature-stage method (DyCoke, VidCom2) reads: refuse, never ignore
        if sel is not None and (sel.llm is not None or (sel.reducer is not None and self.route == "mrope_keep_mask")):
            raise ValueError(
                f"the vLLM backend cannot run the '{sel.pruner}' pruner on {self.family} (it acts "
                f"{'inside the LLM' if sel.llm is not None else 'on the projector features'}); use backend: transformers"
            )
        return self._prepare_mrope(item) if self.route == "mrope_keep_mask" else self._prepare_embeds(item)

    # -- the contract --------------------------------------------------------------------------

    def generate(
        self,
        frames: np.ndarray,
        selection: Selection | None,
        prompt: str,
        *,
        fps: float,
        max_new_tokens: int = 16,
        prune_stage: PruneStage = "post_vit",
    ) -> Generation:
        """Greedy answer to ``prompt`` about ``frames`` seeing only ``selection``'s visual tokens."""
        return self.generate_batch(
            [BatchItem(frames, selection, prompt, fps)],
            max_new_tokens=max_new_tokens,
            prune_stage=prune_stage,
        )[0]

    def generate_batch(
        self,
        items: Sequence[BatchItem],
        *,
        max_new_tokens: int = 16,
        prune_stage: PruneStage = "post_vit",
        logprobs: bool = True,
    ) -> list[Generation]:
        """Greedy answers for many samples in one vLLM call (continuous batching: the throughput path).

        ``extra["batch_seconds"]`` is the wall time of the whole call (the same for every item).
        """
        if prune_stage != "post_vit":
            raise NotImplementedError(
                f"vllm backend: prune_stage={prune_stage!r} is not available; vLLM's vision tower runs on "
                "every patch and the kept rows are selected after it (use prune_stage='post_vit')"
            )
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        from vllm import SamplingParams

        start = time.perf_counter()
        prepared = [self.prepare(item) for item in items]
        prepare_s = time.perf_counter() - start
        params = SamplingParams(max_tokens=max_new_tokens, temperature=0.0, logprobs=1 if logprobs else None)
        outputs = self.llm.generate([p.request for p in prepared], params, use_tqdm=False)
        total_s = time.perf_counter() - start
        # A lone request's LLM wall time is its own; a batch's cannot be split honestly here.
        single_llm_s = total_s - prepare_s if len(items) == 1 else None
        return [self._generation(p, out, prepare_s, total_s, single_llm_s) for p, out in zip(prepared, outputs)]

    def _generation(
        self, prepared: _Prepared, out: Any, prepare_s: float, total_s: float, single_llm_s: float | None = None
    ) -> Generation:
        completion = out.outputs[0]
        ids = [int(i) for i in completion.token_ids]
        logprobs = None
        if completion.logprobs is not None:
            logprobs = [float(step[token].logprob) for step, token in zip(completion.logprobs, ids)]
        prompt_len = (
            len(out.prompt_token_ids)
            if out.prompt_token_ids is not None
            else int(prepared.request["prompt_embeds"].shape[0])
        )
        timings: dict[str, float] = {}
        if prepared.vision_s:
            timings["vision"] = prepared.vision_s
        metrics = getattr(out, "metrics", None)
        llm_timing = "vllm_metrics"
        if metrics is not None and getattr(metrics, "first_token_ts", 0.0):
            timings["prefill"] = max(0.0, metrics.first_token_ts - metrics.scheduled_ts)
            timings["generate"] = max(0.0, metrics.last_token_ts - metrics.first_token_ts)
        elif single_llm_s is not None:
            # vLLM gave no per-request metrics (seen on CPU): without this the LLM's time would be
            # missing from every total. Prefill and decode cannot be told apart, so both go to
            # "generate" and extra["llm_timing"] says so.
            timings["generate"] = max(0.0, single_llm_s)
            llm_timing = "wall_prefill_plus_decode"
        else:
            llm_timing = "none_per_request"  # a batch without metrics: the runner amortises the call
        g = prepared.geometry
        return Generation(
            text=completion.text,
            tokens=TokenCounts(
                visual_before=prepared.visual_before,
                visual_after=prepared.visual_after,
                prompt=prompt_len,
                generated=len(ids),
            ),
            timings=timings,
            peak_memory_mb=None,
            kept_grid=prepared.kept_grid,
            extra={
                "backend": "vllm",
                "route": self.route,
                "positions": "unpruned",
                "prune_stage": "post_vit",
                "output_ids": ids,
                "logprobs": logprobs,
                "model_size": [g.height, g.width],
                "token_grid": [g.grid_t, g.grid_h, g.grid_w],
                "prepare_seconds": prepare_s,
                "batch_seconds": total_s,
                "llm_timing": llm_timing,
                "text_positions": self.text_positions,
                **({"reduction": prepared.reduction} if prepared.reduction is not None else {}),
            },
        )
