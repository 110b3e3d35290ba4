"""The evaluation loop: config -> (model x benchmark x pruner setting) runs -> one JSONL record per sample.

Sample-major on purpose: a sample's video is decoded once and every pruner setting of that
sample reuses the frames, and the AutoGaze settings run before the baselines matched to them,
so a matched budget (AutoGaze's kept count on this very sample) is known when a baseline needs
it: it flows in memory (``RunHandle.kept``) within a run, and on resume from the source run's
typed records (``schema.SampleRecord``). Which runs are budget sources is the pruner class's
``defines_matched_budget``, not a name known here.

Every record is a ``schema.SampleRecord``: built by ``_new_record``, filled by ``_prepare``,
``_finish`` and ``_score``, validated by the writer; no field exists outside that model.

Work reused beyond one sample: a later model entry whose frame settings are equal gets the frames
an earlier one decoded (``frame_share.py``), and AutoGaze's gazes go through the content-addressed
gaze cache (``harness.gaze.cache``, on unless ``cache.gaze: false``); records say which
(``frames_shared``, ``gaze_cache``) and are otherwise what a run without reuse writes.

With ``generation.batch_size`` > 1 and an adapter that has ``generate_batch`` (vLLM), records
wait in an ordered queue after pruning and their generation requests go out in batches
(``batching.py``); pruning itself stays sequential, so matched budgets are unchanged, and the
records written are those of the one-by-one path apart from timing fields.

Failures are data: an exception while decoding, pruning, generating or scoring one sample
becomes a record with ``error`` (stage, type, message) and the loop goes on.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sys
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from pydantic import ValidationError

from harness.models.request import BatchItem
from harness.pruning.native_gaze import select_for_native_stage
from harness.pruning.selection import Selection
from harness.runner.batching import Outcome, generate_many, supports_batching
from harness.runner.components import TINY_LABEL, Components, DecodedVideo
from harness.runner.config import (
    BenchmarkConfig,
    ConfigError,
    EvalConfig,
    FramesConfig,
    GenerationConfig,
    ModelConfig,
    ModelPlan,
    dump_config,
)
from harness.runner.frame_share import SharedFrames
from harness.runner.lock import RunLock
from harness.runner.masks import mask_record
from harness.runner.meta import run_meta
from harness.runner.presets import recorded_pipeline
from harness.runner.records import (
    RUN_FILE,
    RecordWriter,
    latest_records,
    records_filename,
    write_json,
)
from harness.runner.schema import BudgetInfo, ErrorInfo, SampleRecord, SelectionSummary, Tokens, problem
from harness.runner.sharding import ShardInfo, device_for_rank, shard, shard_from_env
from harness.runner.sweep import PrunerSetting, expand, resolve_budget
from harness.stages import CACHED_GAZE, STAGES, TOTAL


@dataclass
class RunHandle:
    """One run (model x benchmark x pruner setting): its directory, writer and what is done."""

    setting: PrunerSetting
    run_dir: Path
    writer: RecordWriter
    done: set[str]
    kept: dict[str, int] = field(default_factory=dict)  # sample id -> kept tokens (budget-source runs)
    written: int = 0
    errors: int = 0


@dataclass
class _Entry:
    """A record on its way to disk; ``item`` is its generation request while that is outstanding."""

    rec: SampleRecord
    handle: RunHandle
    sample: Any
    item: BatchItem | None = None
    #: a feature-stage method's evidence scorer, called with the keep the model reported (see
    #: ``_evidence_after_model``); None for every other pruner
    after_model: Any = None


@dataclass
class _PlanState:
    """One model plan's loop state: the adapter, the ordered record queue and the counters."""

    plan: ModelPlan
    adapter: Any
    benchmark: Any
    bar: Any
    batch_size: int
    batched: bool
    queue: list[_Entry] = field(default_factory=list)
    written: int = 0
    errors: int = 0


def _batching(plan: ModelPlan, adapter: Any) -> tuple[int, bool]:
    """(requests held before generating, whether to use ``generate_batch``) for this plan."""
    size = int(plan.generation.batch_size)
    if size <= 1:
        return 1, False
    if not supports_batching(adapter):
        warnings.warn(f"generation.batch_size={size} ignored for {plan.model.label}: its adapter "
                      f"({type(adapter).__name__}) has no generate_batch; generating one request at a time",
                      RuntimeWarning, stacklevel=2)
        return 1, False
    return size, True


@dataclass
class EvalResult:
    output_dir: Path
    run_dirs: list[Path]
    written: int
    errors: int
    skipped: int


