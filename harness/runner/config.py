"""Evaluation configs: YAML -> validated pydantic models, with ``--set a.b=c`` overrides.

Why a schema (pydantic, ``extra="forbid"``) rather than a free dict: a typo in a config
(``max_new_token``, ``benchmark.limt``) or a value of the wrong type (``limit: abc``) must stop
the run before any model loads, in one line naming the key, the value and what is allowed,
instead of a traceback hours into a GPU job. Values keep plain YAML types so the resolved config
can be dumped into every run directory and re-read unchanged.

Layout of a config (every key optional except ``benchmark.name`` and ``pruners``)::

    name: demo                       # label of the experiment
    output_dir: runs/demo            # where run directories go
    seed: 0
    backend: transformers            # transformers | vllm
    model: {family, path, name, device, dtype, prune_stage, kwargs, runtime, preset, pipeline}
                                     # runtime: {python: VENV/bin/python} or {env: NAME}, timeout_s
                                     #   (the model runs in a worker there; docs/runtimes.md)
                                     # preset: named settings (harness/runner/presets.yaml), e.g. lmms-eval
    models: [ {...model keys..., frames: {...}, generation: {...}, pruners: [...]}, ... ]  # optional
    benchmark: {name, kwargs, limit, extraction, prompt_kwargs}
    frames: {num_frames, fps, max_frames, resolution, keep_aspect, chunk_size, max_decoded_gb,
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
import importlib
import inspect
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from harness.runner.presets import PresetError, apply_preset


class ConfigError(ValueError):
    """A config that cannot run: the message names the key (and the file) and the valid choices."""


BACKENDS = ("transformers", "vllm")
INDEX_ROUNDINGS = ("floor", "nearest", "centers")
FPS_CONVENTIONS = ("span", "count", "source")
PRUNE_STAGES = ("post_vit", "pre_vit", "native")
# Model path that means "build the tiny random-weight model of this family into the cache".
TINY_PATH = "tiny"


class _Section(BaseModel):
    """A config section: unknown keys are errors, assignments are validated too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class RuntimeConfig(_Section):
    """Where a model runs when not in this process: another interpreter, driven over a pipe.

    Why: models pin incompatible library stacks (NVILA-8B-HD-Video's remote code: transformers
    4.5x); the runner stays on its own stack and talks to a worker in the model's venv
    (``harness/runtime``, docs/runtimes.md). ``env: NAME`` is ``.venv-NAME/bin/python`` in the
    checkout, what ``make runtime-env RUNTIME=NAME`` builds from ``configs/runtimes/NAME.txt``.
    """

    python: str | None = None  # path of the interpreter (a venv's bin/python)
    env: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    timeout_s: float | None = Field(default=None, gt=0)  # per request; the worker is killed and restarted after

    @model_validator(mode="after")
    def _one_source(self) -> RuntimeConfig:
        if (self.python is None) == (self.env is None):
            raise ValueError("give exactly one of runtime.python (an interpreter path) or runtime.env (a name)")
        return self

    def interpreter(self, root: Path | None = None) -> str:
        """The interpreter path; ``env`` names ``ROOT/.venv-NAME/bin/python`` (ROOT: this checkout)."""
        if self.python is not None:
            return self.python
        base = root or Path(__file__).resolve().parents[2]
        return str(base / f".venv-{self.env}" / "bin" / "python")


class ModelConfig(_Section):
    family: str = "qwen2_5_vl"
    path: str = TINY_PATH
    name: str | None = None  # label in tables; default derived from family + path
    device: str = "cpu"
    dtype: str = "auto"
    prune_stage: Literal[PRUNE_STAGES] = "post_vit"  # native: AutoGaze's gazes embedded at their scales
    kwargs: dict[str, Any] = Field(default_factory=dict)
    runtime: RuntimeConfig | None = None  # None: in this process; else a worker in that interpreter
    # A named set of settings (harness/runner/presets.yaml), e.g. ``lmms-eval``: fills the model's
    # ``pipeline``/``dtype`` and the ``frames`` keys it lists, under any key the config sets itself.
    preset: str | None = None
    # The adapter's preprocessing knobs (pixel limits, resize method, stop tokens, ...); each
    # family lists its valid keys. Empty = the family's defaults (stock transformers).
    pipeline: dict[str, Any] = Field(default_factory=dict)
    # Run code shipped inside the model snapshot (NVILA's modeling_*.py): an explicit opt-in, as
    # transformers and lmms-eval require; see docs/security.md.
    trust_remote_code: bool = False

    @model_validator(mode="after")
    def _runtime_route(self) -> ModelConfig:
        if self.runtime is not None and self.prune_stage == "native":
            raise ValueError("prune_stage 'native' cannot run in a model runtime: AutoGaze's gazes travel to the "
                             "adapter as an in-process object; drop model.runtime or use post_vit")
        return self

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        tail = Path(str(self.path).rstrip("/")).name or str(self.path)
        return f"{self.family}-{tail}".replace("/", "_")

    @property
    def is_tiny(self) -> bool:
        return str(self.path) == TINY_PATH


