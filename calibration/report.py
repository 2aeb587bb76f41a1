"""The calibration report people review: one record → ``report.html``, ``report.json``, ``report.md``.

Besides the LLM judge, a record made since per-axis labeler selection holds the k-NN,
student and cascade labelers measured on the same items, the labeler selected per axis
(its verdict is the gate's) and the judge-alone verdict, and a leave-one-benchmark-out
estimate for the cheap labelers. Older records without those fields render with the
judge as the only labeler.

The HTML is self-contained: inline CSS, figures as base64 PNG data URIs, no scripts and no
external URLs, so it can be mailed or attached to a review as one file. The Markdown holds
the same tables without the figures. Every value comes from the record; nothing is
recomputed here. A metric that is None is shown as "—" with its reason (hover in HTML,
a numbered note under the table in both formats).

Figures are drawn with ``matplotlib.figure.Figure`` on the Agg canvas (no pyplot, so no
global figure registry and no GUI backend); each figure is cleared after it is encoded.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slicelab.calibration.gate import metric_value
from slicelab.service.reports import png_data_uri
from slicelab.calibration.review import disagreements, format_label

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
#: What each labeler is, shown under its name.
LABELER_WORDS = {
    "judge": "LLM judge",
    "knn": "k-NN vote over the exemplar pool",
    "student": "logistic regression on the pool",
    "cascade": "k-NN if confident, else the judge",
    "judge_sc": "LLM judge, k samples, majority vote per axis",
}

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
th .sub{display:block;font-weight:400;color:#6b7280;font-size:11.5px}
td.sel{background:#dcfce7;box-shadow:inset 0 0 0 2px #15803d;font-weight:600}
.tag{display:inline-block;border-radius:3px;padding:0 5px;margin-left:4px;background:#15803d;color:#fff;
  font-size:11px;font-weight:600}
.gate li{margin:3px 0 7px}
.gate .alone{display:block;color:#374151}
.flag{display:block;font-weight:600}
.flag.cheaper{color:#15803d}.flag.none{color:#b91c1c}
.lab{font-weight:600}
.hsub{font-weight:400;font-size:13px;color:#6b7280}
"""


# --------------------------------------------------------------------------- cells and notes


@dataclass
class Cell:
    """One table cell: its text, and the reason when (part of) the value is undefined."""

    text: str
    note: str | None = None
    num: bool = True
    #: the selected labeler's cell (highlighted, tagged "selected")
    mark: bool = False


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


def _labelers(m: dict) -> dict[str, dict]:
    """Labeler name → full metrics on one axis; an old record (judge only) → {"judge": ...}."""
    if m.get("labelers"):
        return m["labelers"]
    return {"judge": m["judge"]} if m.get("judge") is not None else {}


def _labeler_names(record: dict) -> list[str]:
    """Every labeler measured in the record, in first-seen order (the judge first)."""
    names: list[str] = []
    for m in record.get("axes", {}).values():
        names += [n for n in _labelers(m) if n not in names]
    return sorted(names, key=lambda n: n != "judge")


def _multi(record: dict) -> bool:
    """Whether the record measured labelers beside the judge (made since per-axis selection)."""
    return any(m.get("labelers") for m in record.get("axes", {}).values())


def _selected(record: dict, axis: str, m: dict) -> str:
    """The labeler the gate judged on this axis (the judge in records that predate selection)."""
    return m.get("selected") or (record.get("selection") or {}).get(axis) or "judge"


def _judge_verdict(record: dict, axis: str, m: dict) -> dict:
    """The judge-alone verdict dict; in old records the verdict is the judge's."""
    if m.get("judge_verdict"):
        return m["judge_verdict"]
    if not _multi(record) or _selected(record, axis, m) == "judge":
        return m.get("verdict") or {}
    word = (record.get("judge_verdicts") or {}).get(axis)
    return {"verdict": word} if word else {}


def _spl(record: dict, name: str) -> float | None:
    spl = ((record.get("labelers") or {}).get("seconds_per_label") or {})
    if name in spl:
        return spl[name]
    return record.get("seconds_per_label") if name == "judge" else None


def _seconds(x: float | None) -> str:
    if x is None:
        return "— s/label"
    return f"{x:.2f} s/label" if x >= 1 else f"{x * 1000:.3g} ms/label"


