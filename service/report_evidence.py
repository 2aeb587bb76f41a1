"""Report sections for the evidence behind a comparison or diagnosis: join, calibration state,
per-run output lengths and finish reasons, example outputs, localisation tests and pass@k.

Each function returns sections in the form :mod:`service.report_templates` renders:
``(heading, paragraphs, (header, rows) or None, figure or None)``.
"""

from __future__ import annotations

from typing import Any

#: Width, in characters, of the longest text bar of a histogram.
BAR_WIDTH = 30


def join_section(ev: dict[str, Any]) -> list:
    j = ev.get("join")
    if not j:
        return []
    paras = [f"{j['n_labels']} label rows ({j['n_labeled']} labeled); results: "
             + ", ".join(f"{r} {n}" for r, n in j["n_results"].items()) + f"; {j['n_matched']} labeled samples have "
             "results in both runs."]
    if j["n_results_unmatched"]:
        paras.append(f"{j['n_results_unmatched']} result ids have no label, e.g. {', '.join(j['unmatched_result_ids'])}.")
    if j["n_labels_unmatched"]:
        paras.append(f"{j['n_labels_unmatched']} labeled ids lack results in both runs, e.g. "
                     f"{', '.join(j['unmatched_label_ids'])}.")
    return [("Join of labels and results", paras, None, None)]


def calibration_section(ev: dict[str, Any]) -> list:
    c = ev.get("calibration")
    if not c:
        return []
    ungated = [a["axis"] for a in c["axes"] if a["gate"] != "pass"]
    paras = [f"Calibration {c['calibration_id'] or '(none recorded)'}. "
             + (f"Axes without a passing calibration: {', '.join(ungated)}. " if ungated else "Every slice axis passed. ")
             + ("--allow-ungated was used: ungated axes are sliced on." if c["allow_ungated"]
                else "--allow-ungated was not used: ungated axes are left out of the slices.")]
    rows = [[a["axis"], a["gate"], "yes" if a["used"] else "no",
             ", ".join(f"{k} ({v})" for k, v in a["labelers"].items()) or "not recorded"] for a in c["axes"]]
    return [("Calibration state", paras, (["axis", "gate", "used in slices", "labeler (labels)"], rows), None)]


def runs_section(ev: dict[str, Any]) -> list:
    runs = ev.get("runs") or {}
    if not runs:
        return []
    names = list(runs)
    reasons = sorted({r for p in runs.values() for r in p["finish_reason"]})
    fin = [[r, *[str(runs[n]["finish_reason"].get(r, 0)) for n in names]] for r in reasons]
    edges = runs[names[0]]["output_chars"]["edges"]
    top = max((c for p in runs.values() for c in p["output_chars"]["counts"]), default=0) or 1
    hist = []
    for i, lo in enumerate(edges):
        span = f"{lo}–{edges[i + 1] - 1}" if i + 1 < len(edges) else f"≥ {lo}"
        hist.append([span, *[_bar(runs[n]["output_chars"]["counts"][i], top) for n in names]])
    stats = "; ".join(f"{n}: median {_n(p['output_chars']['median'])}, 90th percentile {_n(p['output_chars']['p90'])}, "
                      f"max {_n(p['output_chars']['max'])} characters" for n, p in runs.items())
    return [("finish_reason per run", ["Shared samples only."], (["finish_reason", *names], fin), None),
            ("Output length per run (characters)", [stats], (["characters", *names], hist), None)]


def examples_section(heading: str, intro: str, items: dict[str, list[dict[str, Any]]]) -> list:
    """One table of example samples per group (slice or failure mode): id and the end of each run's output."""
    out = []
    for group, exs in items.items():
        rows = [[x["sample_id"],
                 f"[{x['baseline_finish_reason'] or '?'}, answer {x['baseline_answer']!s}] {x['baseline_output_tail'] or ''}",
                 f"[{x['candidate_finish_reason'] or '?'}, answer {x['candidate_answer']!s}] "
                 f"{x['candidate_output_tail'] or ''}"] for x in exs]
        if rows:
            out.append((f"{heading}: {group}", [] if out else [intro],
                        (["sample id", "baseline: end of output", "candidate: end of output"], rows), None))
    return out


def localisation_section(loc: dict[str, Any] | None, heterogeneity: list[dict[str, Any]], n_tests: int) -> list:
    rows = [[h["family"], str(h["n_groups"]), _n(h["chi2"], 1), str(h["dof"] or "—"), _p(h["p_value"]),
             f"{_n(h['loss_rate_min'], 2)}–{_n(h['loss_rate_max'], 2)}"] for h in heterogeneity]
    paras = [loc["statement"]] if loc else []
    paras.append(f"Loss rate = share of baseline-correct samples the candidate gets wrong. Per slice: one-sided "
                 f"Fisher's exact test of the in-slice loss rate against the rest, Benjamini–Hochberg over the "
                 f"{n_tests} slices tested at every key. Per family: Pearson chi-square test of homogeneity "
                 f"(slices under the minimum support pooled).")
    return [("Is the drop localised?", paras,
             (["family", "groups", "chi-square", "dof", "p", "loss rate range"], rows) if rows else None, None)]


