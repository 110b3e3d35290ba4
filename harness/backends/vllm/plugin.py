"""Registers our vLLM model subclasses with vLLM's ModelRegistry (no fork of vLLM).

vLLM loads ``vllm.general_plugins`` entry points in EVERY process it starts (engine core,
workers, model inspection), which is what makes an out-of-tree architecture visible in a
multi-process engine. The entry point for pyproject.toml:

    [project.entry-points."vllm.general_plugins"]
    harness = "harness.backends.vllm.plugin:register"

Without it, :func:`register` is still called by ``VLLMBackend`` before the engine starts; that
covers an in-process engine (``VLLM_ENABLE_V1_MULTIPROCESSING=0``) and forked engine processes.
Registration is by "module:Class" string, so vLLM imports our module lazily (only when the
architecture is used) and in the process that needs it.
"""

from __future__ import annotations


def architectures() -> dict[str, str]:
    """Architecture name (what ``hf_overrides={"architectures": [...]}`` asks for) -> "module:Class".

    Read from the family specs (harness/models/families/, listed in harness/models/registry.py);
    spec files import no model code, so this is cheap in every vLLM process.
    """
    from harness.models.registry import all_specs

    return {s.vllm.architecture: s.vllm.model_class for s in all_specs().values() if s.vllm is not None}


def entry_point_installed() -> bool:
    """Whether the installed package metadata declares our ``vllm.general_plugins`` entry point."""
    from importlib.metadata import entry_points

    return any(ep.value.startswith(__name__) for ep in entry_points(group="vllm.general_plugins"))


def register() -> None:
    """Make our architectures known to vLLM (idempotent)."""
    from vllm import ModelRegistry

    known = set(ModelRegistry.get_supported_archs())
    for name, target in architectures().items():
        if name not in known:
            ModelRegistry.register_model(name, target)