def _cascade(record: dict) -> dict:
    return (record.get("labelers") or {}).get("cascade") or {}


def _rule_passes(metrics: dict | None, kind: str | None, v: dict) -> bool | None:
    """Whether one labeler's metrics meet the gate rule in verdict ``v`` (None: rule unknown)."""
    if metrics is None or not v.get("metric") or v.get("bound") is None:
        return None
    m = metrics.get("primary", metrics) if kind == "operations" else metrics
    value = metric_value(m, v["metric"])
    return (m.get("n") or 0) >= (v.get("min_n") or 0) and value is not None and value >= v["bound"]


# --------------------------------------------------------------------------- content (shared by HTML and Markdown)


def _meta_rows(record: dict) -> list[tuple[str, str]]:
    j = record.get("judge") or {}
    g = record.get("gold") or {}
    s = record.get("split") or {}
    prompts = j.get("prompts") or {}
    ex = j.get("exemplars") or {}
    spl = record.get("seconds_per_label")
    pool_file = s.get("exemplars") or {}
    if pool_file:
        split = (f"every gold item evaluated (n={s.get('n_heldout')}); exemplar pool n={s.get('n_pool')} from "
                 f"{pool_file.get('path', '?')} (sha256 {str(pool_file.get('sha256', ''))[:12]}…)")
    else:
        split = (f"seed {s.get('seed')}, exemplar pool n={s.get('n_pool')}, held-out n={s.get('n_heldout')} "
                 f"(holdout {s.get('holdout_frac')}, stratified by {s.get('stratify', '?')})")
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
        ("split", split),
        ("status counts", ", ".join(f"{k} {v}" for k, v in sorted((record.get("status_counts") or {}).items()))),
        ("seconds per label", "—" if spl is None else f"{spl:.3f} s (median)"),
        ("samples per item", str(record.get("samples", 1))),
    ]
    if record.get("output_tokens_per_label") is not None:
        rows.insert(-1, ("output tokens per label", f"{record['output_tokens_per_label']:g} (median)"))
    if _multi(record):
        rows.append(("labelers", "; ".join(f"{n} ({LABELER_WORDS.get(n, n)}): {_seconds(_spl(record, n))}"
                                           for n in _labeler_names(record))))
        c = _cascade(record)
        if c:
            rows.append(("cascade", f"{c.get('cheap', '?')} when its vote share ≥ {_num(c.get('threshold'))}, "
                                    f"else the judge"))
    return rows


def _plain(v: dict, kind: str | None) -> str:
    """A verdict dict as a plain sentence."""
    metric, bound, min_n, n, value = v.get("metric"), v.get("bound"), v.get("min_n"), v.get("n"), v.get("value")
    words = METRIC_WORDS.get(metric, str(metric))
    if kind == "operations":
        words += " (primary operation)"
    if min_n is not None and n is not None and n < min_n:
        return f"only {n} held-out items were scored; the gate needs at least {min_n}."
    if metric is None:
        return ""
    if value is None:
        return f"{words} is undefined, so the axis cannot pass."
    if v.get("verdict") == "pass":
        return f"{words} is {value:.3f}, at or above the bound {_num(bound)}."
    return f"{words} is {value:.3f}, below the bound {_num(bound)}."


def _rule(v: dict, kind: str | None) -> str:
    words = METRIC_WORDS.get(v.get("metric"), str(v.get("metric")))
    if kind == "operations":
        words += " (primary operation)"
    return f"rule: {words} ≥ {_num(v.get('bound'))} with at least {v.get('min_n')} held-out items"


