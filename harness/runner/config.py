"""Evaluation configs: YAML -> validated dataclasses, with ``--set a.b=c`` overrides.

Why a schema of our own (dataclasses + a key check) rather than a free dict: a typo in a config
(``max_new_token``, ``benchmark.limt``) must stop the run before hours of GPU time, naming the
valid keys, instead of being silently ignored. Values keep plain YAML types so the resolved
config can be dumped back into every run directory and re-read unchanged.

Layout of a config (every key optional except ``benchmark.name`` and ``pruners``)::

    name: demo                       # label of the experiment
    output_dir: runs/demo            # where run directories go
    seed: 0
    backend: transformers            # transformers | vllm
    model: {family, path, name, device, dtype, prune_stage, kwargs, preset, pipeline}
    models: [ {...model keys..., frames: {...}, generation: {...}, pruners: [...]}, ... ]  # optional
    benchmark: {name, kwargs, limit, extraction, prompt_kwargs}
    frames: {num_frames, fps, max_frames, resolution, keep_aspect, chunk_size,
             index_rounding, count_multiple, fps_convention}
    generation: {max_new_tokens, enabled, batch_size}
    pruners:
      - {name: none}
      - {name: autogaze, params: {model: DIR}, grid: {task_loss_requirement: [0.5, 0.7], gazing_ratio: [0.3]}}
      - {name: random, budget: matched}           # AutoGaze's kept count on the same sample
      - {name: downsample, budget: 0.25}          # a ratio of the unpruned token count
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.runner.presets import PresetError, apply_preset


class ConfigError(ValueError):
    """A config that cannot run: the message names the key (and the file) and the valid choices."""


BACKENDS = ("transformers", "vllm")
INDEX_ROUNDINGS = ("floor", "nearest")
FPS_CONVENTIONS = ("span", "count", "source")
PRUNE_STAGES = ("post_vit", "pre_vit")
# Model path that means "build the tiny random-weight model of this family into the cache".
TINY_PATH = "tiny"


@dataclass
class ModelConfig:
    family: str = "qwen2_5_vl"
    path: str = TINY_PATH
    name: str | None = None  # label in tables; default derived from family + path
    device: str = "cpu"
    dtype: str = "auto"
    prune_stage: str = "post_vit"
    kwargs: dict[str, Any] = field(default_factory=dict)
    # A named set of settings (harness/runner/presets.yaml), e.g. ``lmms-eval``: fills the model's
    # ``pipeline``/``dtype`` and the ``frames`` keys it lists, under any key the config sets itself.
    preset: str | None = None
    # The adapter's preprocessing knobs (pixel limits, resize method, stop tokens, ...); each
    # family lists its valid keys. Empty = the family's defaults (stock transformers).
    pipeline: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        tail = Path(str(self.path).rstrip("/")).name or str(self.path)
        return f"{self.family}-{tail}".replace("/", "_")

    @property
    def is_tiny(self) -> bool:
        return str(self.path) == TINY_PATH


@dataclass
class BenchmarkConfig:
    name: str = "synthetic_needle"
    kwargs: dict[str, Any] = field(default_factory=dict)
    limit: int | None = None
    extraction: str | None = None  # answer-extraction convention; None = the benchmark's default
    prompt_kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class FramesConfig:
    num_frames: int | None = 16  # N frames uniformly over the video (ignored when fps is set)
    fps: float | None = None  # sample at this rate instead, capped by max_frames
    max_frames: int | None = None
    resolution: int | list[int] | None = None  # [width, height] or longer side; None = source size
    keep_aspect: bool = True  # fit inside ``resolution`` keeping the aspect ratio
    chunk_size: int = 16  # frames decoded per chunk (bounded memory)
    max_decoded_gb: float = 16.0  # refuse a sample whose sampled frames would exceed this (set resolution)
    index_rounding: str = "floor"  # linspace -> indices: floor (lmms-eval load_video) | nearest (qwen-vl-utils)
    count_multiple: int = 1  # floor the frame count to a multiple of this (qwen-vl-utils: 2)
    # fps handed to the model: span = (T - 1) / (t_last - t_first) of the sampled frames;
    # count = T / frames_in_video * source_fps (qwen-vl-utils' sample_fps, what lmms-eval passes);
    # source = the source fps, with the sampled frames' source indices (Qwen3-VL's timestamps)
    fps_convention: str = "span"


@dataclass
class GenerationConfig:
    max_new_tokens: int = 16
    enabled: bool = True  # False: pruner-only scoring (evidence recall/hit), the MLLM is not called
    # requests per adapter.generate_batch call (backends that have it: vllm); 1 = one generate per record
    batch_size: int = 1


@dataclass
class PrunerSpec:
    """One entry of ``pruners``: fixed ``params``, swept ``grid`` (cartesian product), a budget."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, list[Any]] = field(default_factory=dict)
    budget: str | float | int | None = None  # None | "matched" | ratio in (0, 1] | token count >= 1
    match: str | None = None  # with budget "matched": label of the autogaze setting (default: each)
    label: str | None = None  # run label; default derived from name + grid values + budget