class BenchmarkConfig(_Section):
    name: str = "synthetic_needle"
    kwargs: dict[str, Any] = Field(default_factory=dict)
    limit: int | None = Field(default=None, ge=0)
    extraction: str | None = None  # answer-extraction convention; None = the benchmark's default
    prompt_kwargs: dict[str, Any] = Field(default_factory=dict)


class FramesConfig(_Section):
    num_frames: int | None = Field(default=16, ge=1)  # N frames uniformly over the video (ignored when fps is set)
    fps: float | None = Field(default=None, gt=0)  # sample at this rate instead, capped by max_frames
    max_frames: int | None = Field(default=None, ge=1)
    resolution: int | list[int] | None = None  # [width, height] or longer side; None = source size
    keep_aspect: bool = True  # fit inside ``resolution`` keeping the aspect ratio
    chunk_size: int = Field(default=16, ge=1)  # frames decoded per chunk (bounded memory)
    max_decoded_gb: float = Field(default=16.0, gt=0)  # refuse a sample whose frames would exceed this
    # linspace -> indices: floor (lmms-eval load_video) | nearest (qwen-vl-utils) | centers (HF InternVL)
    index_rounding: Literal[INDEX_ROUNDINGS] = "floor"
    count_multiple: int = Field(default=1, ge=1, strict=True)  # floor the frame count to a multiple (qwen-vl-utils: 2)
    # fps handed to the model: span = (T - 1) / (t_last - t_first) of the sampled frames;
    # count = T / frames_in_video * source_fps (qwen-vl-utils' sample_fps, what lmms-eval passes);
    # source = the source fps, with the sampled frames' source indices (Qwen3-VL's timestamps)
    fps_convention: Literal[FPS_CONVENTIONS] = "span"

    @field_validator("resolution", mode="before")
    @classmethod
    def _resolution(cls, value: Any) -> Any:
        return None if value is None else parse_resolution(value)

    @model_validator(mode="after")
    def _some_sampling(self) -> FramesConfig:
        if self.num_frames is None and self.fps is None:
            raise ValueError("set num_frames or fps")
        return self


class GenerationConfig(_Section):
    max_new_tokens: int = Field(default=16, ge=1)
    enabled: bool = True  # False: pruner-only scoring (evidence recall/hit), the MLLM is not called
    # requests per adapter.generate_batch call (backends that have it: vllm); 1 = one generate per record
    batch_size: int = Field(default=1, ge=1, strict=True)


class CacheConfig(_Section):
    """Work reused across runs and model entries (docs/runner.md, "Reusing work")."""

    gaze: bool = True  # content-addressed gaze cache under <harness cache dir>/gaze (or ``dir``)
    gaze_max_gb: float = Field(default=20.0, gt=0)  # size cap; least recently used entries go first
    dir: str | None = None  # None: $HARNESS_GAZE_CACHE_DIR, else $HARNESS_CACHE_DIR/gaze (~/.cache/harness/gaze)
    # decoded frames held to give to later model entries whose frame settings are equal (0: none)
    shared_frames_gb: float = Field(default=2.0, ge=0)


