"""``run_eval.py report``: run directories -> tables (md, csv, html) and plots (png) in one folder.

Every CSV is written from the same DataFrames the markdown/HTML show, so what a reader sees and
what ``pd.read_csv`` loads cannot disagree.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from harness.report.evidence_curve import evidence_auc_table, plot_evidence_curve
from harness.report.extras import extraction_table, provenance_table, published_table, scorer_table
from harness.report.html import page, samples_section
from harness.report.load import OBJECT_COLUMNS, load_records
from harness.report.plots import plot_latency, plot_pareto
from harness.report.tables import (
    errors_table,
    latency_table,
    split_pivot,
    split_table,
    summary_table,
    to_markdown,
)
from harness.report.thumbs import render_thumbnails
from harness.runner.components import TINY_LABEL

CONVENTIONS = (
    "Accuracy (%) over samples that completed and that the extraction convention counts, with a 95% "
    "Wilson score interval [wilson95_low, wilson95_high]; failed samples are counted in `errors`, not "
    "scored. The scorer's view below counts failures as wrong and gives a 95% interval clustered by video "
    "[clustered95_low, clustered95_high]; evidence recall's interval is Student's t over samples. "
    "Token reduction = 1 - mean visual tokens after / before pruning. autogaze_gazes = AutoGaze's own "
    "mean gaze count beside visual_tokens (the LLM's); route = native or STAGE/POLICY. Speed-up = the unpruned run's "
    "mean latency / this run's (same model and benchmark). Latencies are mean seconds per sample."
)

SUMMARY_COLUMNS = ["model", "benchmark", "pruner_label", "route", "n", "errors", "accuracy", "wilson95_low",
                   "wilson95_high", "visual_tokens", "autogaze_gazes", "token_reduction_pct", "evidence_recall", "evidence_hit",
                   "evidence_skill", "evidence_kept_share", "evidence_unfindable", "lat_total_s",
                   "speedup_total", "speedup_prefill", "peak_memory_mb"]


@dataclass
class Report:
    records: pd.DataFrame
    summary: pd.DataFrame
    splits: pd.DataFrame
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def tiny(self) -> bool:
        return bool(self.records["tiny_model"].any())


def build_report(paths: list[str | Path], out_dir: str | Path | None = None,
                 max_thumbnails: int = 1000) -> Report:
    """Load the runs, compute tables; with ``out_dir`` also write every table, plot and thumbnail
    strip there (at most ``max_thumbnails`` strips; 0: none)."""
    records = load_records(paths)
    summary = summary_table(records)
    splits = split_table(records)
    report = Report(records=records, summary=summary, splits=splits)
    if out_dir is not None:
        _write(report, Path(out_dir), max_thumbnails)
    return report


def _compact(summary: pd.DataFrame) -> pd.DataFrame:
    cols = [c for c in SUMMARY_COLUMNS if c in summary.columns and summary[c].notna().any()]
    return summary[cols]


def _write(report: Report, out: Path, max_thumbnails: int = 1000) -> None:
    out.mkdir(parents=True, exist_ok=True)
    f = report.files
    tables = {
        "summary": report.summary,
        "splits": report.splits,
        "splits_pivot": split_pivot(report.splits),
        "latency": latency_table(report.summary),
        "errors": errors_table(report.records),
        "extraction": extraction_table(report.records),
        "published": published_table(report.records),
        "provenance": provenance_table(report.records),
        "scorer": scorer_table(report.records),
        "evidence_auc": evidence_auc_table(report.summary),
    }
    for name, table in tables.items():
        if table.empty and name in ("extraction", "published", "provenance", "scorer", "evidence_auc"):
            continue
        f[f"{name}.csv"] = out / f"{name}.csv"
        table.to_csv(f[f"{name}.csv"], index=False)
    f["records.csv"] = out / "records.csv"
    report.records.drop(columns=[c for c in OBJECT_COLUMNS if c in report.records]).to_csv(
        f["records.csv"], index=False)
    title = "tiny random-weight model" if report.tiny else ""
    suffix = f" ({title})" if title else ""
    plots = [("pareto.png", lambda s, o: plot_pareto(s, o, f"accuracy vs visual tokens{suffix}")),
             ("evidence.png", lambda s, o: plot_pareto(s, o, "evidence recall vs visual tokens (no model "
                                                       "involved)", metric="evidence_recall")),
             ("evidence_curve.png", lambda s, o: plot_evidence_curve(s, o)),
             ("latency.png", lambda s, o: plot_latency(s, o, f"latency per stage{suffix}"))]
    for name, fn in plots:
        path = fn(report.summary, out / name)
        if path is not None:
            f[name] = path

    sections = [
        ("Summary", _compact(report.summary)),
        ("Accuracy per split (%)", tables["splits_pivot"]),
        ("Latency per stage (s) and speed-up vs unpruned", tables["latency"]),
    ]
    if not tables["evidence_auc"].empty:
        sections.append(("Evidence recall vs kept share: area under the curve per pruner (no model involved)",
                         tables["evidence_auc"]))
    if not tables["scorer"].empty:
        sections.append(("Accuracy as the benchmark's scorer counts it (failed samples wrong; 95% CI clustered "
                         "by video)", tables["scorer"]))
    if not tables["extraction"].empty:
        sections.append(("Accuracy (%) under each answer-extraction convention", tables["extraction"]))
    if not tables["published"].empty:
        sections.append(("Published figures (reference, not from these runs)", tables["published"]))
    if not tables["errors"].empty:
        sections.append(("Failed samples", tables["errors"]))
    if not tables["provenance"].empty:
        sections.append(("Provenance (run_meta.json)", tables["provenance"]))
    notice = f"**NOTE: {TINY_LABEL}.**\n\n" if report.tiny else ""
    md = ["# Evaluation report\n", notice, CONVENTIONS + "\n",
          "\nPer-sample view (filters, outputs, errors, thumbnail strips of what was kept): report.html.\n"]
    for heading, table in sections:
        md += [f"\n## {heading}\n\n", to_markdown(table)]
    for name in ("pareto.png", "evidence.png", "evidence_curve.png", "latency.png"):
        if name in f:
            md.append(f"\n![{name[:-4]}]({name})\n")
    f["report.md"] = out / "report.md"
    f["report.md"].write_text("".join(md))

    body = [f"<h1>Evaluation report</h1>{'<p><b>NOTE: ' + html.escape(TINY_LABEL) + '.</b></p>' if notice else ''}",
            f"<p>{html.escape(CONVENTIONS)}</p>"]
    links = [f'<a href="#t{i}">{html.escape(h.split(" (")[0])}</a>' for i, (h, _) in enumerate(sections)]
    body.append("<p>" + " · ".join([*links, '<a href="#plots">Plots</a>',
                                     '<a href="#samples-section">Samples</a>']) + "</p>")
    for i, (heading, table) in enumerate(sections):
        body += [f'<h2 id="t{i}">{html.escape(heading)}</h2>',
                 table.to_html(index=False, na_rep="", float_format="%.2f")]
    body.append('<h2 id="plots">Plots</h2>')
    for name in ("pareto.png", "evidence.png", "evidence_curve.png", "latency.png"):
        if name in f:
            body.append(f'<p><img src="{name}" alt="{name[:-4]}"></p>')
    thumbs = render_thumbnails(report.records, out, limit=max_thumbnails) if max_thumbnails > 0 else {}
    for thumb in thumbs.values():
        if thumb.path:
            f[thumb.path] = out / thumb.path
    body.append(samples_section(report.records, thumbs))
    f["report.html"] = out / "report.html"
    f["report.html"].write_text(page("Evaluation report", body))


def console_summary(report: Report) -> str:
    """The short text printed at the end of ``eval``: one line per run, narrow enough for a terminal
    (model and benchmark said once above it; the full table is in summary.csv / report.html)."""
    summary = report.summary
    lines = [f"NOTE: {TINY_LABEL}."] if report.tiny else []
    for (model, bench), group in summary.groupby(["model", "benchmark"], sort=False):
        lines.append(f"{model} on {bench}:")
        lines.append(to_markdown(_console_rows(group)))
    return "\n".join(lines)


def _console_rows(summary: pd.DataFrame) -> pd.DataFrame:
    def pct(v: object) -> str:
        return "" if pd.isna(v) else f"{float(v):.1f}"

    table = pd.DataFrame({"run": summary["pruner_label"], "n": summary["n"], "failed": summary["errors"]})
    table["acc % [95% Wilson]"] = [
        "" if pd.isna(a) else f"{a:.1f} [{lo:.0f}, {hi:.0f}]"
        for a, lo, hi in zip(summary["accuracy"], summary["wilson95_low"], summary["wilson95_high"])]
    table["tokens"] = [pct(v).removesuffix(".0") for v in summary["visual_tokens"]]
    if "visual_tokens_avg_layers" in summary and summary["visual_tokens_avg_layers"].notna().any():
        table["tokens, avg over LLM layers"] = [pct(v) for v in summary["visual_tokens_avg_layers"]]
    if "autogaze_gazes" in summary and summary["autogaze_gazes"].notna().any():
        table["AutoGaze gazes"] = [pct(v).removesuffix(".0") for v in summary["autogaze_gazes"]]
    table["kept %"] = [pct(100 - v) if not pd.isna(v) else "" for v in summary["token_reduction_pct"]]
    if "evidence_recall" in summary and summary["evidence_recall"].notna().any():
        table["evidence recall"] = [("" if pd.isna(v) else f"{v:.2f}") for v in summary["evidence_recall"]]
    if "evidence_skill" in summary and summary["evidence_skill"].notna().any():  # 0 = random, 1 = oracle
        table["evidence skill"] = [("" if pd.isna(v) else f"{v:+.2f}") for v in summary["evidence_skill"]]
    table["s/sample"] = [("" if pd.isna(v) else f"{v:.2f}") for v in summary["lat_total_s"]]
    return table