def run_id(model_label: str, setting: PrunerSetting) -> str:
    return f"{model_label}/{setting.label}"


def _error(stage: str, exc: BaseException) -> ErrorInfo:
    tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
    return ErrorInfo(stage=stage, type=type(exc).__name__, message=str(exc), traceback="".join(tb[-6:]))


def _split_values(sample: Any, benchmark: Any) -> dict[str, Any]:
    """Split labels the report groups accuracy by (duration, domain, category, ...)."""
    meta = dict(getattr(sample, "metadata", None) or {})
    keys = getattr(benchmark, "split_keys", None) or getattr(benchmark, "group_columns", None)
    if keys is None:
        keys = [k for k, v in meta.items() if isinstance(v, str)]
    return {k: meta.get(k) for k in keys if k in meta}


def _selection_summary(selection: Any) -> SelectionSummary | None:
    if selection is None:
        return None
    g = selection.geometry
    # "_"-keys are in-process only (e.g. the autogaze pruner's VideoGaze, drawn by mask_record)
    info = {k: v for k, v in (selection.info or {}).items() if not k.startswith("_") and _is_small(v)}
    return SelectionSummary(
        kept=int(selection.num_kept),
        total=int(g.total_tokens),
        geometry={"num_frames": g.num_frames, "height": g.height, "width": g.width,
                  "patch_size": g.patch_size, "temporal_patch_size": g.temporal_patch_size,
                  "spatial_merge_size": g.spatial_merge_size, "grid": [g.grid_t, g.grid_h, g.grid_w]},
        kept_per_group=[int(n) for n in selection.kept_per_group()],
        info=info,
    )


def _gaze_count(rec: SampleRecord) -> int | None:
    """AutoGaze's own gaze count for this record (None when no AutoGaze ran), to set beside
    ``visual_after`` so a mapping's inflation (``expand``) or loss (``drop``) is visible."""
    gazes = (rec.selection.info if rec.selection is not None else {}).get("gazed_total")
    return None if gazes is None else int(gazes)


def _is_small(value: Any) -> bool:
    """Keep record lines small: scalars, short lists and small dicts only."""
    try:
        return len(json.dumps(value, default=str)) < 2000
    except (TypeError, ValueError):
        return False


