"""Agreement metrics between an LLM judge and gold labels, one label axis at a time.

All functions are pure. Every value they return is a plain Python ``int``,
``float``, ``str``, ``bool``, ``None``, ``list`` or ``dict`` (no numpy types),
and never NaN or infinity, so ``json.dumps(result, allow_nan=False)`` succeeds.
A metric that is undefined for the data at hand is ``None`` and the reason is
given next to it (the ``undefined`` dict, or a ``reason`` key).

Judge failures are never dropped: a prediction of ``None``, or a value outside
the axis vocabulary, becomes the explicit class :data:`INVALID` and counts as a
disagreement with the gold label.

The computations themselves come from well-kept libraries:
``sklearn.metrics`` (Cohen's kappa, precision/recall/F1, confusion matrices),
``sklearn.preprocessing.MultiLabelBinarizer`` (operation sets), the
``krippendorff`` package (alpha) and ``scipy.stats.binomtest`` (Wilson
intervals). This module adds input validation, the invalid-class convention,
the percentile bootstrap and the undefined-value bookkeeping.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import krippendorff
import numpy as np
from scipy.stats import binomtest
from sklearn.metrics import (
    accuracy_score,
    cohen_kappa_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)
from sklearn.preprocessing import MultiLabelBinarizer

__all__ = [
    "INVALID",
    "NONE_CLASS",
    "EMPTY_SPLIT",
    "single_label_metrics",
    "operation_set_metrics",
    "krippendorff_alpha",
    "wilson_interval",
    "coverage_curve",
    "bootstrap_ci",
]

#: Class that replaces a judge prediction of ``None`` or a value outside ``labels``.
INVALID = "__invalid__"
#: Primary-operation class of an empty operation list (documents may demonstrate none).
NONE_CLASS = "__none__"
#: Reason given for every metric of a split with no items.
EMPTY_SPLIT = "empty split"

_RESERVED = frozenset({INVALID, NONE_CLASS})


# --------------------------------------------------------------------------- helpers


def _finite_or_none(value: Any) -> float | None:
    """Return ``value`` as a Python float, or ``None`` if it is None/NaN/inf."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _check_labels(labels: Sequence[str], reserved: frozenset[str] = _RESERVED) -> list[str]:
    labels = list(labels)
    if not labels:
        raise ValueError("labels must not be empty")
    if len(set(labels)) != len(labels):
        raise ValueError(f"labels contain duplicates: {labels!r}")
    clash = sorted(set(labels) & reserved)
    if clash:
        raise ValueError(f"labels must not contain the reserved class(es) {clash!r}")
    return labels


def _check_ci(ci: float) -> None:
    if not (0.0 < float(ci) < 1.0):
        raise ValueError(f"confidence level must be in (0, 1), got {ci!r}")


def _kappa(y1: np.ndarray, y2: np.ndarray, codes: list[int]) -> float | None:
    """Cohen's kappa via sklearn; ``None`` where sklearn yields NaN (p_e == 1)."""
    if len(y1) == 0:
        return None
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore")
        value = cohen_kappa_score(y1, y2, labels=codes)
    return _finite_or_none(value)


def _kappa_fast(y1: np.ndarray, y2: np.ndarray, n_codes: int) -> float | None:
    """Cohen's kappa of integer codes in ``[0, n_codes)`` from their confusion matrix (for bootstrap resamples).

    Cohen 1960, "A coefficient of agreement for nominal scales": ``(p_o - p_e) / (1 - p_e)``,
    ``p_o`` the observed agreement, ``p_e`` the agreement expected from the two marginals; the
    same value as :func:`sklearn.metrics.cohen_kappa_score` (unweighted), without its input
    validation (about 100 times faster on a few hundred items). ``None`` when ``p_e == 1``.
    """
    n = len(y1)
    if n == 0:
        return None
    confusion = np.bincount(y1 * n_codes + y2, minlength=n_codes * n_codes).reshape(n_codes, n_codes) / n
    p_o = float(np.trace(confusion))
    p_e = float(confusion.sum(axis=1) @ confusion.sum(axis=0))
    if p_e >= 1.0 - 1e-12:
        return None
    return (p_o - p_e) / (1.0 - p_e)


