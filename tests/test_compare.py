"""The regression gate: a real drop fails (naming the split), noise and equal runs pass."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest

from harness.cli.main import main
from harness.report.compare import compare, mcnemar_exact, paired_bootstrap_ci
from harness.report.load import load_records
from tests.test_report import write_run


def _rows(correct: list[bool], durations: list[str]) -> list[dict]:
    return [{"id": f"s{i}", "correct": c, "duration": d} for i, (c, d) in enumerate(zip(correct, durations))]


@pytest.fixture
def base_correct():
    rng = np.random.default_rng(0)
    return list(rng.random(200) < 0.7)


DUR = ["short"] * 100 + ["long"] * 100


def test_real_drop_in_one_split_fails_and_names_it(tmp_path, base_correct, capsys):
    write_run(tmp_path / "base", "none", "none", _rows(base_correct, DUR))
    new = list(base_correct)
    for i in range(100, 200):  # the long split loses 30 of its correct answers
        if new[i] and sum(1 for j in range(100, i) if base_correct[j] and not new[j]) < 30:
            new[i] = False
    write_run(tmp_path / "new", "none", "none", _rows(new, DUR))
    rc = main(["compare", "--baseline", str(tmp_path / "base"), str(tmp_path / "new"), "--tolerance", "2",
               "--out", str(tmp_path / "cmp.csv")])
    err = capsys.readouterr().err
    assert rc == 1
    assert "REGRESSION: m/none split duration=long" in err
    assert "split duration=short" not in err  # the untouched split is not blamed
    result = compare(load_records([tmp_path / "base"]), load_records([tmp_path / "new"]), tolerance=2)
    long = result.table[(result.table.split == "duration") & (result.table.value == "long")].iloc[0]
    assert long.worse == 30 and long.better == 0 and long.diff_pts == pytest.approx(-30.0)
    assert long.mcnemar_p == pytest.approx(binomtest(0, 30, 0.5).pvalue)
    assert long.ci_high_pts < 0
    assert (tmp_path / "cmp.csv").exists()


def test_noise_passes(tmp_path, base_correct, capsys):
    write_run(tmp_path / "base", "none", "none", _rows(base_correct, DUR))
    new = list(base_correct)
    flips = [i for i in range(200) if base_correct[i]][:4] + [i for i in range(200) if not base_correct[i]][:3]
    for i in flips:  # 4 answers got worse, 3 got better: -0.5 points, well within noise
        new[i] = not new[i]
    write_run(tmp_path / "new", "none", "none", _rows(new, DUR))
    assert main(["compare", "--baseline", str(tmp_path / "base"), str(tmp_path / "new"), "--tolerance", "2"]) == 0
    assert "OK" in capsys.readouterr().out


def test_large_but_insignificant_drop_passes(tmp_path):
    # 3 samples: one answer changed is -33 points, but a single discordant pair is no evidence
    write_run(tmp_path / "base", "none", "none", _rows([True, True, False], ["a"] * 3))
    write_run(tmp_path / "new", "none", "none", _rows([True, False, False], ["a"] * 3))
    result = compare(load_records([tmp_path / "base"]), load_records([tmp_path / "new"]), tolerance=2)
    assert result.passed and result.table.iloc[0].diff_pts == pytest.approx(-100 / 3)


def test_identical_runs_pass_and_crashes_count_as_wrong(tmp_path, base_correct):
    write_run(tmp_path / "base", "none", "none", _rows(base_correct, DUR))
    result = compare(load_records([tmp_path / "base"]), load_records([tmp_path / "base"]))
    assert result.passed and (result.table.diff_pts == 0).all()
    rows = _rows(base_correct, DUR)
    for row in rows[:60]:  # the new code crashes on the first 60 samples
        row["error"] = {"stage": "generate", "type": "RuntimeError", "message": "boom"}
    write_run(tmp_path / "new", "none", "none", rows)
    result = compare(load_records([tmp_path / "base"]), load_records([tmp_path / "new"]))
    assert not result.passed
    overall = result.table[result.table.split == "overall"].iloc[0]
    assert overall.worse == sum(base_correct[:60]) and overall.n == 200


def test_missing_run_fails(tmp_path, base_correct, capsys):
    write_run(tmp_path / "base", "none", "none", _rows(base_correct, DUR))
    write_run(tmp_path / "base", "autogaze", "autogaze", _rows(base_correct, DUR))
    write_run(tmp_path / "new", "none", "none", _rows(base_correct, DUR))
    assert main(["compare", "--baseline", str(tmp_path / "base"), str(tmp_path / "new")]) == 1
    assert "MISSING: baseline run m/autogaze" in capsys.readouterr().err


def test_statistics_helpers():
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(0, 10) == pytest.approx(2 * 0.5 ** 10)
    assert mcnemar_exact(5, 5) == pytest.approx(1.0)
    base = np.array([1] * 50 + [0] * 50)
    lo, hi = paired_bootstrap_ci(base, base)
    assert lo == hi == 0
    new = np.array([0] * 20 + [1] * 30 + [0] * 50)
    lo, hi = paired_bootstrap_ci(base, new)
    assert lo < -20 < hi < 0


def test_committed_ci_baseline_matches_its_config():
    """results/ci_regression must be what configs/ci_regression.yaml produces: same runs, every sample."""
    from pathlib import Path

    from harness.runner.config import load_config
    from harness.runner.sweep import expand

    repo = Path(__file__).resolve().parents[1]
    cfg = load_config(repo / "configs" / "ci_regression.yaml")
    df = load_records([repo / "results" / "ci_regression"])
    (plan,) = cfg.plans()
    expected = {f"{plan.model.label}/{s.label}" for s in expand(plan.pruners)}
    assert set(df.run_id) == expected
    assert df.groupby("run_id").sample_id.nunique().eq(cfg.benchmark.limit).all()
    assert df.ok.all()
    assert compare(df, df).passed
