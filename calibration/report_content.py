"""What the calibration report says, shared by its HTML and Markdown: table cells with footnotes,
reading a record (labelers, selection, verdicts), the run header, and the gate summary in words.

Every value comes from the record (``calibration.run.run_calibration``); nothing is recomputed.
Tables: :mod:`calibration.report_tables`; figures: :mod:`calibration.report_figures`; rendering:
:mod:`calibration.report`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from slicelab.calibration.gate import metric_value
from slicelab.calibration.review import disagreements, format_label

#: Most items listed under "worst disagreements".
MAX_DISAGREEMENTS = 30

#: How a gate metric reads in a sentence.
METRIC_WORDS = {
    "cohen_kappa_ci_low": "the lower end of the 95% CI of Cohen's kappa",
    "cohen_kappa": "Cohen's kappa",
    "accuracy_ci_low": "the lower end of the 95% Wilson CI of accuracy",
    "accuracy": "accuracy",
    "macro_f1": "macro-F1",
}
#: Why the annotator ceiling is undefined.
NO_ANNOTATORS = "the gold set has fewer than two independent annotators"
#: What each labeler is, shown under its name.
LABELER_WORDS = {
    "judge": "LLM judge",
    "knn": "k-NN vote over the exemplar pool",
    "student": "logistic regression on the pool",
    "cascade": "k-NN if confident, else the judge",
    "judge_sc": "LLM judge, k samples, majority vote per axis",
}


@dataclass
class Cell:
    """One table cell: its text, and the reason when (part of) the value is undefined."""

    text: str
    note: str | None = None
    num: bool = True
    #: the selected labeler's cell (highlighted, tagged "selected")
    mark: bool = False

    def note_line(self) -> int:
        """Index of the text line the footnote mark follows: the first holding "—", else the last."""
        parts = self.text.split("\n")
        return next((k for k, t in enumerate(parts) if "—" in t), len(parts) - 1)


class Notes:
    """Numbered footnotes for undefined values (the same reason gets the same number)."""

    def __init__(self) -> None:
        self.reasons: list[str] = []

    def ref(self, reason: str) -> int:
        """The 1-based number of ``reason`` (numbered on first use)."""
        if reason not in self.reasons:
            self.reasons.append(reason)
        return self.reasons.index(reason) + 1


def number(x: Any, digits: int = 2) -> str:
    """``x`` with ``digits`` decimals; None → "—"."""
    return "—" if x is None else f"{x:.{digits}f}"


def metric_cell(m: dict | None, key: str, digits: int = 2, why: str | None = None) -> Cell:
    """A metric as a cell; None → "—" with the reason from the dict's ``undefined``."""
    if m is None:
        return Cell("—", why or "not computed")
    v = m.get(key)
    if v is None:
        return Cell("—", (m.get("undefined") or {}).get(key) or why or "undefined")
    return Cell(number(v, digits))


def metric_ci_cell(m: dict | None, key: str, why: str | None = None) -> Cell:
    """``value [lo, hi]``; reasons for an undefined value or interval."""
    base = metric_cell(m, key, why=why)
    if base.text == "—":
        return base
    ci = m.get(f"{key}_ci")
    if not ci:
        return Cell(f"{base.text} [—]", (m.get("undefined") or {}).get(f"{key}_ci") or "interval undefined")
    return Cell(f"{base.text} [{ci[0]:.2f}, {ci[1]:.2f}]")


def rater_metrics(axis_metrics: dict, who: str) -> dict | None:
    """The single-label metrics of one rater (judge/annotators/majority/nearest_exemplar); primary for operations."""
    if who in ("majority", "nearest_exemplar"):
        m = axis_metrics.get("baselines", {}).get(who)
    else:
        m = axis_metrics.get(who)
    if m is None:
        return None
    return m.get("primary", m) if axis_metrics.get("kind") == "operations" else m


def axis_title(axis: str, m: dict) -> str:
    """The axis name as shown; operation axes are measured on their primary operation."""
    return f"{axis} (primary op.)" if m.get("kind") == "operations" else axis