class PrunerSpec(_Section):
    """One entry of ``pruners``: fixed ``params``, swept ``grid`` (cartesian product), a budget."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    budget: str | float | int | None = None  # None | "matched" | ratio in (0, 1] | token count >= 1
    match: str | None = None  # with budget "matched": label of the autogaze setting (default: each)
    label: str | None = None  # run label; default derived from name + grid values + budget

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"name": data} if isinstance(data, str) else data  # "- none"

    @field_validator("grid", mode="before")
    @classmethod
    def _grid_lists(cls, grid: Any) -> Any:
        for key, values in (grid.items() if isinstance(grid, dict) else ()):
            if not isinstance(values, list) or not values:
                raise ValueError(f"grid.{key}: expected a non-empty list of values, got {values!r}")
        return grid

    @model_validator(mode="after")
    def _budget_and_grid(self) -> PrunerSpec:
        both = sorted(set(self.params) & set(self.grid))
        if both:
            raise ValueError(f"{', '.join(both)} is both in params and grid; keep one")
        _check_budget(self)
        return self


def _pruner_list(value: Any) -> Any:
    if isinstance(value, str | dict):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ValueError(f"expected a non-empty list of pruner entries, got {value!r}")
    return value


class ModelEntry(ModelConfig):
    """One entry of ``models``: model keys plus optional per-model frames/generation/pruners.

    Only the keys given override the top-level sections (``model_fields_set``)."""

    frames: dict[str, Any] | None = None
    generation: dict[str, Any] | None = None
    pruners: list[PrunerSpec] | None = None

    @field_validator("pruners", mode="before")
    @classmethod
    def _pruners(cls, value: Any) -> Any:
        return None if value is None else _pruner_list(value)


class ModelPlan(BaseModel):
    """What runs for one model: its frames/generation settings and pruner specs."""

    model: ModelConfig
    frames: FramesConfig
    generation: GenerationConfig
    pruners: list[PrunerSpec]


class EvalConfig(_Section):
    name: str = "eval"
    output_dir: str = ""
    seed: int = 0
    backend: Literal[BACKENDS] = "transformers"
    notes: str | None = ""
    model: ModelConfig = Field(default_factory=ModelConfig)
    models: list[ModelEntry] = Field(default_factory=list)
    benchmark: BenchmarkConfig = Field(default_factory=BenchmarkConfig)
    frames: FramesConfig = Field(default_factory=FramesConfig)
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    pruners: list[PrunerSpec] = Field(default_factory=lambda: [PrunerSpec(name="none")])
    cache: CacheConfig = Field(default_factory=CacheConfig)
    source: str | None = Field(default=None, exclude=True)  # the YAML file it came from (for messages)

    @field_validator("pruners", mode="before")
    @classmethod
    def _pruners(cls, value: Any) -> Any:
        return _pruner_list(value)

    @field_validator("models", "notes", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any, info: Any) -> Any:
        if value is None:
            return [] if info.field_name == "models" else ""
        return value

    @model_validator(mode="after")
    def _defaults_and_plans(self) -> EvalConfig:
        if not self.output_dir:
            self.output_dir = f"runs/{self.name}"
        self.plans()  # every models: entry must merge into a valid plan
        return self

    def plans(self) -> list[ModelPlan]:
        """One plan per model: ``models`` entries override ``model``/``frames``/``generation``/``pruners``."""
        if not self.models:
            return [ModelPlan(model=self.model, frames=self.frames, generation=self.generation,
                              pruners=self.pruners)]
        plans = []
        for i, entry in enumerate(self.models):
            where = f"models.{i}"
            given = {k: getattr(entry, k) for k in entry.model_fields_set
                     if k in ModelConfig.model_fields}
            given, entry_frames = _entry_preset(self.model, given, entry.frames, where)
            model = _merged(ModelConfig, self.model, given, where)
            frames = _merged(FramesConfig, self.frames, entry_frames, f"{where}.frames")
            gen = _merged(GenerationConfig, self.generation, entry.generation, f"{where}.generation")
            pruners = self.pruners if entry.pruners is None else entry.pruners
            plans.append(ModelPlan(model=model, frames=frames, generation=gen, pruners=pruners))
        labels = [p.model.label for p in plans]
        dupes = {x for x in labels if labels.count(x) > 1}
        if dupes:
            raise ValueError(f"models: two entries share the label {sorted(dupes)}; give each a distinct 'name'")
        return plans

    def to_dict(self) -> dict[str, Any]:
        data = self.model_dump(mode="json", exclude={"models"})
        data["models"] = [m.model_dump(mode="json", exclude_unset=True) for m in self.models]
        return data


# ---------------------------------------------------------------- parsing


def _merged(cls: type[_Section], base: _Section, override: dict[str, Any] | None, where: str) -> Any:
    data = {**base.model_dump(), **copy.deepcopy(override or {})}
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise ValueError(_one_line(exc, prefix=where, root=cls)) from None


def _one_line(exc: ValidationError, prefix: str = "", root: type[BaseModel] | None = None) -> str:
    """A pydantic error as one line per problem: the key, the value given, what is allowed."""
    lines = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"] if not str(p).startswith("function-")]
        key = ".".join(([prefix] if prefix else []) + loc)
        if err["type"] == "extra_forbidden":
            parent = ".".join(([prefix] if prefix else []) + loc[:-1])
            lines.append(f"unknown key {key!r}; valid keys{' of ' + parent if parent else ''}: "
                         f"{', '.join(_valid_keys_at(loc[:-1], root or EvalConfig))}")
            continue
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "literal_error":
            msg = "valid choices: " + msg.removeprefix("Input should be ").replace("'", "").replace(" or ", ", ")
        where = f"{key}: " if key else ""
        shown = ("input" in err and not isinstance(err["input"], dict | list | BaseModel)
                 and "got " not in msg)
        lines.append(f"{where}{msg}" + (f" (got {err['input']!r})" if shown else ""))
    return "; ".join(dict.fromkeys(lines))


def _valid_keys_at(loc: list[str], root: type[BaseModel]) -> list[str]:
    """Valid keys of the section at ``loc`` below ``root`` (walking the schema; list indices skipped)."""
    cls: Any = root
    for part in loc:
        if part.isdigit():
            continue
        field = getattr(cls, "model_fields", {}).get(part)
        if field is None:
            break
        annotation = field.annotation
        inner = [a for a in getattr(annotation, "__args__", (annotation,)) if isinstance(a, type)]
        nested = [a for a in inner + [annotation] if isinstance(a, type) and issubclass(a, BaseModel)]
        if part in ("frames", "generation") and cls is ModelEntry:
            nested = [FramesConfig if part == "frames" else GenerationConfig]
        if not nested:
            break
        cls = nested[0]
    return sorted(k for k in cls.model_fields if k != "source")


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
        raise ValueError(f"{where}.preset: {exc}") from None
    return entry, frames


def _top_level_preset(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with ``model.preset`` filled into ``model`` and ``frames`` (keys set win)."""
    model = data.get("model")
    if not isinstance(model, dict) or not model.get("preset"):
        return data
    frames = data.get("frames")
    if frames is not None and not isinstance(frames, dict):
        return data  # the schema reports it
    try:
        data["model"], data["frames"] = apply_preset(model, frames, str(model.get("family", ModelConfig.model_fields["family"].default)))
    except PresetError as exc:
        raise ConfigError(f"model.preset: {exc}") from None
    return data


