"""General statistics: intervals, paired tests, concentration indices, pass@k, detectable change.

Pure functions over counts and arrays; nothing here knows about slices, labels or runs, and
nothing here imports from slicelab. Every value returned is a plain Python ``float`` (or
``None`` where the statistic is undefined), never a numpy type.

- proportions: :func:`wilson_interval`;
- resampling: :func:`bootstrap_ci` (items drawn by index), :func:`mean_interval` (mean of values);
- paired designs: :func:`mcnemar_exact`, :func:`paired_delta_interval`, :func:`wilcoxon_paired`,
  :func:`mde_paired`;
- concentration: :func:`gini`, :func:`hhi`;
- code generation metrics: :func:`pass_at_k`.

Callers test many slices at once with ``scipy.stats.false_discovery_control`` (Benjamini &
Hochberg 1995) directly.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.optimize import brentq
from scipy.special import ndtri
from scipy.stats import binomtest, bootstrap, norm, wilcoxon

__all__ = [
    "MEAN_RESAMPLES",
    "bootstrap_ci",
    "check_confidence",
    "finite_or_none",
    "gini",
    "hhi",
    "mcnemar_exact",
    "mde_paired",
    "mean_interval",
    "paired_delta_interval",
    "pass_at_k",
    "wilcoxon_paired",
    "wilson_interval",
]

#: Resamples of :func:`mean_interval`.
MEAN_RESAMPLES = 2000


def finite_or_none(value: Any) -> float | None:
    """``value`` as a Python float, or ``None`` when it is None, NaN or infinite."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def check_confidence(confidence: float) -> None:
    """Raises ValueError unless ``confidence`` (a two-sided confidence level) is in (0, 1)."""
    if not (0.0 < float(confidence) < 1.0):
        raise ValueError(f"confidence level must be in (0, 1), got {confidence!r}")


# --------------------------------------------------------------------------- proportions


