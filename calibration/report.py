"""The calibration report people review: one record → ``report.html``, ``report.json``, ``report.md``.

The HTML is self-contained: inline CSS, figures as base64 PNG data URIs, no scripts and no
external URLs, so it can be mailed or attached to a review as one file. The Markdown holds
the same tables without the figures. Every value comes from the record; nothing is
recomputed here. A metric that is None is shown as "—" with its reason (hover in HTML,
a numbered note under the table in both formats).

Figures are drawn with ``matplotlib.figure.Figure`` on the Agg canvas (no pyplot, so no
global figure registry and no GUI backend); each figure is cleared after it is encoded.
"""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from calibration.review import disagreements, format_label

#: Most items listed under "worst disagreements".
MAX_DISAGREEMENTS = 30
#: Characters of item text shown per disagreement (HTML / Markdown).
HTML_TEXT_CHARS = 700
MD_TEXT_CHARS = 160
#: Characters of the judge's raw output shown per disagreement.
RAW_CHARS = 4000

METRIC_WORDS = {
    "cohen_kappa_ci_low": "the lower end of the 95% CI of Cohen's kappa",
    "cohen_kappa": "Cohen's kappa",
    "accuracy_ci_low": "the lower end of the 95% Wilson CI of accuracy",
    "accuracy": "accuracy",
    "macro_f1": "macro-F1",
}
NO_ANNOTATORS = "the gold set has fewer than two independent annotators"

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Liberation Sans",Arial,sans-serif;color:#1f2937;
  max-width:1240px;margin:0 auto;padding:16px 24px 48px;line-height:1.4;font-size:14px}
