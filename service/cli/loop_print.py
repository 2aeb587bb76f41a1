"""Terminal text of the loop's results: a comparison of two runs and a diagnosis."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table


def print_comparison(cmp, out: Console) -> None:
    """The join, the overall change with its test, spread, pass@k, failure modes, set-up and the slice table."""
    j = cmp.evidence.get("join", {})
    if j:
        out.print(f"join: {j['n_labeled']} labeled samples, results " + ", ".join(
            f"{escape(r)} {n}" for r, n in j["n_results"].items()) + f"; {j['n_matched']} matched"
            + (f"; {j['n_results_unmatched']} result ids without a label (e.g. {', '.join(j['unmatched_result_ids'])})"
               if j["n_results_unmatched"] else "")
            + (f"; {j['n_labels_unmatched']} labeled ids without results in both runs (e.g. "
               f"{', '.join(j['unmatched_label_ids'])})" if j["n_labels_unmatched"] else ""))
    o = cmp.overall
    out.print(f"{cmp.candidate} vs {cmp.baseline}: {o['n']} shared samples, pass rate {o['baseline_pass']:.3f} -> "
              f"{o['candidate_pass']:.3f} (change {o['delta']:+.3f} [{o['delta_ci_low']:+.3f}, "
              f"{o['delta_ci_high']:+.3f}], exact McNemar p={o['p_value']:.2g}); {o['n10']} lost, {o['n01']} gained")
    for key, s in cmp.spread.items():
        share = "—" if s["share_slices_significant_drop"] is None else f"{s['share_slices_significant_drop']:.2f}"
        gini = "—" if s["gini_net_loss_rate"] is None else f"{s['gini_net_loss_rate']:.2f}"
        out.print(f"  {key}: {s['n_significant_drop']}/{s['n_tested']} tested slices dropped significantly "
                  f"(share {share}, Gini of net loss rates {gini})")
    _print_pass_at_k(cmp.pass_at_k or {}, out)
    fm = cmp.failure_modes
    out.print(f"  newly failing: {fm['n_newly_failing']} — " + ", ".join(
        f"{k} {v} ({fm['shares'][k]:.0%})" for k, v in sorted(fm["counts"].items(), key=lambda x: -x[1])))
    from slicelab.service.setup import compare_setups

    for d in compare_setups(cmp.meta.get("setup") or {}, cmp.baseline, cmp.candidate)["differs"]:
        out.print(f"[yellow]  evaluation set-up differs: {d['field']} {json.dumps(d['baseline'])} (baseline) vs "
                  f"{json.dumps(d['candidate'])} (candidate)[/yellow]")
    if fm.get("detail_counts"):
        out.print("  failure_mode_detail: " + ", ".join(
            f"{k} {v}" for k, v in sorted(fm["detail_counts"].items(), key=lambda x: -x[1])))
    print_axes_used(cmp.meta, out)
    _print_slice_table(cmp.slices, out)


def _print_pass_at_k(pk: dict[str, Any], out: Console) -> None:
    for k, byk in (pk.get("by_k") or {}).items():
        p = byk["overall"]
        out.print(f"  pass@{k}: {p['baseline']:.3f} -> {p['candidate']:.3f} (change {p['delta']:+.3f} "
                  f"[{p['delta_ci_low']:+.3f}, {p['delta_ci_high']:+.3f}], Wilcoxon signed-rank p={p['p_value']:.2g}, "
                  f"{p['n_items']} problems" + (f", {p['n_short']} with fewer than {k} generations left out"
                                                if p["n_short"] else "") + ")")
    for k, why in (pk.get("ks_skipped") or {}).items():
        out.print(f"[yellow]  pass@{k} not reported: {why}[/yellow]")


def _print_slice_table(slices, out: Console) -> None:
    cap = slices[(slices["key"] == "capability") & slices["tested"].astype(bool)]
    if not len(cap):
        return
    t = Table(title="tested capability slices (largest first)", title_justify="left")
    for col in ("slice", "n", "baseline", "candidate", "change [95% CI]", "q", ""):
        t.add_column(col, no_wrap=col != "slice")
    for r in cap.head(15).itertuples(index=False):
        t.add_row(r.label, str(r.n), f"{r.baseline_pass:.3f}", f"{r.candidate_pass:.3f}",
                  f"{r.delta:+.3f} [{r.delta_ci_low:+.3f}, {r.delta_ci_high:+.3f}]", f"{r.q_value:.2g}",
                  "[red]drop[/red]" if r.significant_drop else ("[green]gain[/green]" if r.significant_gain else ""))
    out.print(t)


def print_axes_used(meta: dict[str, Any], out: Console) -> None:
    """Axes left out for their calibration verdict, axes used without one (--allow-ungated), and a
    line naming --allow-ungated when every axis was left out."""
    if meta.get("axes_excluded") and "axes_used" in meta and not meta["axes_used"]:
        out.print("[yellow]every label axis was left out: none has a calibration verdict of pass, so the "
                  "slices are not split by any axis. Calibrate the judge (slicelab calibrate), or pass "
                  "--allow-ungated to use the axes anyway (recorded in the output).[/yellow]")
    if meta.get("axes_excluded"):
        out.print("[yellow]axes left out (calibration verdict not pass):[/yellow] "
                  + ", ".join(f"{a} ({v})" for a, v in meta["axes_excluded"].items()))
    if meta.get("allow_ungated") and meta.get("ungated_axes_used"):
        out.print(f"[yellow]--allow-ungated: using {', '.join(meta['ungated_axes_used'])} "
                  "without a passing calibration[/yellow]")


def action_text(action: Any) -> str:
    """A rule's action as words: ``{type: targeted_sampling, token_budget: 20000000}`` →
    ``targeted_sampling (token budget 20,000,000)``."""
    if not isinstance(action, dict):
        return str(action)
    rest = [f"{k.replace('_', ' ')} {v:,}" if isinstance(v, int) and not isinstance(v, bool)
            else f"{k.replace('_', ' ')} {v}" for k, v in action.items() if k != "type"]
    kind = str(action.get("type", "action"))
    return f"{kind} ({', '.join(rest)})" if rest else kind


_VERDICT_STYLE = {"data_intervention": "cyan", "non_data": "yellow", "broad_regression": "magenta",
                  "unexplained_regression": "red"}


def print_diagnosis(result: dict[str, Any], out: Console) -> None:
    """The verdict, the rules that fired, checks, set-up differences, training-config findings, interventions."""
    style = _VERDICT_STYLE.get(result["verdict"], "white")
    out.print(f"verdict: [bold {style}]{result['verdict']}[/bold {style}] — {escape(result['summary'])}")
    if result["verdict"] in ("data_intervention", "non_data"):
        out.print(f"  {escape(result['localisation']['statement'])}")
    for f in result["fired_rules"]:
        out.print(f"  fired {f['id']} ({f['kind']})")
    for c in result["checks"]:
        out.print(f"  check {c['id']}: {c['what']}")
    for d in result.get("setup", {}).get("differs", []):
        out.print(f"  set-up {d['field']}: {json.dumps(d['baseline'])} (baseline) vs {json.dumps(d['candidate'])} (candidate)")
    if result.get("setup", {}).get("ignored"):
        out.print(f"  set-up fields ignored (--ignore-setup): {', '.join(result['setup']['ignored'])}")
    if result.get("training_config"):
        tc = result["training_config"]
        for f in tc["findings"]:
            out.print(f"  training config {f['id']} ({f['severity']}): {f['message']}")
        out.print(f"  training config: {tc['note']}")
    for i in result["interventions"]:
        out.print(f"  intervention {i['rule_id']}: operations {', '.join(i['operations'])}; "
                  f"{i['n_weak_slices']} weak slices ({i['samples_in_weak_slices']} samples); "
                  f"action {action_text(i['action'])}")
    if result["insufficient_evidence"]:
        out.print(f"  {len(result['insufficient_evidence'])} dropped slices are insufficient evidence "
                  "(low support, not significant, not localised, or overlapping intervals)")