# --------------------------------------------------------------------------- intervals


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
    _check_ci(confidence)
    if n == 0:
        return None
    interval = binomtest(int(k), int(n)).proportion_ci(
        confidence_level=float(confidence), method="wilson"
    )
    return float(interval.low), float(interval.high)


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
    _check_ci(ci)
    if n < 2:
        return None
    rng = np.random.default_rng(seed)
    values: list[float] = []
    for _ in range(int(n_boot)):
        value = _finite_or_none(stat(rng.integers(0, n, size=n)))
        if value is not None:
            values.append(value)
    if len(values) < 2:
        return None
    alpha = (1.0 - float(ci)) / 2.0
    lo, hi = np.percentile(np.asarray(values), [100.0 * alpha, 100.0 * (1.0 - alpha)])
    return float(lo), float(hi)


# --------------------------------------------------------------------------- single label


def single_label_metrics(
    y_true: Sequence[str],
    y_pred: Sequence[str | None],
    labels: Sequence[str],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> dict:
    """Judge-vs-gold agreement on a single-label (nominal) axis.

    Judge failures: a prediction that is ``None`` or not in ``labels`` is
    mapped to :data:`INVALID` (``"__invalid__"``), counted in ``n_invalid``,
    and kept: it is a miss for accuracy, a row-class/column-``__invalid__``
    cell of the confusion matrix, and a category of its own for kappa.

    Metrics:
        * ``accuracy``: share of items with prediction == gold (sklearn
          ``accuracy_score``); ``accuracy_ci``: Wilson score interval
          (Wilson 1927), see :func:`wilson_interval`.
        * ``cohen_kappa``: κ = (p_o - p_e) / (1 - p_e) (Cohen 1960, "A
          coefficient of agreement for nominal scales"), by sklearn
          ``cohen_kappa_score`` with ``labels`` = the full label list plus
          ``__invalid__``. Undefined (``None``) when p_e = 1, i.e. both sides
          use one and the same class. ``cohen_kappa_ci``: percentile
          bootstrap over items (Efron & Tibshirani 1993), resamples with
          undefined kappa skipped; ``None`` when fewer than 2 items.
        * ``macro_f1``: unweighted mean of per-class F1 over the classes that
          occur in ``y_true`` ∪ ``y_pred`` *after* mapping, so ``__invalid__``
          is one of the averaged classes (F1 0) whenever a prediction is
          invalid; labels that occur on neither side are left out. sklearn
          ``f1_score(average="macro", zero_division=0)``. It equals the mean
          of the ``f1`` values in ``per_class``.

    Args:
        y_true: Gold labels, shape ``(n,)``; each must be in ``labels``.
        y_pred: Judge labels, shape ``(n,)``; ``None`` or unknown values are
            invalid.
        labels: The axis vocabulary, in display order; no duplicates, and
            not containing ``"__invalid__"`` or ``"__none__"``.
        n_boot: Bootstrap resamples for ``cohen_kappa_ci``.
        seed: Bootstrap seed.
        ci: Confidence level of both intervals, in (0, 1).

    Returns:
        A dict with keys:
            ``n`` (int), ``n_invalid`` (int), ``accuracy`` (float in [0, 1]
            or None), ``accuracy_ci`` ([lo, hi] or None), ``cohen_kappa``
            (float in [-1, 1] or None), ``cohen_kappa_ci`` ([lo, hi] or None),
            ``macro_f1`` (float in [0, 1] or None), ``per_class``
            ({label: {"precision", "recall", "f1": float, "support": int}}
            over the labels that occur plus ``__invalid__`` when present;
            support = gold count), ``confusion`` ({"labels": [...],
            "matrix": [[int]]}, rows = gold, columns = prediction, same label
            set and order as ``per_class``: vocabulary order, ``__invalid__``
            last), and ``undefined`` ({metric name: reason} for every metric
            that is None). An empty split gives ``n = 0``, every metric None
            with reason ``"empty split"``, empty ``per_class`` and confusion.

    Raises:
        ValueError: If lengths differ, a gold label is not in ``labels``,
            ``labels`` is empty, has duplicates or a reserved class, or
            ``n_boot``/``ci`` are out of range.
    """
    return _single_label_metrics(
        y_true, y_pred, labels, n_boot=n_boot, seed=seed, ci=ci, reserved=_RESERVED
    )


def _single_label_metrics(
    y_true: Sequence[str],
    y_pred: Sequence[str | None],
    labels: Sequence[str],
    *,
    n_boot: int,
    seed: int,
    ci: float,
    reserved: frozenset[str],
) -> dict:
    labels = _check_labels(labels, reserved)
    if int(n_boot) < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot!r}")
    _check_ci(ci)
    y_true = list(y_true)
    y_pred = list(y_pred)
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} items but y_pred has {len(y_pred)}")
    known = set(labels)
    bad_gold = sorted({repr(t) for t in y_true if t not in known})
    if bad_gold:
        raise ValueError(f"gold labels not in labels: {', '.join(bad_gold)}")

    n = len(y_true)
    if n == 0:
        metrics = ["accuracy", "accuracy_ci", "cohen_kappa", "cohen_kappa_ci", "macro_f1"]
        return {
            "n": 0,
            "n_invalid": 0,
            **{m: None for m in metrics},
            "per_class": {},
            "confusion": {"labels": [], "matrix": []},
            "undefined": {m: EMPTY_SPLIT for m in metrics},
        }

    pred = [p if (p is not None and p in known) else INVALID for p in y_pred]
    n_invalid = sum(p == INVALID for p in pred)
    all_labels = labels + [INVALID]
    code = {label: i for i, label in enumerate(all_labels)}
    t_codes = np.array([code[t] for t in y_true], dtype=np.int64)
    p_codes = np.array([code[p] for p in pred], dtype=np.int64)
    all_codes = list(range(len(all_labels)))

    undefined: dict[str, str] = {}

    # accuracy + Wilson interval
    n_correct = int(np.sum(t_codes == p_codes))
    accuracy = float(accuracy_score(t_codes, p_codes))
    accuracy_ci = list(wilson_interval(n_correct, n, confidence=ci))

    # Cohen's kappa + percentile bootstrap
    kappa = _kappa(t_codes, p_codes, all_codes)
    kappa_ci = None
    if kappa is None:
        undefined["cohen_kappa"] = (
            "expected agreement p_e = 1: gold and judge both use the single class "
            f"{all_labels[int(t_codes[0])]!r}"
        )
        undefined["cohen_kappa_ci"] = "cohen_kappa undefined"
    elif n < 2:
        undefined["cohen_kappa_ci"] = "fewer than 2 items"
    else:
        interval = bootstrap_ci(
            lambda idx: _kappa_fast(t_codes[idx], p_codes[idx], len(all_codes)),
            n,
            n_boot=n_boot,
            seed=seed,
            ci=ci,
        )
        if interval is None:
            undefined["cohen_kappa_ci"] = "fewer than 2 bootstrap resamples with defined kappa"
        else:
            kappa_ci = list(interval)

    # per-class precision/recall/F1, macro-F1 and confusion over present classes
    present_set = set(t_codes.tolist()) | set(p_codes.tolist())
    present = [c for c in all_codes if c in present_set]
    present_names = [all_labels[c] for c in present]
    precision, recall, f1, support = precision_recall_fscore_support(
        t_codes, p_codes, labels=present, zero_division=0
    )
    per_class = {
        name: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(present_names)
    }
    macro_f1 = float(
        f1_score(t_codes, p_codes, labels=present, average="macro", zero_division=0)
    )
    with warnings.catch_warnings():
        # A 1x1 matrix is intended here (only one class occurs); sklearn warns about it.
        warnings.filterwarnings("ignore", message="A single label was found", category=UserWarning)
        matrix = confusion_matrix(t_codes, p_codes, labels=present)

    return {
        "n": n,
        "n_invalid": int(n_invalid),
        "accuracy": accuracy,
        "accuracy_ci": accuracy_ci,
        "cohen_kappa": kappa,
        "cohen_kappa_ci": kappa_ci,
        "macro_f1": macro_f1,
        "per_class": per_class,
        "confusion": {"labels": present_names, "matrix": matrix.astype(int).tolist()},
        "undefined": undefined,
    }