h1{font-size:22px;margin:8px 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:2px solid #e5e7eb;padding-bottom:4px}
h3{font-size:15px;margin:22px 0 6px}
table{border-collapse:collapse;font-size:12.5px;margin:6px 0}
th,td{border:1px solid #d1d5db;padding:3px 7px;vertical-align:top}
th{background:#f3f4f6;text-align:left;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
table.meta th{width:170px}
.scroll{overflow-x:auto}
.verdict{display:inline-block;border-radius:3px;padding:0 6px;color:#fff;font-weight:600;font-size:12px}
.verdict.pass{background:#15803d}.verdict.fail{background:#b91c1c}.verdict.other{background:#92400e}
.gate{border-left:5px solid #b91c1c;background:#fef2f2;padding:8px 14px;margin:10px 0}
.gate.ok{border-left-color:#15803d;background:#f0fdf4}
.gate ul{margin:6px 0;padding-left:20px}
.undef{color:#6b7280;cursor:help}
.muted{color:#6b7280}
.notes{font-size:12px;color:#4b5563;margin:2px 0 10px;padding-left:20px}
code{background:#f3f4f6;padding:0 3px;border-radius:3px;font-size:12px}
pre{white-space:pre-wrap;word-break:break-word;background:#f8fafc;border:1px solid #e5e7eb;padding:6px;
  max-height:220px;overflow:auto;font-size:12px;margin:4px 0}
.item{border:1px solid #e5e7eb;border-radius:4px;padding:8px 12px;margin:10px 0}
.item .text{white-space:pre-wrap;word-break:break-word;background:#fafafa;padding:4px 8px;border-left:3px solid #d1d5db}
.axisblock{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start}
img{max-width:100%;height:auto;border:1px solid #e5e7eb}
"""


# --------------------------------------------------------------------------- cells and notes


@dataclass
class Cell:
    """One table cell: its text, and the reason when (part of) the value is undefined."""

    text: str
    note: str | None = None
    num: bool = True


class Notes:
    """Numbered footnotes for undefined values (the same reason gets the same number)."""

    def __init__(self) -> None:
        self.reasons: list[str] = []

    def ref(self, reason: str) -> int:
        if reason not in self.reasons:
            self.reasons.append(reason)
        return self.reasons.index(reason) + 1


def _num(x: Any, digits: int = 2) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def _value(m: dict | None, key: str, digits: int = 2, why: str | None = None) -> Cell:
    """A metric as a cell; None → "—" with the reason from the dict's ``undefined``."""
    if m is None:
        return Cell("—", why or "not computed")
    v = m.get(key)
    if v is None:
        return Cell("—", (m.get("undefined") or {}).get(key) or why or "undefined")
    return Cell(_num(v, digits))


def _with_ci(m: dict | None, key: str, why: str | None = None) -> Cell:
    """``value [lo, hi]``; reasons for an undefined value or interval."""
    base = _value(m, key, why=why)
    if base.text == "—":
        return base
    ci = m.get(f"{key}_ci")
    if not ci:
        return Cell(f"{base.text} [—]", (m.get("undefined") or {}).get(f"{key}_ci") or "interval undefined")
    return Cell(f"{base.text} [{ci[0]:.2f}, {ci[1]:.2f}]")


def _single(axis_metrics: dict, who: str) -> dict | None:
    """The single-label metrics of one rater (judge/annotators/majority/nearest_exemplar); primary for operations."""
    if who in ("majority", "nearest_exemplar"):
        m = axis_metrics.get("baselines", {}).get(who)
    else:
        m = axis_metrics.get(who)
    if m is None:
        return None
    return m.get("primary", m) if axis_metrics.get("kind") == "operations" else m


def _axis_title(axis: str, m: dict) -> str:
    return f"{axis} (primary op.)" if m.get("kind") == "operations" else axis


# --------------------------------------------------------------------------- content (shared by HTML and Markdown)


def _meta_rows(record: dict) -> list[tuple[str, str]]:
    j = record.get("judge") or {}
    g = record.get("gold") or {}
    s = record.get("split") or {}
    prompts = j.get("prompts") or {}
    ex = j.get("exemplars") or {}
    spl = record.get("seconds_per_label")
    rows = [
        ("record", record.get("id", "")),
        ("kind", record.get("kind", "")),
        ("created at", record.get("created_at", "")),
        ("judge", f"backend {j.get('backend', '?')}, model {j.get('model', '?')}"
                  + (f", {j['base_url']}" if j.get("base_url") else "")),
        ("prompts", "; ".join(f"{k}: {v}" for k, v in prompts.items()) or "—"),
        ("exemplars k", str(ex.get("k", 0)) + (f" (pool {ex['pool_size']}, gold {ex.get('gold_sha256', '')})"
                                                 if ex.get("pool_size") else "")),
        ("temperature", _num(j.get("temperature"), 2) if j.get("temperature") is not None else "default"),
        ("max tokens", str(j.get("max_tokens", "—"))),
        ("taxonomy", f"{j.get('taxonomy_name', '?')} {j.get('taxonomy_version', '?')} #{j.get('taxonomy_hash', '?')}"),
        ("judge config hash", record.get("judge_config_hash", "")),
        ("gold", f"{g.get('path', '?')} (sha256 {str(g.get('sha256', ''))[:12]}…, {g.get('n_items', '?')} items, "
                 f"annotators {', '.join(g.get('annotators') or []) or 'none'})"),
        ("split", f"seed {s.get('seed')}, exemplar pool n={s.get('n_pool')}, held-out n={s.get('n_heldout')} "
                  f"(holdout {s.get('holdout_frac')}, stratified by {s.get('stratify', '?')})"),
        ("status counts", ", ".join(f"{k} {v}" for k, v in sorted((record.get("status_counts") or {}).items()))),
        ("seconds per label", "—" if spl is None else f"{spl:.3f} s (median)"),
        ("samples per item", str(record.get("samples", 1))),
    ]
    return rows


def _gate_lines(record: dict) -> tuple[list[dict[str, str]], list[str]]:
    """Per axis: {axis, verdict, plain, reason}; and the failing axes."""
    lines, failed = [], []
    for axis, m in record.get("axes", {}).items():
        v = m.get("verdict") or {}
        word = v.get("verdict") or record.get("verdicts", {}).get(axis, "?")
        metric, bound, min_n, n, value = v.get("metric"), v.get("bound"), v.get("min_n"), v.get("n"), v.get("value")
        words = METRIC_WORDS.get(metric, str(metric))
        if m.get("kind") == "operations":
            words += " (primary operation)"
        rule = f"rule: {words} ≥ {_num(bound)} with at least {min_n} held-out items"
        if min_n is not None and n is not None and n < min_n:
            plain = f"only {n} held-out items were scored; the gate needs at least {min_n}."
        elif value is None:
            plain = f"{words} is undefined, so the axis cannot pass."
        elif word == "pass":
            plain = f"{words} is {value:.3f}, at or above the bound {_num(bound)}."
        else:
            plain = f"{words} is {value:.3f}, below the bound {_num(bound)}."
        if word != "pass":
            failed.append(axis)
        lines.append({"axis": axis, "verdict": word, "plain": plain, "reason": v.get("reason", ""), "rule": rule})
    return lines, failed


def _gate_conclusion(record: dict, failed: list[str]) -> str:
    total = len(record.get("axes", {}))
    if not failed:
        return f"All {total} axes pass the gate: their labels may be used in capability slices."
    return (f"{len(failed)} of {total} axes fail the gate ({', '.join(failed)}). Labels on those axes are "
            "excluded from capability slices unless `--allow-ungated` is passed.")


SUMMARY_HEAD = ["axis", "n", "judge κ [95% CI]", "judge accuracy [95% CI]", "judge macro-F1",
                "annotator κ (ceiling)", "majority acc.", "majority κ", "nearest-exemplar κ",
                "nearest-exemplar acc.", "Krippendorff α (all raters)", "invalid", "verdict"]


def _summary_rows(record: dict) -> list[list[Cell]]:
    rows = []
    for axis, m in record.get("axes", {}).items():
        judge, ann = _single(m, "judge"), _single(m, "annotators")
        maj, near = _single(m, "majority"), _single(m, "nearest_exemplar")
        ka = m.get("krippendorff_alpha") or {}
        alpha = (Cell(f"{ka['alpha']:.2f} ({ka.get('level', '?')})") if ka.get("alpha") is not None
                 else Cell(f"— ({ka.get('level', '?')})", ka.get("reason") or "not computed"))
        n_invalid = (m.get("judge") or {}).get("n_invalid")
        rows.append([
            Cell(_axis_title(axis, m), num=False), Cell(str(m.get("n", "—"))),
            _with_ci(judge, "cohen_kappa"), _with_ci(judge, "accuracy"), _value(judge, "macro_f1"),
            _value(ann, "cohen_kappa", why=NO_ANNOTATORS),
            _value(maj, "accuracy"), _value(maj, "cohen_kappa"),
            _value(near, "cohen_kappa"), _value(near, "accuracy"),
            alpha, Cell("—" if n_invalid is None else str(n_invalid)),
            Cell((m.get("verdict") or {}).get("verdict", "?"), num=False),
        ])
    return rows


OPS_HEAD = ["axis", "rater", "mean Jaccard", "micro-F1", "macro-F1", "n", "invalid"]


def _ops_rows(record: dict) -> list[list[Cell]]:
    rows = []
    for axis, m in record.get("axes", {}).items():
        if m.get("kind") != "operations":
            continue
        raters = [("judge", m.get("judge")), ("annotators (ceiling)", m.get("annotators")),
                  ("majority", m.get("baselines", {}).get("majority")),
                  ("nearest exemplar", m.get("baselines", {}).get("nearest_exemplar"))]
        for name, d in raters:
            why = NO_ANNOTATORS if name.startswith("annotators") else None
            rows.append([Cell(axis, num=False), Cell(name, num=False), _value(d, "mean_jaccard", why=why),
                         _value(d, "micro_f1", why=why), _value(d, "macro_f1", why=why),
                         Cell(str(d["n"]) if d else "—"), Cell(str(d["n_invalid"]) if d else "—")])
    return rows


PER_CLASS_HEAD = ["class", "precision", "recall", "F1", "support (gold)"]


def _per_class_rows(m: dict) -> list[list[Cell]]:
    judge = _single(m, "judge") or {}
    return [[Cell(label, num=False), Cell(_num(v["precision"])), Cell(_num(v["recall"])), Cell(_num(v["f1"])),
             Cell(str(v["support"]))] for label, v in (judge.get("per_class") or {}).items()]


COVERAGE_HEAD = ["confidence ≥", "coverage", "items", "judge accuracy"]


def _coverage_rows(m: dict) -> list[list[Cell]]:
    return [[Cell(_num(p["threshold"])),
             Cell(_num(p["coverage"])) if p.get("coverage") is not None else Cell("—", "no items"),
             Cell(str(p["n"])),
             Cell(_num(p["accuracy"])) if p.get("accuracy") is not None else Cell("—", "no item this confident")]
            for p in m.get("coverage") or []]


def _worst(record: dict) -> tuple[list[dict[str, Any]], int]:
    """Items with ≥1 disagreement, confident-and-wrong first (max confidence over their disagreeing axes)."""
    by_item: dict[str, dict[str, Any]] = {}
    for d in disagreements(record):
        e = by_item.setdefault(d["item_id"], {"id": d["item_id"], "text": d["text"], "status": d["status"],
                                              "raw_output": d["raw_output"], "axes": []})
        e["axes"].append(d)
    items = sorted(by_item.values(),
                   key=lambda e: (-max(a["confidence"] for a in e["axes"]), -len(e["axes"]), e["id"]))
    return items[:MAX_DISAGREEMENTS], len(items)


def _clip(text: str, n: int) -> str:
    text = str(text or "")
    return text if len(text) <= n else text[:n].rstrip() + " …"


# --------------------------------------------------------------------------- figures


def _png(fig) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    finally:
        fig.clear()
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def confusion_png(axis: str, confusion: dict) -> str | None:
    """Heatmap of a confusion matrix (rows = gold, columns = judge, counts written in) as a PNG data URI."""
    from matplotlib.figure import Figure

    labels, matrix = confusion.get("labels") or [], confusion.get("matrix") or []
    if not labels:
        return None
    k = len(labels)
    fig = Figure(figsize=(max(4.2, 0.52 * k + 2.6), max(3.4, 0.45 * k + 2.0)))
    ax = fig.add_subplot()
    ax.imshow(matrix, cmap="Blues", vmin=0, vmax=max(1, max(max(r) for r in matrix)))
    top = max(1, max(max(r) for r in matrix))
    for i, row in enumerate(matrix):
        for j, c in enumerate(row):
            ax.text(j, i, str(c), ha="center", va="center", fontsize=8 if k > 8 else 9,
                    color="white" if c > top / 2 else ("#9ca3af" if c == 0 else "#111827"))
    ax.set_xticks(range(k), labels, rotation=40, ha="right", fontsize=8)
    ax.set_yticks(range(k), labels, fontsize=8)
    ax.set_xlabel("judge label")
    ax.set_ylabel("gold label")
    ax.set_title(f"{axis}: rows = gold, columns = judge", fontsize=10)
    return _png(fig)


def coverage_png(record: dict) -> str | None:
    """Judge accuracy vs coverage (confidence thresholds), one line per axis, as a PNG data URI."""
    from matplotlib.figure import Figure

    curves = {a: [(p["coverage"], p["accuracy"]) for p in m.get("coverage") or []
                  if p.get("coverage") is not None and p.get("accuracy") is not None]
              for a, m in record.get("axes", {}).items()}
    if not any(curves.values()):
        return None
    fig = Figure(figsize=(7.2, 4.2))
    ax = fig.add_subplot()
    markers = "osD^vP*X"
    for i, (axis, pts) in enumerate(curves.items()):
        if pts:
            xs, ys = zip(*pts)
            ax.plot(xs, ys, marker=markers[i % len(markers)], label=axis, alpha=0.85)
    ax.set_xlim(-0.03, 1.05)
    ax.set_ylim(-0.03, 1.05)
    ax.set_xlabel("coverage (share of items with confidence ≥ threshold)")
    ax.set_ylabel("judge accuracy on covered items")
    ax.set_title("accuracy vs coverage", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return _png(fig)


# --------------------------------------------------------------------------- HTML


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _verdict_html(word: str) -> str:
    cls = word if word in ("pass", "fail") else "other"
    return f'<span class="verdict {cls}">{_e(word)}</span>'


def _table_html(head: list[str], rows: list[list[Cell]], notes: Notes, verdict_col: int | None = None,
                cls: str = "") -> str:
    out = [f'<div class="scroll"><table class="{cls}"><thead><tr>']
    out += [f"<th>{_e(h)}</th>" for h in head]
    out.append("</tr></thead><tbody>")
    for row in rows:
        out.append("<tr>")
        for i, c in enumerate(row):
            klass = "num" if c.num else ""
            if i == verdict_col:
                out.append(f"<td>{_verdict_html(c.text)}</td>")
            elif c.note:
                n = notes.ref(c.note)
                out.append(f'<td class="{klass} undef" title="{_e(c.note)}">{_e(c.text)}<sup>{n}</sup></td>')
            else:
                out.append(f'<td class="{klass}">{_e(c.text)}</td>')
        out.append("</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def _notes_html(notes: Notes, start: int = 0) -> str:
    items = notes.reasons[start:]
    if not items:
        return ""
    lis = "".join(f'<li value="{start + i + 1}">{_e(r)}</li>' for i, r in enumerate(items))
    return f'<ol class="notes">{lis}</ol>'


def render_html(record: dict) -> str:
    """The report as one self-contained HTML page (see the module docstring)."""
    notes = Notes()
    p: list[str] = []
    rid = record.get("id", "")
    p.append(f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>calibration report {_e(rid)}</title>'
             f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head><body>')
    p.append(f"<h1>Calibration report <code>{_e(rid)}</code></h1>")
    p.append(f'<p class="muted">{_e(record.get("kind", ""))} items · created {_e(record.get("created_at", ""))} · '
             "judge labels vs adjudicated gold labels on the gold set's held-out split</p>")

    # gate summary first
    lines, failed = _gate_lines(record)
    p.append(f'<section id="gate"><h2>Gate summary</h2><div class="gate{"" if failed else " ok"}">')
    p.append(f"<p><strong>{_e(_gate_conclusion(record, failed)).replace('`--allow-ungated`', '<code>--allow-ungated</code>')}</strong></p><ul>")
    one_rule = len({ln["rule"].replace(" (primary operation)", "") for ln in lines}) == 1
    for ln in lines:
        rule = "" if one_rule else f"; {_e(ln['rule'])}"
        p.append(f"<li><strong>{_e(ln['axis'])}</strong> {_verdict_html(ln['verdict'])} {_e(ln['plain'])} "
                 f'<span class="muted">(verdict reason: <code>{_e(ln["reason"])}</code>{rule})</span></li>')
    p.append("</ul>")
    if one_rule and lines:
        gate = record.get("gate") or {}
        p.append(f'<p class="muted">Gate (version {_e(gate.get("version", "?"))}), every axis: '
                 f'{_e(lines[0]["rule"].replace(" (primary operation)", "").removeprefix("rule: "))}'
                 " (operation axes: on the primary operation).</p>")
    p.append("</div></section>")

    # header
    p.append('<section id="run"><h2>Run</h2><table class="meta"><tbody>')
    p += [f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in _meta_rows(record)]
    p.append("</tbody></table></section>")

    # summary table
    p.append('<section id="summary"><h2>Per-axis agreement (held-out split)</h2>')
    p.append('<p class="muted">κ = Cohen\'s kappa (judge vs gold; 95% bootstrap CI); accuracy with 95% Wilson CI. '
             "The annotator κ (annotator A vs B) is the ceiling; majority-label and nearest-exemplar (TF-IDF, "
             "no LLM) are the baselines the judge must beat. Operation axes: primary operation. "
             "“invalid” = items the judge failed to label (counted as wrong, never dropped). "
             "“—” = undefined; hover for the reason or see the numbered notes.</p>")
    p.append(_table_html(SUMMARY_HEAD, _summary_rows(record), notes, verdict_col=len(SUMMARY_HEAD) - 1,
                         cls="summary"))
    ops = _ops_rows(record)
    if ops:
        p.append("<h3>Operation sets (all operations, not only the primary)</h3>")
        p.append(_table_html(OPS_HEAD, ops, notes))
    p.append(_notes_html(notes))
    p.append("</section>")

    # per axis
    p.append('<section id="axes"><h2>Per axis: classes and confusion</h2>')
    for axis, m in record.get("axes", {}).items():
        start = len(notes.reasons)
        v = (m.get("verdict") or {}).get("verdict", "?")
        p.append(f'<h3 id="axis-{_e(axis)}">{_e(_axis_title(axis, m))} {_verdict_html(v)}</h3>')
        p.append('<div class="axisblock"><div>')
        p.append(_table_html(PER_CLASS_HEAD, _per_class_rows(m), notes))
        p.append('<p class="muted">Judge per class; <code>__invalid__</code> = judge failures'
                 + (", <code>__none__</code> = no operation" if m.get("kind") == "operations" else "") + ".</p>")
        p.append(_table_html(COVERAGE_HEAD, _coverage_rows(m), notes))
        p.append(_notes_html(notes, start))
        p.append("</div><div>")
        img = confusion_png(_axis_title(axis, m), (_single(m, "judge") or {}).get("confusion") or {})
        p.append(f'<img alt="confusion matrix of {_e(axis)}" src="{img}">' if img
                 else '<p class="muted">no items: no confusion matrix</p>')
        p.append("</div></div>")
    p.append("</section>")

    # coverage
    p.append('<section id="coverage"><h2>Accuracy vs coverage</h2>')
    samples = record.get("samples", 1)
    p.append('<p class="muted">Confidence = share of the judge\'s samples that agree with its modal label '
             f"({samples} sample{'s' if samples != 1 else ''} per item"
             + ("; with one sample, confidence is 1.0 for every labeled item and 0.0 for judge failures: "
                "run <code>slicelab calibrate --samples 5 --temperature 0.7</code> for a real curve"
                if samples == 1 else "") + ").</p>")
    img = coverage_png(record)
    p.append(f'<img alt="accuracy vs coverage" src="{img}">' if img else '<p class="muted">no coverage data</p>')
    p.append("</section>")

    # worst disagreements
    worst, total = _worst(record)
    p.append('<section id="disagreements"><h2>Worst disagreements</h2>')
    p.append(f'<p class="muted">{total} of {len(record.get("items", []))} held-out items disagree with gold on at '
             f"least one axis; {'the ' + str(len(worst)) + ' shown are' if total > len(worst) else 'all shown,'} "
             "sorted by the judge's confidence, confident-and-wrong first. Review them with "
             "<code>slicelab calibration export-disagreements</code>.</p>")
    for e in worst:
        status = "" if e["status"] == "labeled" else f' <span class="verdict other">status: {_e(e["status"])}</span>'
        p.append(f'<div class="item"><div><strong><code>{_e(e["id"])}</code></strong>{status}</div>')
        p.append(f'<div class="text">{_e(_clip(e["text"], HTML_TEXT_CHARS))}</div>')
        p.append("<table><thead><tr><th>axis</th><th>gold</th><th>judge</th><th>confidence</th></tr></thead><tbody>")
        for a in e["axes"]:
            p.append(f"<tr><td>{_e(a['axis'])}</td><td>{_e(format_label(a['gold'], a['axis_kind']))}</td>"
                     f"<td>{_e(format_label(a['judge'], a['axis_kind']))}</td>"
                     f'<td class="num">{a["confidence"]:.2f}</td></tr>')
        p.append("</tbody></table>")
        p.append(f"<div class=\"muted\">judge raw output:</div><pre>{_e(_clip(e['raw_output'], RAW_CHARS))}</pre></div>")
    p.append("</section></body></html>")
    return "\n".join(p)


# --------------------------------------------------------------------------- Markdown


def _md(x: Any) -> str:
    return str(x).replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _table_md(head: list[str], rows: list[list[Cell]], notes: Notes) -> str:
    out = ["| " + " | ".join(_md(h) for h in head) + " |",
           "|" + "|".join("---:" if i and c.num else "---" for i, c in enumerate(rows[0] if rows else
                                                                                   [Cell("")] * len(head))) + "|"]
    for row in rows:
        cells = [_md(c.text) + (f" [{notes.ref(c.note)}]" if c.note else "") for c in row]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def _notes_md(notes: Notes, start: int = 0) -> str:
    return "\n".join(f"[{start + i + 1}] {_md(r)}  " for i, r in enumerate(notes.reasons[start:]))


def render_markdown(record: dict) -> str:
    """The report's tables as Markdown (no figures)."""
    notes = Notes()
    p = [f"# Calibration report `{record.get('id', '')}`", ""]
    lines, failed = _gate_lines(record)
    p += ["## Gate summary", "", f"**{_gate_conclusion(record, failed)}**", ""]
    p += [f"- **{ln['axis']}**: **{ln['verdict']}**: {ln['plain']} (verdict reason: `{ln['reason']}`; {ln['rule']})"
          for ln in lines]
    p += ["", "## Run", "", "| field | value |", "|---|---|"]
    p += [f"| {_md(k)} | {_md(v)} |" for k, v in _meta_rows(record)]
    p += ["", "## Per-axis agreement (held-out split)", "",
          "κ = Cohen's kappa with 95% bootstrap CI; accuracy with 95% Wilson CI; annotator κ is the ceiling; "
          "operation axes: primary operation. — = undefined (see the numbered notes).", "",
          _table_md(SUMMARY_HEAD, _summary_rows(record), notes)]
    ops = _ops_rows(record)
    if ops:
        p += ["", "### Operation sets", "", _table_md(OPS_HEAD, ops, notes)]
    if notes.reasons:
        p += ["", _notes_md(notes)]
    p += ["", "## Per axis"]
    for axis, m in record.get("axes", {}).items():
        start = len(notes.reasons)
        p += ["", f"### {_axis_title(axis, m)}: {(m.get('verdict') or {}).get('verdict', '?')}", "",
              _table_md(PER_CLASS_HEAD, _per_class_rows(m), notes)]
        conf = (_single(m, "judge") or {}).get("confusion") or {}
        if conf.get("labels"):
            head = ["gold \\ judge", *conf["labels"]]
            rows = [[Cell(lab, num=False), *(Cell(str(c)) for c in r)] for lab, r in zip(conf["labels"], conf["matrix"])]
            p += ["", "Confusion (rows = gold, columns = judge):", "", _table_md(head, rows, notes)]
        p += ["", "Accuracy vs coverage:", "", _table_md(COVERAGE_HEAD, _coverage_rows(m), notes)]
        if len(notes.reasons) > start:
            p += ["", _notes_md(notes, start)]
    worst, total = _worst(record)
    p += ["", "## Worst disagreements", "",
          f"{total} of {len(record.get('items', []))} held-out items disagree on at least one axis; "
          f"{len(worst)} shown, confident-and-wrong first.", "",
          "| item | status | axis | gold | judge | confidence | text |", "|---|---|---|---|---|---:|---|"]
    for e in worst:
        for a in e["axes"]:
            p.append(f"| {_md(e['id'])} | {_md(e['status'])} | {_md(a['axis'])} | "
                     f"{_md(format_label(a['gold'], a['axis_kind']))} | {_md(format_label(a['judge'], a['axis_kind']))} | "
                     f"{a['confidence']:.2f} | {_md(_clip(e['text'], MD_TEXT_CHARS))} |")
    return "\n".join(p) + "\n"


# --------------------------------------------------------------------------- entry point


def write_report(record: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """Write ``report.html``, ``report.json`` and ``report.md`` for one calibration record.

    Args:
        record: a calibration record as ``calibration.run.run_calibration`` returns it
            (or ``calibration.records.load_record`` loads it).
        out_dir: folder for the three files (created if missing; existing reports replaced).

    Returns:
        ``{"html": Path, "json": Path, "md": Path}``.

    Raises:
        ValueError: the record holds NaN or infinity (checked before anything is written).
        TypeError: the record holds a value JSON cannot represent (likewise checked first).
        KeyError: the record lacks ``axes`` entries the report needs.
        OSError: a file cannot be written.
    """
    text = json.dumps(record, indent=2, allow_nan=False, ensure_ascii=False)
    page, md = render_html(record), render_markdown(record)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"html": out_dir / "report.html", "json": out_dir / "report.json", "md": out_dir / "report.md"}
    paths["json"].write_text(text + "\n", encoding="utf-8")
    paths["html"].write_text(page, encoding="utf-8")
    paths["md"].write_text(md, encoding="utf-8")
    return paths
