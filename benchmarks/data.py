"""Find a benchmark's files: a local directory, or a Hugging Face dataset id in the local cache.

Why both: users download data themselves, either with ``huggingface-cli download`` into a
directory (same layout as the dataset repo) or into the HF cache; we never download (the
harness must run offline), so a cache miss is an error that says what was looked for.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import pandas as pd


class DataNotFoundError(FileNotFoundError):
    """The benchmark's data is not where it was asked to be read from."""


class DatasetError(ValueError):
    """The benchmark's data is there but cannot be used as is (e.g. two questions share an id)."""


def resolve_dataset_dir(spec: str | Path, aliases: Sequence[str] = ()) -> Path:
    """Directory holding the dataset files for ``spec``.

    ``spec`` is an existing directory, or a dataset id (``owner/name``). An id that is one of
    ``aliases`` (e.g. ``lmms-lab/Video-MME`` and ``lmms-eval/Video-MME``, the same data under
    two organisations) is looked up under each alias, the given one first.
    """
    path = Path(spec).expanduser()
    if path.is_dir():
        return path
    spec = str(spec)
    if spec.count("/") != 1 or path.exists():
        raise DataNotFoundError(f"{spec}: not a directory, and not a Hugging Face dataset id (owner/name)")
    ids = [spec] + [a for a in aliases if a != spec] if spec in aliases else [spec]
    tried: list[str] = []
    for repo_id in ids:
        found = _cached_snapshot(repo_id)
        if found is not None:
            return found
        tried.append(repo_id)
    raise DataNotFoundError(
        f"dataset {spec!r} is not in the local Hugging Face cache (looked for {', '.join(tried)}; "
        "nothing is downloaded). Download it first, e.g. `huggingface-cli download --repo-type dataset "
        f"{spec} --local-dir DIR`, then pass DIR, or download it into the cache."
    )


def _hub_cache_dir() -> str | None:
    """The hub cache from the environment now (huggingface_hub reads it once, at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return str(Path(os.environ["HF_HOME"]).expanduser() / "hub")
    return None


def _cached_snapshot(repo_id: str) -> Path | None:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        path = snapshot_download(
            repo_id, repo_type="dataset", local_files_only=True, cache_dir=_hub_cache_dir()
        )
        return Path(path)
    except (LocalEntryNotFoundError, FileNotFoundError, OSError):
        return None


def read_parquet_checked(path: Path, required: Sequence[str]) -> pd.DataFrame:
    """Read a parquet file and fail naming the file and the missing columns, if any."""
    if not path.is_file():
        raise DataNotFoundError(f"{path}: annotation file not found")
    df = pd.read_parquet(path)
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; found {list(df.columns)}")
    return df


def find_video(
    directory: Path, stem: str, extensions: Sequence[str] = (".mp4", ".MP4", ".mkv")
) -> Path | None:
    """``directory/stem<ext>`` for the first extension that exists (lmms-eval's order), else None."""
    for ext in extensions:
        candidate = directory / f"{stem}{ext}"
        if candidate.is_file():
            return candidate
    return None


class UnsafePathError(ValueError):
    """A path taken from the data (a video path, an id) would leave its dataset directory."""


def _boundary(directory: Path) -> Path:
    """The directory a resolved path must stay in: ``directory`` itself, or, inside the Hugging Face
    cache, the dataset's cache folder (its snapshot files are symlinks into ``../../blobs``)."""
    resolved = directory.resolve()
    for parent in (resolved, *resolved.parents):
        if parent.parent.name == "snapshots" and parent.parent.parent.name.startswith("datasets--"):
            return parent.parent.parent
    return resolved


def contained_path(
    directory: Path, value: object, key: str, allow_symlinks_out: bool = False, shown: str | None = None
) -> Path:
    """``directory / value`` when it stays inside ``directory``, else ``UnsafePathError``.

    Why: dataset files come from the internet, and a crafted row (``../../secret``, ``/etc/passwd``,
    a symlink shipped in the data that points out) must not make the harness read anything outside
    the dataset. Checked without opening anything: the value must be a non-empty relative path with
    no ``..`` part, and (unless ``allow_symlinks_out``, for users who link their own data in from
    another disk) the path with every symlink resolved must stay inside ``directory`` (resolved;
    so ``directory`` itself may be a link). The message names ``key`` and the value (or ``shown``,
    the value as the data has it when ``value`` was derived from it, e.g. an id + extension).
    """
    text = value
    if not isinstance(text, str) or not text.strip() or "\x00" in text:
        raise UnsafePathError(f"{key} {value!r} is not a file name")
    rel = PurePosixPath(text)
    if rel.is_absolute() or PureWindowsPath(text).is_absolute() or PureWindowsPath(text).drive:
        raise UnsafePathError(f"{key} {text!r} is an absolute path; it must be relative to {directory}")
    if ".." in rel.parts or ".." in PureWindowsPath(text).parts:
        raise UnsafePathError(f"{key} {text!r} leaves {directory} ('..')")
    path = directory / text
    if not allow_symlinks_out:
        boundary = _boundary(directory)
        target = path.resolve()
        if not target.is_relative_to(boundary):
            raise UnsafePathError(
                f"{key} {shown if shown is not None else text!r} resolves (through a symlink) to {target}, "
                f"outside {boundary}; "
                "set the benchmark's allow_symlinks_out: true to follow links you made yourself"
            )
    return path


def text_cells(row: dict[Any, Any], keys: Sequence[Any]) -> tuple[dict[Any, str], list[str]]:
    """``row[key]`` as ``str`` for each key, and a problem per cell that is not text.

    Why: a binary-typed parquet column yields ``bytes``, and ``str(b"...")`` would silently turn a
    question into ``"b'...'"``. Bytes are decoded as UTF-8; bytes that are not UTF-8 are decoded
    with replacement characters and named in the problems (the caller refuses the sample).
    """
    out: dict[str, str] = {}
    problems: list[str] = []
    for key in keys:
        value = row[key]
        if isinstance(value, bytes | bytearray | memoryview):
            raw = bytes(value)
            try:
                out[key] = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                out[key] = raw.decode("utf-8", "replace")
                problems.append(f"{key} is binary and not UTF-8 text (bad byte at {exc.start})")
        else:
            out[key] = str(value)
    return out, problems


def check_unique_ids(df: pd.DataFrame, column: str, path: Path) -> None:
    """Fail naming every duplicated id and its rows (0-based) when ``column`` is not unique.

    Why: records, predictions and reports are keyed by question id; with two questions under
    one id, one record silently replaces the other and one question is scored against the
    other's answer.
    """
    ids = df[column].astype(str).reset_index(drop=True)
    dup = ids[ids.duplicated(keep=False)]
    if dup.empty:
        return
    groups = [f"{qid} (rows {', '.join(map(str, rows.index))})" for qid, rows in dup.groupby(dup, sort=False)]
    shown = "; ".join(groups[:10]) + (f"; ... {len(groups) - 10} more" if len(groups) > 10 else "")
    raise DatasetError(f"{path}: {len(groups)} duplicate {column}(s), rows counted from 0: {shown}")