# --------------------------------------------------------------------------- operation sets


def operation_set_metrics(
    true_sets: Sequence[Sequence[str]],
    pred_sets: Sequence[Sequence[str] | None],
    labels: Sequence[str],
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict:
    """Judge-vs-gold agreement on an ordered operation list (primary first).

    A prediction is invalid (counted in ``n_invalid``) when it is ``None`` or
    contains an operation id not in ``labels``. An invalid prediction counts
    as the empty set for F1, as Jaccard 0.0, and as ``__invalid__`` for the
    primary operation. Duplicate ids within a list are counted once.

    Metrics:
        * ``primary``: :func:`single_label_metrics` on the first element of
          each list, vocabulary ``labels + ["__none__"]``, where an empty
          list has primary ``"__none__"`` (documents may demonstrate no
          operation).
        * ``mean_jaccard``: mean over items of |A∩B| / |A∪B| (Jaccard 1901),
          1.0 when both sets are empty, 0.0 for an invalid prediction.
        * ``micro_f1`` / ``macro_f1``: multi-label F1 over operation ids, on
          the indicator matrices of ``MultiLabelBinarizer(classes=labels)``
          (sklearn ``f1_score``, ``zero_division=0``). Macro averages over the
          ids present in the gold or predicted sets. Both are None when no
          set on either side holds any operation (F1 is 0/0 there).

    Args:
        true_sets: Gold operation lists, shape ``(n,)``; ids must be in
            ``labels``; may be empty.
        pred_sets: Judge operation lists, shape ``(n,)``; ``None`` = invalid.
        labels: Operation vocabulary; no duplicates, no reserved class.
        n_boot: Bootstrap resamples for the primary-operation kappa interval.
        seed: Bootstrap seed.

    Returns:
        A dict with ``n`` (int), ``n_invalid`` (int), ``primary`` (dict, see
        :func:`single_label_metrics`), ``mean_jaccard``, ``micro_f1``,
        ``macro_f1`` (floats in [0, 1] or None) and ``undefined``
        ({metric name: reason} for each of the last three that is None).
        Empty input: ``n = 0`` and all metrics None, reason ``"empty split"``.

    Raises:
        ValueError: If lengths differ, a gold list holds an id not in
            ``labels`` (or is None), or ``labels`` is invalid.
    """
    labels = _check_labels(labels)
    true_sets = [None if s is None else list(s) for s in true_sets]
    pred_sets = [None if s is None else list(s) for s in pred_sets]
    if len(true_sets) != len(pred_sets):
        raise ValueError(f"true_sets has {len(true_sets)} items but pred_sets has {len(pred_sets)}")
    known = set(labels)
    for i, s in enumerate(true_sets):
        if s is None:
            raise ValueError(f"gold operation list {i} is None")
        bad = [x for x in s if x not in known]
        if bad:
            raise ValueError(f"gold operation list {i} has ids not in labels: {bad!r}")

    valid_pred = [s is not None and all(x in known for x in s) for s in pred_sets]
    n = len(true_sets)
    n_invalid = sum(not v for v in valid_pred)

    primary = _single_label_metrics(
        [s[0] if s else NONE_CLASS for s in true_sets],
        [(s[0] if s else NONE_CLASS) if ok else None for s, ok in zip(pred_sets, valid_pred)],
        labels + [NONE_CLASS],
        n_boot=n_boot,
        seed=seed,
        ci=0.95,
        reserved=frozenset({INVALID}),
    )

    if n == 0:
        return {
            "n": 0,
            "n_invalid": 0,
            "primary": primary,
            "mean_jaccard": None,
            "micro_f1": None,
            "macro_f1": None,
            "undefined": {m: EMPTY_SPLIT for m in ("mean_jaccard", "micro_f1", "macro_f1")},
        }

    gold = [set(s) for s in true_sets]
    judged = [set(s) if ok else set() for s, ok in zip(pred_sets, valid_pred)]

    jaccards = []
    for a, b, ok in zip(gold, judged, valid_pred):
        if not ok:
            jaccards.append(0.0)
        elif not a and not b:
            jaccards.append(1.0)
        else:
            jaccards.append(len(a & b) / len(a | b))
    mean_jaccard = float(np.mean(jaccards))

    mlb = MultiLabelBinarizer(classes=labels)
    mlb.fit([labels])
    y_true = mlb.transform(gold)
    y_pred = mlb.transform(judged)
    present = [i for i in range(len(labels)) if y_true[:, i].any() or y_pred[:, i].any()]

    undefined: dict[str, str] = {}
    if present:
        micro_f1 = float(f1_score(y_true, y_pred, average="micro", zero_division=0))
        macro_f1 = float(
            f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)
        )
    else:
        micro_f1 = macro_f1 = None
        reason = "no operation in any gold or predicted set (F1 is 0/0)"
        undefined["micro_f1"] = undefined["macro_f1"] = reason

    return {
        "n": n,
        "n_invalid": int(n_invalid),
        "primary": primary,
        "mean_jaccard": mean_jaccard,
        "micro_f1": micro_f1,
        "macro_f1": macro_f1,
        "undefined": undefined,
    }


