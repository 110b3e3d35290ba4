"""Packages carried to the GPU machine in one archive (harness/perf/carried.py)."""

from __future__ import annotations

import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from harness.perf.carried import add_carried_packages, unpack_carried


def _make_wheel(folder: Path, module: str, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{module}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(f"{module}/__init__.py", body)
        archive.writestr(f"{module}-1.0.dist-info/METADATA", f"Name: {module}\nVersion: 1.0\n")
    return wheel


def test_carried_wheel_is_unpacked_once_and_importable(tmp_path, monkeypatch):
    carry = tmp_path / ".gpu-wheels"
    _make_wheel(carry / "wheels", "carried_probe_pkg", "VALUE = 41 + 1\n")
    monkeypatch.setattr(sys, "path", list(sys.path))
    first_path = sys.path[0]
    added = add_carried_packages(carry)
    assert len(added) == 1 and sys.path[-1] == added[0]
    assert sys.path[0] == first_path  # appended: the machine's own packages still win
    import carried_probe_pkg

    assert carried_probe_pkg.VALUE == 42
    assert add_carried_packages(carry) == []  # already on the path
    sys.modules.pop("carried_probe_pkg", None)


def test_a_changed_wheel_set_unpacks_elsewhere(tmp_path):
    _make_wheel(tmp_path / "wheels", "probe_a", "A = 1\n")
    site_a = unpack_carried(tmp_path, tmp_path / "tmp")
    assert site_a is not None and (site_a / "probe_a" / "__init__.py").exists()
    assert unpack_carried(tmp_path, tmp_path / "tmp") == site_a  # same set: reused
    _make_wheel(tmp_path / "wheels", "probe_b", "B = 2\n")
    site_b = unpack_carried(tmp_path, tmp_path / "tmp")
    assert site_b != site_a and (site_b / "probe_b" / "__init__.py").exists()


def test_xz_archive_is_unpacked_and_cannot_write_outside(tmp_path):
    src = tmp_path / "src"
    (src / "probe_xz").mkdir(parents=True)
    (src / "probe_xz" / "__init__.py").write_text("X = 3\n")
    carry = tmp_path / "carry"
    carry.mkdir()
    with tarfile.open(carry / "site.tar.xz", "w:xz") as tar:
        tar.add(src / "probe_xz", arcname="probe_xz")
    site = unpack_carried(carry, tmp_path / "tmp")
    assert site is not None and (site / "probe_xz" / "__init__.py").read_text() == "X = 3\n"

    evil = tmp_path / "evil"
    evil.mkdir()
    with tarfile.open(evil / "site.tar.xz", "w:xz") as tar:
        info = tarfile.TarInfo("../escaped.py")
        info.size = 0
        tar.addfile(info)
    with pytest.raises(tarfile.TarError):
        unpack_carried(evil, tmp_path / "tmp2")
    assert not (tmp_path / "escaped.py").exists()


def test_no_wheels_adds_nothing(tmp_path):
    assert unpack_carried(tmp_path / "missing") is None
    assert add_carried_packages(tmp_path / ".gpu-wheels") == []


def test_concurrent_unpacks_leave_one_complete_folder(tmp_path):
    """Processes racing to unpack the same set end with the same complete folder and no leftovers."""
    from concurrent.futures import ProcessPoolExecutor

    for i in range(6):
        _make_wheel(tmp_path / "wheels", f"probe_race{i}", f"N = {i}\n")
    with ProcessPoolExecutor(max_workers=4) as pool:
        sites = list(pool.map(unpack_carried, [tmp_path] * 8, [tmp_path / "tmp"] * 8))
    assert len(set(sites)) == 1
    site = sites[0]
    assert all((site / f"probe_race{i}" / "__init__.py").read_text() == f"N = {i}\n" for i in range(6))
    assert [p.name for p in (tmp_path / "tmp").iterdir()] == [site.name]  # staging folders removed
