"""Nested weak slices: prefer the most specific localised slice, and keep a containing one only for its residual.

A capability slice (``capability:<background>/<task>/<primary operation>/<output constraint>``)
lies inside every marginal slice that shares its value on that axis: all Precalculus problems
of ``capability:pure_math/short_answer/algebraic_manipulation/math_expression`` are also in
``marginal:primary_operation=algebraic_manipulation``. Weighting both by their own deficit
counts those losses twice, and the marginal (many subjects) takes budget that the specific
slice explains.

For a containing target slice, the **residual** is what is left after removing the target
capability slices inside it: its losses, gains and kept (baseline-correct, still correct)
samples minus theirs (capability slices partition the samples, so they never overlap). The
containing slice stays a target only when its residual deficit (losses − gains) is positive
and the residual's loss rate among baseline-correct samples is significantly higher than the
loss rate of every other shared sample: one-sided Fisher's exact test (Fisher 1922, "On the
interpretation of χ² from contingency tables", ``scipy.stats.fisher_exact``), Benjamini–Hochberg
adjusted over the residuals tested (Benjamini & Hochberg 1995, ``scipy.stats.false_discovery_control``)
— the same localisation test the diagnosis applies to whole slices
(:mod:`service.localisation`). It then keeps only its residual deficit; otherwise it is
*explained* by the slices inside it and gets no budget of its own.

Combination slices (sets of solving operations) are not nested in a capability or marginal
slice by construction; when one overlaps another target, an item in both is weighted once, by
the more specific key (capability, then combination, then marginal).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import false_discovery_control, fisher_exact

#: Key order from most to least specific.
SPECIFICITY = {"capability": 0, "combination": 1, "marginal": 2}
RESIDUAL_TEST = ("one-sided Fisher's exact test of the residual's loss rate among baseline-correct samples against "
                 "every other shared sample (Fisher 1922), Benjamini-Hochberg adjusted over the residuals tested")


def contains(outer: str, inner: str, axes_used: list[str]) -> bool:
    """Whether slice ``outer`` holds every sample of slice ``inner`` by construction.

    Only ``marginal:<axis>=<value>`` ⊇ ``capability:<values of axes_used>`` with the same value on
    ``axis`` is decided; any other pair is False.
    """
    if not (outer.startswith("marginal:") and inner.startswith("capability:")):
        return False
    axis, _, value = outer.split(":", 1)[1].partition("=")
    values = inner.split(":", 1)[1].split("/")
    return axis in axes_used and len(values) == len(axes_used) and values[axes_used.index(axis)] == value


def _kept(s: dict[str, Any]) -> int | None:
    """Baseline-correct samples the candidate still gets right (``kept``; else derived from the loss rate)."""
    if s.get("kept") is not None:
        return int(s["kept"])
    rate = s.get("loss_rate")
    return round(int(s["losses"]) / rate) - int(s["losses"]) if rate else None


def resolve_nesting(targets: list[dict[str, Any]], overall: dict[str, Any], axes_used: list[str],
                    alpha: float) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split target slices into those sampled (residual deficits) and those explained by slices inside them.

    Args:
        targets: from :func:`service.pool_sampling.weak_slice_targets` (``slice_id, key, losses, gains,
            deficit`` and ``kept`` or ``loss_rate``).
        overall: the diagnosis's overall paired counts (``n10``, ``n11``).
        axes_used: the capability axes, in slice-id order.
        alpha: false discovery rate of the residual tests (the diagnosis's evidence ``alpha``).

    Returns:
        ``(kept, explained)``. A kept containing slice gets ``contains`` (ids inside it),
        ``slice_deficit`` (its own) and ``deficit`` (the residual); every containing slice gets
        ``residual`` (``losses, gains, kept, loss_rate, loss_rate_outside, p_value, q_value, test``).
        ``explained`` lists the containing slices dropped, with ``explained_by`` and ``residual``.
    """
    outer = {t["slice_id"]: [i["slice_id"] for i in targets if contains(t["slice_id"], i["slice_id"], axes_used)]
             for t in targets}
    by_id = {t["slice_id"]: t for t in targets}
    tested = []
    for t in targets:
        inner = outer[t["slice_id"]]
        if not inner:
            continue
        losses = int(t["losses"]) - sum(int(by_id[i]["losses"]) for i in inner)
        gains = int(t["gains"]) - sum(int(by_id[i]["gains"]) for i in inner)
        kept = [_kept(x) for x in [t, *(by_id[i] for i in inner)]]
        res: dict[str, Any] = {"losses": losses, "gains": gains, "test": RESIDUAL_TEST, "p_value": None, "q_value": None}
        if None not in kept:
            res["kept"] = kept[0] - sum(kept[1:])
            out_lost, out_kept = int(overall["n10"]) - losses, int(overall["n11"]) - res["kept"]
            res["loss_rate"] = losses / (losses + res["kept"]) if losses + res["kept"] else None
            res["loss_rate_outside"] = out_lost / (out_lost + out_kept) if out_lost + out_kept else None
            if losses + res["kept"] and out_lost + out_kept:
                res["p_value"] = float(fisher_exact([[losses, res["kept"]], [out_lost, out_kept]],
                                                    alternative="greater").pvalue)
        t["residual"] = res
        tested.append(t)
    ps = [t for t in tested if t["residual"]["p_value"] is not None]
    if ps:
        qs = false_discovery_control(np.asarray([t["residual"]["p_value"] for t in ps]), method="bh")
        for t, q in zip(ps, qs):
            t["residual"]["q_value"] = float(q)
    kept_targets, explained = [], []
    for t in targets:
        inner, res = outer[t["slice_id"]], t.get("residual")
        if not inner:
            kept_targets.append(t)
        elif res["losses"] - res["gains"] > 0 and (res["q_value"] is None or res["q_value"] < alpha):
            kept_targets.append(t | {"contains": inner, "slice_deficit": t["deficit"],
                                     "deficit": res["losses"] - res["gains"]})
        else:
            explained.append({"slice_id": t["slice_id"], "key": t["key"], "deficit": t["deficit"],
                              "explained_by": inner, "residual": res})
    return kept_targets, explained


def item_groups(member_of: set[str], targets: list[dict[str, Any]]) -> list[str]:
    """The target slices one item may be charged to, most specific first (then larger deficit), without any
    slice that contains an earlier one (the item is matched by the slice inside it)."""
    ordered = [t for t in sorted(targets, key=lambda t: (SPECIFICITY[t["key"]], -t["deficit"], t["slice_id"]))
               if t["slice_id"] in member_of]
    return [t["slice_id"] for t in ordered
            if not set(t.get("contains") or []) & {o["slice_id"] for o in ordered}]