def from_dict(data: dict[str, Any], source: str | None = None) -> EvalConfig:
    """Build and validate an ``EvalConfig`` from a plain dict (``ConfigError`` in one line)."""
    if not isinstance(data, dict):
        raise ConfigError(f"expected a mapping of config sections, got {type(data).__name__}")
    data = _top_level_preset(copy.deepcopy(data))
    try:
        cfg = EvalConfig.model_validate(copy.deepcopy(data))
    except ValidationError as exc:
        raise ConfigError(_one_line(exc)) from None
    cfg.source = source
    return cfg


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
    raise ValueError(f"expected [width, height], 'WxH' or a longer-side int, got {value!r}")


def _check_budget(spec: PrunerSpec) -> None:
    b = spec.budget
    if b is None or b == "matched":
        if spec.match is not None and b != "matched":
            raise ValueError(f"pruner {spec.name!r}: 'match' needs budget: matched")
        return
    if isinstance(b, bool) or not isinstance(b, int | float):
        raise ValueError(
            f"pruner {spec.name!r}: budget {b!r}; valid: matched, a ratio in (0, 1], or a token count >= 1"
        )
    if b <= 0 or (isinstance(b, float) and b > 1 and not float(b).is_integer()):
        raise ValueError(f"pruner {spec.name!r}: budget {b!r} must be a ratio in (0, 1] or a token count >= 1")


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
        raise ConfigError(f"override {text!r}: value is not valid YAML ({' '.join(str(exc).split())})") from None
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
            raise ConfigError(f"{p}: not valid YAML ({' '.join(str(exc).split())})") from None
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
        stages = _prune_stages(plan.model.family)
        if stages is not None and plan.model.prune_stage not in stages:
            raise ConfigError(
                f"model {plan.model.label!r}: prune_stage {plan.model.prune_stage!r} is not available for "
                f"{plan.model.family}; valid choices: {', '.join(stages)}"
            )
        for spec in plan.pruners:
            if pruners is not None and spec.name not in pruners:
                raise ConfigError(f"unknown pruner {spec.name!r}; valid choices: {', '.join(pruners)}")