class Evaluator:
    """Runs an ``EvalConfig``; ``components`` are the package links (fakes in tests)."""

    def __init__(self, cfg: EvalConfig, components: Components | None = None, shard_info: ShardInfo | None = None,
                 retry_failed: bool = True, progress: bool = True):
        self.cfg = cfg
        self.components = components or Components()
        self.shard = shard_info or shard_from_env()
        self.retry_failed = retry_failed
        self.progress = progress
        self.output_dir = Path(cfg.output_dir)

    # ------------------------------------------------------------ setup

    def _write_meta(self) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        tiny = [p.model.label for p in self.cfg.plans() if p.model.is_tiny]
        meta = run_meta(self.cfg.to_dict(), rank=self.shard.rank, world_size=self.shard.world_size,
                        config_file=self.cfg.source, notice=TINY_LABEL if tiny else None, tiny_models=tiny)
        name = "run_meta.json" if self.shard.world_size == 1 else f"run_meta.rank{self.shard.rank:03d}.json"
        write_json(self.output_dir / name, meta)
        if self.shard.is_main:
            (self.output_dir / "config.yaml").write_text(dump_config(self.cfg))

    def _run_info(self, plan: ModelPlan, setting: PrunerSetting) -> dict[str, Any]:
        return {
            "run_id": run_id(plan.model.label, setting),
            "experiment": self.cfg.name,
            "model": {**plan.model.model_dump(), "label": plan.model.label, "tiny": plan.model.is_tiny,
                      "pipeline": recorded_pipeline(plan.model.family, plan.model.pipeline)},
            "notice": TINY_LABEL if plan.model.is_tiny else None,
            "backend": self.cfg.backend,
            "benchmark": self.cfg.benchmark.model_dump(),
            "frames": plan.frames.model_dump(),
            "generation": plan.generation.model_dump(),
            "pruner": setting.to_dict(),
        }

    def _open_runs(self, plan: ModelPlan, settings: list[PrunerSetting],
                   worker: dict[str, Any] | None = None) -> list[RunHandle]:
        handles = []
        for setting in settings:
            run_dir = self.output_dir / plan.model.label / setting.label
            run_dir.mkdir(parents=True, exist_ok=True)
            run = self._run_info(plan, setting)
            if worker:  # a model runtime's stack (python, torch, transformers): what made the numbers
                run["worker"] = worker
            write_json(run_dir / RUN_FILE, run)
            latest = latest_records(run_dir)
            done = {sid for sid, rec in latest.items() if rec.ok or not self.retry_failed}
            handle = RunHandle(setting=setting, run_dir=run_dir,
                               writer=RecordWriter(run_dir / records_filename(self.shard.rank, self.shard.world_size)),
                               done=done)
            if setting.defines_matched_budget:  # resume: the matched budgets of samples done earlier
                # from any record that selected, failed at generation or not: within a run the kept
                # count reaches the matched runs at selection time, so a resume must read the same
                for sid, rec in latest.items():
                    if rec.selection is not None and rec.selection.kept is not None:
                        handle.kept[sid] = rec.selection.kept
            handles.append(handle)
        return handles

    # ------------------------------------------------------------ main loop

    def run(self) -> EvalResult:
        """Run every plan, holding the output directory's lock (``lock.py``) throughout.

        The lock comes first, before the same-configuration check, so a second run on the directory
        fails at once and two runs started together cannot both pass the check. Nothing else is
        written until the benchmark, the first plan's pruners and its model have loaded, and a
        directory this call created is removed again if it is still empty, so a bad path or
        checkpoint leaves no run directory to block the rerun.
        """
        created = not self.output_dir.exists()
        try:
            lock = RunLock(self.output_dir, self.shard.rank, self.shard.world_size).acquire()
        except OSError as exc:  # not a directory, no permission, a file system without flock
            raise ConfigError(f"output_dir {self.output_dir}: cannot be used or locked "
                              f"({exc.strerror or exc})") from exc
        for note in lock.taken_over:
            print(f"note: took over the lock of a run that is gone ({note})", file=sys.stderr, flush=True)
        from harness.gaze import cache as gaze_cache

        cache_cfg = self.cfg.cache
        previous = gaze_cache.configure(cache_cfg.gaze, cache_cfg.gaze_max_gb, cache_cfg.dir)
        try:
            return self._run_locked()
        finally:
            gaze_cache.restore(previous)
            lock.release()
            if created:
                with contextlib.suppress(OSError):
                    self.output_dir.rmdir()  # only succeeds when nothing was written

    def _run_locked(self) -> EvalResult:
        self._say(f"loading benchmark {self.cfg.benchmark.name!r}")
        benchmark = self._load_benchmark()
        run_dirs: list[Path] = []
        written = errors = skipped = 0
        plans = self.cfg.plans()
        self.shared_frames = SharedFrames([p.frames for p in plans], int(self.cfg.cache.shared_frames_gb * 2**30))
        for index, plan in enumerate(plans):
            self.shared_frames.start_plan(index)
            settings = expand(plan.pruners)
            self._check_existing_runs(plan, settings)
            device = device_for_rank(plan.model.device, self.shard)
            self._say(f"{plan.model.label}: loading {len(settings)} pruner run(s) and the model ({plan.model.path})")
            pruners = self._build_pruners(settings, device)
            adapter = self._load_adapter(plan, device)
            worker = getattr(adapter, "versions", None) if plan.model.runtime is not None else None
            if isinstance(worker, dict) and worker:
                v = worker
                self._say(f"{plan.model.label}: worker {v.get('executable')} (python {v.get('python')}, "
                          f"torch {v.get('torch')}, transformers {v.get('transformers')})")
            self._say(f"{plan.model.label}: running {len(settings)} run(s) per sample; "
                      f"the first sample also warms up (untimed)")
            if not run_dirs:
                self._write_meta()
            handles = self._open_runs(plan, settings, worker if isinstance(worker, dict) else None)
            run_dirs += [h.run_dir for h in handles]
            try:
                w, e, s = self._run_plan(plan, benchmark, handles, pruners, adapter)
            finally:
                for h in handles:
                    h.writer.close()
                if sys.exc_info()[0] is not None:
                    _close(adapter)
            written, errors, skipped = written + w, errors + e, skipped + s
            _close(adapter)  # a model runtime's worker process ends with its plan
            del adapter
            _free_accelerator_memory()
        return EvalResult(self.output_dir, run_dirs, written, errors, skipped)

    def _say(self, text: str) -> None:
        """What the run is doing now, between progress bars (a quiet wait looks like a hang)."""
        if self.progress and self.shard.is_main:
            print(text, flush=True)

    def _load_benchmark(self) -> Any:
        try:
            return self.components.load_benchmark(self.cfg.benchmark)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"benchmark {self.cfg.benchmark.name!r}: {_first_line(exc)}") from exc

    def _check_existing_runs(self, plan: ModelPlan, settings: list[PrunerSetting]) -> None:
        """Refuse, before loading anything, to resume a directory made by another configuration."""
        for setting in settings:
            _check_same_run(self.output_dir / plan.model.label / setting.label / RUN_FILE,
                            self._run_info(plan, setting))
            if setting.budget.kind == "matched":
                _check_match_source(self.output_dir / plan.model.label, setting)

    def _build_pruners(self, settings: list[PrunerSetting], device: str) -> dict[str, Any]:
        pruners: dict[str, Any] = {}
        for setting in settings:  # fail fast on bad pruner params or a missing checkpoint
            try:
                self._pruner(pruners, setting, device)
            except Exception as exc:  # noqa: BLE001 - re-raised as a config error naming the run
                hint = _pruner_class_attr(setting.name, "load_hint", "")
                hint = f"; {hint}" if hint else ""
                raise ConfigError(f"pruner run {setting.label!r}: {_first_line(exc)}{hint}") from exc
        return pruners

    def _load_adapter(self, plan: ModelPlan, device: str) -> Any:
        try:
            return self.components.load_adapter(plan.model, self.cfg.backend, device, self.cfg.seed)
        except ConfigError:
            raise
        except Exception as exc:  # noqa: BLE001 - nothing ran yet: one line naming the model
            raise ConfigError(f"model {plan.model.label!r} ({plan.model.path}) did not load: "
                              f"{type(exc).__name__}: {_first_line(exc)}") from exc

    def _samples(self, benchmark: Any) -> tuple[Any, int | None]:
        limit = self.cfg.benchmark.limit
        samples = benchmark.samples(limit=limit)
        total = None
        if hasattr(benchmark, "__len__"):
            total = len(benchmark)
        if limit is not None:
            total = int(limit) if total is None else min(total, int(limit))
        if total is not None:
            total = len(range(self.shard.rank, total, self.shard.world_size))
        return shard(samples, self.shard), total

    def _run_plan(self, plan: ModelPlan, benchmark: Any, handles: list[RunHandle], pruners: dict[str, Any],
                  adapter: Any) -> tuple[int, int, int]:
        samples, total = self._samples(benchmark)
        bar = _progress(total, len(handles), f"{plan.model.label}", self.progress and self.shard.is_main)
        state = _PlanState(plan, adapter, benchmark, bar, *_batching(plan, adapter))
        skipped = 0
        warmed = False
        try:
            for sample in samples:
                sid = str(sample.id)
                todo = [h for h in handles if sid not in h.done]
                skipped += len(handles) - len(todo)
                if not todo:
                    bar.update(len(handles))
                    continue
                bar.update(len(handles) - len(todo))
                video, decode_error = self._decode(sample, plan)
                if not warmed and decode_error is None:
                    self._warm_up(plan, adapter, [pruners[self._key(h.setting)] for h in todo], video,
                                  str(sample.video_path))
                    warmed = True
                # Pruning stays sequential and in run order (AutoGaze before the baselines matched
                # to it); only generation waits in the queue to be batched.
                for h in todo:
                    rec = self._new_record(plan, sample, benchmark, h.setting)
                    entry = _Entry(rec, h, sample)
                    if decode_error is not None:
                        rec.error = decode_error
                    else:
                        entry.item = self._prepare(rec, h, handles, plan, pruners[self._key(h.setting)], adapter,
                                                   sample, benchmark, video)
                        entry.after_model = self._evidence_after_model(benchmark, sample, video, entry.item)
                    self._enqueue(state, entry)
                del video
            self._flush(state)
        finally:
            bar.close()
        return state.written, state.errors, skipped

    # ------------------------------------------------------------ record queue

    def _enqueue(self, state: _PlanState, entry: _Entry) -> None:
        """Queue a record; generate once ``batch_size`` requests wait, else write what is complete.

        Records leave the queue in the order they entered, so every run file lists its samples in
        the same order whatever the batch size; at most ``batch_size`` requests (and so the frames
        of at most ``batch_size`` samples) are held at any time.
        """
        state.queue.append(entry)
        if sum(e.item is not None for e in state.queue) >= state.batch_size:
            self._flush(state)
        else:
            self._write_ready(state)

    def _flush(self, state: _PlanState) -> None:
        """Generate every waiting request (one batched call when the adapter can), then write all."""
        waiting = [e for e in state.queue if e.item is not None]
        if waiting:
            gen_cfg, model = state.plan.generation, state.plan.model
            outcomes = generate_many(state.adapter, [e.item for e in waiting],
                                     max_new_tokens=int(gen_cfg.max_new_tokens), prune_stage=model.prune_stage,
                                     batched=state.batched)
            for entry, outcome in zip(waiting, outcomes, strict=True):
                entry.item = None
                self._finish(entry.rec, entry.sample, state.benchmark, outcome)
                kept_grid = getattr(outcome.generation, "kept_grid", None)
                if entry.after_model is not None and kept_grid is not None and entry.rec.error is None:
                    try:
                        entry.rec.evidence = entry.after_model(kept_grid)
                    except Exception as exc:  # noqa: BLE001 - one sample's failure must not end the run
                        entry.rec.error = _error("evidence", exc)
                entry.after_model = None
        self._write_ready(state)

    def _write_ready(self, state: _PlanState) -> None:
        while state.queue and state.queue[0].item is None:
            entry = state.queue.pop(0)
            rec, h = entry.rec, entry.handle
            latency = rec.latency
            if "decode" in latency:  # the sample was decoded: its stage times add up to the total
                latency[TOTAL] = sum(v for k, v in latency.items()
                                     if (k in STAGES or k == CACHED_GAZE) and v is not None)
            rec.finished = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
            try:
                h.writer.write(rec)
            except ValueError as exc:  # the schema refused the record: keep the sample, as a failure
                rec = _refused(rec, exc)
                h.writer.write(rec)
            h.written += 1
            state.written += 1
            if not rec.ok:
                h.errors += 1
                state.errors += 1
            state.bar.update(1)
            state.bar.set_postfix(errors=state.errors, refresh=False)

    @staticmethod
    def _warm_up(plan: ModelPlan, adapter: Any, pruners: list[Any], video: DecodedVideo,
                 video_path: str | None = None) -> None:
        """One untimed pass of each pruner and of the model on the first decoded sample.

        One pass per gaze model, not per AutoGaze setting, and none where the gaze cache already
        holds the gaze (the timed pass will not run the gaze model).

        Why: first calls pay for lazy initialisation (kernel selection, allocator growth, cache
        set-up). Without a warm-up that cost lands on whichever run comes first (usually
        ``none``) and every speed-up in the report is inflated. Failures are ignored here: the
        real pass records them against the sample.
        """
        from harness.gaze import cache as gaze_cache

        frames = video.frames
        try:
            geometry = adapter.token_geometry(*frames.shape[:3])
        except Exception:  # noqa: BLE001 - the timed pass will record it
            return
        warmed: set[Any] = set()
        for pruner in {id(p): p for p in pruners}.values():
            key = pruner.warm_up_key() if hasattr(pruner, "warm_up_key") else id(pruner)
            if key in warmed:  # e.g. every AutoGaze threshold runs the same gaze model: warm it once
                continue
            warmed.add(key)
            is_cached = getattr(pruner, "gaze_is_cached", None)
            with contextlib.suppress(Exception):
                if is_cached is not None and is_cached(frames):
                    continue  # the timed pass reads its gaze from the cache: no model call to warm up
            # the cache is bypassed: a warm-up must neither fill it (the timed pass would read its
            # own gaze back and record a hit) nor be served from it (it would warm up nothing)
            with contextlib.suppress(Exception), gaze_cache.bypass():
                pruner.select(frames, geometry, budget=max(1, geometry.total_tokens // 2), fps=video.fps)
        if plan.generation.enabled:
            extra = {"video_path": video_path} if getattr(adapter, "wants_video_path", False) else {}
            with contextlib.suppress(Exception):
                adapter.generate(frames, Selection.keep_all(geometry), "warm-up", fps=video.fps, max_new_tokens=1,
                                 prune_stage=plan.model.prune_stage, **extra)

    def _new_record(self, plan: ModelPlan, sample: Any, benchmark: Any, setting: PrunerSetting) -> SampleRecord:
        """A sample's record for one run, before anything ran: who, what was asked, which pruner setting."""
        return SampleRecord(
            run_id=run_id(plan.model.label, setting),
            sample_id=str(sample.id),
            benchmark=self.cfg.benchmark.name,
            model=plan.model.label,
            tiny_model=plan.model.is_tiny,
            pruner=setting.name,
            pruner_label=setting.label,
            pruner_params=setting.params,
            budget=BudgetInfo(**setting.budget.to_dict()),
            video=str(sample.video_path),
            question=sample.question,
            options=list(sample.options or []),
            answer=sample.answer,
            splits=_split_values(sample, benchmark),
            extraction=self.cfg.benchmark.extraction,
            rank=self.shard.rank,
        )

    def _decode(self, sample: Any, plan: ModelPlan) -> tuple[DecodedVideo | None, ErrorInfo | None]:
        refused = getattr(sample, "data_error", None)
        if refused:  # e.g. a video path that leaves the dataset: fail the sample, open nothing
            print(f"warning: {refused}", file=sys.stderr, flush=True)
            return None, ErrorInfo(stage="data", type="DataError", message=str(refused))
        shared = getattr(self, "shared_frames", None)
        path = str(sample.video_path)
        if shared is not None and (video := shared.get(path)) is not None:
            return video, None  # an earlier model entry with equal frame settings decoded it
        start = time.perf_counter()
        try:
            video = self.components.load_frames(path, plan.frames)
        except Exception as exc:  # noqa: BLE001 - any decode failure is recorded against the sample
            return None, _error("decode", exc)
        if not video.seconds:
            video.seconds = time.perf_counter() - start
        if shared is not None:
            shared.put(path, video)
        return video, None

    @staticmethod
    def _key(setting: PrunerSetting) -> str:
        return json.dumps([setting.name, setting.params], sort_keys=True, default=str)

    def _pruner(self, pruners: dict[str, Any], setting: PrunerSetting, device: str) -> Any:
        key = self._key(setting)
        if key not in pruners:
            params = dict(setting.params)
            if "device" not in params and _takes_device(setting.name):
                params["device"] = device  # a gaze model runs beside the MLLM unless told otherwise
            pruners[key] = self.components.build_pruner(setting.name, params)
        return pruners[key]

    def _prepare(self, rec: SampleRecord, h: RunHandle, handles: list[RunHandle], plan: ModelPlan,
                 pruner: Any, adapter: Any, sample: Any, benchmark: Any, video: DecodedVideo) -> BatchItem | None:
        """Prompt, prune and evidence for one record; returns its generation request (None: nothing to ask).

        A failure here is recorded in ``rec`` and ends the record (no request).
        """
        sid = rec.sample_id
        rec.frames = video.to_dict()
        rec.frames_shared = bool(video.shared)
        latency = rec.latency
        latency["decode"] = video.seconds
        stage = "prompt"
        try:
            prompt = benchmark.build_prompt(sample, **self.cfg.benchmark.prompt_kwargs)
            rec.prompt = prompt
            stage = "prune"
            frames = video.frames
            t, hgt, wid = frames.shape[0], frames.shape[1], frames.shape[2]
            geometry = adapter.token_geometry(t, hgt, wid)
            matched = None
            if h.setting.budget.kind == "matched":
                source = next((x for x in handles if x.setting.label == h.setting.budget.match), None)
                matched = source.kept.get(sid) if source else None
            budget = resolve_budget(h.setting.budget, geometry.total_tokens, matched)
            from harness.gaze import cache as gaze_cache

            label = {"video": Path(str(sample.video_path)).name, "num_frames": int(t),  # for `cache list`
                     "first_index": rec.frames["first_index"], "last_index": rec.frames["last_index"]}
            start = time.perf_counter()
            with gaze_cache.describing(**label):
                if plan.model.prune_stage == "native":
                    selection = select_for_native_stage(pruner, adapter, frames, geometry, budget, video.fps)
                else:
                    selection = pruner.select(frames, geometry, budget=budget, fps=video.fps)
            elapsed = time.perf_counter() - start
            status = (selection.info or {}).pop("_gaze_cache", None) if selection is not None else None
            rec.gaze_cache = status
            # the stage the pruner's work belongs to (its class says); none for a pruner that did none
            timed = CACHED_GAZE if status == "hit" else getattr(pruner, "latency_stage", "prune")
            if timed is not None:
                latency[timed] = elapsed
            rec.selection = _selection_summary(selection)
            masks = mask_record(selection, video.indices)  # a few frames' masks for the report's strips
            if masks is not None and rec.selection is not None:
                rec.selection.masks = masks
            if h.setting.defines_matched_budget and selection is not None:
                h.kept[sid] = int(selection.num_kept)  # in memory: the runs matched to this one read it
            stage = "evidence"
            rec.evidence = self.components.evidence_scores(benchmark, selection, sample, video)
        except Exception as exc:  # noqa: BLE001 - one sample's failure must not end the run
            rec.error = _error(stage, exc)
            _free_accelerator_memory()
            return None
        if not plan.generation.enabled:
            return None
        if video.pass_indices:
            return BatchItem(frames, selection, prompt, video.fps, video=str(sample.video_path),
                             indices=video.indices, source_frames=video.source_frames)
        return BatchItem(frames, selection, prompt, video.fps, video=str(sample.video_path))

    def _evidence_after_model(self, benchmark: Any, sample: Any, video: Any, item: BatchItem | None) -> Any:
        """For a feature-stage method (DyCoke, VidCom2, VisionZip: it chooses from the projector's
        features, not the LLM), a scorer of the tokens it kept, called once the model reported them:
        the same pruner-only evidence scores as any other pruner's, on its final keep grid."""
        sel = None if item is None else item.selection
        if sel is None or sel.reducer is None or not getattr(sample, "evidence", None):
            return None
        g, frames = sel.geometry, SimpleNamespace(indices=list(video.indices))  # not the pixels

        def score(kept_grid: Any) -> dict[str, Any] | None:
            final = Selection(g, kept_grid.view(g.grid_t, g.grid_h, g.grid_w), pruner=sel.pruner)
            return self.components.evidence_scores(benchmark, final, sample, frames)

        return score

    def _finish(self, rec: SampleRecord, sample: Any, benchmark: Any, outcome: Outcome) -> None:
        """Fill a record from its generation outcome and score it (the same fields on every path)."""
        latency = rec.latency
        if outcome.error is not None:
            rec.error = _error("generate", outcome.error)
            _free_accelerator_memory()
            return
        stage = "generate"
        try:
            gen = outcome.generation
            rec.output = gen.text
            tok = gen.tokens
            rec.tokens = Tokens(visual_before=tok.visual_before, visual_after=tok.visual_after,
                                prompt=tok.prompt, generated=tok.generated, gazes=_gaze_count(rec))
            for name, seconds in (gen.timings or {}).items():
                if name not in STAGES:
                    raise ValueError(f"the adapter timed a stage {name!r} that is not one of {', '.join(STAGES)}")
                if name == "gaze" and "gaze" in latency:  # adapter-side gazing (e.g. NVILA) adds to ours
                    latency["gaze"] += float(seconds)
                else:
                    latency[name] = float(seconds)
            if outcome.batch_size > 1:
                rec.latency_batched = outcome.batch_size
                if outcome.amortized_seconds is not None:  # no per-request model time from the backend
                    latency["generate"] = latency.get("generate", 0.0) + outcome.amortized_seconds
                    rec.latency_amortized = True
            rec.peak_memory_mb = gen.peak_memory_mb
            if gen.extra:
                rec.generation_extra = {k: v for k, v in gen.extra.items() if _is_small(v)}
            stage = "score"
            self._score(rec, sample, benchmark, gen.text)
        except Exception as exc:  # noqa: BLE001 - one sample's failure must not end the run
            rec.error = _error(stage, exc)
            _free_accelerator_memory()

    def _score(self, rec: SampleRecord, sample: Any, benchmark: Any, text: str) -> None:
        """Score the output with the shared scorer (``benchmarks.scoring``, as ``score`` and ``report`` do)."""
        from benchmarks import scoring

        convention = self.cfg.benchmark.extraction or getattr(benchmark, "default_extraction", None)
        score = scoring.score_output(benchmark, sample, text, convention)
        rec.extraction = convention
        rec.extracted = score["pred"]
        rec.correct = score["correct"]
        rec.counted = score["counted"]
        rec.status = score["status"]
        if score["status"] == "invalid_sample":
            rec.invalid_reason = score["reason"]


#: What a record refused by the schema keeps: which sample of which run it was.
_IDENTITY = ("run_id", "sample_id", "benchmark", "model", "tiny_model", "pruner", "pruner_label", "pruner_params",
             "budget", "video", "question", "options", "answer", "splits", "extraction", "rank", "finished")


def _refused(rec: SampleRecord, exc: ValueError) -> SampleRecord:
    """The record of a sample whose filled-in record the schema refused (an engine or adapter bug):
    its identity and the refusal as its error, so the run goes on and the report shows the cause."""
    message = problem(exc) if isinstance(exc, ValidationError) else _first_line(exc)
    return SampleRecord(**{k: getattr(rec, k) for k in _IDENTITY},
                        error=ErrorInfo(stage="record", type=type(exc).__name__, message=message))


def _pruner_class_attr(name: str, attr: str, default: Any) -> Any:
    """A registered pruner class's attribute (``load_hint``, ...); ``default`` for a name the registry lacks."""
    from harness.pruning.registry import PRUNERS, get_pruner_class

    return getattr(get_pruner_class(name), attr, default) if name in PRUNERS else default


def _takes_device(name: str) -> bool:
    """Whether pruner ``name`` runs a model on a device (its constructor takes ``device``)."""
    from harness.pruning.registry import PRUNERS, pruner_params

    return name in PRUNERS and "device" in pruner_params(name)


def _fingerprint(run: dict[str, Any]) -> dict[str, Any]:
    """What decides a run's numbers: resuming under a different value would mix two experiments.

    Left out on purpose: names, device, ``model.runtime.timeout_s`` (``cuda`` vs ``cuda:3`` under torchrun), ``benchmark.limit``
    (extending a run to more samples is a resume), ``generation.batch_size`` and the decoder's
    chunking (throughput knobs: a run may resume with another batch size).
    """
    model = {k: v for k, v in (run.get("model") or {}).items() if k not in ("device", "name", "label")}
    if isinstance(model.get("runtime"), dict):  # which interpreter counts, not how long it may take
        model["runtime"] = {k: v for k, v in model["runtime"].items() if k != "timeout_s"}
    bench = {k: v for k, v in (run.get("benchmark") or {}).items() if k != "limit"}
    frames = {k: v for k, v in (run.get("frames") or {}).items() if k not in ("chunk_size", "max_decoded_gb")}
    generation = {k: v for k, v in (run.get("generation") or {}).items() if k != "batch_size"}
    return json.loads(json.dumps({"model": model, "backend": run.get("backend"), "benchmark": bench,
                                  "frames": frames, "generation": generation,
                                  "pruner": run.get("pruner")}, default=str))


def _check_match_source(model_dir: Path, setting: PrunerSetting) -> None:
    """Refuse to resume a matched run whose source run lacks samples it was matched to.

    Why: a matched record's budget is its source's kept count on that sample. A source record is
    always written before the records matched to it, so a successful matched record without one
    means the source directory was removed (as ``_check_same_run`` advises when the source's
    settings change) or replaced; resuming would give the remaining samples the new source's
    budgets beside the old ones, two matches mixed in one run.
    """
    done = [sid for sid, rec in latest_records(model_dir / setting.label).items() if rec.ok]
    if not done:
        return
    source = {sid for sid, rec in latest_records(model_dir / str(setting.budget.match)).items()
              if rec.selection is not None and rec.selection.kept is not None}
    missing = sorted(sid for sid in done if sid not in source)
    if missing:
        shown = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
        raise ConfigError(
            f"{model_dir / setting.label} holds {len(missing)} record(s) matched to {setting.budget.match!r} "
            f"samples it no longer has ({shown}): their budgets came from a source run that was removed or "
            f"replaced; remove that directory too, or use another output_dir"
        )


_SECTION_DEFAULTS = {"model": ModelConfig, "benchmark": BenchmarkConfig, "frames": FramesConfig,
                     "generation": GenerationConfig}


def _drop_new_defaults(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """A key added to the config schema after a run was made, at its default, is not a change."""
    out = json.loads(json.dumps(new))
    for section, cls in _SECTION_DEFAULTS.items():
        defaults = json.loads(json.dumps(cls().model_dump(), default=str))
        old_sec, new_sec = old.get(section) or {}, out.get(section) or {}
        for key in list(new_sec):
            if key not in old_sec and key in defaults and new_sec[key] == defaults[key]:
                del new_sec[key]
    return out


def _check_same_run(path: Path, run: dict[str, Any]) -> None:
    if not path.is_file():
        return
    old, new = _fingerprint(json.loads(path.read_text())), _fingerprint(run)
    new = _drop_new_defaults(old, new)
    if old != new:
        diffs = _diff(old, new)
        raise ConfigError(
            f"{path.parent} holds records of a different configuration ({'; '.join(diffs[:5])}); "
            f"resuming would mix two experiments: use another output_dir or remove that directory"
        )


def _diff(old: Any, new: Any, where: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new)):
            out += _diff(old.get(key), new.get(key), f"{where}.{key}" if where else key)
        return out
    return [] if old == new else [f"{where}: {old!r} -> {new!r}"]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _close(adapter: Any) -> None:
    """Stop what an adapter holds outside this process (a model runtime's worker); no-op otherwise."""
    close = getattr(adapter, "close", None)
    if callable(close):
        close()


def _free_accelerator_memory() -> None:
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass


class _NullBar:
    def update(self, n: int = 1) -> None: ...
    def set_postfix(self, **kw: Any) -> None: ...
    def close(self) -> None: ...


def _progress(total_samples: int | None, per_sample: int, desc: str, enabled: bool) -> Any:
    if not enabled:
        return _NullBar()
    from tqdm.auto import tqdm

    total = None if total_samples is None else total_samples * per_sample
    return tqdm(total=total, desc=desc, unit="rec", dynamic_ncols=True, smoothing=0.1)
