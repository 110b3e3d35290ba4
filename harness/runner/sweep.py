"""Expand pruner specs (params + grid + budget) into concrete settings, one run each.

Why matched budgets expand here: ``budget: matched`` means "the number of tokens AutoGaze kept
on this very sample", and with an AutoGaze grid there is one such number per AutoGaze setting.
So a matched baseline becomes one run per AutoGaze setting it is matched to (or one, if
``match`` names the setting), and the order puts every AutoGaze setting before the baselines
that need its result on the same sample.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from typing import Any

from harness.runner.config import ConfigError, PrunerSpec


def defines_matched_budget(name: str) -> bool:
    """Whether pruner ``name``'s kept counts define matched budgets (its class says: ``Pruner.defines_matched_budget``).

    An unregistered name (a test's fake) is no source; the registry refuses it elsewhere.
    """
    from harness.pruning.registry import PRUNERS, get_pruner_class

    return name in PRUNERS and bool(getattr(get_pruner_class(name), "defines_matched_budget", False))


@dataclass(frozen=True)
class Budget:
    """``kind``: "none" (pruner's own), "matched" (to ``match``'s kept count), "ratio", "tokens"."""

    kind: str = "none"
    value: float | int | None = None
    match: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "value": self.value, "match": self.match}


@dataclass
class PrunerSetting:
    """One concrete pruner configuration = one run."""

    name: str
    label: str
    params: dict[str, Any] = field(default_factory=dict)
    grid_values: dict[str, Any] = field(default_factory=dict)  # the swept values of this point
    budget: Budget = field(default_factory=Budget)
    # its kept counts are the budgets of the runs matched to it (from the pruner class; not in
    # to_dict: run.json's fingerprint stays that of earlier versions)
    defines_matched_budget: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "params": self.params,
            "grid_values": self.grid_values,
            "budget": self.budget.to_dict(),
        }


def _abbrev(key: str) -> str:
    """``task_loss_requirement`` -> ``tlr``: short, readable run labels."""
    parts = [p for p in key.split("_") if p]
    return "".join(p[0] for p in parts) if len(parts) > 1 else key


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        text = f"{value:g}"
    elif isinstance(value, list | tuple):
        text = "-".join(_fmt(v) for v in value)
    else:
        text = str(value)
    return re.sub(r"[^A-Za-z0-9.+-]", "-", text)


def _point_label(name: str, point: dict[str, Any]) -> str:
    abbrevs = {k: _abbrev(k) for k in point}
    if len(set(abbrevs.values())) < len(abbrevs):  # collision: use the full keys
        abbrevs = {k: k for k in point}
    return "_".join([name] + [f"{abbrevs[k]}{_fmt(v)}" for k, v in point.items()])


def _budget(spec: PrunerSpec) -> Budget:
    b = spec.budget
    if b is None:
        return Budget()
    if b == "matched":
        return Budget(kind="matched", match=spec.match)
    if isinstance(b, float) and b <= 1.0:
        return Budget(kind="ratio", value=float(b))
    return Budget(kind="tokens", value=int(b))


def _budget_suffix(budget: Budget) -> str:
    if budget.kind == "matched":
        return f"match-{budget.match}"
    if budget.kind == "ratio":
        return f"r{_fmt(budget.value)}"
    if budget.kind == "tokens":
        return f"n{budget.value}"
    return ""


def expand(specs: list[PrunerSpec]) -> list[PrunerSetting]:
    """All settings, in execution order: non-matched ones first (AutoGaze among them), then matched."""
    plain: list[tuple[PrunerSpec, PrunerSetting]] = []
    matched: list[tuple[PrunerSpec, PrunerSetting]] = []
    for spec in specs:
        keys = list(spec.grid)
        points = [dict(zip(keys, values)) for values in itertools.product(*(spec.grid[k] for k in keys))]
        for point in points:
            budget = _budget(spec)
            if spec.label:  # a user label names the entry; grid points still need telling apart
                label = spec.label if len(points) == 1 else f"{spec.label}_{_point_label('', point).lstrip('_')}"
            else:
                label = _point_label(spec.name, point)
                suffix = _budget_suffix(budget) if budget.kind != "matched" else ""
                label = f"{label}_{suffix}" if suffix else label
            setting = PrunerSetting(name=spec.name, label=label, params={**spec.params, **point},
                                    grid_values=point, budget=budget,
                                    defines_matched_budget=defines_matched_budget(spec.name))
            (matched if budget.kind == "matched" else plain).append((spec, setting))

    sources = [s.label for _, s in plain if s.defines_matched_budget]
    out = [s for _, s in plain]
    for spec, setting in matched:
        targets = [spec.match] if spec.match else sources
        if not targets:
            raise ConfigError(
                f"pruner {spec.name!r} has budget: matched but no pruner whose kept counts define a budget "
                f"({', '.join(_source_names())}) is configured to match; add one or use a ratio budget"
            )
        for target in targets:
            if target not in sources:
                raise ConfigError(
                    f"pruner {spec.name!r}: match {target!r} is not the run label of a budget source "
                    f"({', '.join(_source_names())}); valid choices: {', '.join(sources) or '(none)'}"
                )
            budget = Budget(kind="matched", match=target)
            label = setting.label if spec.label and len(targets) == 1 else f"{setting.label}_{_budget_suffix(budget)}"
            out.append(PrunerSetting(name=setting.name, label=label, params=dict(setting.params),
                                     grid_values=dict(setting.grid_values), budget=budget,
                                     defines_matched_budget=setting.defines_matched_budget))

    labels = [s.label for s in out]
    dupes = sorted({x for x in labels if labels.count(x) > 1})
    if dupes:
        raise ConfigError(f"pruners: several settings share the run label(s) {dupes}; give each entry a 'label'")
    return out


def _source_names() -> list[str]:
    from harness.pruning.registry import PRUNERS

    return [name for name in PRUNERS if defines_matched_budget(name)]


def resolve_budget(budget: Budget, total_tokens: int, matched_kept: int | None) -> int | None:
    """The token budget a pruner receives for one sample (None = the pruner's own rule)."""
    if budget.kind == "none":
        return None
    if budget.kind == "matched":
        if matched_kept is None:
            raise RuntimeError(f"matched budget unavailable: {budget.match} has no result on this sample")
        return int(matched_kept)
    if budget.kind == "ratio":
        return max(1, int(round(float(budget.value) * total_tokens)))
    return min(int(budget.value), total_tokens)
