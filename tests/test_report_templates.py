"""The reports' one Jinja2 environment: HTML autoescaped, Markdown not, and values from data escaped in
every HTML report kind (slices and calibration here; compare and diagnose in test_evidence.py, pool
sampling in test_pool_sampling.py)."""

from __future__ import annotations

import html
import re

import pytest
from jinja2 import UndefinedError

from slicelab.calibration.report import write_report as write_calibration_report
from slicelab.service.report_templates import render, sections_html, sections_markdown
from slicelab.service.reports import write_report

EVIL = '<script>alert("x")</script> & <b>\'bold\'</b>'
#: ``EVIL`` as the reports escape it (``html.escape``, quotes included).
ESCAPED = html.escape(EVIL, quote=True)


def assert_escaped(page: str, *values: str) -> None:
    """No markup from data survives in ``page``, and each value is there, escaped."""
    assert "<script" not in page.lower() and "<b>" not in page
    for value in values:
        assert html.escape(value, quote=True) in page, value


def test_html_is_escaped_once_and_markdown_keeps_the_text():
    sections = [("Verdict: non_data", [EVIL], None, None),
                (EVIL, [], (["sample id", "output"], [[EVIL, "a | b"], ["+0.5", "drop"]]), None)]
    page = sections_html(EVIL, sections)
    assert f"<title>{ESCAPED}</title>" in page and f"<h1>{ESCAPED}</h1>" in page
    assert '<p class="banner non_data">Verdict: non_data</p>' in page and f"<p>{ESCAPED}</p>" in page
    assert f"<h2>{ESCAPED}</h2>" in page and f"<tr><td>{ESCAPED}</td><td>a | b</td></tr>" in page
    assert '<tr><td class="n">+0.5</td><td class="drop">drop</td></tr>' in page
    assert "&amp;lt;" not in page  # escaped once, not twice
    assert_escaped(page, EVIL)
    md = sections_markdown(EVIL, sections)
    assert md.startswith(f"# {EVIL}\n\n## Verdict: non_data\n\n{EVIL}\n\n")
    assert "| sample id | output |\n|---|---|\n" in md and f"| {EVIL} | a \\| b |" in md


def test_every_html_report_shares_one_stylesheet():
    pages = [sections_html("t", []), render("calibration.html.j2", **_calibration_context())]
    styles = [re.search(r"<style>(.*?)</style>", p, re.S).group(1) for p in pages]
    assert styles[0] == styles[1] and "td.num,td.n" in styles[0]


def test_a_template_refuses_a_missing_value():
    with pytest.raises(UndefinedError):
        render("sections.html.j2", title="no sections")


def test_slices_report_escapes_slice_labels_and_run_names(tmp_path):
    rows = [{"key": "capability", "slice_id": f"capability:{EVIL}", "label": EVIL, "run": run, "n": 20,
             "pass_rate": rate, "ci_low": rate - 0.2, "ci_high": rate + 0.2, "low_support": False}
            for run, rate in (("baseline", 0.6), (EVIL, 0.4))]
    paths = write_report("slices", {"meta": {"axes_used": ["task_type"], "ks": []}, "slices": rows}, tmp_path / "s")
    page = paths["html"].read_text(encoding="utf-8")
    assert_escaped(page, EVIL)
    assert page.count(f"<td>{ESCAPED}</td>") == 3  # the label twice, the run once
    assert "data:image/png;base64," in page
    assert f"| {EVIL} | baseline |" in paths["md"].read_text(encoding="utf-8")


def _record() -> dict:
    """A small calibration record whose item id, text, raw output, reasons and labels carry markup."""
    verdict = {"verdict": "fail", "metric": "cohen_kappa_ci_low", "bound": 0.6, "min_n": 30, "n": 1,
               "value": None, "reason": EVIL}
    judge = {"n": 1, "n_invalid": 0, "cohen_kappa": None, "undefined": {"cohen_kappa": EVIL}, "accuracy": 0.0,
             "per_class": {EVIL: {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}},
             "confusion": {"labels": [EVIL, "other"], "matrix": [[0, 1], [0, 0]]}}
    item = {"id": EVIL, "text": f"question {EVIL}", "status": "labeled", "raw_output": f"</pre>{EVIL}",
            "gold": {"task_type": EVIL}, "judge": {"task_type": "other"}, "confidence": {"task_type": 1.0}}
    return {"id": f"cal-{EVIL}", "kind": "eval", "created_at": EVIL, "gold": {"path": EVIL},
            "axes": {"task_type": {"kind": "single", "n": 1, "judge": judge, "verdict": verdict,
                                   "coverage": [{"threshold": 0.5, "coverage": 1.0, "n": 1, "accuracy": 0.0}]}},
            "verdicts": {"task_type": "fail"}, "items": [item]}


def _calibration_context() -> dict:
    from slicelab.calibration.report import report_context

    context = report_context(_record())
    for a in context["axes"]:
        a["image"] = None
    return {**context, "coverage_image": None}


def test_calibration_report_escapes_item_ids_text_output_and_reasons(tmp_path):
    paths = write_calibration_report(_record(), tmp_path)
    page = paths["html"].read_text(encoding="utf-8")
    assert_escaped(page, EVIL, f"question {EVIL}", f"</pre>{EVIL}")
    assert f"<strong><code>{ESCAPED}</code></strong>" in page  # the item id
    assert f"<pre>{html.escape('</pre>' + EVIL)}</pre>" in page  # the judge's raw output
    assert f'title="{ESCAPED}">—<sup>1</sup>' in page  # the undefined reason, in an attribute
    assert f"<td>{ESCAPED}</td><td>other</td>" in page  # gold and judge labels of the disagreement
    md = paths["md"].read_text(encoding="utf-8")
    assert f"# Calibration report `cal-{EVIL}`" in md and "&lt;" not in md