def wilson_interval(k: int, n: int, *, confidence: float = 0.95) -> tuple[float, float] | None:
    """Wilson score interval for a binomial proportion ``k / n``.

    The interval (Wilson 1927, "Probable inference, the law of succession, and
    statistical inference", JASA 22:209-212) is

        (p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n),  p = k/n,

    without continuity correction. It is computed by
    ``scipy.stats.binomtest(k, n).proportion_ci(method="wilson")``.

    Args:
        k: Number of successes, ``0 <= k <= n``.
        n: Number of trials, ``n >= 0``.
        confidence: Two-sided confidence level in (0, 1).

    Returns:
        ``(lower, upper)`` as proportions in [0, 1], or ``None`` when ``n == 0``.

    Raises:
        ValueError: If ``k`` or ``n`` is not a non-negative integer, ``k > n``,
            or ``confidence`` is not in (0, 1).
    """
    for name, value in (("k", k), ("n", n)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    if k > n:
        raise ValueError(f"k ({k}) must not exceed n ({n})")
    check_confidence(confidence)
    if n == 0:
        return None
    interval = binomtest(int(k), int(n)).proportion_ci(
        confidence_level=float(confidence), method="wilson"
    )
    return float(interval.low), float(interval.high)


# --------------------------------------------------------------------------- resampling


def wilson_intervals(k: np.ndarray, n: np.ndarray, *, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score intervals of many proportions ``k / n`` at once.

    The same values, bit for bit, as :func:`wilson_interval` gives one at a time
    (Wilson 1927, without continuity correction, in the form of Newcombe 1998 that
    ``scipy.stats.binomtest(k, n).proportion_ci(method="wilson")`` computes), without the
    binomial test that call also runs.

    Args:
        k: successes per proportion (ints, ``0 <= k <= n``).
        n: trials per proportion (ints, ``n >= 1``).
        confidence: two-sided confidence level in (0, 1).

    Returns:
        ``(low, high)`` arrays of proportions in [0, 1].
    """
    k, n = np.asarray(k, dtype=np.int64), np.asarray(n, dtype=np.int64)
    p = k / n
    z = ndtri(0.5 + 0.5 * confidence)
    denom = 2 * (n + z ** 2)
    center = (2 * n * p + z ** 2) / denom
    delta = z / denom * np.sqrt(4 * n * p * (1 - p) + z ** 2)
    return np.where(k == 0, 0.0, center - delta), np.where(k == n, 1.0, center + delta)


def bootstrap_ci(
    stat: Callable[[np.ndarray], float | None],
    n: int,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> tuple[float, float] | None:
    """Percentile bootstrap confidence interval over items.

    Draws ``n_boot`` resamples of ``n`` item indices with replacement
    (``numpy.random.default_rng(seed)``), evaluates ``stat`` on each index
    array, and returns the ``(1-ci)/2`` and ``(1+ci)/2`` percentiles of the
    values obtained (percentile method, Efron & Tibshirani 1993, "An
    Introduction to the Bootstrap", ch. 13). Resamples on which ``stat`` is
    undefined (returns ``None``, NaN or inf) are skipped. The result is
    deterministic for a given ``seed``.

    Args:
        stat: Function of an int array of shape ``(n,)`` holding item indices
            in ``[0, n)``; returns the statistic on those items or ``None``.
        n: Number of items.
        n_boot: Number of resamples, ``>= 1``.
        seed: Seed of the random generator.
        ci: Two-sided confidence level in (0, 1).

    Returns:
        ``(lower, upper)`` in the unit of ``stat``, or ``None`` when ``n < 2``
        or fewer than two resamples gave a defined value.

    Raises:
        ValueError: If ``n_boot < 1`` or ``ci`` is not in (0, 1).
    """
    if int(n_boot) < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot!r}")
    check_confidence(ci)
    if n < 2:
        return None
    rng = np.random.default_rng(seed)
    values: list[float] = []
    for _ in range(int(n_boot)):
        value = finite_or_none(stat(rng.integers(0, n, size=n)))
        if value is not None:
            values.append(value)
    if len(values) < 2:
        return None
    alpha = (1.0 - float(ci)) / 2.0
    lo, hi = np.percentile(np.asarray(values), [100.0 * alpha, 100.0 * (1.0 - alpha)])
    return float(lo), float(hi)


def mean_interval(values: np.ndarray, confidence: float = 0.95) -> tuple[float | None, float | None]:
    """Percentile-bootstrap interval of the mean of ``values``.

    Percentile bootstrap (Efron & Tibshirani 1993, *An Introduction to the Bootstrap*,
    ch. 13) by ``scipy.stats.bootstrap`` with :data:`MEAN_RESAMPLES` resamples and a fixed
    seed (0), so the same values always give the same interval.

    Args:
        values: shape ``(n,)``, any unit.
        confidence: two-sided confidence level in (0, 1).

    Returns:
        ``(low, high)`` in the unit of ``values``; the value itself twice when all values are
        equal; ``(None, None)`` when empty.
    """
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return None, None
    if np.all(v == v[0]):
        return float(v[0]), float(v[0])
    res = bootstrap((v,), np.mean, confidence_level=confidence, n_resamples=MEAN_RESAMPLES, method="percentile",
                    random_state=np.random.default_rng(0), vectorized=True)
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


# --------------------------------------------------------------------------- paired designs


def mcnemar_exact(n10: int, n01: int) -> float:
    """Two-sided exact McNemar p-value from the discordant pair counts.

    Under H0 the ``n10 + n01`` discordant pairs split Binomial(n10 + n01, 1/2)
    (McNemar 1947, exact form); the p-value is
    ``scipy.stats.binomtest(n10, n10 + n01, 0.5).pvalue`` (two-sided), which equals
    ``statsmodels.stats.contingency_tables.mcnemar(table, exact=True).pvalue``.

    Returns:
        The p-value in [0, 1]; 1.0 when there is no discordant pair.
    """
    n = int(n10) + int(n01)
    return 1.0 if n == 0 else float(binomtest(int(n10), n, 0.5).pvalue)


def paired_delta_interval(n11: int, n10: int, n01: int, n00: int, *,
                          confidence: float = 0.95) -> tuple[float, float] | None:
    """Confidence interval of the paired difference second − first pass rate of a 2×2 table.

    ``n11`` both correct, ``n10`` correct in the first only, ``n01`` in the second only,
    ``n00`` neither. Agresti & Min (2005), "Simple improved confidence intervals for
    comparing matched proportions", Statistics in Medicine 24:729–740: add 1/2 to each cell
    of the table, then use the Wald interval
    ``d ± z·sqrt(((n01 + n10) − (n01 − n10)²/n) / n²)`` with ``d = (n01 − n10)/n``.

    Returns:
        ``(low, high)`` clipped to [−1, 1] (proportions), or None for an empty table.
    """
    if n11 + n10 + n01 + n00 == 0:
        return None
    b, c = n10 + 0.5, n01 + 0.5
    n = n11 + n10 + n01 + n00 + 2.0
    d = (c - b) / n
    se = math.sqrt(max((b + c) - (c - b) ** 2 / n, 0.0)) / n
    z = float(norm.ppf(0.5 + confidence / 2))
    return max(-1.0, d - z * se), min(1.0, d + z * se)


def wilcoxon_paired(diff: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value of paired differences.

    Wilcoxon (1945), zero differences handled as in Pratt (1959):
    ``scipy.stats.wilcoxon(diff, zero_method="pratt", alternative="two-sided")``.

    Args:
        diff: paired differences, shape ``(n,)``.

    Returns:
        The p-value in [0, 1]; 1.0 when there is no difference or every difference is zero.
    """
    d = np.asarray(diff, dtype=float)
    if d.size == 0 or not np.any(d != 0):
        return 1.0
    return float(wilcoxon(d, zero_method="pratt", alternative="two-sided").pvalue)


def mde_paired(n: int, psi: float, *, alpha: float = 0.05, power: float = 0.8) -> float | None:
    """Minimum detectable change in pass rate for a paired (McNemar) design of ``n`` items.

    Connor (1987), "Sample size for testing differences in proportions for the paired-sample
    design", Biometrics 43:207–211: ``n = (z_{1-α/2}·√ψ + z_{power}·√(ψ − δ²))² / δ²`` with ψ the
    share of discordant pairs and δ the difference of the paired proportions; solved here for δ
    (``scipy.optimize.brentq``).

    Args:
        n: paired items (≥ 1).
        psi: expected discordant share ``(n10 + n01) / n`` in (0, 1].
        alpha: two-sided significance level.
        power: probability of detecting a change of that size.

    Returns:
        δ as a proportion (0.12 = 12 points), or None when even δ = ψ (every discordant pair in
        one direction) is not detectable with ``n`` items.

    Raises:
        ValueError: ``n`` < 1, or ``psi`` outside (0, 1].
    """
    if n < 1 or not 0 < psi <= 1:
        raise ValueError(f"mde_paired needs n >= 1 and 0 < psi <= 1; got n={n}, psi={psi}")
    za, zb = norm.ppf(1 - alpha / 2), norm.ppf(power)

    def gap(d: float) -> float:
        return math.sqrt(n) * d - za * math.sqrt(psi) - zb * math.sqrt(max(psi - d * d, 0.0))

    hi = min(psi, 1.0)
    if gap(hi) < 0:
        return None
    return float(brentq(gap, 1e-12, hi)) if gap(1e-12) < 0 else 0.0


# --------------------------------------------------------------------------- concentration


def gini(values: list[float] | np.ndarray) -> float | None:
    """Gini coefficient of non-negative values (0 = all equal, → 1 = all in one).

    Gini (1912) as half the relative mean absolute difference,
    ``G = Σ_i Σ_j |x_i − x_j| / (2 n² x̄)``, computed from the sorted values as
    ``G = 2 Σ_i i·x_(i) / (n Σ x) − (n + 1)/n`` (i = 1..n).

    Returns:
        G in [0, 1), or None when there are no values or they sum to 0.

    Raises:
        ValueError: a negative value.
    """
    x = np.sort(np.asarray(values, dtype=float))
    if x.size == 0 or x.sum() <= 0:
        return None
    if (x < 0).any():
        raise ValueError("gini: values must be non-negative")
    i = np.arange(1, x.size + 1)
    return float(2 * (i * x).sum() / (x.size * x.sum()) - (x.size + 1) / x.size)


def hhi(values: list[float] | np.ndarray) -> tuple[float, float] | None:
    """Herfindahl–Hirschman index of non-negative amounts and its normalised form.

    ``H = Σ s_i²`` with shares ``s_i = x_i / Σ x`` (Hirschman 1945; Herfindahl 1950);
    normalised ``H* = (H − 1/N) / (1 − 1/N)`` so that 0 = equal shares, 1 = one holds
    everything (H* = 1 when N = 1).

    Returns:
        ``(H, H*)``, or None when there are no values or they sum to 0.
    """
    x = np.asarray(values, dtype=float)
    if x.size == 0 or x.sum() <= 0:
        return None
    s = x / x.sum()
    h = float((s ** 2).sum())
    return h, (1.0 if x.size == 1 else float((h - 1 / x.size) / (1 - 1 / x.size)))


# --------------------------------------------------------------------------- pass@k


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one item from ``n`` generations of which ``c`` are correct.

    pass@k = 1 - C(n-c, k) / C(n, k) (Chen et al. 2021, "Evaluating Large Language Models
    Trained on Code", eq. 1), computed in the numerically stable product form of that
    paper's Figure 3: 1 - prod_{i=n-c+1}^{n} (1 - k / i).

    Args:
        n: generations of the item (≥ 1).
        c: correct generations, 0 ≤ c ≤ n.
        k: attempts allowed, 1 ≤ k ≤ n.

    Returns:
        The probability, in [0, 1], that at least one of k generations drawn without
        replacement from the n is correct.

    Raises:
        ValueError: n < 1, c outside [0, n], or k outside [1, n].
    """
    if n < 1 or not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs n >= 1, 0 <= c <= n, 1 <= k <= n; got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))
