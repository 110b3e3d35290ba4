"""Write an lmms-eval samples log with lmms-eval's own code (the installed 0.7.3 package).

The chain is lmms-eval's: ``videomme_process_results`` (its task, scoring with its mcq
extractor), ``_process_document_results`` (evaluator.py: the logged sample per document) and
``EvaluationTracker.save_results_samples`` (the ``*_samples_videomme.jsonl`` file). Those modules
import lmms-eval's heavy stack (accelerate, loguru, datasets hub code...), so the few functions
the chain runs are compiled alone from the installed files, as tests/test_bench_reference.py
does for ``clustered_stderr``; nothing of lmms-eval is copied into this repository.
"""

from __future__ import annotations

import ast
import collections
import dataclasses
import hashlib
import json
import sys
import types
import typing
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tests.test_bench_reference import lmms_eval_root, lmms_mcq_extract


def compile_defs(relpath: str, names: set[str], namespace: dict[str, Any]) -> dict[str, Any]:
    """The named top-level functions, classes and constants of an lmms-eval file, compiled into ``namespace``."""
    path = lmms_eval_root() / relpath
    tree = ast.parse(path.read_text())
    def name_of(node: ast.stmt) -> str | None:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            return node.name
        if isinstance(node, ast.Assign | ast.AnnAssign):
            target = node.targets[0] if isinstance(node, ast.Assign) else node.target
            return target.id if isinstance(target, ast.Name) else None
        return None

    body = [n for n in tree.body if name_of(n) in names]
    missing = names - {name_of(n) for n in body}
    assert not missing, f"{path} lacks {missing}"
    exec(compile(ast.Module(body=body, type_ignores=[]), str(path), "exec"), namespace)
    return namespace


def _common_namespace() -> dict[str, Any]:
    ns: dict[str, Any] = {"np": np, "torch": torch, "json": json, "hashlib": hashlib, "collections": collections,
                          "dataclass": dataclasses.dataclass, "asdict": dataclasses.asdict, "Path": Path,
                          "eval_logger": types.SimpleNamespace(info=lambda *a, **k: None,
                                                               warning=lambda *a, **k: None)}
    ns.update({k: getattr(typing, k) for k in ("Any", "Optional", "List", "Dict", "Union", "Callable")})
    return compile_defs("utils.py", {"hash_string", "handle_non_serializable", "is_multimodal_content",
                                     "sanitize_list", "sanitize_model_name"}, ns)


def inject_mcq(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``from lmms_eval.tasks._task_utils.mcq_extract import extract_mcq_answer`` work (videomme utils)."""
    mcq = types.ModuleType("lmms_eval.tasks._task_utils.mcq_extract")
    mcq.extract_mcq_answer = lmms_mcq_extract()
    for name in ("lmms_eval.tasks", "lmms_eval.tasks._task_utils"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "lmms_eval.tasks._task_utils.mcq_extract", mcq)


@dataclasses.dataclass
class _Request:
    """The fields of lmms_eval.api.instance.Instance that _process_document_results reads."""

    doc: dict
    args: tuple
    resps: list
    filtered_resps: dict
    raw_filtered_resps: dict = dataclasses.field(default_factory=dict)
    token_counts: list = dataclasses.field(default_factory=list)


def write_samples_log(out_dir: Path, task_utils: types.ModuleType, docs: list[dict], outputs: list[str],
                      date_id: str = "20260101_000000") -> tuple[Path, list[dict]]:
    """lmms-eval's samples log for ``docs`` answered with ``outputs``; also the metric dicts it aggregates."""
    ns = _common_namespace()
    ns.update({"base64": __import__("base64"), "mimetypes": __import__("mimetypes"), "os": __import__("os"),
               "re": __import__("re")})
    compile_defs("evaluator.py", {"_ProcessedDocument", "_process_document_results", "_collect_input_media",
                                  "_extract_image_sources", "_looks_like_image_ref", "_guess_image_mime",
                                  "_append_image_source", "IMAGE_EXTENSIONS"}, ns)
    ns.setdefault("strip_reasoning_tags", lambda text, tags: text)  # reasoning_tags=None: never called
    tracker_ns = dict(ns)
    tracker_ns.update({"time": __import__("time"), "os": __import__("os")})
    compile_defs("loggers/evaluation_tracker.py", {"GeneralConfigTracker", "EvaluationTracker"}, tracker_ns)
    tracker_ns["HfApi"] = None
    task = types.SimpleNamespace(
        doc_to_target=lambda doc: doc["answer"],
        process_results=task_utils.videomme_process_results,
        config=types.SimpleNamespace(repeats=1),
    )
    samples, metrics = [], []
    for doc_id, (doc, output) in enumerate(zip(docs, outputs)):
        req = _Request(doc=doc, args=("prompt", {"max_new_tokens": 16}, doc_id, "videomme", "test"),
                       resps=[output], filtered_resps={"none": output})
        done = ns["_process_document_results"]((doc_id, doc, [req]), task=task, filter_key="none",
                                               reasoning_tags=None, log_samples=True)
        samples.append(done.logged_sample)
        metrics.append(done.metrics["videomme_perception_score"])
    tracker = tracker_ns["EvaluationTracker"](output_path=str(out_dir))
    tracker.general_config_tracker.model_name_sanitized = "model"
    tracker.date_id = date_id
    tracker.save_results_samples("videomme", samples)
    return out_dir / "model" / f"{date_id}_samples_videomme.jsonl", metrics
