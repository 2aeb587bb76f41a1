"""Does a regression stand out in some slices, or is the model weaker everywhere?

A slice with a significant paired drop is not yet a *localised* weakness: when a weaker
model loses about equally everywhere, the largest slices reach significance first. Two
tests, both on the samples the baseline got right (the only ones that can be lost):

- per slice, the **loss rate** ``n10 / (n10 + n11)`` inside the slice against the loss rate
  of every other shared sample, one-sided Fisher's exact test (Fisher 1922, "On the
  interpretation of χ² from contingency tables", via ``scipy.stats.fisher_exact`` with
  ``alternative="greater"``), Benjamini–Hochberg adjusted over every slice tested at every key;
- per key family, **homogeneity of loss rates** across its slices, Pearson's chi-square test
  of homogeneity (Pearson 1900, via ``scipy.stats.chi2_contingency`` without continuity
  correction) on the slices × {lost, kept} table; slices under the minimum support are
  pooled into one row so every sample counts once.

When nothing is significant, :func:`service.stats.mde_paired` gives the smallest change the data could
have detected.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import chi2_contingency, false_discovery_control, fisher_exact

from slicelab.service.stats import mde_paired

LOSS_TEST = "one-sided Fisher's exact test of in-slice vs out-of-slice loss rate among baseline-correct samples (Fisher 1922)"
HOMOGENEITY_TEST = "Pearson chi-square test of homogeneity of loss rates across slices (Pearson 1900)"
MDE_METHOD = ("paired-proportions sample-size formula of Connor (1987), Biometrics 43:207-211, solved for the "
              "change: n = (z_(1-alpha/2) sqrt(psi) + z_power sqrt(psi - d^2))^2 / d^2, psi = discordant share")


def loss_rate_tests(slices: pd.DataFrame, overall: dict[str, Any], alpha: float) -> pd.DataFrame:
    """Add the localisation test of every tested slice.

    Args:
        slices: ``DataFrame[slice_id, key, n10, n11, tested, ...]`` (rows of
            :class:`service.comparison.Comparison` ``slices``).
        overall: the overall paired counts (``n10``, ``n11``).
        alpha: false discovery rate of the Benjamini–Hochberg step (Benjamini & Hochberg 1995).

    Returns:
        ``slices`` with ``loss_rate`` (in-slice ``n10/(n10+n11)``), ``loss_rate_outside``,
        ``loss_p`` (one-sided Fisher exact), ``loss_q`` (BH over every tested slice of every key;
        None when untested) and ``localised`` (``loss_q < alpha``).
    """
    s = slices.copy()
    lost, kept = s["n10"].astype(int), s["n11"].astype(int)
    out_lost, out_kept = int(overall["n10"]) - lost, int(overall["n11"]) - kept
    s["loss_rate"] = [a / (a + b) if a + b else None for a, b in zip(lost, kept)]
    s["loss_rate_outside"] = [a / (a + b) if a + b else None for a, b in zip(out_lost, out_kept)]
    s["loss_p"], s["loss_q"] = None, None
    testable = s["tested"].astype(bool) & ((lost + kept) > 0) & ((out_lost + out_kept) > 0)
    if testable.any():
        p = [fisher_exact([[a, b], [c, d]], alternative="greater").pvalue
             for a, b, c, d in zip(lost[testable], kept[testable], out_lost[testable], out_kept[testable])]
        s.loc[testable, "loss_p"] = p
        s.loc[testable, "loss_q"] = false_discovery_control(np.asarray(p, dtype=float), method="bh")
    s["localised"] = testable & (s["loss_q"].astype(float) < alpha)
    return s


def heterogeneity(slices: pd.DataFrame) -> list[dict[str, Any]]:
    """Chi-square test of homogeneity of loss rates, one per slice family that partitions the samples.

    Args:
        slices: comparison slices with ``slice_id``, ``key``, ``n10``, ``n11``, ``tested``,
            ``axis`` (marginals) columns.

    Returns:
        One dict per family (``capability``, ``combination``, ``marginal:<axis>``): ``family``,
        ``test``, ``chi2``, ``dof``, ``p_value``, ``n_groups`` (tested slices plus the pooled
        small ones), ``loss_rate_min``, ``loss_rate_max``; families where the test is undefined
        (fewer than two groups, or no loss / no kept sample) get ``p_value`` None and a ``reason``.
    """
    out = []
    for family, g in _families(slices):
        tested = g[g["tested"].astype(bool)]
        rows = [[int(a), int(b)] for a, b in zip(tested["n10"], tested["n11"]) if a + b > 0]
        rest = g[~g["tested"].astype(bool)]
        if len(rest) and int(rest["n10"].sum() + rest["n11"].sum()) > 0:
            rows.append([int(rest["n10"].sum()), int(rest["n11"].sum())])
        rates = [a / (a + b) for a, b in rows]
        res: dict[str, Any] = {"family": family, "test": HOMOGENEITY_TEST, "n_groups": len(rows),
                               "loss_rate_min": min(rates) if rates else None,
                               "loss_rate_max": max(rates) if rates else None,
                               "chi2": None, "dof": None, "p_value": None}
        table = np.asarray(rows, dtype=float)
        if len(rows) < 2 or table[:, 0].sum() == 0 or table[:, 1].sum() == 0:
            res["reason"] = f"{len(rows)} groups with baseline-correct samples; need 2 and both losses and kept samples"
        else:
            chi = chi2_contingency(table, correction=False)
            res.update(chi2=float(chi.statistic), dof=int(chi.dof), p_value=float(chi.pvalue))
        out.append(res)
    return out


def _families(slices: pd.DataFrame):
    for key, g in slices.groupby("key", sort=False):
        if key == "marginal" and "axis" in g:
            for axis, ga in g.groupby("axis", sort=False):
                yield f"marginal:{axis}", ga
        else:
            yield str(key), g


def mde_summary(overall: dict[str, Any], slices: pd.DataFrame, alpha: float, power: float = 0.8) -> dict[str, Any]:
    """MDE of the overall comparison and of the tested slice sizes (smallest, median, largest).

    The discordant share ψ is the one observed over all shared samples (at least ``2/n``) and is
    used as the planning value for every size.

    Returns:
        ``{"method", "alpha", "power", "discordant_share", "overall": {"n", "mde"}, "slices":
        [{"n", "mde", "which"}...]}`` (``mde`` None: not detectable at that size).
    """
    n = int(overall["n"])
    psi = max((int(overall["n10"]) + int(overall["n01"])) / n, 2 / n) if n else 1.0
    psi = min(psi, 1.0)
    sizes = sorted(int(x) for x in slices.loc[slices["tested"].astype(bool), "n"]) if len(slices) else []
    picks = {"smallest": sizes[0], "median": sizes[len(sizes) // 2], "largest": sizes[-1]} if sizes else {}
    return {"method": MDE_METHOD, "alpha": alpha, "power": power, "discordant_share": psi,
            "overall": {"n": n, "mde": mde_paired(n, psi, alpha=alpha, power=power) if n else None},
            "slices": [{"which": w, "n": s, "mde": mde_paired(s, psi, alpha=alpha, power=power)}
                       for w, s in picks.items()]}
