"""The calibration report people review: one record → ``report.html``, ``report.json``, ``report.md``.

Besides the LLM judge, a record made since per-axis labeler selection holds the k-NN,
student and cascade labelers measured on the same items, the labeler selected per axis
(its verdict is the gate's) and the judge-alone verdict, and a leave-one-benchmark-out
estimate for the cheap labelers, and per benchmark its own agreement beside that estimate.
Older records without those fields render with the judge as the only labeler.

The HTML is self-contained: the reports' one inline stylesheet, figures as base64 PNG data
URIs, no scripts and no external URLs, so it can be mailed or attached to a review as one
file. The Markdown holds the same tables without the figures. Every value comes from the
record; nothing is recomputed here. A metric that is None is shown as "—" with its reason
(hover in HTML, a numbered note under the table in both formats).

Pages are rendered from the templates ``calibration.html.j2`` and ``calibration.md.j2``
(:mod:`service.report_templates`; values are escaped by the HTML template's autoescape).
What the report says: :mod:`calibration.report_content`; its tables:
:mod:`calibration.report_tables` and :mod:`calibration.report_benchmarks`; its figures: :mod:`calibration.report_figures`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from slicelab.calibration.report_benchmarks import per_benchmark_table, per_benchmark_text
from slicelab.calibration.report_content import (Notes, axis_flag, axis_title, cascade_sentence, clip,
                                                 gate_conclusion, gate_findings, gate_lines, has_selection,
                                                 judge_verdict, labeler_names, meta_rows, rater_metrics,
                                                 selected_labeler, worst_disagreements)
from slicelab.calibration.report_figures import confusion_png, coverage_png
from slicelab.calibration.report_tables import (COVERAGE_HEAD, OPS_HEAD, PER_CLASS_HEAD, confusion_table,
                                                coverage_rows, labelers_table, lobo_table, lobo_text, ops_rows,
                                                per_class_rows, summary_head, summary_rows)
from slicelab.service.report_templates import render

#: Characters of item text shown per disagreement (HTML / Markdown).
HTML_TEXT_CHARS = 700
MD_TEXT_CHARS = 160
#: Characters of the judge's raw output shown per disagreement.
RAW_CHARS = 4000


def report_context(record: dict) -> dict[str, Any]:
    """Everything the calibration templates print, with fresh footnote counters.

    Footnote numbers are handed out while a template renders (:class:`Notes`), so one context
    serves one rendering.
    """
    lines, failed = gate_lines(record)
    for ln, flag in zip(lines, [axis_flag(ln, lines) for ln in lines]):
        ln["flag"] = flag
    multi = has_selection(record)
    lobo = None
    if "leave_one_benchmark_out" in record:
        intro, expect = lobo_text(record)
        head, rows = lobo_table(record) or (None, None)
        lobo = {"intro": intro, "expect": expect, "head": head, "rows": rows, "notes": Notes()}
    pb_intro, pb_lines = per_benchmark_text(record)
    pb_head, pb_rows = per_benchmark_table(record) or (None, None)
    lab_head, lab_rows = labelers_table(record) or (None, None)
    head, verdict_cols = summary_head(record)
    worst, total = worst_disagreements(record)
    cheaper = ", ".join(n for n in labeler_names(record) if n != "judge")
    return {
        "record": record, "rid": record.get("id", ""), "multi": multi,
        "raters": f"labels of the LLM judge and of cheaper labelers ({cheaper})" if multi else "judge labels",
        "lines": lines, "failed": failed, "conclusion": gate_conclusion(record, failed),
        "findings": gate_findings(lines),
        "one_rule": len({ln["rule"].replace(" (primary operation)", "") for ln in lines}) == 1,
        "gate_version": (record.get("gate") or {}).get("version", "?"),
        "gate_rule": lines[0]["rule"].replace(" (primary operation)", "").removeprefix("rule: ") if lines else "",
        "lobo": lobo,
        "per_benchmark": {"intro": pb_intro, "lines": pb_lines, "head": pb_head, "rows": pb_rows, "notes": Notes()},
        "labelers": {"head": lab_head, "rows": lab_rows, "notes": Notes(), "cascade": cascade_sentence(record)},
        "meta": meta_rows(record),
        "summary": {"head": head, "verdict_cols": verdict_cols, "rows": summary_rows(record),
                    "ops_head": OPS_HEAD, "ops": ops_rows(record)},
        "notes": Notes(), "per_class_head": PER_CLASS_HEAD, "coverage_head": COVERAGE_HEAD,
        "axes": [_axis_context(record, axis, m) for axis, m in record.get("axes", {}).items()],
        "samples": record.get("samples", 1),
        "worst": {"shown": worst, "total": total, "n_items": len(record.get("items", []))},
        "clip": clip, "text_chars": HTML_TEXT_CHARS, "md_text_chars": MD_TEXT_CHARS, "raw_chars": RAW_CHARS,
    }


def _axis_context(record: dict, axis: str, m: dict) -> dict[str, Any]:
    """One axis's verdicts, per-class, coverage and confusion tables."""
    confusion_head, confusion_rows = confusion_table(m) or (None, None)
    return {"axis": axis, "title": axis_title(axis, m), "verdict": (m.get("verdict") or {}).get("verdict", "?"),
            "selected": selected_labeler(record, axis, m),
            "judge_verdict": judge_verdict(record, axis, m).get("verdict", "?"),
            "operations": m.get("kind") == "operations", "per_class": per_class_rows(m),
            "coverage": coverage_rows(m), "confusion_head": confusion_head, "confusion_rows": confusion_rows,
            "confusion": (rater_metrics(m, "judge") or {}).get("confusion") or {}}


def render_html(record: dict) -> str:
    """The report as one self-contained HTML page (see the module docstring)."""
    context = report_context(record)
    for a in context["axes"]:
        a["image"] = confusion_png(a["title"], a["confusion"])
    return render("calibration.html.j2", **context, coverage_image=coverage_png(record))


def render_markdown(record: dict) -> str:
    """The report's tables as Markdown (no figures)."""
    return render("calibration.md.j2", **report_context(record))


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
