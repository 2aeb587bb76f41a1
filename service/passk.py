"""pass@k from several generations per problem: per-item values, intervals, paired comparison.

Each results row carries ``n_samples`` generations of which ``n_correct`` are correct;
pass@k of an item is the unbiased estimator of Chen et al. (2021)
(:func:`service.stats.pass_at_k`), defined only for ``k <= n_samples``. Items with
fewer generations than k are left out of pass@k at that k and counted (``n_short``).

- interval of a mean pass@k (one run, or a paired difference): percentile bootstrap over
  problems (Efron & Tibshirani 1993, *An Introduction to the Bootstrap*, ch. 13;
  :func:`service.stats.mean_interval`: ``scipy.stats.bootstrap``, 2,000 resamples, fixed seed);
- paired test between two runs: Wilcoxon signed-rank test on the per-problem pass@k
  differences (Wilcoxon 1945), zero differences handled as in Pratt (1959)
  (:func:`service.stats.wilcoxon_paired`), two-sided; Benjamini–Hochberg over the
  tested slices.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import false_discovery_control

from slicelab.service.errors import ConfigError
from slicelab.service.stats import MEAN_RESAMPLES, mean_interval, pass_at_k, wilcoxon_paired

TEST = "Wilcoxon signed-rank test on per-problem pass@k differences, Pratt zero handling (Wilcoxon 1945; Pratt 1959)"
INTERVAL = f"percentile bootstrap over problems, {MEAN_RESAMPLES} resamples (Efron & Tibshirani 1993)"


def parse_ks(text: str | None) -> tuple[int, ...]:
    """``"1,8,128"`` → ``(1, 8, 128)``.

    Raises:
        ConfigError: a value that is not a positive integer (the message names it).
    """
    if text is None or not str(text).strip():
        raise ConfigError("--k: give one or more positive integers separated by commas, e.g. 1,8,128")
    out = set()
    for part in str(text).split(","):
        part = part.strip()
        if not part.isdigit() or int(part) < 1:
            raise ConfigError(f"--k: {part!r} is not a positive integer; give e.g. 1,8,128")
        out.add(int(part))
    return tuple(sorted(out))


def item_pass_at_k(rows: pd.DataFrame, k: int) -> pd.Series:
    """pass@k per row of ``rows`` (``n_samples``, ``n_correct``); NaN where ``n_samples < k``."""
    return pd.Series([pass_at_k(int(n), int(c), k) if n >= k else np.nan
                      for n, c in zip(rows["n_samples"], rows["n_correct"])], index=rows.index, dtype=float)


def compare_pass_at_k(base: pd.DataFrame, cand: pd.DataFrame, members: pd.DataFrame, labels: pd.DataFrame,
                      ks: tuple[int, ...], *, min_support: int, alpha: float) -> dict[str, Any]:
    """Paired pass@k comparison of two runs, overall and per slice, for every k some item supports.

    Args:
        base, cand: the runs' results indexed by ``sample_id`` over the shared samples
            (``n_samples``, ``n_correct``).
        members: ``DataFrame[sample_id, slice_id]`` (slice membership of shared samples).
        labels: ``DataFrame[slice_id, key, label]`` of the slices.
        ks: the k values asked for.
        min_support: slices with fewer items (having ≥ k generations in both runs) are not tested.
        alpha: false discovery rate of the Benjamini–Hochberg step over tested slices, per k.

    Returns:
        ``{"test", "interval", "ks" (reported), "ks_skipped" ({k: reason}), "by_k": {k:
        {"overall": row, "slices": [row...]}}}`` where a row is ``slice_id, n_items, n_short,
        baseline, candidate, delta, delta_ci_low, delta_ci_high, p_value`` (+ ``key``, ``label``,
        ``q_value``, ``tested``, ``significant_drop`` for slices). pass@k values are proportions.
    """
    most = int(min(base["n_samples"].max(), cand["n_samples"].max())) if len(base) else 0
    out: dict[str, Any] = {"test": TEST, "interval": INTERVAL, "ks": [], "ks_skipped": {}, "by_k": {}}
    for k in ks:
        if k > most:
            out["ks_skipped"][str(k)] = f"no problem has {k} generations in both runs (most: {most})"
            continue
        pb, pc = item_pass_at_k(base, k), item_pass_at_k(cand, k)
        ok = pb.notna() & pc.notna()
        diff = (pc - pb)[ok]
        overall = _row("overall", pb[ok], pc[ok], diff, int((~ok).sum()))
        rows = []
        for sid, g in members.groupby("slice_id", sort=False):
            ids = pd.Index(g["sample_id"])
            sel = ok.loc[ids]
            rows.append(_row(sid, pb.loc[ids][sel], pc.loc[ids][sel], diff.reindex(ids[sel.to_numpy()]),
                             int((~sel).sum())))
        slices = pd.DataFrame(rows)
        if len(slices):
            slices = slices.merge(labels[["slice_id", "key", "label"]], on="slice_id")
            slices["tested"] = slices["n_items"] >= min_support
            slices["q_value"] = None
            if slices["tested"].any():
                slices.loc[slices["tested"], "q_value"] = false_discovery_control(
                    slices.loc[slices["tested"], "p_value"].to_numpy(dtype=float), method="bh")
            slices["significant_drop"] = (slices["tested"] & (slices["q_value"].astype(float) < alpha)
                                          & (slices["delta"].astype(float) < 0))
            slices = slices.sort_values(["key", "n_items"], ascending=[True, False], ignore_index=True)
        out["ks"].append(k)
        out["by_k"][str(k)] = {"overall": overall, "slices": slices.to_dict(orient="records")}
    return out


def _row(sid: str, pb: pd.Series, pc: pd.Series, diff: pd.Series, n_short: int) -> dict[str, Any]:
    n = int(len(diff))
    lo, hi = mean_interval(diff.to_numpy()) if n else (None, None)
    return {"slice_id": sid, "n_items": n, "n_short": n_short,
            "baseline": float(pb.mean()) if n else None, "candidate": float(pc.mean()) if n else None,
            "delta": float(diff.mean()) if n else None, "delta_ci_low": lo, "delta_ci_high": hi,
            "p_value": wilcoxon_paired(diff.to_numpy()) if n else None}
