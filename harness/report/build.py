"""``run_eval.py report``: run directories -> tables (md, csv, html) and plots (png) in one folder.

Every CSV is written from the same DataFrames the markdown/HTML show, so what a reader sees and
what ``pd.read_csv`` loads cannot disagree.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from harness.report.extras import extraction_table, provenance_table, published_table, scorer_table
from harness.report.load import load_records
from harness.report.plots import plot_latency, plot_pareto
from harness.report.tables import (
    errors_table,
    latency_table,
    split_pivot,
    split_table,
    summary_table,
    to_markdown,
)
from harness.runner.components import TINY_LABEL

CONVENTIONS = (
    "Accuracy (%) over samples that completed and that the extraction convention counts, with a 95% "
    "Wilson interval [ci_low, ci_high]; failed samples are counted in `errors`, not scored. "
    "Token reduction = 1 - mean visual tokens after / before pruning. autogaze_gazes = AutoGaze's own "
    "mean gaze count beside visual_tokens (the LLM's); route = native or STAGE/POLICY. Speed-up = the unpruned run's "
    "mean latency / this run's (same model and benchmark). Latencies are mean seconds per sample."
)

SUMMARY_COLUMNS = ["model", "benchmark", "pruner_label", "route", "n", "errors", "accuracy", "ci_low", "ci_high",
                   "visual_tokens", "autogaze_gazes", "token_reduction_pct", "evidence_recall", "evidence_hit", "lat_total_s",
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


def build_report(paths: list[str | Path], out_dir: str | Path | None = None) -> Report:
    """Load the runs, compute tables; with ``out_dir`` also write every table and plot there."""
    records = load_records(paths)
    summary = summary_table(records)
    splits = split_table(records)
    report = Report(records=records, summary=summary, splits=splits)
    if out_dir is not None:
        _write(report, Path(out_dir))
    return report


def _compact(summary: pd.DataFrame) -> pd.DataFrame:
    cols = [c for c in SUMMARY_COLUMNS if c in summary.columns and summary[c].notna().any()]
    return summary[cols]


def _write(report: Report, out: Path) -> None:
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
    }
    for name, table in tables.items():
        if table.empty and name in ("extraction", "published", "provenance", "scorer"):
            continue
        f[f"{name}.csv"] = out / f"{name}.csv"
        table.to_csv(f[f"{name}.csv"], index=False)
    f["records.csv"] = out / "records.csv"
    report.records.to_csv(f["records.csv"], index=False)
    title = "tiny random-weight model" if report.tiny else ""
    suffix = f" ({title})" if title else ""
    plots = [("pareto.png", lambda s, o: plot_pareto(s, o, f"accuracy vs visual tokens{suffix}")),
             ("evidence.png", lambda s, o: plot_pareto(s, o, "evidence recall vs visual tokens (no model "
                                                       "involved)", metric="evidence_recall")),
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
    md = ["# Evaluation report\n", notice, CONVENTIONS + "\n"]
    for heading, table in sections:
        md += [f"\n## {heading}\n\n", to_markdown(table)]
    for name in ("pareto.png", "evidence.png", "latency.png"):
        if name in f:
            md.append(f"\n![{name[:-4]}]({name})\n")
    f["report.md"] = out / "report.md"
    f["report.md"].write_text("".join(md))

    body = [f"<h1>Evaluation report</h1>{'<p><b>NOTE: ' + html.escape(TINY_LABEL) + '.</b></p>' if notice else ''}",
            f"<p>{html.escape(CONVENTIONS)}</p>"]
    for heading, table in sections:
        body += [f"<h2>{html.escape(heading)}</h2>", table.to_html(index=False, na_rep="", float_format="%.2f")]
    for name in ("pareto.png", "evidence.png", "latency.png"):
        if name in f:
            body.append(f'<p><img src="{name}" alt="{name[:-4]}"></p>')
    f["report.html"] = out / "report.html"
    f["report.html"].write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>Evaluation report</title>"
        "<style>body{font-family:sans-serif}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
        "padding:2px 6px;font-size:12px}</style></head><body>" + "\n".join(body) + "</body></html>\n")


def console_summary(report: Report) -> str:
    """The short text printed at the end of ``eval`` and ``report``."""
    lines = []
    if report.tiny:
        lines.append(f"NOTE: {TINY_LABEL}.")
    lines.append(to_markdown(_compact(report.summary)))
    return "\n".join(lines)