# --------------------------------------------------------------------------- Krippendorff


def krippendorff_alpha(
    ratings: Mapping[str, Mapping[str, str | None]],
    *,
    level: str = "nominal",
    value_order: Sequence[str] | None = None,
) -> dict:
    """Krippendorff's alpha over any number of raters, with missing ratings.

    α = 1 - D_o / D_e, observed over expected disagreement computed from the
    coincidence matrix of pairable values (Krippendorff 2011, "Computing
    Krippendorff's Alpha-Reliability", Annenberg School for Communication,
    University of Pennsylvania). Computed by ``krippendorff.alpha`` on a
    reliability matrix of shape ``(n_raters, n_items)`` whose cells are
    integer category codes, with ``np.nan`` (the package's missing marker)
    where a rater did not rate an item. Items with fewer than two ratings are
    not pairable and do not contribute.

    Args:
        ratings: rater id → {item id → label, or None for "not rated"}. An
            item absent from a rater's mapping is also missing.
        level: ``"nominal"`` or ``"ordinal"``.
        value_order: The categories in ascending order; required for
            ``"ordinal"`` (codes are positions in this list). For
            ``"nominal"`` it is optional and only restricts the allowed
            values; otherwise codes follow the sorted distinct labels.

    Returns:
        ``{"alpha": float | None, "n_items": int, "n_raters": int,
        "n_pairable_items": int, "reason": str | None}``: ``n_items`` counts
        items with at least one rating, ``n_pairable_items`` those with at
        least two; ``alpha`` is None (with ``reason``) when fewer than two
        raters, no pairable item, or only one distinct value among pairable
        ratings (D_e = 0).

    Raises:
        ValueError: If ``level`` is unknown, ``value_order`` is missing for
            ordinal data or has duplicates, or a label is not in
            ``value_order``.
    """
    if level not in ("nominal", "ordinal"):
        raise ValueError(f"level must be 'nominal' or 'ordinal', got {level!r}")
    if level == "ordinal" and value_order is None:
        raise ValueError("level='ordinal' needs value_order (categories in ascending order)")

    raters = list(ratings)
    items = sorted({item for r in raters for item, v in ratings[r].items() if v is not None})
    values = {v for r in raters for v in ratings[r].values() if v is not None}

    if value_order is not None:
        order = list(value_order)
        if len(set(order)) != len(order):
            raise ValueError(f"value_order has duplicates: {order!r}")
        unknown = sorted(repr(v) for v in values - set(order))
        if unknown:
            raise ValueError(f"labels not in value_order: {', '.join(unknown)}")
    else:
        order = sorted(values)
    code = {v: i for i, v in enumerate(order)}

    result: dict[str, Any] = {
        "alpha": None,
        "n_items": len(items),
        "n_raters": len(raters),
        "n_pairable_items": 0,
        "reason": None,
    }
    if len(raters) < 2:
        result["reason"] = "fewer than 2 raters"
        return result

    matrix = np.full((len(raters), len(items)), np.nan)
    column = {item: j for j, item in enumerate(items)}
    for i, r in enumerate(raters):
        for item, v in ratings[r].items():
            if v is not None:
                matrix[i, column[item]] = code[v]

    pairable = np.sum(~np.isnan(matrix), axis=0) >= 2
    result["n_pairable_items"] = int(np.sum(pairable))
    if not pairable.any():
        result["reason"] = "no item rated by at least 2 raters"
        return result
    pairable_values = np.unique(matrix[:, pairable][~np.isnan(matrix[:, pairable])])
    if len(pairable_values) < 2:
        result["reason"] = (
            "only one value among pairable ratings: expected disagreement D_e = 0"
        )
        return result

    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore")
        alpha = krippendorff.alpha(
            reliability_data=matrix,
            level_of_measurement=level,
            value_domain=list(range(len(order))),
        )
    result["alpha"] = _finite_or_none(alpha)
    if result["alpha"] is None:
        result["reason"] = "krippendorff.alpha returned a non-finite value"
    return result


