"""``FamilySpec``: everything the harness needs to know about one model family, in one object.

Why: the facts about a family (its adapter class, its tiny builder, its vLLM route, whether its
LLM uses M-RoPE or 1-D positions, which prune stages it supports, special tokens such as
LLaVA's trailing newline) used to be repeated in six or more tables (registry, tiny builders,
vLLM routes and plugin, the reference command, the perf benchmark, a name branch in the vLLM
engine), which drifted apart. Now each family declares them once, in
``harness/models/families/<family>.py``, and ``harness/models/registry.py`` lists those files;
every other table is derived from the registry.

A spec holds only strings and small values (classes are named ``"module:Class"``), so reading
every spec is cheap: config validation and the CLI never import torch model code to list
families. ``FamilySpec`` refuses an incomplete or inconsistent spec when it is built (at import
of the spec file); the adapter class itself is checked against its declared base by
``registry.adapter_class`` and by tests/test_family_contract.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

# The adapter base class a family declares (see harness/models/base.py and pooled.py):
#   "mrope"  -> MRopeAdapter: M-RoPE LLM (Qwen-VL); raw frames + a keep mask is the model input
#   "pooled" -> PooledAdapter: 1-D RoPE LLM fed pooled/projected visual features (LLaVA-OV, InternVL3)
#   "own"    -> ModelAdapter: a family with its own end-to-end pipeline (NVILA-HD-Video's remote code)
Base = Literal["mrope", "pooled", "own"]
BASE_CLASSES: dict[str, str] = {
    "mrope": "harness.models.base:MRopeAdapter",
    "pooled": "harness.models.pooled:PooledAdapter",
    "own": "harness.models.base:ModelAdapter",
}
STAGE_NAMES = ("pre_vit", "post_vit", "native")
ROUTE_NAMES = ("mrope_keep_mask", "prompt_embeds")
_TARGET = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_MODULE = re.compile(r"^[A-Za-z_][\w.]*$")


class SpecError(ValueError):
    """A family spec is incomplete or contradicts itself (raised when the spec file is imported)."""


@dataclass(frozen=True)
class VllmRoute:
    """How the vLLM backend serves a family (docs/vllm.md).

    ``route``: ``mrope_keep_mask`` (raw frames + keep mask; M-RoPE families) or ``prompt_embeds``
    (the transformers adapter computes the pruned features; 1-D families). ``architecture``: the
    name passed as ``hf_overrides={"architectures": [...]}``; ``model_class``: the
    ``"module:Class"`` vLLM loads for it (registered by harness/backends/vllm/plugin.py).
    """

    route: str
    architecture: str
    model_class: str

    def __post_init__(self) -> None:
        if self.route not in ROUTE_NAMES:
            raise SpecError(f"vLLM route {self.route!r}; valid: {', '.join(ROUTE_NAMES)}")
        if not self.architecture.isidentifier():
            raise SpecError(f"vLLM architecture {self.architecture!r} is not a class name")
        if not _TARGET.match(self.model_class):
            raise SpecError(f"vLLM model_class {self.model_class!r} is not 'module:Class'")


@dataclass(frozen=True)
class FamilySpec:
    """One model family. Every field without a default must be given, ``None`` included.

    - ``name``: the ``model.family`` key in configs; the spec file's name.
    - ``adapter``: ``"module:Class"`` of the transformers adapter; it must subclass ``base``'s class.
    - ``base``: ``"mrope"``, ``"pooled"`` or ``"own"`` (see ``BASE_CLASSES``).
    - ``positions``: the LLM's position scheme, ``"mrope"`` (3-D) or ``"1d"``.
    - ``prune_stages``: the ``prune_stage`` values ``adapter.generate`` accepts (always ``post_vit``).
    - ``tiny``: module with ``build(out_dir, seed) -> Path`` writing a tiny random-weight model,
      or None with ``no_tiny_reason`` (then the contract test cannot run the family; say why).
    - ``vllm``: a :class:`VllmRoute`, or None with ``no_vllm_reason``.
    - ``newline_tokens``: visual tokens the LLM sees that are not cells of the token grid and are
      never pruned (LLaVA-OV's one trailing ``image_newline``): counted in ``visual_before``.
    - ``remote_code``: the checkpoint runs code from its snapshot (configs must set
      ``model.trust_remote_code: true``).
    - ``lmms_eval_model``: lmms-eval's own ``--model`` name that the ``lmms-eval`` preset
      reproduces (documentation and parity tests), or None.
    - ``tower_signals``: vision-tower signals the adapter supplies to a feature-stage method
      (``FeatureReducer.needs``, e.g. VisionZip's ``tower_attention``); a pruner needing one the
      spec does not list is refused before any model loads.
    """

    name: str
    adapter: str
    base: Base
    positions: Literal["mrope", "1d"]
    prune_stages: tuple[str, ...]
    tiny: str | None
    vllm: VllmRoute | None
    newline_tokens: int = 0
    remote_code: bool = False
    lmms_eval_model: str | None = None
    no_tiny_reason: str = ""
    no_vllm_reason: str = ""
    tower_signals: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        where = f"family spec {self.name!r}"
        if not self.name.isidentifier():
            raise SpecError(f"{where}: name must be a Python identifier (it names files and classes)")
        if not _TARGET.match(self.adapter):
            raise SpecError(f"{where}: adapter {self.adapter!r} is not 'module:Class'")
        if self.base not in BASE_CLASSES:
            raise SpecError(f"{where}: base {self.base!r}; valid: {', '.join(BASE_CLASSES)}")
        if self.positions not in ("mrope", "1d"):
            raise SpecError(f"{where}: positions {self.positions!r}; valid: mrope, 1d")
        if (self.base == "mrope") != (self.positions == "mrope"):
            raise SpecError(f"{where}: base {self.base!r} does not go with positions {self.positions!r}")
        stages = tuple(self.prune_stages)
        if "post_vit" not in stages or not set(stages) <= set(STAGE_NAMES) or len(set(stages)) != len(stages):
            raise SpecError(f"{where}: prune_stages {stages} must hold post_vit and only {', '.join(STAGE_NAMES)}")
        if self.tiny is None and not self.no_tiny_reason:
            raise SpecError(f"{where}: tiny is None: say why in no_tiny_reason")
        if self.tiny is not None and not _MODULE.match(self.tiny):
            raise SpecError(f"{where}: tiny {self.tiny!r} is not a module name")
        if self.vllm is None and not self.no_vllm_reason:
            raise SpecError(f"{where}: vllm is None: say why in no_vllm_reason")
        if self.vllm is not None:
            if not isinstance(self.vllm, VllmRoute):
                raise SpecError(f"{where}: vllm must be a VllmRoute or None, got {type(self.vllm).__name__}")
            wanted = "mrope_keep_mask" if self.positions == "mrope" else "prompt_embeds"
            if self.vllm.route != wanted:
                raise SpecError(f"{where}: a {self.positions} family is served by the {wanted} route, "
                                f"not {self.vllm.route}")
            if self.base == "own":
                raise SpecError(f"{where}: the vLLM routes drive an mrope or pooled adapter, not base 'own'")
        if self.newline_tokens < 0:
            raise SpecError(f"{where}: newline_tokens must be >= 0")
