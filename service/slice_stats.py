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
import pyarrow as pa
import pyarrow.compute as pc
from scipy.sparse import csr_matrix

from slicelab.service.errors import ConfigError
from slicelab.service.slices import MIN_SUPPORT, SLICE_AXES, axis_verdicts
from slicelab.service.stats import mean_interval, pass_at_k, wilson_intervals

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
    values = {a: [str(v or _NONE) for v in labeled[a].tolist()] if a in labeled else [_NONE] * len(labeled)
              for a in used}
    kinds: list[dict[str, dict[str, Any]]] = []  # per kind: each row's slice id -> what the slice is
    if used:
        kinds.append(_capabilities(values, used, use_ops))
    if use_ops:
        kinds.append(_combinations(labeled["solving_operations"].tolist()))
    kinds += [_marginals(axis, values[axis]) for axis in used]
    ids = [str(i) for i in labeled["id"].tolist()]
    # one row per (sample, slice), each sample's slices together in the order of kinds
    member_slices = np.array([k["ids"] for k in kinds], dtype=object).T.ravel().tolist() if kinds else []
    members = pd.DataFrame({"sample_id": [sid for sid in ids for _ in kinds], "slice_id": member_slices}
                           if member_slices else [], columns=["sample_id", "slice_id"])
    info = {slice_id: next(k["info"][slice_id] for k in kinds if slice_id in k["info"])
            for slice_id in dict.fromkeys(member_slices)}
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
    return SliceIndex(members, slices, meta)


def _capabilities(values: dict[str, list[str]], used: list[str], use_ops: bool) -> dict[str, Any]:
    """``{"ids": each row's capability slice id, "info": slice id -> what it is (from its first row)}``."""
    ids, info = [], {}
    for row in zip(*(values[a] for a in used)):
        sid = "capability:" + "/".join(row)
        ids.append(sid)
        if sid not in info:
            info[sid] = {"key": "capability", "label": " / ".join(row), **dict(zip(used, row)),
                         "operations": [row[used.index("primary_operation")]] if use_ops else []}
    return {"ids": ids, "info": info}


def _combinations(operations: list[Any]) -> dict[str, Any]:
    """The same for combination slices, from each row's ``solving_operations``."""
    ids, info = [], {}
    for value in operations:
        ops = sorted(set(value or [])) or [_NONE]
        sid = "combination:" + "+".join(ops)
        ids.append(sid)
        if sid not in info:
            info[sid] = {"key": "combination", "label": " + ".join(ops), "operations": ops}
    return {"ids": ids, "info": info}


def _marginals(axis: str, values: list[str]) -> dict[str, Any]:
    """The same for the marginal slices of one axis."""
    info = {f"marginal:{axis}={v}": {"key": "marginal", "label": f"{axis} = {v}", "axis": axis, "value": v,
                                     "operations": [v] if axis == "primary_operation" else []}
            for v in dict.fromkeys(values)}
    return {"ids": [f"marginal:{axis}={v}" for v in values], "info": info}


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
        interval (Wilson 1927, :func:`wilson_intervals`); ``pass_at_<k>``
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
    res = results[["sample_id", "run", "correct", "n_samples", "n_correct"]]
    if set(results["run"].unique()) - set(runs):
        res = res[res["run"].isin(runs)]
    labeled = pd.Series(positions(res["sample_id"], pd.Index(index.members["sample_id"].unique())) >= 0,
                        index=res.index)
    unlabeled = (~labeled).groupby(res["run"]).sum()
    meta = {**index.meta, "runs": runs, "min_support": min_support,
            "n_results_unlabeled": {r: int(unlabeled.get(r, 0)) for r in runs}}
    multi = res.groupby("run")["n_samples"].max()
    multi = {r: int(multi[r] or 1) for r in runs}
    top = max(multi.values(), default=1)
    meta["ks"] = sorted({k for k in ks if top > 1 and top >= k})
    meta["ks_skipped"] = {str(k): ("every item has 1 generation" if top <= 1 else f"no item has {k} generations "
                                   f"(most: {top})") for k in sorted(set(ks)) if k not in meta["ks"]}
    lab_res = res[labeled] if meta["ks"] else res.iloc[:0]
    meta["items_short"] = {r: {str(k): int((g["n_samples"] < k).sum()) for k in meta["ks"]}
                           for r, g in ((r, lab_res[lab_res["run"] == r]) for r in runs)}
    slice_ids, n_all, k_all = slice_counts(index, res, runs)
    pairs = [(i, j) for i in np.argsort(slice_ids, kind="stable") for j in np.argsort(runs, kind="stable")
             if n_all[i, j] > 0]  # (slice, run) in sorted order, as a sorted groupby gives them
    n = np.array([n_all[i, j] for i, j in pairs], dtype=np.int64)
    k_ok = np.array([k_all[i, j] for i, j in pairs], dtype=np.int64)
    low, high = wilson_intervals(k_ok, n) if len(n) else (n, n)
    table = pd.DataFrame({"slice_id": [slice_ids[i] for i, _ in pairs], "run": [runs[j] for _, j in pairs], "n": n,
                          "n_correct": k_ok, "pass_rate": k_ok / np.maximum(n, 1), "ci_low": low, "ci_high": high,
                          "low_support": n < min_support})
    if meta["ks"]:
        groups = index.members.merge(res, on="sample_id", how="inner").groupby(["slice_id", "run"], sort=True)
        for k in meta["ks"]:
            table[f"pass_at_{k}"], table[f"pass_at_{k}_ci_low"], table[f"pass_at_{k}_ci_high"] = _pass_at(
                groups, k, multi)
    cols = ["slice_id", "key", "label", "run", "n", "n_correct", "pass_rate", "ci_low", "ci_high",
            *[c for k in meta["ks"] for c in (f"pass_at_{k}", f"pass_at_{k}_ci_low", f"pass_at_{k}_ci_high")],
            "low_support"]
    if table.empty:
        return pd.DataFrame(columns=cols), meta
    table = table.merge(index.slices[["slice_id", "key", "label"]], on="slice_id")
    order = {k: i for i, k in enumerate(KEYS)}
    table = table.sort_values(["key", "n", "slice_id"], key=lambda s: s.map(order) if s.name == "key" else
                              (-s if s.name == "n" else s), ignore_index=True)
    return table[cols], meta


