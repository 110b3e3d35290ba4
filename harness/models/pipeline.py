"""``model.pipeline``: an adapter's preprocessing knobs, parsed into a frozen dataclass per family.

Why a dataclass per family and not free kwargs: a preset (``model.preset``) or a user sets these
keys by name in YAML; a misspelt key must stop the run naming the valid ones, not be ignored.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")


def parse_pipeline(cls: type[T], options: dict[str, Any] | None, family: str) -> T:
    """``cls(**options)`` after checking every key is a field of ``cls`` and every choice is valid.

    A field whose metadata has ``choices`` only accepts those values.
    """
    options = dict(options or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key, value in options.items():
        if key not in fields:
            raise ValueError(
                f"unknown model.pipeline key {key!r} for {family}; valid keys: {', '.join(sorted(fields))}"
            )
        choices = fields[key].metadata.get("choices")
        if choices and value not in choices:
            raise ValueError(f"model.pipeline.{key} {value!r} for {family}; valid choices: {', '.join(choices)}")
    return cls(**options)


def choice(default: str, *choices: str) -> Any:
    """A dataclass field restricted to ``choices`` (``default`` first)."""
    return dataclasses.field(default=default, metadata={"choices": (default, *choices)})
