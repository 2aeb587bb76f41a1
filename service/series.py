"""Pass rate of every slice across the checkpoints of a training run (a checkpoint series).

Where :func:`service.slice_stats.slice_stats` gives one row per (slice, run) with intervals, the
series is the wide view a training run is read in: one row per slice, one column per
checkpoint in checkpoint order, and how the slice moved from the first checkpoint to the last.
Counts come from :func:`service.slice_stats.slice_counts` (a samples × checkpoints matrix
multiplied by the sparse slice membership), so fifty checkpoints of 100,000 samples cost a few
tens of megabytes beyond the results table.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd
from slicelab.service.slice_stats import KEYS, check_runs, slice_counts, slice_index
from slicelab.service.slices import MIN_SUPPORT


def checkpoint_order(runs: list[str]) -> list[str]:
    """Runs in checkpoint order: names compared with their digit runs as numbers (``step-900`` before
    ``step-1200``), then as text."""
    def key(name: str) -> tuple:
        return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name)
                     if part)

    return sorted(runs, key=lambda r: (key(r), r))


def checkpoint_series(labels: pd.DataFrame, results: pd.DataFrame, runs: list[str] | None = None, *,
                      allow_ungated: bool = False, min_support: int = MIN_SUPPORT) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Per slice, the pass rate at every checkpoint.

    Args:
        labels: a labeled table (see :func:`service.slice_stats.slice_index`).
        results: a results table (:func:`service.results.load_results`; ``scores_only=True`` is enough).
        runs: the checkpoints, in the order given (default: every run in ``results``, in
            :func:`checkpoint_order`).
        allow_ungated: also slice on axes that did not pass calibration (recorded in meta).
        min_support: slices with fewer samples at some checkpoint get ``low_support`` True.

    Returns:
        ``(DataFrame[slice_id, key, label, n_min, n_max, <run>..., first, last, change, best_run,
        low_support], meta)``: ``<run>`` is the share of the slice's samples with a result at that
        checkpoint that are ``correct`` (a proportion; NaN when none has a result), ``n_min``/``n_max``
        the fewest/most such samples over the checkpoints, ``change`` = last − first pass rate,
        ``best_run`` the checkpoint with the highest pass rate (the earliest of ties). Rows are
        ordered as :func:`service.slice_stats.slice_stats` orders them (key, then largest first).
        ``meta``: the slice-index meta, ``runs`` (the column order) and ``min_support``.

    Raises:
        ConfigError: a requested run is not in ``results`` (the message lists the runs present).
    """
    index = slice_index(labels, allow_ungated=allow_ungated)
    runs = list(runs) if runs else checkpoint_order(check_runs(results, None))
    check_runs(results, runs)
    _, n, k = slice_counts(index, results, runs)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(n > 0, k / np.maximum(n, 1), np.nan)
    table = pd.DataFrame(rate, columns=runs)
    table.insert(0, "n_max", n.max(axis=1))
    table.insert(0, "n_min", n.min(axis=1))
    table = pd.concat([index.slices[["slice_id", "key", "label"]].reset_index(drop=True), table], axis=1)
    table["first"], table["last"] = table[runs[0]], table[runs[-1]]
    table["change"] = table["last"] - table["first"]
    table["best_run"] = [runs[i] for i in np.nan_to_num(rate, nan=-1.0).argmax(axis=1)]
    table["low_support"] = table["n_min"] < min_support
    order = {key: i for i, key in enumerate(KEYS)}
    table = table.sort_values(["key", "n_max", "slice_id"], key=lambda s: s.map(order) if s.name == "key" else
                              (-s if s.name == "n_max" else s), ignore_index=True)
    return table, {**index.meta, "runs": runs, "min_support": min_support}