def slice_counts(index: SliceIndex, results: pd.DataFrame, runs: list[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Per slice and run, the member samples with a result and how many of them are ``correct``.

    Counted as (slices × samples membership, sparse) @ (samples × runs results), so many runs cost
    a samples × runs matrix, not a row per (slice, result).

    Args:
        index: the slice index.
        results: ``DataFrame[sample_id, run, correct]`` (other runs and unlabeled samples are ignored;
            a repeated (sample, run) row counts each time).
        runs: the runs, in the column order wanted.

    Returns:
        ``(slice ids in index.slices order, n, n_correct)``, both ``int64`` arrays of shape (slices, runs).
    """
    samples = pd.Index(index.members["sample_id"].unique())
    slices = list(index.slices["slice_id"])
    row = positions(results["sample_id"], samples)
    col = positions(results["run"], pd.Index(runs))
    kept = (row >= 0) & (col >= 0)
    present = np.zeros((len(samples), len(runs)), dtype=np.int64)
    correct = np.zeros_like(present)
    np.add.at(present, (row[kept], col[kept]), 1)
    np.add.at(correct, (row[kept], col[kept]), results["correct"].to_numpy(dtype=bool)[kept].astype(np.int64))
    member = csr_matrix((np.ones(len(index.members), dtype=np.int64),
                         (pd.Index(slices).get_indexer(index.members["slice_id"]),
                          samples.get_indexer(index.members["sample_id"]))), shape=(len(slices), len(samples)))
    return slices, np.asarray(member @ present), np.asarray(member @ correct)


def positions(values: pd.Series | pd.Index, keys: pd.Index) -> np.ndarray:
    """For each value, its position in ``keys`` (unique), or -1 (``keys.get_indexer(values)``).

    Text columns are matched with ``pyarrow.compute.index_in``, without a Python object per value.
    """
    if isinstance(values.dtype, pd.StringDtype) and isinstance(keys.dtype, pd.StringDtype):
        found = pc.index_in(pa.array(values), value_set=pa.array(keys))
        return found.fill_null(-1).to_numpy().astype(np.int64)
    return keys.get_indexer(values)


def _pass_at(groups: Any, k: int, multi: dict[str, int]) -> tuple[list, list, list]:
    """pass@k of every (slice, run) group and its bootstrap interval; None where an item has fewer than k."""
    from slicelab.service.passk import mean_interval  # passk imports pass_at_k from here

    value, low, high = [], [], []
    for (_, run), g in groups:
        ok = bool((g["n_samples"] >= k).all()) and multi[run] >= k
        vals = np.array([pass_at_k(a, b, k) for a, b in zip(g["n_samples"], g["n_correct"])]) if ok else None
        value.append(float(vals.mean()) if ok else None)
        lo, hi = mean_interval(vals) if ok else (None, None)
        low.append(lo)
        high.append(hi)
    return value, low, high


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
