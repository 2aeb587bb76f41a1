"""Capability slices from labeled samples, using only axes that passed calibration.

A capability slice is the set of samples sharing
``(background_condition, task_type, primary_operation, output_constraint)``
(taxonomy v1 §1). An axis whose calibration verdict is not ``pass`` (``fail``
or ``ungated``) is left out of the slice key, unless the caller allows ungated
axes — which is then recorded in every output it affects.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from slicelab.service.stats import wilson_interval
from slicelab.service.taxonomy import Taxonomy

#: Slice key columns, in order; operation axes are keyed by their primary operation.
SLICE_AXES = ("background_condition", "task_type", "primary_operation", "output_constraint")
#: Minimum samples for a slice's statistics to count (smaller slices are flagged).
MIN_SUPPORT = 10
_GATE_COLUMN = {"primary_operation": "gate_solving_operations"}


def apply_gate(df: pd.DataFrame, record: dict[str, Any] | None, taxonomy: Taxonomy, kind: str) -> pd.DataFrame:
    """Add ``calibration_id`` and one ``gate_<axis>`` column (pass / fail / ungated) per taxonomy axis.

    Args:
        record: the calibration record for the run's exact judge configuration, or None.
    """
    df = df.copy()
    df["calibration_id"] = record["id"] if record else None
    verdicts = (record or {}).get("verdicts", {})
    for axis in taxonomy.axes(kind):
        df[f"gate_{axis.name}"] = verdicts.get(axis.name, "ungated")
    return df


def axis_verdicts(df: pd.DataFrame) -> dict[str, str]:
    """Verdict per slice axis read from the ``gate_*`` columns (``ungated`` when absent or mixed)."""
    out = {}
    for axis in SLICE_AXES:
        col = _GATE_COLUMN.get(axis, f"gate_{axis}")
        values = set(df[col].dropna().unique().tolist()) if col in df else set()
        out[axis] = values.pop() if len(values) == 1 else "ungated"
    return out


def slice_table(df: pd.DataFrame, *, allow_ungated: bool = False,
                min_support: int = MIN_SUPPORT) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Group labeled samples into capability slices over the usable axes.

    Returns:
        ``(DataFrame[<used axes>..., n, n_scored, n_correct, pass_rate, ci_low, ci_high, low_support],
        meta)`` where pass_rate is the share of scored samples marked correct, with its
        Wilson 95% interval (Wilson 1927), and meta records ``allow_ungated``,
        ``axes_used``, ``axes_excluded`` (axis → verdict) and ``min_support``.
    """
    verdicts = axis_verdicts(df)
    used = [a for a in SLICE_AXES if verdicts[a] == "pass" or allow_ungated]
    meta = {
        "allow_ungated": allow_ungated,
        "axes_used": used,
        "ungated_axes_used": [a for a in used if verdicts[a] != "pass"],
        "axes_excluded": {a: verdicts[a] for a in SLICE_AXES if a not in used},
        "min_support": min_support,
        "calibration_id": next(iter(df["calibration_id"].dropna()), None) if "calibration_id" in df else None,
    }
    labeled = df[df["status"] == "labeled"]
    if not used or labeled.empty:
        return pd.DataFrame(columns=[*used, "n", "n_scored", "n_correct", "pass_rate", "ci_low", "ci_high",
                                     "low_support"]), meta
    rows = []
    for key, group in labeled.groupby(used, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        scored = group["correct"].dropna() if "correct" in group else pd.Series([], dtype=object)
        k, n = int(scored.astype(bool).sum()), len(scored)
        ci = wilson_interval(k, n)
        rows.append({**dict(zip(used, key)), "n": len(group), "n_scored": n, "n_correct": k,
                     "pass_rate": k / n if n else None, "ci_low": ci[0] if ci else None,
                     "ci_high": ci[1] if ci else None, "low_support": len(group) < min_support})
    return pd.DataFrame(rows).sort_values("n", ascending=False, ignore_index=True), meta