def _gate_lines(record: dict) -> tuple[list[dict[str, Any]], list[str]]:
    """Per axis: the selected labeler's verdict and the judge-alone verdict, in words; and the failing axes.

    Each line: axis, kind, selected, verdict, plain, reason, rule, judge_verdict, judge_plain,
    judge_reason, too_few (fewer items than the gate's min_n), cheaper_pass (non-judge labelers
    meeting the rule while the judge alone fails), none_pass (True when no labeler meets the rule).
    """
    lines, failed = [], []
    for axis, m in record.get("axes", {}).items():
        kind = m.get("kind")
        v = m.get("verdict") or {}
        word = v.get("verdict") or record.get("verdicts", {}).get(axis, "?")
        sel = _selected(record, axis, m)
        jv = _judge_verdict(record, axis, m)
        jword = jv.get("verdict") or "?"
        passing = [n for n, lm in _labelers(m).items() if _rule_passes(lm, kind, v)]
        if word == "pass" and sel not in passing:
            passing.append(sel)
        cheaper = [n for n in passing if n != "judge"] if jword == "fail" else []
        none_pass = _multi(record) and word != "pass" and jword != "pass" and not passing
        if word != "pass":
            failed.append(axis)
        few = v.get("min_n") is not None and v.get("n") is not None and v["n"] < v["min_n"]
        lines.append({"axis": axis, "kind": kind, "selected": sel, "verdict": word, "plain": _plain(v, kind),
                      "too_few": few, "reason": v.get("reason", ""), "rule": _rule(v, kind), "judge_verdict": jword,
                      "judge_plain": _plain(jv, kind), "judge_reason": jv.get("reason", ""),
                      "cheaper_pass": cheaper, "none_pass": none_pass})
    return lines, failed


def _gate_conclusion(record: dict, failed: list[str]) -> str:
    total = len(record.get("axes", {}))
    with_sel = " with their selected labelers" if _multi(record) else ""
    if not failed:
        return f"All {total} axes pass the gate{with_sel}: their labels may be used in capability slices."
    return (f"{len(failed)} of {total} axes fail the gate{with_sel} ({', '.join(failed)}). Labels on those axes "
            "are excluded from capability slices unless `--allow-ungated` is passed.")


def _gate_findings(lines: list[dict[str, Any]]) -> list[str]:
    """Plain sentences: where the judge alone fails but a cheaper labeler passes; where nothing passes."""
    out = []
    cheaper = [ln for ln in lines if ln["cheaper_pass"]]
    if cheaper:
        out.append("The LLM judge alone fails " + "; ".join(
            f"{ln['axis']} (passed by {', '.join(ln['cheaper_pass'])})" for ln in cheaper)
            + ": a cheaper labeler passes where the judge does not.")
    none = [ln for ln in lines if ln["none_pass"]]
    if none:
        why = ("too few held-out items for any labeler to pass; score more gold items"
               if all(ln["too_few"] for ln in none)
               else "neither the LLM judge nor any cheaper labeler meets the gate there")
        out.append(f"No labeler passes {', '.join(ln['axis'] for ln in none)}"
                   + (" (every axis)" if len(none) == len(lines) > 1 else "") + f": {why}.")
    return out


def _flag(ln: dict[str, Any], lines: list[dict[str, Any]]) -> tuple[str, str] | None:
    """The per-axis plain flag: (css class, sentence), or None (also when the summary already says it for
    every axis)."""
    if ln["none_pass"] and len(lines) > 1 and all(x["none_pass"] for x in lines):
        return None
    if ln["cheaper_pass"]:
        return "cheaper", (f"The LLM judge alone fails this axis, but {', '.join(ln['cheaper_pass'])} "
                           f"(cheaper) {'passes' if len(ln['cheaper_pass']) == 1 else 'pass'}.")
    if ln["none_pass"]:
        return "none", ("No labeler passes this axis" + (": with this few held-out items none can; score more gold "
                                                         "items." if ln["too_few"] else "."))
    return None


SUMMARY_HEAD = ["axis", "n", "judge κ [95% CI]", "judge accuracy [95% CI]", "judge macro-F1",
                "annotator κ (ceiling)", "majority acc.", "majority κ", "nearest-exemplar κ",
                "nearest-exemplar acc.", "Krippendorff α (all raters)", "invalid", "judge alone",
                "gate verdict\nselected labeler"]
#: Columns of SUMMARY_HEAD drawn as verdict badges (a second line: the labeler).
SUMMARY_VERDICTS = (12, 13)