# --------------------------------------------------------------------------- coverage


def coverage_curve(
    correct: Sequence[bool],
    confidence: Sequence[float],
    thresholds: Sequence[float],
) -> list[dict]:
    """Accuracy of the judge among items whose confidence clears a threshold.

    Args:
        correct: Whether the judge label matched gold, shape ``(n,)``.
        confidence: Judge confidence per item, shape ``(n,)``, finite floats
            (any scale; usually [0, 1]).
        thresholds: Thresholds ``t``, in the order the curve is wanted.

    Returns:
        One dict per threshold, in input order: ``threshold`` (float),
        ``coverage`` (share of items with ``confidence >= t``; None when
        ``n == 0``), ``n`` (number of those items) and ``accuracy`` (share
        correct among them; None when no item is covered).

    Raises:
        ValueError: If ``correct`` and ``confidence`` differ in length, or a
            confidence or threshold is not finite.
    """
    correct_arr = np.asarray([bool(c) for c in correct], dtype=bool)
    conf = np.asarray(list(confidence), dtype=float)
    if len(correct_arr) != len(conf):
        raise ValueError(f"correct has {len(correct_arr)} items but confidence has {len(conf)}")
    if not np.all(np.isfinite(conf)):
        raise ValueError("confidence values must be finite")
    total = len(conf)
    curve = []
    for t in thresholds:
        t = float(t)
        if not math.isfinite(t):
            raise ValueError(f"threshold must be finite, got {t!r}")
        covered = conf >= t
        k = int(np.sum(covered))
        curve.append(
            {
                "threshold": t,
                "coverage": (k / total) if total else None,
                "n": k,
                "accuracy": float(np.mean(correct_arr[covered])) if k else None,
            }
        )
    return curve
