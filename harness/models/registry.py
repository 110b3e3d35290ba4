"""The model families: ONE line per family, naming its spec file (harness/models/families/).

Every other table that used to name families (tiny builders, vLLM routes and architectures, the
M-RoPE list of the vLLM reference, the perf benchmark's pre-ViT list, LLaVA's newline count in
the vLLM engine, the lmms-eval model list) is derived from these specs (see harness/models/spec.py).
Spec files are small and import no model code, so listing families stays cheap; an adapter
class is imported only when ``adapter_class`` asks for it, so one family's missing dependency
never blocks another.
"""

from __future__ import annotations

import importlib
from functools import cache

from harness.models.base import ModelAdapter
from harness.models.spec import BASE_CLASSES, FamilySpec, SpecError

# family name -> module holding ``SPEC = FamilySpec(...)``. Adding a family: one line here.
FAMILIES: dict[str, str] = {
    "qwen2_5_vl": "harness.models.families.qwen2_5_vl",
    "qwen3_vl": "harness.models.families.qwen3_vl",
    "llava_onevision": "harness.models.families.llava_onevision",
    "internvl3": "harness.models.families.internvl3",
    "nvila_hd_video": "harness.models.families.nvila_hd_video",
}


def _import(target: str) -> object:
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def spec_of_module(module_name: str, family: str) -> FamilySpec:
    """The ``SPEC`` of a spec module, checked to be a FamilySpec named ``family``."""
    spec = getattr(importlib.import_module(module_name), "SPEC", None)
    if not isinstance(spec, FamilySpec):
        raise SpecError(f"{module_name}: defines no SPEC = FamilySpec(...) (family {family!r})")
    if spec.name != family:
        raise SpecError(f"{module_name}: SPEC.name is {spec.name!r}, but the registry lists it as {family!r}")
    return spec


def get_spec(family: str) -> FamilySpec:
    if family not in FAMILIES:
        raise KeyError(f"unknown model family {family!r}; valid choices: {', '.join(sorted(FAMILIES))}")
    return spec_of_module(FAMILIES[family], family)


def all_specs() -> dict[str, FamilySpec]:
    """Every registered family's spec, by name (registry order)."""
    return {family: get_spec(family) for family in FAMILIES}


@cache
def _base_class(base: str) -> type[ModelAdapter]:
    return _import(BASE_CLASSES[base])  # type: ignore[return-value]


def check_adapter_class(spec: FamilySpec, cls: object) -> type[ModelAdapter]:
    """``cls`` if it is a concrete subclass of the spec's declared base named ``spec.name``; else SpecError."""
    base = _base_class(spec.base)
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise SpecError(f"{spec.name}: adapter {spec.adapter} is not a subclass of {base.__name__} (base {spec.base!r})")
    missing = sorted(getattr(cls, "__abstractmethods__", ()))
    if missing:
        raise SpecError(f"{spec.name}: adapter {spec.adapter} leaves abstract: {', '.join(missing)}")
    if getattr(cls, "name", None) != spec.name:
        raise SpecError(f"{spec.name}: adapter {spec.adapter} has name {getattr(cls, 'name', None)!r}")
    return cls


def adapter_class(spec: FamilySpec) -> type[ModelAdapter]:
    """Import the spec's adapter class and check it against the declared base."""
    return check_adapter_class(spec, _import(spec.adapter))


def get_adapter_class(family: str) -> type[ModelAdapter]:
    return adapter_class(get_spec(family))


def __getattr__(name: str) -> object:
    """Derived views, computed on each access from ``FAMILIES`` (read-only; edit the specs).

    - ``ADAPTERS``: family name -> "module:Class" of its adapter.
    - ``REMOTE_CODE_FAMILIES``: families whose checkpoints run code shipped in the snapshot
      (``trust_remote_code``): loading one needs ``model.trust_remote_code: true`` in the config.
    """
    if name == "ADAPTERS":
        return {family: spec.adapter for family, spec in all_specs().items()}
    if name == "REMOTE_CODE_FAMILIES":
        return frozenset(f for f, s in all_specs().items() if s.remote_code)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
