"""Shared test fixtures. Heavy artefacts (videos, tiny models) are built by the tests themselves."""

from __future__ import annotations

import os
from pathlib import Path

# As run_eval.py does: idle OpenMP threads sleep instead of spinning (harness.perf.threads measured
# the gaze loop 13x slower with spinning threads when another process held a core).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
PARITY_DIR = SHARED / "fixtures" / "autogaze-parity"


@pytest.fixture(autouse=True)
def _own_gaze_cache(tmp_path_factory, monkeypatch):
    """Every test starts with an empty gaze cache of its own (harness.gaze.cache): a gaze stored by
    an earlier test or an earlier session must never turn a test's first run into a cache hit."""
    monkeypatch.setenv("HARNESS_GAZE_CACHE_DIR", str(tmp_path_factory.mktemp("gaze-cache")))


@pytest.fixture(scope="session")
def parity_dir() -> Path:
    if not (PARITY_DIR / "model" / "model.safetensors").exists():
        pytest.skip(f"AutoGaze parity fixture not found at {PARITY_DIR} (it lives in ../shared beside the repo)")
    return PARITY_DIR


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a whole module (opt in with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``): the gaze greedy loop's many small
    ops make two OpenMP threads spin-wait (and run several times slower) whenever the shared
    machine's other core is busy. torch is imported here, not at the top, so test files that never
    touch torch don't pay for it."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