def _summary_head(record: dict) -> tuple[list[str], tuple[int, ...]]:
    """The per-axis agreement header and its verdict columns (one verdict for records without selection)."""
    if _multi(record):
        return SUMMARY_HEAD, SUMMARY_VERDICTS
    return SUMMARY_HEAD[:-2] + ["verdict"], (len(SUMMARY_HEAD) - 2,)


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
        ])
        if _multi(record):
            rows[-1] += [Cell(_judge_verdict(record, axis, m).get("verdict", "?"), num=False),
                         Cell(f"{(m.get('verdict') or {}).get('verdict', '?')}\n{_selected(record, axis, m)}",
                              num=False)]
        else:
            rows[-1].append(Cell((m.get("verdict") or {}).get("verdict", "?"), num=False))
    return rows


def _labeler_cell(metrics: dict | None, kind: str | None, selected: bool, alt: dict | None = None) -> Cell:
    """κ [95% CI], accuracy and the alt-test (winning rate ω, advantage probability ρ) of one labeler on one axis
    (primary operation on operation axes)."""
    m = None if metrics is None else (metrics.get("primary", metrics) if kind == "operations" else metrics)
    if m is None:
        return Cell("not measured", "this labeler was not measured on this axis", num=False)
    kappa = _with_ci(m, "cohen_kappa")
    acc = _value(m, "accuracy")
    notes = [c.note for c in (kappa, acc) if c.note]
    text = f"κ {kappa.text}\nacc. {acc.text}"
    if alt:
        text += f"\nalt-test ω {_num(alt.get('winning_rate'))}, ρ {_num(alt.get('advantage_probability'))}"
    return Cell(text, "; ".join(dict.fromkeys(notes)) or None, mark=selected)


def _labelers_table(record: dict) -> tuple[list[str], list[list[Cell]]] | None:
    """Rows = axes, columns = labelers (κ [CI], accuracy; the selected one marked), the ceiling,
    and the cascade's share of items sent to the judge. None for records that predate selection."""
    if not _multi(record):
        return None
    names = _labeler_names(record)
    share = _cascade(record).get("share_to_judge") or {}
    head = ["axis", "n", *(f"{n}\n{LABELER_WORDS.get(n, n)}\n{_seconds(_spl(record, n))}" for n in names),
            "annotators A vs B\nceiling"]
    if "cascade" in names:
        head.append("cascade → judge\nshare of items")
    rows = []
    for axis, m in record.get("axes", {}).items():
        sel = _selected(record, axis, m)
        labs = _labelers(m)
        row = [Cell(_axis_title(axis, m), num=False), Cell(str(m.get("n", "—")))]
        alt = m.get("alt_test") or {}
        row += [_labeler_cell(labs.get(n), m.get("kind"), n == sel, alt.get(n)) for n in names]
        ann = _single(m, "annotators")
        row.append(_with_ci(ann, "cohen_kappa", why=NO_ANNOTATORS) if ann is not None
                   else Cell("—", NO_ANNOTATORS))
        row[-1].text = f"κ {row[-1].text}"
        if "cascade" in names:
            row.append(Cell(f"{share[axis]:.0%}") if share.get(axis) is not None
                       else Cell("—", "not in the record"))
        rows.append(row)
    return head, rows


def _cascade_sentence(record: dict) -> str:
    c = _cascade(record)
    if not c:
        return ""
    share = (c.get("share_to_judge") or {}).get("any_axis")
    judge_s = _spl(record, "judge")
    out = (f"The cascade keeps the {c.get('cheap', '?')} label on an axis when its vote share is at least "
           f"{_num(c.get('threshold'))} and asks the LLM judge otherwise")
    if share is not None:
        out += f"; it sent {share:.0%} of items to the judge on at least one axis"
        if judge_s is not None:
            out += f", so it costs about {share:.0%} of the judge's {_seconds(judge_s)}"
    return out + "."


LOBO_LABELERS = ("knn", "student")


def _lobo(record: dict) -> dict | None:
    lobo = record.get("leave_one_benchmark_out")
    return lobo if isinstance(lobo, dict) else None


