"""Judge the gate's decision rule by simulation: false-alarm rate under no change, power under a drop.

``python -m harness.report.gate_sim`` prints the figures quoted in docs/regression.md (last
line JSON); tests/test_compare.py runs the same functions with fewer repetitions.

Model of a paired rerun: each sample independently turns worse (right -> wrong) with probability
``flip / 2 + drop``, better with ``flip / 2``, else stays the same (or, with ``base_accuracy``,
the issue's model: flips drawn given a baseline, see :func:`simulate`); its split values are fixed
(sample i has value ``i % k`` of a column with k values, then shuffled once). ``flip`` is the
nondeterminism of a rerun (a different GPU kernel, batch composition), ``drop`` a real regression.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

import numpy as np

from harness.report import gate

# Video-MME's split columns and their number of values (51 in all).
VIDEOMME_SPLITS = {"duration": 3, "domain": 6, "sub_category": 30, "task_type": 12}


def _labels(n: int, splits: dict[str, int], rng: np.random.Generator) -> list[np.ndarray]:
    return [rng.permutation(np.arange(n) % k) for k in splits.values()]


def _outcomes(rng: np.random.Generator, n: int, flip: float, drop: float,
              base_accuracy: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Per sample: turned worse, turned better."""
    if base_accuracy is None:
        outcome = rng.choice(3, size=n, p=[flip / 2 + drop, flip / 2, 1 - flip - drop])
        return outcome == 0, outcome == 1
    base = rng.random(n) < base_accuracy
    u = rng.random(n)
    worse = base & (u < (flip / 2 + drop) / base_accuracy)
    better = ~base & (u < flip / 2 / (1 - base_accuracy))
    return worse, better


def simulate(n: int, splits: dict[str, int], flip: float, drop: float, reps: int, tolerance: float,
             alpha: float = 0.05, target_power: float = 0.8, seed: int = 0,
             corrected: bool = True, base_accuracy: float | None = None) -> dict[str, float]:
    """Share of simulated comparisons per verdict (OK / REGRESSION / UNDERPOWERED).

    ``corrected=False`` judges each split at ``alpha`` with no correction: the rule the gate
    replaced, kept here so a test can show the simulation tells a bad rule from a good one.
    ``base_accuracy`` switches to the flip model of issue 17: a baseline is drawn at that
    accuracy and its right answers turn wrong at rate ``(flip/2 + drop) / acc``, its wrong ones
    right at ``flip/2 / (1 - acc)`` (balanced overall, not within a split: a split whose baseline
    was lucky drops, as real reruns regress to the mean).
    """
    rng = np.random.default_rng(seed)
    labels = _labels(n, splits, rng)
    counts = {"OK": 0, "REGRESSION": 0, "UNDERPOWERED": 0}
    for _ in range(reps):
        worse_s, better_s = _outcomes(rng, n, flip, drop, base_accuracy)
        worse, better, size = [int(worse_s.sum())], [int(better_s.sum())], [n]
        for lab, k in zip(labels, splits.values()):
            worse += np.bincount(lab, weights=worse_s, minlength=k).astype(int).tolist()
            better += np.bincount(lab, weights=better_s, minlength=k).astype(int).tolist()
            size += np.bincount(lab, minlength=k).tolist()
        required = np.zeros(len(worse), dtype=bool)
        required[0] = True  # the overall test must be powered (the CLI's default)
        if corrected:
            judged = gate.decide(worse, better, size, required, tolerance, alpha, target_power)
            counts[gate.verdict(judged["regressed"], judged["underpowered"])] += 1
        else:
            p = np.array([gate.one_sided_p(w, b) for w, b in zip(worse, better)])
            counts["REGRESSION" if (p < alpha).any() else "OK"] += 1
    return {k: v / reps for k, v in counts.items()}


Scenario = tuple[int, str, float, float, float, float | None]


def figures(reps: int = 400, seed: int = 0, scenarios: Sequence[Scenario] | None = None
            ) -> list[dict[str, float | int | str | None]]:
    """The docs' table: (n, splits, flip, drop, tolerance, base accuracy or None) -> verdict shares."""
    scenarios = scenarios or [
        (2700, "videomme", 0.15, 0.0, 5.0, None), (2700, "videomme", 0.15, 0.0, 5.0, 0.6),
        (2700, "videomme", 0.15, 0.02, 5.0, None), (2700, "videomme", 0.15, 0.03, 5.0, None),
        (2700, "videomme", 0.15, 0.05, 5.0, None), (2700, "videomme", 0.15, 0.05, 5.0, 0.6),
        (300, "duration", 0.15, 0.0, 10.0, None), (300, "duration", 0.15, 0.05, 10.0, None),
        (300, "duration", 0.15, 0.10, 10.0, None), (300, "duration", 0.15, 0.10, 10.0, 0.6),
        (300, "duration", 0.0, 0.0, 5.0, None), (300, "duration", 0.0, 0.05, 5.0, None),
    ]
    out = []
    for n, name, flip, drop, tol, acc in scenarios:
        splits = VIDEOMME_SPLITS if name == "videomme" else {"duration": 3}
        shares = simulate(n, splits, flip, drop, reps, tol, seed=seed, base_accuracy=acc)
        out.append({"n": n, "splits": name, "flip": flip, "drop_pts": 100 * drop, "tolerance": tol,
                    "base_accuracy": acc, **shares})
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rows = figures(args.reps, args.seed)
    print("| n | splits | flip model | flip | drop (pts) | tolerance | OK | REGRESSION | UNDERPOWERED |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        model = "per sample" if r["base_accuracy"] is None else f"issue 17 (acc {r['base_accuracy']:.1f})"
        print(f"| {r['n']} | {r['splits']} | {model} | {r['flip']:.2f} | {r['drop_pts']:.0f} | {r['tolerance']:.0f} | "
              f"{r['OK']:.3f} | {r['REGRESSION']:.3f} | {r['UNDERPOWERED']:.3f} |")
    print(json.dumps({"reps": args.reps, "seed": args.seed, "rows": rows}))


if __name__ == "__main__":
    main()