def _family_spec(family: str) -> Any:
    """The family's ``FamilySpec``, or None when the registry does not know it (named elsewhere)."""
    try:
        from harness.models.registry import get_spec

        return get_spec(family)
    except (ImportError, KeyError):
        return None


def _prune_stages(family: str) -> tuple[str, ...] | None:
    """The ``prune_stage`` values a family's adapter takes (its spec's ``prune_stages``); None if unknown."""
    spec = _family_spec(family)
    return None if spec is None else tuple(spec.prune_stages)


def _tower_signals(family: str) -> frozenset[str]:
    """The vision-tower signals a family's adapter supplies (its spec's ``tower_signals``)."""
    spec = _family_spec(family)
    return frozenset() if spec is None else spec.tower_signals


def _families_with(signals: frozenset[str]) -> list[str]:
    from harness.models.registry import FAMILIES

    return [f for f in FAMILIES if signals <= _tower_signals(f)]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def validate_pruner_params(cfg: EvalConfig) -> None:
    """Every pruner run's parameters against the pruner's constructor (names, then values).

    Builds each pruner without loading anything heavy (AutoGaze loads its checkpoint lazily), so
    ``gazing_ration: 0.3`` or ``gazing_ratio: 3`` fails at ``--dry-run``, not after the model loads.
    """
    from harness.pruning.base import PruningError
    from harness.pruning.registry import build_pruner
    from harness.runner.sweep import expand

    for plan in cfg.plans():
        for setting in expand(plan.pruners):
            try:
                pruner = build_pruner(setting.name, **setting.params)
            except (PruningError, TypeError, ValueError) as exc:
                raise ConfigError(f"pruner run {setting.label!r}: {_first_line(exc)}") from None
            if pruner.stage != "frames" and not plan.generation.enabled:
                raise ConfigError(
                    f"pruner run {setting.label!r}: {setting.name} acts inside the model ({pruner.stage} stage), "
                    "so a pruner-only run (generation.enabled: false) cannot score it"
                )
            impl = str(plan.model.kwargs.get("attn_implementation") or "")
            if pruner.acts_in_llm and "flash" in impl and cfg.backend == "transformers":
                raise ConfigError(
                    f"pruner run {setting.label!r}: {setting.name} prunes inside the LLM, verified with sdpa and "
                    f"eager only; model.kwargs.attn_implementation {impl!r} cannot run it (use sdpa or eager)"
                )
            if pruner.stage != "frames" and plan.model.runtime is not None:
                raise ConfigError(
                    f"pruner run {setting.label!r}: {setting.name} acts inside the model ({pruner.stage} stage), "
                    f"which a model runtime cannot carry (only the keep grid reaches its worker); run model "
                    f"{plan.model.label!r} in this process (no model.runtime)"
                )
            missing = sorted(pruner.needs_tower - _tower_signals(plan.model.family))
            if missing:
                raise ConfigError(
                    f"pruner run {setting.label!r}: {setting.name} needs {', '.join(missing)} from the vision "
                    f"tower, which the {plan.model.family} adapter does not supply; families that do: "
                    f"{', '.join(_families_with(pruner.needs_tower)) or 'none'}"
                )


def validate_benchmark(cfg: EvalConfig) -> None:
    """``benchmark.kwargs`` against the benchmark's constructor, then build it once (cheap: data
    sets are read lazily or from a parquet) so a missing data directory is one line at ``--dry-run``."""
    from benchmarks.registry import BENCHMARKS, canonical_name, get_benchmark, get_benchmark_class

    try:
        key = canonical_name(cfg.benchmark.name)
    except KeyError as exc:
        raise ConfigError(exc.args[0]) from None
    params = inspect.signature(get_benchmark_class(key).__init__).parameters.values()
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    valid = sorted(p.name for p in params if p.kind in named and p.name != "self" and p.name not in BENCHMARKS[key][1])
    open_ended = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
    unknown = sorted(set(cfg.benchmark.kwargs) - set(valid))
    if unknown and not open_ended:
        raise ConfigError(f"benchmark.kwargs: {', '.join(unknown)} not accepted by benchmark {key!r}; "
                          f"valid keys: {', '.join(valid)}")
    try:
        get_benchmark(key, **cfg.benchmark.kwargs)
    except TypeError as exc:
        raise ConfigError(f"benchmark.kwargs for {key!r}: {_first_line(exc)}") from None
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"benchmark {key!r}: {_first_line(exc)}") from None