def _lobo_table(record: dict) -> tuple[list[str], list[list[Cell]]] | None:
    """Per axis and cheap labeler: n, κ [CI], accuracy when the item's own source is never in the pool;
    beside it the same labeler's κ on the held-out split (pool and items sharing sources)."""
    lobo = _lobo(record)
    if lobo is None:
        return None
    names = [n for n in LOBO_LABELERS if isinstance(lobo.get(n), dict)]
    names += [n for n, v in lobo.items() if n not in names and n != "sources" and isinstance(v, dict)]
    head = ["axis"]
    for n in names:
        head += [f"{n}\nn", f"{n}\nκ [95% CI], new benchmark", f"{n}\naccuracy", f"{n}\nκ on held-out split"]
    axes = record.get("axes", {})
    order = list(axes) + [a for n in names for a in lobo[n] if a not in axes]
    order = list(dict.fromkeys(order))
    rows = []
    for axis in order:
        m = axes.get(axis, {})
        row = [Cell(_axis_title(axis, m), num=False)]
        for n in names:
            sm = lobo[n].get(axis)
            if sm is None:
                row += [Cell("—", "not in the record")] * 4
                continue
            row.append(Cell(str(sm.get("n", "—"))))
            if sm.get("kappa") is None:
                row.append(Cell("—", "Cohen's kappa undefined on these predictions"))
            elif sm.get("kappa_ci_low") is None or sm.get("kappa_ci_high") is None:
                row.append(Cell(f"{sm['kappa']:.2f} [—]", "interval undefined"))
            else:
                row.append(Cell(f"{sm['kappa']:.2f} [{sm['kappa_ci_low']:.2f}, {sm['kappa_ci_high']:.2f}]"))
            row.append(Cell(_num(sm.get("accuracy"))) if sm.get("accuracy") is not None else Cell("—", "undefined"))
            row.append(_value(_single_of(m, n), "cohen_kappa", why="not measured on the held-out split"))
        rows.append(row)
    return head, rows


def _lobo_text(record: dict) -> tuple[str, list[str]]:
    """What to expect on a benchmark no exemplar comes from: an explanation, and one line per labeler."""
    lobo = _lobo(record)
    if lobo is None:
        if (record.get("split") or {}).get("exemplars"):
            ex = record["split"]["exemplars"]
            return (f"Not computed: the exemplar pool comes from another file ({ex.get('path', '?')}), so the "
                    "labeler numbers above already measure items whose exemplars come from elsewhere."), []
        return "Not computed for this record.", []
    sources = lobo.get("sources") or []
    intro = (f"Each of the {len(sources)} sources ({', '.join(map(str, sources))}) is held out in turn and its "
             "items are labeled by k-NN and the student trained on the other sources only, so no exemplar comes "
             "from the item's benchmark. That is what to expect from these labelers on a new benchmark; the "
             "held-out split above (pool and items from the same sources) is the optimistic number. Where κ here "
             "is far below the held-out split, the labeler relies on same-benchmark look-alikes: label a new "
             "benchmark on that axis with the LLM judge.")
    axes = record.get("axes", {})
    lines = []
    for n in (k for k, v in lobo.items() if k != "sources" and isinstance(v, dict)):
        ks = [sm["kappa"] for sm in lobo[n].values() if sm and sm.get("kappa") is not None]
        if not ks:
            lines.append(f"{n}: κ undefined on every axis.")
            continue
        split = [k for k in (_value(_single_of(axes.get(a) or {}, n), "cohen_kappa").text for a in lobo[n])
                 if k != "—"]
        line = f"{n} on a new benchmark: κ {min(ks):.2f} to {max(ks):.2f} across axes"
        if split:
            line += f" (held-out split: {min(split, key=float)} to {max(split, key=float)})"
        gated = [a for a in lobo[n] if ((axes.get(a) or {}).get("verdict") or {}).get("metric") == "cohen_kappa_ci_low"]
        if gated:
            reach = []
            for a in gated:
                v, sm = axes[a]["verdict"], lobo[n][a] or {}
                if sm.get("kappa_ci_low") is not None and v.get("bound") is not None \
                        and sm["kappa_ci_low"] >= v["bound"] and sm.get("n", 0) >= (v.get("min_n") or 0):
                    reach.append(a)
            line += (f"; its lower κ bound would meet the gate on {', '.join(reach)}" if reach
                     else "; its lower κ bound would meet the gate on no axis")
        lines.append(line + ".")
    return intro, lines


def _single_of(m: dict, labeler: str) -> dict | None:
    """One labeler's single-label metrics on an axis (primary operation for operation axes)."""
    lm = _labelers(m).get(labeler)
    if lm is None:
        return None
    return lm.get("primary", lm) if m.get("kind") == "operations" else lm


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


_png = png_data_uri


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