def axis_labelers(m: dict) -> dict[str, dict]:
    """Labeler name → full metrics on one axis; an old record (judge only) → {"judge": ...}."""
    if m.get("labelers"):
        return m["labelers"]
    return {"judge": m["judge"]} if m.get("judge") is not None else {}


def labeler_names(record: dict) -> list[str]:
    """Every labeler measured in the record, in first-seen order (the judge first)."""
    names: list[str] = []
    for m in record.get("axes", {}).values():
        names += [n for n in axis_labelers(m) if n not in names]
    return sorted(names, key=lambda n: n != "judge")


def labeler_metrics(m: dict, labeler: str) -> dict | None:
    """One labeler's single-label metrics on an axis (primary operation for operation axes)."""
    lm = axis_labelers(m).get(labeler)
    if lm is None:
        return None
    return lm.get("primary", lm) if m.get("kind") == "operations" else lm


def has_selection(record: dict) -> bool:
    """Whether the record measured labelers beside the judge (made since per-axis selection)."""
    return any(m.get("labelers") for m in record.get("axes", {}).values())


def selected_labeler(record: dict, axis: str, m: dict) -> str:
    """The labeler the gate judged on this axis (the judge in records that predate selection)."""
    return m.get("selected") or (record.get("selection") or {}).get(axis) or "judge"


def judge_verdict(record: dict, axis: str, m: dict) -> dict:
    """The judge-alone verdict dict; in old records the verdict is the judge's."""
    if m.get("judge_verdict"):
        return m["judge_verdict"]
    if not has_selection(record) or selected_labeler(record, axis, m) == "judge":
        return m.get("verdict") or {}
    word = (record.get("judge_verdicts") or {}).get(axis)
    return {"verdict": word} if word else {}


def seconds_per_label(record: dict, name: str) -> float | None:
    """Median seconds per label of one labeler (None: not recorded)."""
    spl = ((record.get("labelers") or {}).get("seconds_per_label") or {})
    if name in spl:
        return spl[name]
    return record.get("seconds_per_label") if name == "judge" else None


def seconds_text(x: float | None) -> str:
    """Seconds per label as "1.23 s/label" or, below a second, "45.6 ms/label"."""
    if x is None:
        return "— s/label"
    return f"{x:.2f} s/label" if x >= 1 else f"{x * 1000:.3g} ms/label"


def cascade_info(record: dict) -> dict:
    """The cascade's settings and share sent to the judge (``{}`` when the record has no cascade)."""
    return (record.get("labelers") or {}).get("cascade") or {}


def _rule_passes(metrics: dict | None, kind: str | None, v: dict) -> bool | None:
    """Whether one labeler's metrics meet the gate rule in verdict ``v`` (None: rule unknown)."""
    if metrics is None or not v.get("metric") or v.get("bound") is None:
        return None
    m = metrics.get("primary", metrics) if kind == "operations" else metrics
    value = metric_value(m, v["metric"])
    return (m.get("n") or 0) >= (v.get("min_n") or 0) and value is not None and value >= v["bound"]


# --------------------------------------------------------------------------- the run header and the gate in words


