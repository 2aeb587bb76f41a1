"""Wilson intervals computed together equal the one-at-a-time ones bit for bit; id positions match
pandas' get_indexer."""

from __future__ import annotations

import numpy as np
import pandas as pd

from slicelab.service.slice_stats import positions
from slicelab.service.stats import wilson_interval, wilson_intervals


def test_wilson_intervals_are_the_scalar_intervals_exactly():
    k = np.array([k for n in range(1, 151) for k in range(n + 1)] + [0, 7, 5_000, 99_999, 100_000])
    n = np.array([n for n in range(1, 151) for _ in range(n + 1)] + [100_000] * 5)
    low, high = wilson_intervals(k, n)
    want = [wilson_interval(int(a), int(b)) for a, b in zip(k, n)]
    assert low.tolist() == [w[0] for w in want] and high.tolist() == [w[1] for w in want]


def test_positions_match_get_indexer_for_text_and_other_ids():
    keys = pd.Index(["b", "a", "c#1", "é"])
    values = pd.Series(["a", "x", "é", None, "b", "a"], dtype="str")
    assert positions(values, keys).tolist() == keys.get_indexer(values).tolist() == [1, -1, 3, -1, 0, 1]
    ints = pd.Index([10, 20, 30])
    assert positions(pd.Series([30, 5, 10]), ints).tolist() == [2, -1, 0]
