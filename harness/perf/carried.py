"""Packages carried to a lent GPU machine in one xz archive, unpacked there on first use.

Why: that machine has no package index and a 64 MiB carry limit. The extra packages the GPU
check needs (PyAV, which bundles ffmpeg, pandas, pydantic, Pillow, torchvision) are about
200 MiB unpacked and 64 MB as wheels; ``make gpu-wheels`` packs them unpacked into
``.gpu-wheels/site.tar.xz`` (about 46 MB). :func:`add_carried_packages` unpacks that archive
(and any loose ``*.whl`` in ``.gpu-wheels/wheels``, a wheel being a zip of its site-packages
files) into a folder under the system temp directory, once per archive set (unpacked aside and
renamed into place, so concurrent processes never see half of it), and *appends* it to
``sys.path`` so the machine's own torch and transformers always win. An unpacked
``.gpu-wheels/site`` folder (the older layout) is still honoured.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path


def _archives(carry_root: Path) -> list[Path]:
    wheels = sorted((carry_root / "wheels").glob("*.whl")) if (carry_root / "wheels").is_dir() else []
    tar = carry_root / "site.tar.xz"
    return ([tar] if tar.is_file() else []) + wheels


def _set_key(archives: list[Path]) -> str:
    digest = hashlib.sha256()
    for archive in archives:
        digest.update(f"{archive.name}:{archive.stat().st_size}:{archive.stat().st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def unpack_carried(carry_root: Path, target_root: Path | None = None) -> Path | None:
    """The folder holding every carried archive unpacked (made once per archive set), or None."""
    archives = _archives(carry_root)
    if not archives:
        return None
    root = target_root or Path(tempfile.gettempdir())
    site = root / f"harness-carried-{_set_key(archives)}"
    if site.is_dir():
        return site
    # Unpack into a private folder and rename it into place: two processes starting together
    # (torchrun ranks) never import from a half-written folder; the loser's copy is discarded.
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{site.name}.", dir=root))
    try:
        for archive in archives:
            if archive.suffix == ".whl":
                with zipfile.ZipFile(archive) as wheel:
                    wheel.extractall(staging)
            else:
                with tarfile.open(archive, "r:xz") as tar:
                    tar.extractall(staging, filter="data")  # no absolute paths or links out of it
        try:
            staging.rename(site)
        except OSError:  # another process renamed its copy first
            if not site.is_dir():
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return site


def add_carried_packages(carry_root: Path) -> list[str]:
    """Append the packages carried under ``carry_root`` (``.gpu-wheels``) to ``sys.path``; returns what was added."""
    added = []
    for folder in (unpack_carried(carry_root), carry_root / "site"):
        if folder is not None and folder.is_dir() and str(folder) not in sys.path:
            sys.path.append(str(folder))
            added.append(str(folder))
    return added
