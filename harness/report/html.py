"""``report.html``: the tables and plots, then one row per (run, sample) with filters.

Why a per-sample view: to see why a sample failed or what the model saw, a researcher should not
have to read JSONL. Each row has the question, options, raw output, extracted answer, tokens,
stage latencies, the error cause and (for pruned runs) a thumbnail strip of what was kept.

Plain HTML, inline CSS and a little inline JavaScript, nothing fetched (reports are read offline
and on machines without internet). The filters (run, split, status, text) are mirrored in the
URL fragment, e.g. ``report.html#status=failed&run=m/none``, so a filtered view can be linked.
A line under the filters says how many rows are shown and how many thumbnails loaded.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterable

import pandas as pd

from harness.report.load import STAGES, split_columns
from harness.report.thumbs import Thumb
from harness.video.overlay import COLOURS, TOKEN_COLOUR

STATUSES = ("correct", "wrong", "failed", "unscored")

CSS = """
body{font-family:sans-serif;margin:1em 2em}
table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:2px 6px;font-size:12px;vertical-align:top}
th{background:#f3f3f3}
#samples td.q{min-width:14em;max-width:22em}
#samples td.lat{white-space:nowrap;font-size:11px}
#samples td.opts{white-space:nowrap}
#samples pre{margin:0;max-width:26em;max-height:8em;overflow:auto;white-space:pre-wrap;font-size:11px}
#samples tr.failed{background:#fdecea}
#samples tr.correct td.st{color:#1a7f37;font-weight:bold}
#samples tr.wrong td.st{color:#b35900;font-weight:bold}
#samples tr.failed td.st{color:#c62828;font-weight:bold}
#samples td.err{color:#c62828;max-width:22em}
.filters{position:sticky;top:0;background:#fff;padding:6px 0;border-bottom:1px solid #ddd}
.filters label{margin-right:1em;font-size:13px}
.swatch{display:inline-block;width:10px;height:10px;border:2px solid;margin:0 3px 0 8px}
.nothumb{color:#888;font-size:11px}
img.strip{display:block}
"""

JS = """
(function () {
  var table = document.getElementById('samples');
  if (!table) return;
  var rows = Array.prototype.slice.call(table.tBodies[0].rows);
  var splits = rows.map(function (tr) { return JSON.parse(tr.getAttribute('data-splits')); });
  var texts = rows.map(function (tr) { return tr.textContent.toLowerCase(); });
  var f = {run: 'f-run', split: 'f-split', status: 'f-status', q: 'f-q'};
  Object.keys(f).forEach(function (k) { f[k] = document.getElementById(f[k]); });
  var info = document.getElementById('shown');
  var imgs = Array.prototype.slice.call(table.querySelectorAll('img.strip'));
  var loaded = 0, failed = 0;

  function say(shown) {
    var text = 'showing ' + shown + ' of ' + rows.length + ' rows';
    if (imgs.length) text += '; thumbnails: ' + loaded + ' of ' + imgs.length + ' loaded' +
      (failed ? ', ' + failed + ' failed' : '');
    info.textContent = text;
  }
  function apply() {
    var run = f.run.value, split = f.split.value, status = f.status.value, q = f.q.value.trim().toLowerCase();
    var shown = 0;
    rows.forEach(function (tr, i) {
      var ok = (!run || tr.getAttribute('data-run') === run) &&
               (!split || splits[i].indexOf(split) >= 0) &&
               (!status || tr.getAttribute('data-status') === status) &&
               (!q || texts[i].indexOf(q) >= 0);
      tr.hidden = !ok;
      if (ok) shown += 1;
    });
    say(shown);
    var p = new URLSearchParams();
    Object.keys(f).forEach(function (k) { if (f[k].value) p.set(k, f[k].value); });
    try { history.replaceState(null, '', p.toString() ? '#' + p.toString() : location.pathname); } catch (e) {}
    return shown;
  }
  function fromHash() {
    var p = new URLSearchParams(location.hash.slice(1)), any = false;
    Object.keys(f).forEach(function (k) { if (p.has(k)) { f[k].value = p.get(k); any = true; } });
    return any;
  }
  function count() {
    loaded = imgs.filter(function (im) { return im.complete && im.naturalWidth > 0; }).length;
    failed = imgs.filter(function (im) { return im.getAttribute('data-failed') === '1'; }).length;
    say(rows.filter(function (tr) { return !tr.hidden; }).length);
  }
  imgs.forEach(function (im) {
    im.addEventListener('load', count);
    im.addEventListener('error', function () {
      im.setAttribute('data-failed', '1');
      var note = document.createElement('span');
      note.className = 'nothumb';
      note.textContent = 'thumbnail missing: ' + im.getAttribute('src');
      im.parentNode.appendChild(note);
      count();
    });
  });
  ['change', 'input'].forEach(function (ev) {
    Object.keys(f).forEach(function (k) { f[k].addEventListener(ev, apply); });
  });
  window.addEventListener('hashchange', function () { fromHash(); apply(); });
  window.addEventListener('load', count);
  var linked = fromHash();
  apply();
  count();
  if (linked) {  // a link to a filtered view: show the samples once the plots above have their size
    var go = function () { document.getElementById('samples-section').scrollIntoView(); };
    if (document.readyState === 'complete') go(); else window.addEventListener('load', go);
  }
})();
"""


def _text(v: object) -> str:
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return ""
    return str(v)


def _num(v: object, fmt: str = "{:.3f}") -> str:
    try:
        x = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return ""
    return "" if math.isnan(x) else fmt.format(x)


def status_of(row: pd.Series) -> str:
    """correct / wrong (scored), failed (an error), unscored (no verdict, or not counted)."""
    if not bool(row["ok"]):
        return "failed"
    correct, counted = row.get("correct"), row.get("counted")
    if correct is None or correct is pd.NA or counted is False:
        return "unscored"
    return "correct" if bool(correct) else "wrong"


def _options(raw: object) -> str:
    if not _text(raw):
        return ""
    try:
        options = json.loads(str(raw))
    except json.JSONDecodeError:
        return html.escape(str(raw))
    return "<br>".join(html.escape(f"{chr(65 + i)}. {o}") for i, o in enumerate(options))


def _tokens(row: pd.Series) -> str:
    after, before = _num(row.get("tok_visual_after"), "{:.0f}"), _num(row.get("tok_visual_before"), "{:.0f}")
    if not after:
        after, before = _num(row.get("sel_kept"), "{:.0f}"), _num(row.get("sel_total"), "{:.0f}")
    parts = [f"visual {after}/{before}" if after else ""]
    prompt, gen = _num(row.get("tok_prompt"), "{:.0f}"), _num(row.get("tok_generated"), "{:.0f}")
    if prompt or gen:
        parts.append(f"prompt {prompt} · gen {gen}")
    return "<br>".join(p for p in parts if p)


def _latency(row: pd.Series) -> str:
    parts = [f"{s} {_num(row.get(f'lat_{s}'))}" for s in (*STAGES, "total") if _num(row.get(f"lat_{s}"))]
    return "<br>".join(" · ".join(parts[i:i + 2]) for i in range(0, len(parts), 2))


def _select(ident: str, label: str, values: Iterable[str]) -> str:
    opts = "".join(f'<option value="{html.escape(v, quote=True)}">{html.escape(v)}</option>' for v in values)
    return f'<label>{label} <select id="{ident}"><option value="">all</option>{opts}</select></label>'


def legend_html(scales: list[int] | None) -> str:
    """The strips' colour key (the same colours as the gaze overlay video)."""
    def swatch(colour: tuple[int, int, int]) -> str:
        return f'<span class="swatch" style="border-color:rgb{colour}"></span>'

    gaze = "".join(f"{swatch(COLOURS[i % len(COLOURS)])}{s}px" for i, s in enumerate(scales or []))
    return ("<p>Thumbnail strips (8 frames of the clip, source frame index under each; dimmed = not kept): "
            + (f"AutoGaze's gaze, outlined per scale (coarse -> fine):{gaze}; " if gaze else "")
            + f"baselines: the LLM tokens they kept{swatch(TOKEN_COLOUR)}.</p>")


def samples_section(records: pd.DataFrame, thumbs: dict[tuple[str, str], Thumb]) -> str:
    """The per-sample table with its filters (see the module docstring)."""
    many_models = records["model"].nunique() > 1
    split_cols = split_columns(records)
    run_label = {r: (f"{m} / {lbl}" if many_models else str(lbl))
                 for r, m, lbl in zip(records["run_id"], records["model"], records["pruner_label"])}
    split_values = sorted({f"{c.removeprefix('split_')}={v}" for c in split_cols
                           for v in records[c].dropna().astype(str)})
    scales = next((m.get("scales") for m in records.get("sel_masks", pd.Series(dtype=object)).dropna()
                   if m.get("kind") == "gaze"), None)
    head = ["run", "sample", "split", "status", "question", "options", "answer", "extracted", "output",
            "tokens", "latency (s)", "error cause", "kept (thumbnails)"]
    body = []
    for _, row in records.iterrows():
        status = status_of(row)
        run_id, sid = str(row["run_id"]), str(row["sample_id"])
        splits = [f"{c.removeprefix('split_')}={row[c]}" for c in split_cols if _text(row[c])]
        thumb = thumbs.get((run_id, sid))
        if thumb is None:
            strip = ""
        elif thumb.path:
            strip = (f'<a href="{html.escape(thumb.path, quote=True)}"><img class="strip" '
                     f'src="{html.escape(thumb.path, quote=True)}" alt="kept tokens of {html.escape(sid)}"></a>')
        else:
            strip = f'<span class="nothumb">{html.escape(thumb.reason or "")}</span>'
        cells = [
            html.escape(run_label[run_id]), html.escape(sid), html.escape(", ".join(splits)),
            html.escape(status), html.escape(_text(row.get("question"))), _options(row.get("options")),
            html.escape(_text(row.get("answer"))), html.escape(_text(row.get("extracted"))),
            f"<pre>{html.escape(_text(row.get('output')))}</pre>", _tokens(row), _latency(row),
            html.escape(_text(row.get("error"))), strip,
        ]
        classes = ["", "", "", "st", "q", "opts", "", "", "", "", "lat", "err", ""]
        tds = "".join(f'<td class="{c}">{v}</td>' if c else f"<td>{v}</td>" for c, v in zip(classes, cells))
        body.append(f'<tr class="{status}" data-run="{html.escape(run_id, quote=True)}" data-status="{status}" '
                    f"data-splits='{html.escape(json.dumps(splits), quote=True)}'>{tds}</tr>")
    filters = "".join([
        _select("f-run", "run", list(dict.fromkeys(records["run_id"].astype(str)))),
        _select("f-split", "split", split_values),
        _select("f-status", "status", STATUSES),
        '<label>text <input id="f-q" type="search" placeholder="question, output, error..."></label>',
    ])
    return ('<h2 id="samples-section">Samples</h2>' + legend_html(scales)
            + f'<div class="filters">{filters}<span id="shown"></span></div>'
            + '<table id="samples"><thead><tr>' + "".join(f"<th>{h}</th>" for h in head)
            + "</tr></thead><tbody>" + "\n".join(body) + "</tbody></table>")


def page(title: str, parts: list[str]) -> str:
    return ("<!doctype html><html><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>"
            + "\n".join(parts) + f"<script>{JS}</script></body></html>\n")