def validate_model_paths(cfg: EvalConfig) -> None:
    """Each model path is a local HF directory or an id in the local HF cache ("tiny" is built)."""
    from harness.models.loading import resolve_model_dir

    for plan in cfg.plans():
        if plan.model.is_tiny:
            continue
        try:
            resolve_model_dir(plan.model.path)
        except FileNotFoundError as exc:
            raise ConfigError(f"model {plan.model.label!r}: {_first_line(exc)}") from None


def validate_remote_code(cfg: EvalConfig) -> None:
    """A family whose snapshot ships its own code loads only with ``model.trust_remote_code: true``."""
    from harness.models.registry import REMOTE_CODE_FAMILIES

    for plan in cfg.plans():
        if plan.model.family in REMOTE_CODE_FAMILIES and not plan.model.trust_remote_code:
            raise ConfigError(remote_code_refusal(plan.model.label, plan.model.family))


def remote_code_refusal(label: str, family: str) -> str:
    return (f"model {label!r} ({family}) runs Python code shipped in its snapshot; set "
            "model.trust_remote_code: true to allow it (review that code first; docs/security.md)")


def validate_vllm(cfg: EvalConfig) -> None:
    """What the vLLM backend cannot run, refused before anything loads (it used to be ignored or to
    fail each sample after the model loaded), decided from the config, the family's spec
    (``FamilySpec.vllm``) and each pruner run's built pruner (``stage``, ``acts_in_llm``):

    - a family with no vLLM route;
    - ``model.prune_stage`` other than ``post_vit`` (vLLM's vision tower sees every patch);
    - ``model.pipeline.text_positions`` on a 1-D family (it is Qwen's M-RoPE text rule; the
      transformers adapters of LLaVA-OV and InternVL3 refuse the key too);
    - a method acting inside the LLM (FastV; DyCoke with its KV stage, ``p`` set);
    - a feature-stage method (DyCoke, VidCom2, VisionZip) on the ``mrope_keep_mask`` route (Qwen),
      which never computes the projector features such a method chooses from.

    The engine keeps its per-sample checks (harness/backends/vllm/engine.py) as a second line.
    """
    if cfg.backend != "vllm":
        return
    from harness.models.registry import get_spec
    from harness.pruning.registry import build_pruner
    from harness.runner.sweep import expand

    for plan in cfg.plans():
        model = plan.model
        spec = get_spec(model.family)
        if spec.vllm is None:
            raise ConfigError(f"model {model.label!r}: backend 'vllm' cannot serve {model.family} "
                              f"({spec.no_vllm_reason}); use backend: transformers")
        if model.prune_stage != "post_vit":
            raise ConfigError(f"model {model.label!r}: model.prune_stage {model.prune_stage!r} is not available on "
                              "the vllm backend (its vision tower runs on every patch); use post_vit or "
                              "backend: transformers")
        if "text_positions" in (model.pipeline or {}) and spec.positions != "mrope":
            raise ConfigError(f"model {model.label!r}: model.pipeline.text_positions is not a key for "
                              f"{model.family} (1-D positions; it sets the M-RoPE text rule of Qwen families); "
                              "remove it")
        for setting in expand(plan.pruners):
            try:
                pruner = build_pruner(setting.name, **setting.params)
            except Exception:  # noqa: BLE001 - validate_pruner_params names a bad parameter
                continue
            where = None
            if pruner.acts_in_llm:
                where = "inside the LLM"
            elif pruner.stage == "features" and spec.vllm.route == "mrope_keep_mask":
                where = f"on the projector features, which the vLLM {spec.vllm.route} route of {model.family} never computes"
            if where is not None:
                raise ConfigError(f"pruner run {setting.label!r}: the vllm backend cannot run {setting.name} on "
                                  f"{model.family} (it acts {where}); use backend: transformers")


def preflight(cfg: EvalConfig) -> None:
    """Everything that can be checked before a model loads: names, parameters, paths."""
    validate_names(cfg)
    validate_remote_code(cfg)
    validate_benchmark(cfg)
    validate_pruner_params(cfg)
    validate_vllm(cfg)
    validate_model_paths(cfg)