def _lines_html(text: str) -> str:
    """Escaped text; a newline becomes a line break."""
    return "<br>".join(_e(t) for t in str(text).split("\n"))


def _th_html(h: str) -> str:
    """A header: the first line bold, further lines small and grey."""
    first, _, rest = str(h).partition("\n")
    return f"<th>{_e(first)}" + (f'<span class="sub">{_lines_html(rest)}</span>' if rest else "") + "</th>"


def _table_html(head: list[str], rows: list[list[Cell]], notes: Notes, verdict_cols: tuple[int, ...] = (),
                cls: str = "") -> str:
    out = [f'<div class="scroll"><table class="{cls}"><thead><tr>']
    out += [_th_html(h) for h in head]
    out.append("</tr></thead><tbody>")
    for row in rows:
        out.append("<tr>")
        for i, c in enumerate(row):
            klass = ("num" if c.num else "") + (" sel" if c.mark else "")
            tag = '<span class="tag">selected</span>' if c.mark else ""
            if i in verdict_cols:
                word, _, who = c.text.partition("\n")
                out.append(f"<td>{_verdict_html(word)}" + (f' <span class="lab">{_e(who)}</span>' if who else "")
                           + "</td>")
            elif c.note:
                # the footnote mark goes after the undefined value ("—"), else at the end
                n = notes.ref(c.note)
                parts = str(c.text).split("\n")
                at = next((k for k, t in enumerate(parts) if "—" in t), len(parts) - 1)
                body = "<br>".join(_e(t) + (f"<sup>{n}</sup>" if k == at else "") for k, t in enumerate(parts))
                out.append(f'<td class="{klass} undef" title="{_e(c.note)}">{body}{tag}</td>')
            else:
                out.append(f'<td class="{klass}">{_lines_html(c.text)}{tag}</td>')
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
    who = ("labels of the LLM judge and of cheaper labelers (" + ", ".join(n for n in _labeler_names(record)
                                                                          if n != "judge") + ")"
           if _multi(record) else "judge labels")
    p.append(f'<p class="muted">{_e(record.get("kind", ""))} items · created {_e(record.get("created_at", ""))} · '
             f"{_e(who)} vs adjudicated gold labels on the gold set's held-out split</p>")

    # gate summary first
    lines, failed = _gate_lines(record)
    multi = _multi(record)
    p.append(f'<section id="gate"><h2>Gate summary</h2><div class="gate{"" if failed else " ok"}">')
    p.append(f"<p><strong>{_e(_gate_conclusion(record, failed)).replace('`--allow-ungated`', '<code>--allow-ungated</code>')}</strong></p>")
    for finding in _gate_findings(lines):
        p.append(f"<p><strong>{_e(finding)}</strong></p>")
    if multi:
        p.append('<p class="muted">Per axis, the labeler with the best lower 95% bound of Cohen\'s kappa is selected '
                 "(ties go to the cheaper one); the gate verdict is that labeler's. The LLM judge alone is "
                 "shown beside it.</p>")
    p.append("<ul>")
    one_rule = len({ln["rule"].replace(" (primary operation)", "") for ln in lines}) == 1
    for ln in lines:
        rule = "" if one_rule else f"; {_e(ln['rule'])}"
        who = (f'selected labeler <span class="lab">{_e(ln["selected"])}</span>' if multi
               else "LLM judge (the only labeler in this record)")
        p.append(f"<li><strong>{_e(ln['axis'])}</strong> {_verdict_html(ln['verdict'])} {who}: {_e(ln['plain'])} "
                 f'<span class="muted">(verdict reason: <code>{_e(ln["reason"])}</code>{rule})</span>')
        if multi and ln["selected"] != "judge":
            reason = (f' <span class="muted">(<code>{_e(ln["judge_reason"])}</code>)</span>'
                      if ln["judge_reason"] else "")
            p.append(f'<span class="alone">LLM judge alone: {_verdict_html(ln["judge_verdict"])} '
                     f'{_e(ln["judge_plain"])}{reason}</span>')
        elif multi:
            p.append(f'<span class="alone">LLM judge alone: {_verdict_html(ln["judge_verdict"])} '
                     '<span class="muted">(the judge is the selected labeler)</span></span>')
        if flag := _flag(ln, lines):
            p.append(f'<span class="flag {flag[0]}">{_e(flag[1])}</span>')
        p.append("</li>")
    p.append("</ul>")
    if one_rule and lines:
        gate = record.get("gate") or {}
        p.append(f'<p class="muted">Gate (version {_e(gate.get("version", "?"))}), every axis: '
                 f'{_e(lines[0]["rule"].replace(" (primary operation)", "").removeprefix("rule: "))}'
                 " (operation axes: on the primary operation).</p>")
    p.append("</div></section>")

    # leave-one-benchmark-out
    if "leave_one_benchmark_out" in record:
        p.append('<section id="lobo"><h2>Leave-one-benchmark-out: what to expect on a benchmark with no gold items'
                 "</h2>")
        intro, expect = _lobo_text(record)
        p.append(f"<p>{_e(intro)}</p>")
        if expect:
            p.append("<ul>" + "".join(f"<li>{_e(x)}</li>" for x in expect) + "</ul>")
        table = _lobo_table(record)
        if table is not None:
            lnotes = Notes()
            p.append(_table_html(*table, lnotes, cls="lobo"))
            p.append(_notes_html(lnotes))
        p.append("</section>")

    # labelers per axis
    p.append('<section id="labelers"><h2>Labelers per axis</h2>')
    table = _labelers_table(record)
    if table is None:
        p.append('<p class="muted">This record predates per-axis labeler selection: only the LLM judge was '
                 "measured (see the per-axis agreement below).</p>")
    else:
        lnotes = Notes()
        p.append('<p class="muted">Cohen\'s kappa vs gold with its 95% bootstrap CI, and accuracy, on the same '
                 "held-out items (operation axes: primary operation); seconds per label under each name; "
                 "the alternative "
                 "annotator test (Calderon, Reichart &amp; Dror, ACL 2025): winning rate ω (passes at ≥ 0.5) and "
                 "advantage probability ρ (ranks labelers). "
                 "The selected labeler per axis is highlighted. Annotator A vs annotator B is the ceiling.</p>")
        p.append(_table_html(*table, lnotes, cls="labelers"))
        if sentence := _cascade_sentence(record):
            p.append(f'<p class="muted">{_e(sentence)}</p>')
        p.append(_notes_html(lnotes))
    p.append("</section>")

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
             + ("“judge alone” = the gate applied to the judge; “gate verdict” = the gate applied to the selected "
                "labeler (the one that counts). " if _multi(record) else "")
             + "“—” = undefined; hover for the reason or see the numbered notes.</p>")
    head, verdict_cols = _summary_head(record)
    p.append(_table_html(head, _summary_rows(record), notes, verdict_cols=verdict_cols, cls="summary"))
    ops = _ops_rows(record)
    if ops:
        p.append("<h3>Operation sets (all operations, not only the primary)</h3>")
        p.append(_table_html(OPS_HEAD, ops, notes))
    p.append(_notes_html(notes))
    p.append("</section>")

    # per axis
    p.append('<section id="axes"><h2>Per axis: judge classes and confusion</h2>')
    for axis, m in record.get("axes", {}).items():
        start = len(notes.reasons)
        v = (m.get("verdict") or {}).get("verdict", "?")
        sel = _selected(record, axis, m)
        extra = ""
        if _multi(record):
            extra = (f' <span class="hsub">with {_e(sel)} (selected) · LLM judge alone</span> '
                     f'{_verdict_html(_judge_verdict(record, axis, m).get("verdict", "?"))}'
                     if sel != "judge" else ' <span class="hsub">with the LLM judge (selected)</span>')
        p.append(f'<h3 id="axis-{_e(axis)}">{_e(_axis_title(axis, m))} {_verdict_html(v)}{extra}</h3>')
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
    out = ["| " + " | ".join(_md(h.replace("\n", ", ")) for h in head) + " |",
           "|" + "|".join("---:" if i and c.num else "---" for i, c in enumerate(rows[0] if rows else
                                                                                   [Cell("")] * len(head))) + "|"]
    for row in rows:
        cells = []
        for c in row:
            text = _md(c.text.replace("\n", "; ")) + (f" [{notes.ref(c.note)}]" if c.note else "")
            cells.append(f"**{text}** (selected)" if c.mark else text)
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def _notes_md(notes: Notes, start: int = 0) -> str:
    return "\n".join(f"[{start + i + 1}] {_md(r)}  " for i, r in enumerate(notes.reasons[start:]))


