"""Read model outputs to score: our JSONL, or lmms-eval's ``*_samples_<task>.jsonl`` logs.

Ours: one JSON object per line with a question id (``question_id`` | ``sample_id`` | ``id``)
and the raw model output (``output`` | ``text`` | ``response`` | ``prediction``; null when
the sample failed).

lmms-eval (``EvaluationTracker.save_results_samples``): one object per document with
``doc_id``, ``filtered_resps`` (the output after its filters and ``<think>`` stripping: a string,
or a list whose first element is the string, older releases nest one more level), ``resps``,
and, until 0.7.x, the ``doc`` itself; 0.7.x drops ``doc`` but keeps the task's
``process_results`` dict (e.g. ``videomme_perception_score``) which holds ``question_id``. The
question id is read from ``doc`` first, else from any such dict.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ID_KEYS = ("question_id", "sample_id", "id")
OUTPUT_KEYS = ("output", "text", "response", "prediction")


def _first_string(value: Any) -> str | None:
    while isinstance(value, list):
        if not value:
            return None
        value = value[0]
    return value if isinstance(value, str) else None


def _lmms_eval_pair(obj: dict[str, Any], where: str) -> tuple[str, str | None]:
    qid = None
    doc = obj.get("doc")
    if isinstance(doc, dict) and "question_id" in doc:
        qid = doc["question_id"]
    else:
        for value in obj.values():
            if isinstance(value, dict) and "question_id" in value:
                qid = value["question_id"]
                break
    if qid is None:
        raise ValueError(
            f"{where}: lmms-eval sample (doc_id {obj.get('doc_id')}) has no question_id in 'doc' or a metric dict"
        )
    output = _first_string(obj.get("filtered_resps"))
    if output is None:
        output = _first_string(obj.get("resps"))
    return str(qid), output


def _our_pair(obj: dict[str, Any], where: str) -> tuple[str, str | None]:
    qid = next((obj[k] for k in ID_KEYS if k in obj), None)
    if qid is None:
        raise ValueError(f"{where}: no question id (one of {', '.join(ID_KEYS)})")
    key = next((k for k in OUTPUT_KEYS if k in obj), None)
    if key is None:
        raise ValueError(f"{where}: no model output (one of {', '.join(OUTPUT_KEYS)})")
    output = obj[key]
    if output is not None and not isinstance(output, str):
        raise ValueError(f"{where}: output must be a string or null, got {type(output).__name__}")
    return str(qid), output


def read_predictions(path: str | Path) -> Iterator[tuple[str, str | None]]:
    """(question_id, output) per line; the format is recognised per line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: predictions file not found")
    with path.open("rb") as fh:  # bytes: a line that is not UTF-8 is named, not a bare decode error
        for lineno, raw in enumerate(fh, start=1):
            where = f"{path}:{lineno}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ValueError(f"{where}: not UTF-8 text (byte {exc.start + 1} of the line)") from None
            if lineno == 1:
                line = line.removeprefix("\ufeff")  # a BOM some editors write
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{where}: not valid JSON ({exc.msg})") from exc
            except RecursionError:
                raise ValueError(f"{where}: JSON nested too deeply to be a prediction") from None
            if not isinstance(obj, dict):
                raise ValueError(f"{where}: expected a JSON object per line")
            if "doc_id" in obj and ("filtered_resps" in obj or "resps" in obj):
                yield _lmms_eval_pair(obj, where)
            else:
                yield _our_pair(obj, where)
