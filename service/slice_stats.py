"""Per-slice, per-run statistics of labeled samples joined with run results.

Three kinds of slice key, over the axes that passed calibration (see
:func:`service.slices.axis_verdicts`; ``allow_ungated`` adds the others and is recorded):

- ``capability``: ``(background_condition, task_type, primary_operation, output_constraint)``
  (taxonomy v1 §1), restricted to the usable axes;
- ``combination``: the sorted set of all solving operations of a sample (needs the
  ``solving_operations`` axis);
- ``marginal``: one usable axis at a time (``primary_operation=counting_combinatorics``).

Slice ids read ``capability:pure_math/numeric_answer/counting_combinatorics/integer``,
``combination:case_analysis+counting_combinatorics``, ``marginal:task_type=numeric_answer``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from slicelab.service.errors import ConfigError
from slicelab.service.slices import MIN_SUPPORT, SLICE_AXES, axis_verdicts
from slicelab.service.stats import mean_interval, pass_at_k, wilson_interval

#: Slice key kinds, coarse to fine is not implied; each is its own family of slices.
KEYS = ("capability", "combination", "marginal")
#: k values of pass@k reported when some item has at least k generations.
PASS_AT_KS = (1, 5, 10)
_NONE = "none"


@dataclass
class SliceIndex:
    """Which labeled samples belong to which slices.

    Attributes:
        members: ``DataFrame[sample_id, slice_id]``, one row per (sample, slice).
        slices: ``DataFrame[slice_id, key, label, background_condition, task_type,
            primary_operation, output_constraint, operations, axis, value]``: what each
            slice is (``operations``: the sorted operation set of a combination slice,
            the primary operation of a capability slice, else empty; ``axis``/``value``
            for marginals).
        meta: ``allow_ungated``, ``axes_used``, ``ungated_axes_used``, ``axes_excluded``
            (axis → verdict), ``keys``, ``n_labeled``, ``n_not_labeled``, ``calibration_id``.
    """

    members: pd.DataFrame
    slices: pd.DataFrame
    meta: dict[str, Any] = field(default_factory=dict)


def slice_index(labels: pd.DataFrame, *, allow_ungated: bool = False) -> SliceIndex:
    """Assign every labeled sample to its capability, combination and marginal slices.

    Args:
        labels: a labeled table (:func:`service.output.read_table`): ``id``, ``status``, the
            label axes, ``primary_operation``, ``solving_operations`` and ``gate_<axis>`` columns.
        allow_ungated: also use axes whose calibration verdict is ``fail`` or ``ungated``.

    Returns:
        A :class:`SliceIndex`; only rows with status ``labeled`` are members.

    Raises:
        ConfigError: the table lacks ``id`` or ``status``, or has repeated ids among labeled rows.
    """
    for col in ("id", "status"):
        if col not in labels:
            raise ConfigError(f"labels table has no {col!r} column; is it a slicelab labeled table?")
    verdicts = axis_verdicts(labels)
    used = [a for a in SLICE_AXES if verdicts[a] == "pass" or allow_ungated]
    labeled = labels[labels["status"] == "labeled"]
    dupes = labeled["id"][labeled["id"].duplicated()].unique()
    if len(dupes):
        raise ConfigError(f"labels table repeats sample ids: {list(dupes[:5])}")
    use_ops = "primary_operation" in used and "solving_operations" in labels
    members, info = [], {}
    for r in labeled.to_dict(orient="records"):
        ids = []
        if used:
            values = [str(r.get(a) or _NONE) for a in used]
            sid = "capability:" + "/".join(values)
            info.setdefault(sid, {"key": "capability", "label": " / ".join(values), **dict(zip(used, values)),
                                  "operations": [values[used.index("primary_operation")]] if use_ops else []})
            ids.append(sid)
        if use_ops:
            ops = sorted(set(r.get("solving_operations") or [])) or [_NONE]
            sid = "combination:" + "+".join(ops)
            info.setdefault(sid, {"key": "combination", "label": " + ".join(ops), "operations": ops})
            ids.append(sid)
        for axis in used:
            value = str(r.get(axis) or _NONE)
            sid = f"marginal:{axis}={value}"
            info.setdefault(sid, {"key": "marginal", "label": f"{axis} = {value}", "axis": axis, "value": value,
                                  "operations": [value] if axis == "primary_operation" else []})
            ids.append(sid)
        members.extend((str(r["id"]), sid) for sid in ids)
    slices = pd.DataFrame([{"slice_id": sid, **d} for sid, d in info.items()],
                          columns=["slice_id", "key", "label", *SLICE_AXES, "operations", "axis", "value"])
    meta = {
        "allow_ungated": allow_ungated,
        "axes_used": used,
        "ungated_axes_used": [a for a in used if verdicts[a] != "pass"],
        "axes_excluded": {a: verdicts[a] for a in SLICE_AXES if a not in used},
        "keys": [k for k in KEYS if (k != "combination" or use_ops) and (k != "capability" or used)
                 and (k != "marginal" or used)],
        "n_labeled": int(len(labeled)),
        "n_not_labeled": int(len(labels) - len(labeled)),
        "calibration_id": next(iter(labels["calibration_id"].dropna()), None) if "calibration_id" in labels else None,
    }
    return SliceIndex(pd.DataFrame(members, columns=["sample_id", "slice_id"]), slices, meta)


def slice_stats(labels: pd.DataFrame, results: pd.DataFrame, runs: list[str] | None = None, *,
                allow_ungated: bool = False, min_support: int = MIN_SUPPORT,
                ks: tuple[int, ...] = PASS_AT_KS) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Pass rate with a Wilson interval, and pass@k, per slice and run.

    Args:
        labels: a labeled table (see :func:`slice_index`).
        results: a results table from :func:`service.results.load_results`.
        runs: runs to report (default: every run in ``results``).
        allow_ungated: also slice on axes that did not pass calibration (recorded in meta).
        min_support: slices with fewer samples (for that run) get ``low_support`` True.
        ks: pass@k values; ``pass_at_<k>`` columns exist only when some item has several
            generations and at least k; the value is None for a slice where any item has fewer.

    Returns:
        ``(DataFrame[slice_id, key, label, run, n, n_correct, pass_rate, ci_low, ci_high,
        pass_at_<k>, pass_at_<k>_ci_low, pass_at_<k>_ci_high ..., low_support], meta)``:
        ``pass_rate`` is the share of samples whose result is ``correct``, with its Wilson 95%
        interval (Wilson 1927, via :func:`service.stats.wilson_interval`); ``pass_at_<k>``
        the mean over the slice's items of :func:`service.stats.pass_at_k`, with a percentile-bootstrap 95%
        interval over items (:func:`service.stats.mean_interval`). ``meta`` adds to the
        :class:`SliceIndex` meta the runs, ``min_support``, ``ks`` (reported), ``ks_skipped``
        (k → why), ``items_short`` (run → k → labeled items with fewer than k generations) and,
        per run, samples with results but no label (``n_results_unlabeled``).

    Raises:
        ConfigError: a requested run is not in ``results`` (the message lists the runs present).
    """
    index = slice_index(labels, allow_ungated=allow_ungated)
    runs = check_runs(results, runs)
    res = results[results["run"].isin(runs)]
    joined = index.members.merge(res, on="sample_id", how="inner")
    labeled_ids = set(index.members["sample_id"])
    meta = {**index.meta, "runs": runs, "min_support": min_support,
            "n_results_unlabeled": {r: int((~res.loc[res["run"] == r, "sample_id"].isin(labeled_ids)).sum())
                                    for r in runs}}
    multi = {r: int(res.loc[res["run"] == r, "n_samples"].max() or 1) for r in runs}
    top = max(multi.values(), default=1)
    meta["ks"] = sorted({k for k in ks if top > 1 and top >= k})
    meta["ks_skipped"] = {str(k): ("every item has 1 generation" if top <= 1 else f"no item has {k} generations "
                                   f"(most: {top})") for k in sorted(set(ks)) if k not in meta["ks"]}
    lab_res = res[res["sample_id"].isin(labeled_ids)]
    meta["items_short"] = {r: {str(k): int((lab_res.loc[lab_res["run"] == r, "n_samples"] < k).sum())
                               for k in meta["ks"]} for r in runs}
    rows = []
    for (sid, run), g in joined.groupby(["slice_id", "run"], sort=True):
        n, k_ok = len(g), int(g["correct"].sum())
        ci = wilson_interval(k_ok, n)
        row = {"slice_id": sid, "run": run, "n": n, "n_correct": k_ok, "pass_rate": k_ok / n,
               "ci_low": ci[0], "ci_high": ci[1], "low_support": n < min_support}
        for k in meta["ks"]:
            ok = bool((g["n_samples"] >= k).all()) and multi[run] >= k
            vals = np.array([pass_at_k(a, b, k) for a, b in zip(g["n_samples"], g["n_correct"])]) if ok else None
            row[f"pass_at_{k}"] = float(vals.mean()) if ok else None
            row[f"pass_at_{k}_ci_low"], row[f"pass_at_{k}_ci_high"] = mean_interval(vals) if ok else (None, None)
        rows.append(row)
    cols = ["slice_id", "key", "label", "run", "n", "n_correct", "pass_rate", "ci_low", "ci_high",
            *[c for k in meta["ks"] for c in (f"pass_at_{k}", f"pass_at_{k}_ci_low", f"pass_at_{k}_ci_high")],
            "low_support"]
    table = pd.DataFrame(rows)
    if table.empty:
        return pd.DataFrame(columns=cols), meta
    table = table.merge(index.slices[["slice_id", "key", "label"]], on="slice_id")
    order = {k: i for i, k in enumerate(KEYS)}
    table = table.sort_values(["key", "n", "slice_id"], key=lambda s: s.map(order) if s.name == "key" else
                              (-s if s.name == "n" else s), ignore_index=True)
    return table[cols], meta


def check_runs(results: pd.DataFrame, runs: list[str] | None) -> list[str]:
    """The runs asked for (default: all in ``results``), each checked to exist.

    Raises:
        ConfigError: a run that ``results`` does not hold; the message lists those it holds.
    """
    present = sorted(results["run"].unique())
    runs = list(runs) if runs else present
    missing = [r for r in runs if r not in present]
    if missing:
        raise ConfigError(f"run {missing[0]!r} is not in the results; runs present: {', '.join(present)}")
    return runs