def render_markdown(record: dict) -> str:
    """The report's tables as Markdown (no figures)."""
    notes = Notes()
    p = [f"# Calibration report `{record.get('id', '')}`", ""]
    lines, failed = _gate_lines(record)
    multi = _multi(record)
    p += ["## Gate summary", "", f"**{_gate_conclusion(record, failed)}**", ""]
    p += [f"**{finding}**\n" for finding in _gate_findings(lines)]
    if multi:
        p += ["Per axis, the labeler with the best lower 95% bound of Cohen's kappa is selected (ties go to the "
              "cheaper one); the gate verdict is that labeler's. The LLM judge alone is shown beside it.", ""]
    for ln in lines:
        who = f"with **{ln['selected']}** (selected)" if multi else "with the LLM judge (the only labeler)"
        line = (f"- **{ln['axis']}**: **{ln['verdict']}** {who}: {ln['plain']} "
                f"(verdict reason: `{ln['reason']}`; {ln['rule']})")
        if multi and ln["selected"] != "judge":
            line += (f" LLM judge alone: **{ln['judge_verdict']}**: {ln['judge_plain']}"
                     + (f" (`{ln['judge_reason']}`)" if ln["judge_reason"] else ""))
        elif multi:
            line += f" LLM judge alone: **{ln['judge_verdict']}** (the judge is the selected labeler)."
        if flag := _flag(ln, lines):
            line += f" **{flag[1]}**"
        p.append(line)
    if "leave_one_benchmark_out" in record:
        intro, expect = _lobo_text(record)
        p += ["", "## Leave-one-benchmark-out: what to expect on a benchmark with no gold items", "", intro]
        if expect:
            p += ["", *(f"- {x}" for x in expect)]
        table = _lobo_table(record)
        if table is not None:
            lnotes = Notes()
            p += ["", _table_md(*table, lnotes)]
            if lnotes.reasons:
                p += ["", _notes_md(lnotes)]
    p += ["", "## Labelers per axis", ""]
    table = _labelers_table(record)
    if table is None:
        p.append("This record predates per-axis labeler selection: only the LLM judge was measured.")
    else:
        lnotes = Notes()
        p += ["Cohen's kappa vs gold [95% CI]; accuracy; alternative annotator test (Calderon, Reichart & Dror, "
              "ACL 2025): winning rate ω (passes at ≥ 0.5) and advantage probability ρ; seconds per label in the "
              "header; the selected labeler in **bold** (selected). Annotator A vs B is the ceiling. Operation "
              "axes: primary operation.", "",
              _table_md(*table, lnotes)]
        if sentence := _cascade_sentence(record):
            p += ["", sentence]
        if lnotes.reasons:
            p += ["", _notes_md(lnotes)]
    p += ["", "## Run", "", "| field | value |", "|---|---|"]
    p += [f"| {_md(k)} | {_md(v)} |" for k, v in _meta_rows(record)]
    p += ["", "## Per-axis agreement (held-out split)", "",
          "κ = Cohen's kappa with 95% bootstrap CI; accuracy with 95% Wilson CI; annotator κ is the ceiling; "
          "operation axes: primary operation. — = undefined (see the numbered notes).", "",
          _table_md(_summary_head(record)[0], _summary_rows(record), notes)]
    ops = _ops_rows(record)
    if ops:
        p += ["", "### Operation sets", "", _table_md(OPS_HEAD, ops, notes)]
    if notes.reasons:
        p += ["", _notes_md(notes)]
    p += ["", "## Per axis"]
    for axis, m in record.get("axes", {}).items():
        start = len(notes.reasons)
        sel = _selected(record, axis, m)
        gate_with = ""
        if _multi(record):
            gate_with = (f" with {sel} (LLM judge alone: {_judge_verdict(record, axis, m).get('verdict', '?')})"
                         if sel != "judge" else " with the judge (selected)")
        p += ["", f"### {_axis_title(axis, m)}: {(m.get('verdict') or {}).get('verdict', '?')}{gate_with}", "",
              "Judge per class:", "",
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
