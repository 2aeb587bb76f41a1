"""The checkpoint series: per slice, the pass rate at every checkpoint, as slice_stats counts it."""

from __future__ import annotations

import numpy as np
import pytest

from slicelab.service.errors import ConfigError
from slicelab.service.results import load_results
from slicelab.service.series import checkpoint_order, checkpoint_series
from slicelab.service.slice_stats import slice_stats
from tests.loop_data import MATH_OUTPUTS, STRONG, WEAK, math_labels


def test_checkpoints_are_ordered_by_their_numbers():
    assert checkpoint_order(["step-1200", "step-900", "step-10000", "step-100"]) == [
        "step-100", "step-900", "step-1200", "step-10000"]
    assert checkpoint_order(["b", "a10", "a9"]) == ["a9", "a10", "b"]


def test_series_pass_rates_are_the_slice_stats_pass_rates():
    labels, results = math_labels(), load_results([MATH_OUTPUTS], scores_only=True)
    series, meta = checkpoint_series(labels, results, [WEAK, STRONG])
    stats, _ = slice_stats(labels, results, [WEAK, STRONG])
    assert meta["runs"] == [WEAK, STRONG] and len(series) == stats["slice_id"].nunique()
    for run in (WEAK, STRONG):
        got = series.set_index("slice_id")[run]
        want = stats[stats["run"] == run].set_index("slice_id")["pass_rate"]
        assert np.allclose(got.loc[want.index].to_numpy(dtype=float), want.to_numpy(dtype=float))
    n = stats.groupby("slice_id")["n"].agg(["min", "max"])
    s = series.set_index("slice_id")
    assert (s.loc[n.index, "n_min"] == n["min"]).all() and (s.loc[n.index, "n_max"] == n["max"]).all()
    assert np.allclose(s["change"], s[STRONG] - s[WEAK])
    assert (s["best_run"] == np.where(s[STRONG] > s[WEAK], STRONG, WEAK)).all()
    assert list(series["slice_id"]) == list(dict.fromkeys(stats["slice_id"]))  # the same order


def test_a_run_not_in_the_results_is_refused():
    with pytest.raises(ConfigError, match="not in the results; runs present"):
        checkpoint_series(math_labels(), load_results([MATH_OUTPUTS]), [STRONG, "ckpt-x"])
