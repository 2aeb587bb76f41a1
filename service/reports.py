"""Reports of ``slices``, ``compare`` and ``diagnose``: self-contained HTML, Markdown and JSON.

Each report is a title and a list of sections (see :mod:`service.report_templates`), rendered
by the shared templates: HTML with the one inline stylesheet and its figures as base64 PNG
data URIs (no scripts, no external URLs): a heatmap of pass rate per capability slice and run,
and per-slice changes candidate − baseline with their Agresti–Min 95% intervals
(:mod:`service.report_figures`). The Markdown holds the same tables without figures; the JSON
is the payload itself. Nothing is recomputed here. Evidence sections (join, calibration
state, output lengths and finish reasons, example outputs, localisation, pass@k):
:mod:`service.report_evidence`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from slicelab.service.report_evidence import (calibration_section, examples_section, failure_detail_section,
                                              join_section, localisation_section, passk_sections, runs_section,
                                              setup_section, slices_passk_note, training_section)
from slicelab.service.report_figures import MAX_ROWS, deltas, heatmap
from slicelab.service.report_templates import sections_html, sections_markdown
from slicelab.service.setup import compare_setups

def write_report(kind: str, payload: dict[str, Any], stem: Path, *,
                 comparison: dict[str, Any] | None = None) -> dict[str, Path]:
    """Write ``<stem>.json``, ``<stem>.md`` and ``<stem>.html``.

    Args:
        kind: ``"slices"``, ``"compare"`` or ``"diagnose"``.
        payload: the command's JSON output (for ``slices``: ``meta`` and ``slices`` rows, with a
            ``run`` column when results were given).
        stem: path without suffix (``out/compare`` → ``out/compare.html`` ...).
        comparison: for ``diagnose``, the comparison dict its figures are drawn from.

    Returns:
        ``{"json", "md", "html"}`` → path.

    Raises:
        ValueError: unknown ``kind``.
    """
    renderers = {"slices": _slices, "compare": _compare, "diagnose": _diagnose}
    if kind not in renderers:
        raise ValueError(f"unknown report kind {kind!r}; allowed: {', '.join(renderers)}")
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    title, sections = renderers[kind](payload, comparison)
    paths = {"json": stem.with_name(stem.name + ".json"), "md": stem.with_name(stem.name + ".md"),
             "html": stem.with_name(stem.name + ".html")}
    paths["json"].write_text(json.dumps(payload, indent=2, allow_nan=False), encoding="utf-8")
    paths["md"].write_text(sections_markdown(title, sections), encoding="utf-8")
    paths["html"].write_text(sections_html(title, sections), encoding="utf-8")
    return paths


# --------------------------------------------------------------------------- sections
# A section is (heading, paragraphs, table or None, figure data URI or None);
# a table is (header, rows of cell strings).


def _slices(p: dict[str, Any], _: Any) -> tuple[str, list]:
    meta, rows = p.get("meta", p), p.get("slices", [])
    intro = [_axes_line(meta)]
    runs = sorted({r["run"] for r in rows if "run" in r})
    cap = [r for r in rows if r.get("key", "capability") == "capability"]
    ks = meta.get("ks") or []
    intro += slices_passk_note(meta)
    head = ["slice", *(["run"] if runs else []), "n", "pass rate [95% CI]", *[f"pass@{k} [95% CI]" for k in ks],
            "low support"]
    table = [_slice_cells(r, meta, runs, ks) for r in cap[: MAX_ROWS * max(1, len(runs))]]
    fig = heatmap(cap, runs) if runs else None
    sections = [("Slices", intro, (head, table), fig)]
    prim = [r for r in rows if str(r.get("slice_id", "")).startswith("marginal:primary_operation=")]
    if prim and runs:
        sections.append(("Primary-operation slices", [],
                         (head, [_slice_cells(r, meta, runs, ks) for r in prim[: MAX_ROWS * len(runs)]]), None))
    return "Capability slices", sections


def _slice_cells(r: dict[str, Any], meta: dict[str, Any], runs: list[str], ks: list[int]) -> list[str]:
    return [r.get("label") or r.get("slice_id") or " / ".join(str(r.get(a)) for a in meta.get("axes_used", [])),
            *([r["run"]] if runs else []), str(r["n"]), _rate(r.get("pass_rate"), r.get("ci_low"), r.get("ci_high")),
            *[_rate(r.get(f"pass_at_{k}"), r.get(f"pass_at_{k}_ci_low"), r.get(f"pass_at_{k}_ci_high")) for k in ks],
            "yes" if r.get("low_support") else ""]


def _compare(p: dict[str, Any], _: Any) -> tuple[str, list]:
    return f"Comparison: {p['candidate']} vs {p['baseline']}", _compare_sections(p)


def _compare_sections(p: dict[str, Any], calibration: bool = True) -> list:
    o, m, ev = p["overall"], p["meta"], p.get("evidence") or {}
    intro = [f"{m['n_shared']} samples scored by both runs ({m['n_shared_labeled']} labeled). Overall pass rate "
             f"{_rate(o['baseline_pass'], o['baseline_ci_low'], o['baseline_ci_high'])} → "
             f"{_rate(o['candidate_pass'], o['candidate_ci_low'], o['candidate_ci_high'])}, change "
             f"{_delta(o['delta'], o['delta_ci_low'], o['delta_ci_high'])}, exact McNemar p = {_p(o['p_value'])}.",
             _axes_line(m),
             f"Slices with fewer than {m['min_support']} shared samples are not tested; q = Benjamini–Hochberg "
             f"adjusted p over the {m.get('n_tests', 0)} slices tested at every key, significant at q < {m['alpha']}."]
    spread = [[k, str(s["n_tested"]), str(s["n_significant_drop"]), _num(s["share_slices_significant_drop"]),
               _num(s["gini_net_loss_rate"]), _num(s["hhi_net_losses_normalized"])] for k, s in p["spread"].items()]
    fm = p["failure_modes"]
    fm_rows = [[k, str(v), f"{fm['shares'][k]:.1%}"] for k, v in sorted(fm["counts"].items(), key=lambda x: -x[1])]
    sections = [("Summary", intro, None, None),
                ("How spread the regression is",
                 ["Share of tested slices with a significant drop; Gini coefficient of per-slice net loss rates; "
                  "normalised Herfindahl–Hirschman index of per-slice net losses (0 = even, 1 = one slice)."],
                 (["key", "tested", "significant drops", "share", "Gini", "HHI*"], spread), None),
                ("Failure modes of newly failing samples",
                 [f"{fm['n_newly_failing']} samples correct in the baseline fail in the candidate. Deterministic "
                  "checks on the candidate output decide first (empty, stopped by length or repeating without an "
                  "answer, no final answer)."], (["failure mode", "n", "share"], fm_rows), None)]
    # a standalone comparison shows the set-up here; a diagnosis shows it beside its verdict
    setup = (setup_section(compare_setups(m["setup"], p["baseline"], p["candidate"]))
             if calibration and m.get("setup") else [])
    sections[1:1] = join_section(ev) + setup + (calibration_section(ev) if calibration else [])
    sections += failure_detail_section(fm)
    sections += examples_section("Examples per failure mode", "Newly failing samples (correct in the baseline, wrong "
                                 "in the candidate); the last 300 characters of each output.",
                                 fm.get("examples") or {})
    sections += runs_section(ev)
    sections += localisation_section(None, p.get("heterogeneity") or [], m.get("n_tests", 0))
    sections += passk_sections(p.get("pass_at_k"), MAX_ROWS)
    sections += examples_section("Examples from slices with a significant drop", "Lost samples of each slice; the last "
                                 "300 characters of each output.",
                                 dict(list((ev.get("slice_examples") or {}).items())[:10]))
    for key in ("capability", "combination", "marginal"):
        rows = [r for r in p["slices"] if r["key"] == key]
        if not rows:
            continue
        table = [[r["label"], str(r["n"]), _rate(r["baseline_pass"], r["baseline_ci_low"], r["baseline_ci_high"]),
                  _rate(r["candidate_pass"], r["candidate_ci_low"], r["candidate_ci_high"]),
                  _delta(r["delta"], r["delta_ci_low"], r["delta_ci_high"]), f"{r['n10']}/{r['n01']}",
                  _p(r["p_value"]), _p(r["q_value"]), _loss(r),
                  "drop" if r["significant_drop"] else ("gain" if r["significant_gain"] else
                                                        ("low support" if r["low_support"] else ""))]
                 for r in rows[:MAX_ROWS]]
        head = ["slice", "n", "baseline", "candidate", "change [95% CI]", "losses/gains", "p", "q",
                "loss rate in / out (q)", ""]
        figs = None
        if key == "capability":
            figs = [heatmap([{**r, "run": "baseline", "pass_rate": r["baseline_pass"]} for r in rows]
                             + [{**r, "run": "candidate", "pass_rate": r["candidate_pass"]} for r in rows],
                             ["baseline", "candidate"]), deltas(rows)]
        more = [f"{len(rows) - MAX_ROWS} smaller slices are in the JSON."] if len(rows) > MAX_ROWS else []
        sections.append((f"{key.capitalize()} slices", more, (head, table), figs))
    return sections


def _diagnose(p: dict[str, Any], cmp: dict[str, Any] | None) -> tuple[str, list]:
    intro = [p["summary"], f"Rules {p['rules']['path']} version {p['rules']['version']} "
                           f"(sha256 {p['rules']['sha256']}); evidence: {json.dumps(p['evidence_settings'])}."]
    sections = [("Verdict: " + p["verdict"], intro, None, None)]
    if p.get("explanation"):
        sections.append(("What the verdict means", [p["explanation"]["statement"]], None, None))
    sections += setup_section(p.get("setup"))
    sections += training_section(p.get("training_config"))
    sections += calibration_section(p.get("evidence") or {})
    loc = p.get("localisation")
    if loc:
        sections += localisation_section(loc, loc["heterogeneity"], loc["n_tests"])
    fired = [[f["id"], f["kind"], f["description"],
              "; ".join(f"{c['predicate']}: {_evidence_text(c['evidence'])}" for c in f["conditions"])]
             for f in p["fired_rules"]]
    sections.append(("Fired rules", [] if fired else ["No rule fired."], (["rule", "kind", "description", "evidence"],
                                                                          fired) if fired else None, None))
    if p["checks"]:
        sections.append(("What to check instead of the data", [f"{c['id']}: {c['what']}" for c in p["checks"]],
                         None, None))
    if p["interventions"]:
        rows = [[i["rule_id"], ", ".join(i["operations"]), json.dumps(i["filter"]), json.dumps(i["action"]),
                 ", ".join(i["weak_slices"])] for i in p["interventions"]]
        sections.append(("Data interventions", [], (["rule", "operations", "document filter", "action",
                                                      "weak slices"], rows), None))
    if p["suppressed_rules"]:
        sections.append(("Suppressed data rules", [f"{s['id']}: {s['reason']}" for s in p["suppressed_rules"]],
                         None, None))
    weak = [[k, s["label"], str(s["n"]), _delta(s["delta"], *s["delta_ci"]), _p(s["q_value"]), _loss(s)]
            for k, ss in p["weak_slices"].items() for s in ss]
    standing = (p.get("localisation") or {}).get("standing_out") or []
    none_weak = ("No slice has a significant, localised drop with separated intervals."
                 + (f" {len(standing)} slices stand out in the localisation test, but their candidate and baseline "
                    "95% intervals overlap (evidence setting require_separated_intervals), so none is evidence "
                    "for an intervention." if standing else ""))
    sections.append(("Weak slices (localised)", [] if weak else [none_weak],
                     (["key", "slice", "n", "change [95% CI]", "q", "loss rate in / out (q)"], weak) if weak else None,
                     None))
    sections += examples_section("Examples from weak slices", "Lost samples of each weak slice; the last 300 "
                                 "characters of each output.",
                                 {s["slice_id"]: s.get("examples", []) for ss in p["weak_slices"].values() for s in ss})
    ins = [[s["label"], str(s["n"]), _num(s["delta"]), "; ".join(s["reasons"])]
           for s in p["insufficient_evidence"][:MAX_ROWS]]
    if ins:
        sections.append(("Insufficient evidence", ["Slices that dropped but cannot support an intervention."],
                         (["slice", "n", "change", "why"], ins), None))
    if cmp is not None:
        sections += [s for s in _compare_sections(cmp, calibration=False)[1:]
                     if not s[0].startswith(("Is the drop localised", "Examples from slices"))]
    return f"Diagnosis: {p['candidate']} vs {p['baseline']}", sections


def _evidence_text(e: dict[str, Any]) -> str:
    if "weak_slices" in e:
        return f"{len(e['weak_slices'])} weak slices: " + ", ".join(
            f"{s['label']} (n={s['n']}, Δ={s['delta']:+.3f}, q={_p(s['q_value'])})" for s in e["weak_slices"])
    if "share_slices_significant_drop" in e:
        return (f"{e['n_significant_drop']}/{e['n_tested']} tested {e['key']} slices dropped significantly "
                f"(share {_num(e['share_slices_significant_drop'])}, Gini {_num(e['gini_net_loss_rate'])})")
    if "share" in e:
        return f"{_num(e['share'])} of {e['n_newly_failing']} newly failing samples are {', '.join(e['modes'])}"
    return e.get("reason", "")


# --------------------------------------------------------------------------- formatting


def _num(x: Any, d: int = 2) -> str:
    return "—" if x is None else f"{x:.{d}f}"


def _p(x: Any) -> str:
    return "—" if x is None else (f"{x:.1e}" if x < 1e-3 else f"{x:.3f}")


def _rate(p: Any, lo: Any, hi: Any) -> str:
    return "—" if p is None else f"{p:.3f} [{_num(lo, 3)}, {_num(hi, 3)}]"


def _delta(d: Any, lo: Any, hi: Any) -> str:
    return "—" if d is None else f"{d:+.3f} [{_num(lo, 3)}, {_num(hi, 3)}]"


def _loss(r: dict[str, Any]) -> str:
    if r.get("loss_rate") is None:
        return "—"
    return (f"{r['loss_rate']:.2f} / {_num(r.get('loss_rate_outside'))} ({_p(r.get('loss_q'))})"
            + (" localised" if r.get("localised") else ""))


def _axes_line(meta: dict[str, Any]) -> str:
    used = ", ".join(meta.get("axes_used") or []) or "none"
    line = f"Slice axes used: {used}."
    if meta.get("axes_excluded"):
        line += " Left out (calibration verdict not pass): " + ", ".join(
            f"{a} ({v})" for a, v in meta["axes_excluded"].items()) + "."
    if meta.get("allow_ungated") and meta.get("ungated_axes_used"):
        line += f" --allow-ungated: {', '.join(meta['ungated_axes_used'])} used without a passing calibration."
    return line
