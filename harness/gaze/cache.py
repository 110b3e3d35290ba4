"""A content-addressed, verified, size-capped on-disk cache of AutoGaze outputs.

Why: in a sweep the same frames are gazed again and again (every rerun, every model entry whose
frames are equal, every added threshold reruns the old ones), and on the CPU gazing is most of
the end-to-end time. A gaze depends only on what is hashed into its key, so it can be stored once
and read back bit-exactly:

* **the frames gazed** (a blake2b digest of the decoded uint8 array, shape included). This is
  the video's content at exactly the sampled frame indices, resolution and decoder: a renamed
  or copied video hits, a re-encoded one or other indices/resolution miss. (Hashing the file
  plus the indices would trust the decoder to be deterministic across versions and options;
  hashing what is gazed does not.) Computed once per decoded array and reused by every setting.
* **the checkpoint** (digest of every file of the checkpoint directory, hashed once per process
  per file size/mtime), **every gaze setting** (ratio, task-loss requirement, tiling, clip
  length, batch size, route and native target, device, dtype), **the gaze code** (digest of the
  gaze core's source files, so any edit invalidates old entries) and the torch version.

Value: a safetensors file (masks bit-packed) whose header carries the key and a sha256 of its
content; a read re-hashes and refuses an entry whose hash or key disagrees (it is deleted and
the gaze recomputed, never used). Writes go to a temporary file in the same directory and are
renamed into place (atomic: concurrent writers or torchrun ranks leave one whole entry). A read
bumps the entry's mtime; after a write the oldest entries are evicted until the total is under
the cap (LRU).

The cache is off unless a caller turns it on (``configure``; the runner does, from the config's
``cache`` section), and ``bypass()`` turns it off for a block (the runner's untimed warm-up).
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import os
import struct
import sys
import uuid
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

import numpy as np

FORMAT = 1
SUFFIX = ".safetensors"
#: Source files whose code decides a gaze: an edit to any of them changes every key.
GAZE_CODE = ("gaze/autogaze.py", "gaze/model.py", "gaze/generate.py", "gaze/processor.py", "gaze/config.py",
             "gaze/loader.py", "gaze/tiling.py", "gaze/output.py", "gaze/cache.py",
             "pruning/native_gaze.py", "models/gazed_siglip.py")

HIT, MISS, OFF = "hit", "miss", "off"


@dataclass
class Settings:
    enabled: bool = False
    root: Path | None = None  # default: $HARNESS_GAZE_CACHE_DIR, else <harness cache dir>/gaze
    max_bytes: int = 20 * 2**30
    verify: bool = True  # False only in the test that shows what verification prevents

    @property
    def directory(self) -> Path:
        if self.root is not None:
            return Path(self.root)
        if os.environ.get("HARNESS_GAZE_CACHE_DIR"):
            return Path(os.environ["HARNESS_GAZE_CACHE_DIR"]).expanduser()
        from harness.cache import cache_dir

        return cache_dir() / "gaze"


_SETTINGS = Settings()
_BYPASS: contextvars.ContextVar[bool] = contextvars.ContextVar("gaze_cache_bypass", default=False)
_SOURCE: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("gaze_cache_source", default=None)


def configure(enabled: bool, max_gb: float | None = None, root: str | Path | None = None) -> Settings:
    """Set the process-wide cache settings; returns the previous ones (for ``restore``)."""
    global _SETTINGS
    old = _SETTINGS
    _SETTINGS = Settings(bool(enabled), None if root is None else Path(root),
                         old.max_bytes if max_gb is None else int(float(max_gb) * 2**30), old.verify)
    return old


def restore(settings: Settings) -> None:
    global _SETTINGS
    _SETTINGS = settings


def settings() -> Settings:
    return _SETTINGS


@contextlib.contextmanager
def bypass() -> Iterator[None]:
    """Neither read nor write the cache inside this block (e.g. the runner's warm-up pass)."""
    token = _BYPASS.set(True)
    try:
        yield
    finally:
        _BYPASS.reset(token)


@contextlib.contextmanager
def describing(**source: Any) -> Iterator[None]:
    """Label entries written inside this block (e.g. the video's name and frame indices) for
    ``run_eval.py cache list``. A label only: it is not part of the key."""
    token = _SOURCE.set(source)
    try:
        yield
    finally:
        _SOURCE.reset(token)


def active() -> bool:
    return _SETTINGS.enabled and not _BYPASS.get()


# ---------------------------------------------------------------- key parts


_FRAME_DIGESTS: dict[int, str] = {}


def frames_digest(frames: np.ndarray) -> str:
    """blake2b of a frame array (dtype, shape, bytes); memoised per live array (once per decode)."""
    key = id(frames)
    hit = _FRAME_DIGESTS.get(key)
    if hit is not None:
        return hit
    h = hashlib.blake2b(digest_size=20)
    h.update(f"{frames.dtype.str}{tuple(frames.shape)}".encode())
    h.update(memoryview(np.ascontiguousarray(frames)).cast("B"))
    digest = h.hexdigest()
    _FRAME_DIGESTS[key] = digest
    weakref.finalize(frames, _FRAME_DIGESTS.pop, key, None)
    return digest


_FILE_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_digest(path: Path) -> str:
    """sha256 of a file, once per process per (path, size, mtime)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _FILE_DIGESTS:
        h = hashlib.sha256()
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                h.update(block)
        _FILE_DIGESTS[key] = h.hexdigest()
    return _FILE_DIGESTS[key]


def checkpoint_digest(model: Any) -> str:
    """Digest of the gaze model's checkpoint: every file of its directory (weights, configs).

    A model built in code (no ``checkpoint_dir``) is hashed from its state dict instead.
    """
    import torch

    directory = getattr(model, "checkpoint_dir", None)
    h = hashlib.sha256()
    if directory is not None:
        for path in sorted(Path(directory).iterdir()):
            if path.is_file() and not path.name.startswith("."):
                h.update(f"{path.name}:{file_digest(path)};".encode())
        return h.hexdigest()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


_CODE: str | None = None


def code_version() -> str:
    """Digest of the gaze core's sources (``GAZE_CODE``) and the cache format."""
    global _CODE
    if _CODE is None:
        root = Path(__file__).resolve().parents[1]
        h = hashlib.sha256(f"format{FORMAT}".encode())
        for rel in GAZE_CODE:
            h.update(rel.encode())
            h.update((root / rel).read_bytes())
        _CODE = h.hexdigest()[:16]
    return _CODE


def make_key(kind: str, frames: np.ndarray, model: Any, setting: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(hex key, the JSON-able facts it hashes) for gazing ``frames`` with ``model`` under ``setting``."""
    import torch

    facts = {
        "format": FORMAT,
        "kind": kind,
        "frames": frames_digest(frames),
        "frames_shape": list(frames.shape),
        "checkpoint": checkpoint_digest(model),
        "code": code_version(),
        "torch": torch.__version__,
        "device": str(getattr(model, "device", "cpu")),
        "dtype": str(getattr(model, "dtype", "")),
        "setting": setting,
    }
    text = json.dumps(facts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest(), facts


# ---------------------------------------------------------------- entry files


def _payload_hash(tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> str:
    import torch

    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    h.update(json.dumps({k: v for k, v in meta.items() if k != "payload"}, sort_keys=True).encode())
    return h.hexdigest()


def entry_path(key: str, root: Path | None = None) -> Path:
    root = _SETTINGS.directory if root is None else root
    return root / key[:2] / f"{key}{SUFFIX}"


def write_entry(path: Path, key: str, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Write atomically: a temporary file beside ``path``, then ``os.replace``."""
    from safetensors.torch import save

    header = {k: json.dumps(v, default=str) for k, v in meta.items()}
    header["key"] = key
    header["payload"] = _payload_hash(tensors, header)
    data = save({k: v.contiguous() for k, v in tensors.items()}, metadata=header)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


class CorruptEntry(ValueError):
    """An entry whose bytes do not hash to what its header says (or that does not parse)."""


def read_header(data: bytes) -> dict[str, str]:
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8: 8 + n]).get("__metadata__") or {}