def passk_sections(pk: dict[str, Any] | None, max_rows: int) -> list:
    if not pk:
        return []
    out = []
    skipped = [f"pass@{k} not reported: {why}." for k, why in (pk.get("ks_skipped") or {}).items()]
    for k, byk in pk["by_k"].items():
        o = byk["overall"]
        paras = [f"pass@{k} over {o['n_items']} problems: {_n(o['baseline'], 3)} → {_n(o['candidate'], 3)}, change "
                 f"{_d(o)}, p = {_p(o['p_value'])} ({pk['test']}; interval: {pk['interval']})."
                 + (f" {o['n_short']} problems with fewer than {k} generations in a run are left out." if o["n_short"]
                    else "")]
        rows = [[s["label"], str(s["n_items"]), _n(s["baseline"], 3), _n(s["candidate"], 3), _d(s), _p(s["p_value"]),
                 _p(s["q_value"]), "drop" if s["significant_drop"] else ("" if s["tested"] else "low support")]
                for s in byk["slices"] if s["key"] != "combination"][:max_rows]
        out.append((f"pass@{k}, paired per problem", paras + (skipped if not out else []),
                    (["slice", "problems", "baseline", "candidate", "change [95% CI]", "p", "q", ""], rows), None))
    if not out and skipped:
        out.append(("pass@k", skipped, None, None))
    return out


def slices_passk_note(meta: dict[str, Any]) -> list[str]:
    """Sentences on the k values of a slices report: reported, skipped, items with fewer generations."""
    out = []
    if meta.get("ks"):
        out.append("pass@k: unbiased estimator of Chen et al. (2021), mean over the slice's items, with a "
                   "percentile-bootstrap 95% interval over items; reported for k = "
                   + ", ".join(str(k) for k in meta["ks"]) + ".")
    for k, why in (meta.get("ks_skipped") or {}).items():
        out.append(f"pass@{k} not reported: {why}.")
    for run, short in (meta.get("items_short") or {}).items():
        for k, n in short.items():
            if n:
                out.append(f"{run}: {n} items have fewer than {k} generations; slices holding them have no pass@{k}.")
    return out


def _bar(count: int, top: int) -> str:
    return "█" * max(1 if count else 0, round(BAR_WIDTH * count / top)) + f" {count}"


def _n(x: Any, d: int = 0) -> str:
    return "—" if x is None else f"{x:.{d}f}"


def _p(x: Any) -> str:
    return "—" if x is None else (f"{x:.1e}" if x < 1e-3 else f"{x:.3f}")


def _d(r: dict[str, Any]) -> str:
    if r.get("delta") is None:
        return "—"
    lo, hi = r.get("delta_ci_low"), r.get("delta_ci_high")
    return f"{r['delta']:+.3f} [{_n(lo, 3)}, {_n(hi, 3)}]"


def setup_section(setup: dict[str, Any] | None) -> list:
    """The two runs' evaluation set-ups side by side, differing fields first (:func:`service.setup.compare_setups`)."""
    if not setup:
        return []
    b, c = setup.get("baseline") or {}, setup.get("candidate") or {}
    differs = {d["field"] for d in setup.get("differs") or []}
    fields = sorted(set(b) | set(c), key=lambda f: (f not in differs, f))
    if not fields:
        return [("Evaluation set-up", ["Neither run records its set-up (prompt template, decoding settings, length "
                                       "limit); the set-up check had nothing to compare."], None, None)]
    rows = [[f, _short(b.get(f, "—")), _short(c.get(f, "—")),
             "differs" if f in differs else ("ignored" if f in (setup.get("ignored") or []) else
                                              ("one run only" if f in (setup.get("unknown") or []) else "same"))]
            for f in fields]
    para = (f"Fields that differ: {', '.join(sorted(differs))}. Runs evaluated differently are not comparable."
            if differs else "The recorded set-up fields agree.")
    if setup.get("ignored"):
        para += f" Ignored on request (--ignore-setup): {', '.join(setup['ignored'])}."
    return [("Evaluation set-up", [para], (["field", "baseline", "candidate", ""], rows), None)]


def failure_detail_section(fm: dict[str, Any]) -> list:
    """Counts of ``failure_mode_detail`` (how a newly failing output ended) with example ids."""
    counts = fm.get("detail_counts") or {}
    if not counts:
        return []
    n = fm.get("n_newly_failing") or sum(counts.values())
    examples = fm.get("detail_examples") or {}
    rows = [[d, str(v), f"{v / n:.1%}" if n else "—",
             ", ".join(str(x.get("sample_id")) for x in (examples.get(d) or [])[:3])]
            for d, v in sorted(counts.items(), key=lambda x: -x[1])]
    cap = fm.get("length_cap") or {}
    paras = ["How the newly failing outputs ended (deterministic checks on the candidate output)."]
    if cap:
        paras.append("Length cap of the candidate run: " + ", ".join(f"{k} {v}" for k, v in cap.items()
                                                                     if not isinstance(v, (list, dict))) + ".")
    return [("Failure mode detail", paras, (["detail", "n", "share", "example ids"], rows), None)]


def training_section(tc: dict[str, Any] | None) -> list:
    """Training-config lint findings (:mod:`service.training_lint`) and whether the verdict cites them."""
    if not tc:
        return []
    rows = [[f["id"], f["severity"], f["message"]] for f in tc.get("findings") or []]
    para = f"{tc.get('dir', '')}: {tc.get('note', '')}."
    return [("Training configuration", [para], (["finding", "severity", "message"], rows) if rows else None, None)]


def _short(v: Any, limit: int = 120) -> str:
    text = v if isinstance(v, str) else str(v)
    return text if len(text) <= limit else text[:limit] + "…"
