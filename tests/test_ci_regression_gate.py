"""The committed CI regression baseline can fail: degraded copies fail `make regression`'s gate,
an unchanged copy passes, and the subset needs nothing outside the repository."""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import pytest

from harness.cli.main import main
from harness.report.compare import compare
from harness.report.load import load_records

REPO = Path(__file__).resolve().parents[1]
BASELINE = REPO / "results" / "ci_regression"


def gate_commands() -> list[list[str]]:
    """The compare commands of the Makefile's `regression` target, with the baseline/run paths."""
    text = (REPO / "Makefile").read_text()
    gate = re.search(r"^REGRESSION_GATE := (.+)$", text, re.M).group(1)
    extras = re.findall(r"^\t\$\(PY\) run_eval.py compare \$\(REGRESSION_GATE\)(.*)$", text, re.M)
    assert extras, "the Makefile's regression target no longer runs compare $(REGRESSION_GATE)"
    return [["compare", *shlex.split(gate), *shlex.split(extra)] for extra in extras]


def run_gate(new: Path) -> list[int]:
    codes = []
    for args in gate_commands():
        args = [str(new) if a == "runs/ci_regression" else str(BASELINE) if a == "results/ci_regression" else a
                for a in args]
        codes.append(main(args))
    return codes


def _copy(tmp_path: Path) -> Path:
    return Path(shutil.copytree(BASELINE, tmp_path / "ci_regression"))


def _rewrite(run_dir: Path, change) -> None:  # noqa: ANN001
    path = run_dir / "records.jsonl"
    recs = [json.loads(line) for line in path.read_text().splitlines()]
    path.write_text("".join(json.dumps(change(r)) + "\n" for r in recs))


def test_committed_ci_baseline_matches_its_config():
    """results/ci_regression is what configs/ci_regression.yaml produces: same runs, every sample."""
    from harness.runner.config import load_config
    from harness.runner.sweep import expand

    cfg = load_config(REPO / "configs" / "ci_regression.yaml")
    df = load_records([BASELINE])
    (plan,) = cfg.plans()
    expected = {f"{plan.model.label}/{s.label}" for s in expand(plan.pruners)}
    assert set(df.run_id) == expected
    assert df.groupby("run_id").sample_id.nunique().eq(cfg.benchmark.limit).all()
    assert df.ok.all()
    assert compare(df, df, tolerance=20, gate_splits=[]).passed  # not underpowered at the Makefile's tolerance
    # a fresh clone has nothing beside it: no path outside the repository in the subset
    assert "shared" not in (REPO / "configs" / "ci_regression.yaml").read_text().split("# Regenerate")[-1]
    for spec in cfg.pruners:
        assert not any("shared" in str(v) for v in spec.params.values()), spec


def test_unchanged_copy_passes(tmp_path, capsys):
    assert run_gate(_copy(tmp_path)) == [0] * len(gate_commands())
    assert "outputs and kept tokens unchanged" in capsys.readouterr().out


def test_all_correct_turned_wrong_fails(tmp_path, capsys):
    new = _copy(tmp_path)

    def wrong(rec):
        if rec["correct"]:
            letter = "ABCD"[("ABCD".index(rec["answer"]) + 1) % 4]
            rec.update(output=letter, extracted=letter, correct=False)
        return rec

    for run_dir in new.glob("*/*/"):
        _rewrite(run_dir, wrong)
    codes = run_gate(new)
    err = capsys.readouterr().err
    assert codes[0] == 1 and "REGRESSION: qwen2_5_vl-tiny/none split overall=all" in err and "CHANGED: " in err
    # the statistics alone see it too (no --exact): every run's accuracy fell to 0
    assert main(["compare", "--baseline", str(BASELINE), str(new), "--gate-splits", "none", "--tolerance", "20"]) == 1


def test_a_pruner_keeping_random_tokens_fails(tmp_path, capsys):
    """AutoGaze's records replaced by what a random pruner at the same budget gave on the same samples."""
    new = _copy(tmp_path)
    model = next(p for p in new.iterdir() if p.is_dir())
    random_recs = {json.loads(line)["sample_id"]: json.loads(line)
                   for line in (model / "random_match-autogaze_gr0.1" / "records.jsonl").read_text().splitlines()}
    keep = ("sample_id", "run_id", "pruner", "pruner_label", "pruner_params", "budget")

    def randomised(rec):
        other = dict(random_recs[rec["sample_id"]])
        other.update({k: rec[k] for k in keep if k in rec})
        return other

    _rewrite(model / "autogaze_gr0.1", randomised)
    codes = run_gate(new)
    err = capsys.readouterr().err
    assert codes[0] == 1
    assert re.search(r"CHANGED: run qwen2_5_vl-tiny/autogaze_gr0.1 sample \S+: sel_kept_per_group", err)
    assert re.search(r"CHANGED: run qwen2_5_vl-tiny/autogaze_gr0.1 sample \S+: sel_masks", err) or "more changed" in err


def test_a_broken_copy_is_caught_even_when_only_kept_tokens_move(tmp_path, capsys):
    """Same answers, one frame group keeping one token more: only the exact check can see it, and does."""
    new = _copy(tmp_path)
    model = next(p for p in new.iterdir() if p.is_dir())

    def shifted(rec):
        groups = rec["selection"]["kept_per_group"]
        rec["selection"]["kept_per_group"] = [groups[0] + 1, *groups[1:]]
        return rec

    _rewrite(model / "autogaze_gr0.1", shifted)
    assert run_gate(new)[0] == 1
    assert "sel_kept_per_group" in capsys.readouterr().err


def test_same_counts_but_other_tokens_kept_fails(tmp_path, capsys):
    """Every count unchanged, one gaze moved on one strip frame: the recorded masks show it."""
    import base64

    new = _copy(tmp_path)
    model = next(p for p in new.iterdir() if p.is_dir())
    first = {"done": False}

    def moved(rec):
        masks = rec["selection"].get("masks")
        if masks and not first["done"]:
            bits = bytearray(base64.b64decode(masks["bits"][-1]))
            bits[0] ^= 0b11000000  # flip two cells of the finest scale
            masks["bits"][-1] = base64.b64encode(bytes(bits)).decode()
            first["done"] = True
        return rec

    _rewrite(model / "autogaze_gr0.1", moved)
    assert first["done"], "the committed baseline records carry no selection.masks"
    assert run_gate(new)[0] == 1
    err = capsys.readouterr().err
    assert "sel_masks" in err and err.count("CHANGED: ") == 1


@pytest.mark.parametrize("key", ["pruner.params.policy"])
def test_a_copy_with_other_settings_is_refused(tmp_path, capsys, key):
    new = _copy(tmp_path)
    run_json = next(new.glob("*/autogaze_gr0.1/run.json"))
    run = json.loads(run_json.read_text())
    run["pruner"]["params"]["policy"] = "keep"
    run_json.write_text(json.dumps(run))
    assert run_gate(new)[0] == 4
    assert f"{key}: baseline 'drop', new 'keep'" in capsys.readouterr().err