def read_meta(path: Path) -> dict[str, Any]:
    """An entry's metadata from its header alone (no tensor read, no verification): for listings."""
    with path.open("rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(n)).get("__metadata__") or {}
    return {k: (v if k in ("key", "payload") else json.loads(v)) for k, v in header.items()}


def read_entry(path: Path, key: str | None, verify: bool = True) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and metadata of an entry; ``CorruptEntry`` if it does not verify."""
    from safetensors.torch import load

    data = path.read_bytes()
    try:
        header = read_header(data)
        tensors = load(data)
    except Exception as exc:  # noqa: BLE001 - any parse failure is corruption
        raise CorruptEntry(f"{path}: unreadable ({type(exc).__name__}: {exc})") from exc
    if verify:
        if key is not None and header.get("key") != key:
            raise CorruptEntry(f"{path}: holds key {header.get('key')!r}, expected {key!r}")
        if header.get("payload") != _payload_hash(tensors, header):
            raise CorruptEntry(f"{path}: content does not match its hash")
    meta = {k: json.loads(v) for k, v in header.items() if k not in ("key", "payload")}
    return tensors, meta


# ---------------------------------------------------------------- listing and eviction


@dataclass
class EntryInfo:
    path: Path
    size: int
    mtime: float


def entries(root: Path | None = None) -> list[EntryInfo]:
    """Every entry (oldest use first)."""
    root = _SETTINGS.directory if root is None else Path(root)
    out = []
    if root.is_dir():
        for path in root.glob(f"*/*{SUFFIX}"):
            with contextlib.suppress(FileNotFoundError):
                st = path.stat()
                out.append(EntryInfo(path, st.st_size, st.st_mtime))
    return sorted(out, key=lambda e: e.mtime)


def evict(max_bytes: int, root: Path | None = None, keep: Path | None = None) -> int:
    """Delete least-recently-used entries until the total is at most ``max_bytes``; returns count."""
    items = entries(root)
    total = sum(e.size for e in items)
    removed = 0
    for e in items:
        if total <= max_bytes:
            break
        if keep is not None and e.path == keep:
            continue
        with contextlib.suppress(FileNotFoundError):
            e.path.unlink()
            removed += 1
        total -= e.size
    return removed


def clear(root: Path | None = None) -> int:
    items = entries(root)
    for e in items:
        with contextlib.suppress(FileNotFoundError):
            e.path.unlink()
    return len(items)


# ---------------------------------------------------------------- the cached call


_STATS = {"hit": 0, "miss": 0, "corrupt": 0, "unwritable": 0}


def stats() -> dict[str, int]:
    return dict(_STATS)


def cached(key: str, facts: dict[str, Any], compute: Callable[[], Any],
           encode: Callable[[Any], tuple[dict[str, torch.Tensor], dict[str, Any]]],
           decode: Callable[[dict[str, torch.Tensor], dict[str, Any]], Any]) -> tuple[Any, str]:
    """(value, "hit"|"miss"|"off"): read a verified entry, else compute and store it."""
    if not active():
        return compute(), OFF
    st = _SETTINGS
    path = entry_path(key, st.directory)
    if path.is_file():
        try:
            tensors, meta = read_entry(path, key, verify=st.verify)
            value = decode(tensors, meta)
        except FileNotFoundError:
            pass  # evicted meanwhile: compute
        except Exception as exc:  # noqa: BLE001 - a bad entry is recomputed, never used
            _STATS["corrupt"] += 1
            print(f"warning: gaze cache: {exc if isinstance(exc, CorruptEntry) else f'{path}: {exc}'}; "
                  f"recomputing", file=sys.stderr, flush=True)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        else:
            with contextlib.suppress(OSError):
                os.utime(path)  # LRU clock
            _STATS["hit"] += 1
            return value, HIT
    value = compute()
    tensors, meta = encode(value)
    try:
        write_entry(path, key, tensors, {**meta, "facts": facts, "source": _SOURCE.get() or {}})
        evict(st.max_bytes, st.directory, keep=path)
    except OSError as exc:  # a full or read-only disk costs the reuse, not the run
        if not _STATS["unwritable"]:  # once per process, not once per sample
            print(f"warning: gaze cache: cannot write {path} ({exc.strerror or exc}); gazes are computed "
                  f"but not stored", file=sys.stderr, flush=True)
        _STATS["unwritable"] += 1
    _STATS["miss"] += 1
    return value, MISS


# ---------------------------------------------------------------- gaze values <-> tensors


def _pack(mask: torch.Tensor) -> torch.Tensor:
    import torch

    return torch.from_numpy(np.packbits(mask.to(torch.bool).cpu().numpy().reshape(-1)))


def _unpack(packed: torch.Tensor, shape: list[int]) -> torch.Tensor:
    import torch

    n = int(np.prod(shape))
    bits = np.unpackbits(packed.numpy(), count=n).astype(bool)
    return torch.from_numpy(bits.reshape(shape))


def encode_video_gaze(gaze: Any) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    import torch

    tensors = {"frame_indices": torch.from_numpy(np.ascontiguousarray(gaze.frame_indices)),
               "gazed_per_frame": torch.from_numpy(np.ascontiguousarray(gaze.gazed_per_frame))}
    for s, m in enumerate(gaze.scale_masks):
        tensors[f"mask{s}"] = _pack(m)
    meta = {"type": "VideoGaze", "height": int(gaze.height), "width": int(gaze.width), "scales": list(gaze.scales),
            "mask_shapes": [list(m.shape) for m in gaze.scale_masks],
            "tokens_per_frame": int(gaze.tokens_per_frame), "seconds": float(gaze.seconds)}
    return tensors, meta


def decode_video_gaze(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Any:
    from harness.gaze.tiling import VideoGaze

    masks = [_unpack(tensors[f"mask{s}"], shape) for s, shape in enumerate(meta["mask_shapes"])]
    return VideoGaze(tensors["frame_indices"].numpy(), int(meta["height"]), int(meta["width"]),
                     list(meta["scales"]), masks, tensors["gazed_per_frame"].numpy(),
                     int(meta["tokens_per_frame"]), float(meta["seconds"]))


def encode_native_gaze(gaze: Any) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    masks = gaze.gazing.to_masks(gaze.layout)
    tensors = {f"mask{s}": _pack(m) for s, m in enumerate(masks)}
    t = gaze.target
    meta = {"type": "NativeGaze", "mask_shapes": [list(m.shape) for m in masks], "seconds": float(gaze.seconds),
            "target": {"scales": list(t.scales), "patch_size": t.patch_size, "resize": t.resize,
                       "temporal_stride": t.temporal_stride}}
    return tensors, meta


def decode_native_gaze(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Any:
    from harness.models.gazed_siglip import GazingInfo
    from harness.pruning.native_gaze import NativeGaze, NativeTarget

    tg = meta["target"]
    target = NativeTarget(tuple(tg["scales"]), int(tg["patch_size"]), int(tg["resize"]), int(tg["temporal_stride"]))
    masks = [_unpack(tensors[f"mask{s}"], shape) for s, shape in enumerate(meta["mask_shapes"])]
    return NativeGaze(target, GazingInfo.from_masks(masks, target.layout), seconds=float(meta["seconds"]))