@dataclass
class ModelPlan:
    """What runs for one model: its frames/generation settings and pruner specs."""

    model: ModelConfig
    frames: FramesConfig
    generation: GenerationConfig
    pruners: list[PrunerSpec]


@dataclass
class EvalConfig:
    name: str = "eval"
    output_dir: str = "runs/eval"
    seed: int = 0
    backend: str = "transformers"
    notes: str = ""
    model: ModelConfig = field(default_factory=ModelConfig)
    models: list[dict[str, Any]] = field(default_factory=list)
    benchmark: BenchmarkConfig = field(default_factory=BenchmarkConfig)
    frames: FramesConfig = field(default_factory=FramesConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    pruners: list[PrunerSpec] = field(default_factory=lambda: [PrunerSpec(name="none")])
    source: str | None = None  # the YAML file it came from (for messages)

    def plans(self) -> list[ModelPlan]:
        """One plan per model: ``models`` entries override ``model``/``frames``/``generation``/``pruners``."""
        if not self.models:
            return [ModelPlan(self.model, self.frames, self.generation, self.pruners)]
        plans = []
        for i, entry in enumerate(self.models):
            where = f"models.{i}"
            entry = dict(entry)
            gen = _merge_section(GenerationConfig, self.generation, entry.pop("generation", None), f"{where}.generation")
            pruners = self.pruners
            if "pruners" in entry:
                pruners = _parse_pruners(entry.pop("pruners"), f"{where}.pruners")
            entry, entry_frames = _entry_preset(self.model, entry, entry.pop("frames", None), where)
            frames = _merge_section(FramesConfig, self.frames, entry_frames, f"{where}.frames")
            model = _merge_section(ModelConfig, self.model, entry, where)
            plans.append(ModelPlan(model, frames, gen, pruners))
        labels = [p.model.label for p in plans]
        dupes = {x for x in labels if labels.count(x) > 1}
        if dupes:
            raise ConfigError(f"models: two entries share the label {sorted(dupes)}; give each a distinct 'name'")
        return plans

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("source", None)
        return d


# ---------------------------------------------------------------- parsing


def _valid_keys(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.name != "source"]


def _check_keys(data: dict[str, Any], cls: type, where: str, extra: tuple[str, ...] = ()) -> None:
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {type(data).__name__} {data!r}")
    valid = _valid_keys(cls) + list(extra)
    for key in data:
        if key not in valid:
            raise ConfigError(
                f"unknown key {_join(where, str(key))!r}; valid keys{' of ' + where if where else ''}: "
                f"{', '.join(sorted(valid))}"
            )


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _build(cls: type, data: dict[str, Any] | None, where: str, extra: tuple[str, ...] = ()) -> Any:
    data = dict(data or {})
    _check_keys(data, cls, where, extra)
    for key in extra:
        data.pop(key, None)
    return cls(**copy.deepcopy(data))


def _merge_section(cls: type, base: Any, override: dict[str, Any] | None, where: str) -> Any:
    merged = dataclasses.asdict(base)
    if override:
        _check_keys(override, cls, where, extra=("frames", "generation", "pruners") if cls is ModelConfig else ())
        merged.update(copy.deepcopy(override))
    return cls(**merged)


def _entry_preset(top: ModelConfig, entry: dict[str, Any], frames: dict[str, Any] | None,
                  where: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """A ``models:`` entry with its preset applied (its own, else the top-level one, for its family).

    The top-level ``pipeline`` is inherited only by entries of the same family: pipeline keys are
    per family.
    """
    family = entry.get("family", top.family)
    if family != top.family and "pipeline" not in entry:
        entry = {**entry, "pipeline": {}}
    name = entry.get("preset", top.preset)
    if not name:
        return entry, frames
    base = top.pipeline if family == top.family else None
    try:
        entry, frames = apply_preset({**entry, "preset": name}, frames, family, base_pipeline=base)
    except PresetError as exc:
        raise ConfigError(f"{where}.preset: {exc}") from None
    return entry, frames


def _top_level_preset(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with ``model.preset`` filled into ``model`` and ``frames`` (keys set win)."""
    model = data.get("model")
    if not isinstance(model, dict) or not model.get("preset"):
        return data
    _check_keys(model, ModelConfig, "model")
    frames = data.get("frames")
    if frames is not None and not isinstance(frames, dict):
        return data  # _build reports it
    try:
        data["model"], data["frames"] = apply_preset(model, frames, str(model.get("family", ModelConfig.family)))
    except PresetError as exc:
        raise ConfigError(f"model.preset: {exc}") from None
    return data


def _parse_pruners(data: Any, where: str = "pruners") -> list[PrunerSpec]:
    if isinstance(data, str | dict):
        data = [data]
    if not isinstance(data, list) or not data:
        raise ConfigError(f"{where}: expected a non-empty list of pruner entries, got {data!r}")
    specs = []
    for i, entry in enumerate(data):
        if isinstance(entry, str):  # shorthand: "- none"
            entry = {"name": entry}
        spec = _build(PrunerSpec, entry, f"{where}.{i}")
        if not isinstance(spec.params, dict) or not isinstance(spec.grid, dict):
            raise ConfigError(f"{where}.{i}: 'params' and 'grid' must be mappings")
        for key, values in spec.grid.items():
            if not isinstance(values, list) or not values:
                raise ConfigError(f"{where}.{i}.grid.{key}: expected a non-empty list of values, got {values!r}")
            if key in spec.params:
                raise ConfigError(f"{where}.{i}: {key!r} is both in params and grid; keep one")
        specs.append(spec)
    return specs


def from_dict(data: dict[str, Any], source: str | None = None) -> EvalConfig:
    """Build (and structurally validate) an ``EvalConfig`` from a plain dict."""
    data = copy.deepcopy(data or {})
    _check_keys(data, EvalConfig, "")
    data = _top_level_preset(data)
    cfg = EvalConfig(
        name=str(data.get("name", "eval")),
        output_dir=str(data.get("output_dir", f"runs/{data.get('name', 'eval')}")),
        seed=int(data.get("seed", 0)),
        backend=str(data.get("backend", "transformers")),
        notes=str(data.get("notes", "") or ""),
        model=_build(ModelConfig, data.get("model"), "model"),
        models=list(data.get("models") or []),
        benchmark=_build(BenchmarkConfig, data.get("benchmark"), "benchmark"),
        frames=_build(FramesConfig, data.get("frames"), "frames"),
        generation=_build(GenerationConfig, data.get("generation"), "generation"),
        pruners=_parse_pruners(data.get("pruners", ["none"])),
        source=source,
    )
    _check_values(cfg)
    return cfg


def _check_values(cfg: EvalConfig) -> None:
    """Value checks that need no imports (registries are checked by ``validate_names``)."""
    if cfg.backend not in BACKENDS:
        raise ConfigError(f"unknown backend {cfg.backend!r}; valid choices: {', '.join(BACKENDS)}")
    for plan in cfg.plans():
        m, f, g = plan.model, plan.frames, plan.generation
        if m.prune_stage not in PRUNE_STAGES:
            raise ConfigError(f"model.prune_stage {m.prune_stage!r}; valid choices: {', '.join(PRUNE_STAGES)}")
        if f.num_frames is None and f.fps is None:
            raise ConfigError("frames: set num_frames or fps")
        if f.num_frames is not None and int(f.num_frames) < 1:
            raise ConfigError(f"frames.num_frames must be >= 1, got {f.num_frames}")
        if f.fps is not None and float(f.fps) <= 0:
            raise ConfigError(f"frames.fps must be > 0, got {f.fps}")
        if f.resolution is not None:
            f.resolution = parse_resolution(f.resolution)
        if f.index_rounding not in INDEX_ROUNDINGS:
            raise ConfigError(f"frames.index_rounding {f.index_rounding!r}; valid choices: {', '.join(INDEX_ROUNDINGS)}")
        if f.fps_convention not in FPS_CONVENTIONS:
            raise ConfigError(f"frames.fps_convention {f.fps_convention!r}; valid choices: {', '.join(FPS_CONVENTIONS)}")
        if isinstance(f.count_multiple, bool) or not isinstance(f.count_multiple, int) or f.count_multiple < 1:
            raise ConfigError(f"frames.count_multiple must be an integer >= 1, got {f.count_multiple!r}")
        if not isinstance(m.pipeline, dict):
            raise ConfigError(f"model.pipeline must be a mapping, got {m.pipeline!r}")
        if int(g.max_new_tokens) < 1:
            raise ConfigError(f"generation.max_new_tokens must be >= 1, got {g.max_new_tokens}")
        if isinstance(g.batch_size, bool) or not isinstance(g.batch_size, int) or g.batch_size < 1:
            raise ConfigError(f"generation.batch_size must be an integer >= 1, got {g.batch_size!r}")
        for spec in plan.pruners:
            _check_budget(spec)
    if cfg.benchmark.limit is not None and int(cfg.benchmark.limit) < 0:
        raise ConfigError(f"benchmark.limit must be >= 0, got {cfg.benchmark.limit}")


def parse_resolution(value: Any) -> int | list[int]:
    """``[W, H]`` or ``"WxH"`` -> ``[W, H]``; an int is the longer side (aspect kept)."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str) and "x" in value.lower():
        value = value.lower().split("x")
    if isinstance(value, list | tuple) and len(value) == 2:
        try:
            w, h = int(value[0]), int(value[1])
        except (TypeError, ValueError):
            w = h = 0
        if w > 0 and h > 0:
            return [w, h]
    raise ConfigError(f"frames.resolution: expected [width, height], 'WxH' or a longer-side int, got {value!r}")


def _check_budget(spec: PrunerSpec) -> None:
    b = spec.budget
    if b is None or b == "matched":
        if spec.match is not None and b != "matched":
            raise ConfigError(f"pruner {spec.name!r}: 'match' needs budget: matched")
        return
    if isinstance(b, bool) or not isinstance(b, int | float):
        raise ConfigError(
            f"pruner {spec.name!r}: budget {b!r}; valid: matched, a ratio in (0, 1], or a token count >= 1"
        )
    if b <= 0 or (isinstance(b, float) and b > 1 and not float(b).is_integer()):
        raise ConfigError(f"pruner {spec.name!r}: budget {b!r} must be a ratio in (0, 1] or a token count >= 1")


# ---------------------------------------------------------------- overrides


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"a.b.0.c=VALUE"`` -> (["a", "b", "0", "c"], yaml-parsed VALUE)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected KEY=VALUE, e.g. benchmark.limit=5")
    key, raw = text.split("=", 1)
    path = [p for p in key.strip().split(".") if p]
    if not path:
        raise ConfigError(f"override {text!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({exc})") from exc
    return path, value


def apply_override(data: dict[str, Any], path: list[str], value: Any) -> None:
    """Set ``value`` at ``path`` in nested dicts/lists (list items by index), creating dicts as needed."""
    node: Any = data
    for i, part in enumerate(path[:-1]):
        where = ".".join(path[: i + 1])
        if isinstance(node, list):
            node = node[_index(node, part, where)]
        elif isinstance(node, dict):
            if node.get(part) is None:
                node[part] = {}
            node = node[part]
        else:
            raise ConfigError(f"override {'.'.join(path)}: {where} is a {type(node).__name__}, not a section")
    last = path[-1]
    if isinstance(node, list):
        node[_index(node, last, ".".join(path))] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise ConfigError(f"override {'.'.join(path)}: parent is a {type(node).__name__}, not a section")


def _index(node: list[Any], part: str, where: str) -> int:
    try:
        idx = int(part)
    except ValueError:
        # pruners.autogaze.grid.x: address a list entry by its name when it is unique
        hits = [i for i, item in enumerate(node) if isinstance(item, dict) and item.get("name") == part]
        if len(hits) == 1:
            return hits[0]
        raise ConfigError(f"override {where}: {part!r} is neither a list index nor a unique entry name") from None
    if not -len(node) <= idx < len(node):
        raise ConfigError(f"override {where}: index {idx} out of range (list has {len(node)} entries)")
    return idx


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                data: dict[str, Any] | None = None) -> EvalConfig:
    """Read a YAML config (or take ``data``), apply ``KEY=VALUE`` overrides, validate structure."""
    source = None
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p}: not valid YAML ({exc})") from exc
        source = str(p)
    data = copy.deepcopy(data or {})
    for text in overrides or []:
        keys, value = parse_override(text)
        apply_override(data, keys, value)
    try:
        return from_dict(data, source=source)
    except ConfigError as exc:
        if source:
            raise ConfigError(f"{source}: {exc}") from exc
        raise
    except TypeError as exc:  # e.g. a section given as a scalar
        raise ConfigError(f"{source or 'config'}: {exc}") from exc


def dump_config(cfg: EvalConfig) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


# ---------------------------------------------------------------- registry checks


def _names_from(module_name: str, attrs: tuple[str, ...]) -> list[str] | None:
    """Valid names from a registry module, or None when that module is not importable yet."""
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    for attr in attrs:
        obj = getattr(module, attr, None)
        if obj is None:
            continue
        names = obj() if callable(obj) else obj
        return sorted(str(n) for n in names)
    return None


def model_families() -> list[str]:
    from harness.models.registry import ADAPTERS

    return sorted(ADAPTERS)


def benchmark_names() -> list[str] | None:
    return _names_from("benchmarks.registry", ("available_benchmarks", "list_benchmarks", "BENCHMARKS", "REGISTRY"))


def pruner_names() -> list[str] | None:
    return _names_from("harness.pruning.registry", ("available_pruners", "list_pruners", "PRUNERS", "REGISTRY"))


def validate_names(cfg: EvalConfig) -> None:
    """Check model family, benchmark and pruner names against the registries, listing valid choices."""
    families = model_families()
    benchmarks = benchmark_names()
    pruners = pruner_names()
    canonical = cfg.benchmark.name.strip().lower().replace("-", "_")  # the registry accepts Video-MME
    if benchmarks is not None and cfg.benchmark.name not in benchmarks and canonical not in benchmarks:
        raise ConfigError(f"unknown benchmark {cfg.benchmark.name!r}; valid choices: {', '.join(benchmarks)}")
    for plan in cfg.plans():
        if plan.model.family not in families:
            raise ConfigError(f"unknown model family {plan.model.family!r}; valid choices: {', '.join(families)}")
        for spec in plan.pruners:
            if pruners is not None and spec.name not in pruners:
                raise ConfigError(f"unknown pruner {spec.name!r}; valid choices: {', '.join(pruners)}")
