"""Verdicts when no mapping rule fired: broad, unexplained, or not enough evidence.

In the diagnosis order ``non_data`` > ``data_intervention`` > ``broad_regression`` >
``unexplained_regression`` > ``insufficient_evidence``, this module decides the last three
from a :class:`service.comparison.Comparison`:

- the overall change is a significant drop (exact McNemar, or the paired pass@k test when the
  comparison's metric is pass@k) and no slice stands out — no slice has both a significant
  paired drop and a loss rate significantly above the rest (:mod:`service.localisation`) —
  while slices on the operation axis could be tested: ``broad_regression``;
- a significant drop that no rule explains — slices stand out but no data rule names them,
  or the operation axis is gated out — ``unexplained_regression``, naming what is missing;
- otherwise — the overall change is not a significant drop, or no slice reaches the minimum
  support — ``insufficient_evidence``, with the minimum detectable effect
  (:func:`service.localisation.mde_summary`).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from slicelab.service.localisation import LOSS_TEST, mde_summary


def overall_test(cmp: Any) -> dict[str, Any]:
    """The overall change the verdict rests on: ``metric``, ``n``, ``delta``, ``delta_ci``, ``p_value``, ``test``."""
    metric = cmp.meta.get("metric", "pass@1")
    k = cmp.meta.get("metric_k")
    passk = (cmp.pass_at_k or {}).get("by_k", {}).get(str(k)) if metric == "pass@k" else None
    if passk is not None:
        o = passk["overall"]
        return {"metric": f"pass@{k}", "n": o["n_items"], "delta": o["delta"],
                "delta_ci": [o["delta_ci_low"], o["delta_ci_high"]], "p_value": o["p_value"],
                "test": cmp.pass_at_k["test"]}
    o = cmp.overall
    return {"metric": "pass rate", "n": o["n"], "delta": o["delta"], "delta_ci": [o["delta_ci_low"], o["delta_ci_high"]],
            "p_value": o["p_value"], "test": "exact McNemar test (McNemar 1947)"}


def localisation_summary(cmp: Any, alpha: float) -> dict[str, Any]:
    """Whether the drop is localised: tests run, heterogeneity per family, and the slices that stand out.

    Returns:
        ``{"loss_test", "n_tests", "heterogeneity", "standing_out" (slice ids with a significant
        drop and a significantly higher loss rate), "dropped_not_localised" (significant drop only),
        "localised" (bool), "statement"}``.
    """
    s = cmp.slices
    drop = s["significant_drop"].astype(bool) if len(s) else pd.Series(dtype=bool)
    loc = s["localised"].astype(bool) if len(s) else pd.Series(dtype=bool)
    out_ids = list(s.loc[drop & loc, "slice_id"]) if len(s) else []
    flat = list(s.loc[drop & ~loc, "slice_id"]) if len(s) else []
    het = [h for h in cmp.heterogeneity if h["p_value"] is not None]
    het_text = "; ".join(f"{h['family']}: chi2={h['chi2']:.1f}, dof={h['dof']}, p={_p(h['p_value'])}" for h in het)
    n_tests = int(cmp.meta.get("n_tests", 0))
    if out_ids:
        statement = (f"The drop is localised: {len(out_ids)} slices lose significantly more of their "
                     f"baseline-correct samples than the rest ({', '.join(out_ids[:8])}).")
    elif n_tests:
        statement = (f"The drop is not localised: no slice loses significantly more of its baseline-correct samples "
                     f"than the rest ({n_tests} slices tested across keys, Benjamini-Hochberg at {alpha}).")
    else:
        statement = "No slice has enough support to test whether the drop is localised."
    if het_text:
        statement += f" Homogeneity of loss rates across slices: {het_text}."
    return {"loss_test": LOSS_TEST, "n_tests": n_tests, "heterogeneity": cmp.heterogeneity,
            "standing_out": out_ids, "dropped_not_localised": flat, "localised": bool(out_ids),
            "statement": statement}


def fallback_verdict(cmp: Any, alpha: float, localisation: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """``broad_regression``, ``unexplained_regression`` or ``insufficient_evidence`` (see the module docstring).

    Args:
        cmp: the comparison.
        alpha: significance level of the overall test (the rule set's evidence ``alpha``).
        localisation: from :func:`localisation_summary`.

    Returns:
        ``(verdict, explanation)``: ``explanation`` holds ``overall`` (:func:`overall_test`),
        ``statement`` (plain text), and ``missing`` (unexplained) or ``mde`` (insufficient evidence).
    """
    o = overall_test(cmp)
    change = f"overall {o['metric']} change {_signed(o['delta'])} {_ci(o['delta_ci'])}, {o['test']} p={_p(o['p_value'])}"
    significant = o["delta"] is not None and o["delta"] < 0 and o["p_value"] is not None and o["p_value"] < alpha
    gated = "primary_operation" in (cmp.meta.get("axes_excluded") or {})
    small = not localisation["n_tests"] and not gated
    if not significant or small:
        mde = mde_summary(cmp.overall, cmp.slices, alpha)
        sizes = "; ".join(f"{x['which']} tested slice n={x['n']}: {_pts(x['mde'])}" for x in mde["slices"])
        why = (f"the {change} is not a significant drop at {alpha}" if not significant else
               f"the {change} is significant, but no slice has the minimum support of {cmp.meta.get('min_support')} "
               f"shared labeled samples to say where")
        statement = (f"Insufficient evidence: {why}. With {mde['overall']['n']} paired samples the smallest detectable "
                     f"change (alpha {alpha}, power {mde['power']}) is {_pts(mde['overall']['mde'])}"
                     + (f"; {sizes}" if sizes else "") + ".")
        return "insufficient_evidence", {"overall": o, "statement": statement, "mde": mde}
    missing = _missing(cmp, localisation)
    note = (" Slice localisation uses per-sample correctness (the results' correct column)."
            if o["metric"] != "pass rate" else "")
    if missing:
        statement = (f"Unexplained regression: the {change} is significant, but no rule explains it: "
                     f"{'; '.join(missing)}.{note}")
        return "unexplained_regression", {"overall": o, "statement": statement, "missing": missing}
    statement = (f"Broad regression: the model is weaker across the board ({change}). {localisation['statement']} "
                 f"No operation-targeted data intervention is proposed.{note}")
    return "broad_regression", {"overall": o, "statement": statement}


def _missing(cmp: Any, localisation: dict[str, Any]) -> list[str]:
    meta, out = cmp.meta, []
    if localisation["standing_out"]:
        out.append(f"slices that stand out have no matching data rule or overlapping intervals: "
                   f"{', '.join(localisation['standing_out'][:8])}")
    excluded = meta.get("axes_excluded") or {}
    if "primary_operation" in excluded:
        out.append(f"the operation axis is not usable (solving_operations gate: {excluded['primary_operation']}), so "
                   "the drop cannot be localised by operation; calibrate it or pass --allow-ungated")
    return out


def _p(x: Any) -> str:
    return "—" if x is None else (f"{x:.1e}" if x < 1e-3 else f"{x:.3f}")


def _signed(x: Any) -> str:
    return "—" if x is None else f"{x:+.3f}"


def _ci(ci: list) -> str:
    return "" if not ci or ci[0] is None else f"[{ci[0]:+.3f}, {ci[1]:+.3f}]"


def _pts(x: Any) -> str:
    return "not detectable at that size" if x is None else f"{x * 100:.1f} points"
