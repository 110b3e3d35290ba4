"""Shared test fixtures. Heavy artefacts (videos, tiny models) are built by the tests themselves."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
PARITY_DIR = SHARED / "fixtures" / "autogaze-parity"


@pytest.fixture(scope="session")
def parity_dir() -> Path:
    if not (PARITY_DIR / "model" / "model.safetensors").exists():
        pytest.skip(f"AutoGaze parity fixture not found at {PARITY_DIR} (it lives in ../shared beside the repo)")
    return PARITY_DIR