def meta_rows(record: dict) -> list[tuple[str, str]]:
    """(field, value) rows of the run header: judge, prompts, gold set, split, timing, labelers."""
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
        ("temperature", number(j.get("temperature"), 2) if j.get("temperature") is not None else "default"),
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
    if has_selection(record):
        rows.append(("labelers", "; ".join(f"{n} ({LABELER_WORDS.get(n, n)}): "
                                           f"{seconds_text(seconds_per_label(record, n))}"
                                           for n in labeler_names(record))))
        c = cascade_info(record)
        if c:
            rows.append(("cascade", f"{c.get('cheap', '?')} when its vote share ≥ {number(c.get('threshold'))}, "
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
        return f"{words} is {value:.3f}, at or above the bound {number(bound)}."
    return f"{words} is {value:.3f}, below the bound {number(bound)}."


def _rule(v: dict, kind: str | None) -> str:
    words = METRIC_WORDS.get(v.get("metric"), str(v.get("metric")))
    if kind == "operations":
        words += " (primary operation)"
    return f"rule: {words} ≥ {number(v.get('bound'))} with at least {v.get('min_n')} held-out items"


def gate_lines(record: dict) -> tuple[list[dict[str, Any]], list[str]]:
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
        sel = selected_labeler(record, axis, m)
        jv = judge_verdict(record, axis, m)
        jword = jv.get("verdict") or "?"
        passing = [n for n, lm in axis_labelers(m).items() if _rule_passes(lm, kind, v)]
        if word == "pass" and sel not in passing:
            passing.append(sel)
        cheaper = [n for n in passing if n != "judge"] if jword == "fail" else []
        none_pass = has_selection(record) and word != "pass" and jword != "pass" and not passing
        if word != "pass":
            failed.append(axis)
        few = v.get("min_n") is not None and v.get("n") is not None and v["n"] < v["min_n"]
        lines.append({"axis": axis, "kind": kind, "selected": sel, "verdict": word, "plain": _plain(v, kind),
                      "too_few": few, "reason": v.get("reason", ""), "rule": _rule(v, kind), "judge_verdict": jword,
                      "judge_plain": _plain(jv, kind), "judge_reason": jv.get("reason", ""),
                      "cheaper_pass": cheaper, "none_pass": none_pass})
    return lines, failed


def gate_conclusion(record: dict, failed: list[str]) -> str:
    """The gate summary's headline sentence (``--allow-ungated`` in backticks, a code span)."""
    total = len(record.get("axes", {}))
    with_sel = " with their selected labelers" if has_selection(record) else ""
    if not failed:
        return f"All {total} axes pass the gate{with_sel}: their labels may be used in capability slices."
    return (f"{len(failed)} of {total} axes fail the gate{with_sel} ({', '.join(failed)}). Labels on those axes "
            "are excluded from capability slices unless `--allow-ungated` is passed.")


def gate_findings(lines: list[dict[str, Any]]) -> list[str]:
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


def axis_flag(ln: dict[str, Any], lines: list[dict[str, Any]]) -> tuple[str, str] | None:
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



def cascade_sentence(record: dict) -> str:
    """How the cascade decides and what share of items it sent to the judge ("" without a cascade)."""
    c = cascade_info(record)
    if not c:
        return ""
    share = (c.get("share_to_judge") or {}).get("any_axis")
    judge_s = seconds_per_label(record, "judge")
    out = (f"The cascade keeps the {c.get('cheap', '?')} label on an axis when its vote share is at least "
           f"{number(c.get('threshold'))} and asks the LLM judge otherwise")
    if share is not None:
        out += f"; it sent {share:.0%} of items to the judge on at least one axis"
        if judge_s is not None:
            out += f", so it costs about {share:.0%} of the judge's {seconds_text(judge_s)}"
    return out + "."


def worst_disagreements(record: dict) -> tuple[list[dict[str, Any]], int]:
    """Items with ≥1 disagreement, confident-and-wrong first (max confidence over their disagreeing axes),
    at most :data:`MAX_DISAGREEMENTS`, and how many items disagree in all.

    Each item: ``id, text, status, raw_output, axes``; each axis entry is a
    :func:`calibration.review.disagreements` row plus ``gold_text`` and ``judge_text`` (the labels as shown).
    """
    by_item: dict[str, dict[str, Any]] = {}
    for d in disagreements(record):
        e = by_item.setdefault(d["item_id"], {"id": d["item_id"], "text": d["text"], "status": d["status"],
                                              "raw_output": d["raw_output"], "axes": []})
        e["axes"].append({**d, "gold_text": format_label(d["gold"], d["axis_kind"]),
                          "judge_text": format_label(d["judge"], d["axis_kind"])})
    items = sorted(by_item.values(),
                   key=lambda e: (-max(a["confidence"] for a in e["axes"]), -len(e["axes"]), e["id"]))
    return items[:MAX_DISAGREEMENTS], len(items)


def clip(text: str, n: int) -> str:
    """``text`` cut to ``n`` characters, " …" marking a cut."""
    text = str(text or "")
    return text if len(text) <= n else text[:n].rstrip() + " …"
