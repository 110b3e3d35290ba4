"""The lmms-eval model class behind ``--model harness_<family>``: our frames, pruner and adapter.

Each request is one lmms-eval document: its ``doc_to_text`` is the prompt, its ``doc_to_visual``
the video path. The video is sampled and decoded by our frames loader, the pruner selects the
visual tokens, and the adapter answers seeing only those, exactly as ``run_eval.py eval`` does
for one record (same config machinery: ``preset`` fills the same keys), so the predictions equal
our runner's on the same settings (tests/test_lmms_eval_parity.py).

``--model_args`` keys: ``pretrained`` (required), ``preset``, ``pruner`` (default none),
``prune_stage``, ``budget`` (a ratio in (0, 1] or a token count), ``num_frames``, ``dtype``,
``device``, plus the chosen pruner's own parameters (e.g. ``gazing_ratio``, ``ratio``, ``seed``;
``autogaze=DIR`` is AutoGaze's ``model``). An unknown key stops with the valid ones. Kept-token
counts and stage timings go into lmms-eval's sample log (``token_counts``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, ClassVar

from lmms_eval.api.instance import GenerationResult, Instance, TokenCounts
from lmms_eval.api.model import lmms

from harness.backends.lmms_eval.answer import answer_video
from harness.backends.lmms_eval.plugin import class_name
from harness.models.registry import ADAPTERS
from harness.pruning.registry import pruner_params
from harness.runner.components import build_pruner, load_adapter
from harness.runner.config import load_config
from harness.runner.sweep import Budget

log = logging.getLogger(__name__)

FIXED_KEYS = ("pretrained", "preset", "pruner", "prune_stage", "budget", "num_frames", "dtype", "device")
# what lmms-eval's evaluator adds to every model's arguments
LMMS_KEYS = ("batch_size", "max_batch_size")
ALIASES = {("autogaze", "autogaze"): "model"}  # (pruner, model_arg) -> pruner parameter


@dataclass
class HarnessTokenCounts(TokenCounts):
    """lmms-eval's per-sample token counts plus what pruning did (written to its sample log)."""

    visual_before: int | None = None
    visual_after: int | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = super().to_dict()
        out.update(visual_before=self.visual_before, visual_after=self.visual_after, timings=self.timings)
        return out


def _budget(value: Any) -> Budget:
    if value is None:
        return Budget("none")
    value = float(value)
    if 0 < value <= 1:
        return Budget("ratio", value)
    if value >= 1 and value.is_integer():
        return Budget("tokens", int(value))
    raise ValueError(f"budget {value!r}: a ratio in (0, 1] or a token count >= 1")


class HarnessModel(lmms):
    """One adapter family behind lmms-eval's simple-model interface (``generate_until``)."""

    is_simple = True
    family: ClassVar[str] = ""

    def __init__(self, **model_args: Any) -> None:
        super().__init__()
        args = dict(model_args)
        pruner = str(args.pop("pruner", "none"))
        params_valid = pruner_params(pruner)  # raises on an unknown pruner, listing the valid ones
        params = {}
        for key in [k for k in args if k not in FIXED_KEYS + LMMS_KEYS]:
            name = ALIASES.get((pruner, key), key)
            if name not in params_valid:
                valid = sorted({*FIXED_KEYS, "pruner", *params_valid, *(k for p, k in ALIASES if p == pruner)})
                raise ValueError(
                    f"{self.model_id}: unknown --model_args key {key!r} (pruner {pruner!r}); valid keys: "
                    f"{', '.join(valid)}"
                )
            params[name] = args.pop(key)
        if "pretrained" not in args:
            raise ValueError(f"{self.model_id}: --model_args needs pretrained=DIR (a local model directory)")
        model: dict[str, Any] = {"family": self.family, "path": str(args["pretrained"])}
        for key in ("preset", "prune_stage", "dtype", "device"):
            if args.get(key) is not None:
                model[key] = args[key]
        frames = {"num_frames": int(args["num_frames"])} if args.get("num_frames") is not None else {}
        cfg = load_config(data={"model": model, "frames": frames})  # the runner's rules, presets included
        self.model_cfg, self.frames_cfg = cfg.model, cfg.frames
        self.budget = _budget(args.get("budget"))
        self.pruner_name = pruner
        self.pruner = build_pruner(pruner, params)
        self.adapter = load_adapter(cfg.model, "transformers", cfg.model.device)
        self.batch_size_per_gpu = int(args.get("batch_size") or 1)

    @property
    def model_id(self) -> str:
        return f"harness_{self.family}"

    def generate_until(self, requests: list[Instance]) -> list[GenerationResult]:
        return [self._one(request) for request in requests]

    def _one(self, request: Instance) -> GenerationResult:
        context, gen_kwargs, doc_to_visual, doc_id, task, split = request.args
        try:
            visuals = doc_to_visual(self.task_dict[task][split][doc_id])
            if len(visuals) != 1 or not isinstance(visuals[0], str):
                raise ValueError(f"expected one video path, got {visuals!r}")
            gen, timings = answer_video(visuals[0], context, pruner=self.pruner, adapter=self.adapter,
                                        model_cfg=self.model_cfg, frames_cfg=self.frames_cfg, budget=self.budget,
                                        max_new_tokens=int(gen_kwargs.get("max_new_tokens", 16)))
        except Exception as exc:  # noqa: BLE001 - one bad document never ends the run
            log.error("%s: %s doc %s failed: %s: %s", self.model_id, task, doc_id, type(exc).__name__, exc)
            return GenerationResult(text="")
        counts = HarnessTokenCounts(input_tokens=gen.tokens.prompt, output_tokens=gen.tokens.generated,
                                    visual_before=gen.tokens.visual_before, visual_after=gen.tokens.visual_after,
                                    timings=timings)
        return GenerationResult(text=gen.text, token_counts=counts)

    def loglikelihood(self, requests: list[Instance]) -> list[tuple[float, bool]]:
        raise NotImplementedError(f"{self.model_id}: loglikelihood is not supported (generation tasks only)")

    def generate_until_multi_round(self, requests: list[Instance]) -> list[str]:
        raise NotImplementedError(f"{self.model_id}: multi-round generation is not supported")


for _family in ADAPTERS:
    globals()[class_name(_family)] = type(class_name(_family), (HarnessModel,), {"family": _family, "__module__": __name__})
