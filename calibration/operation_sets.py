"""Judge-vs-gold agreement on an ordered operation list (primary operation first).

Follows the conventions of :mod:`calibration.single_label` (plain JSON values, the
:data:`~calibration.single_label.INVALID` class, reasons for undefined metrics). Multi-label
F1 comes from ``sklearn.metrics.f1_score`` on the indicator matrices of
``sklearn.preprocessing.MultiLabelBinarizer``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import f1_score
from sklearn.preprocessing import MultiLabelBinarizer

from slicelab.calibration.single_label import EMPTY_SPLIT, INVALID, NONE_CLASS, check_labels, single_label_metrics

_SET_METRICS = ("mean_jaccard", "micro_f1", "macro_f1")


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
        * ``primary``: :func:`calibration.single_label.single_label_metrics` on
          the first element of each list, vocabulary ``labels + ["__none__"]``,
          where an empty list has primary ``"__none__"`` (documents may
          demonstrate no operation).
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
        :func:`calibration.single_label.single_label_metrics`), ``mean_jaccard``,
        ``micro_f1``, ``macro_f1`` (floats in [0, 1] or None) and ``undefined``
        ({metric name: reason} for each of the last three that is None).
        Empty input: ``n = 0`` and all metrics None, reason ``"empty split"``.

    Raises:
        ValueError: If lengths differ, a gold list holds an id not in
            ``labels`` (or is None), or ``labels`` is invalid.
    """
    labels = check_labels(labels)
    known = set(labels)
    true_sets, pred_sets = _checked_sets(true_sets, pred_sets, known)
    valid_pred = [s is not None and all(x in known for x in s) for s in pred_sets]
    primary = single_label_metrics(
        [s[0] if s else NONE_CLASS for s in true_sets],
        [(s[0] if s else NONE_CLASS) if ok else None for s, ok in zip(pred_sets, valid_pred)],
        labels + [NONE_CLASS],
        n_boot=n_boot,
        seed=seed,
        ci=0.95,
        reserved=frozenset({INVALID}),
    )
    n = len(true_sets)
    if n == 0:
        return {"n": 0, "n_invalid": 0, "primary": primary, **{m: None for m in _SET_METRICS},
                "undefined": {m: EMPTY_SPLIT for m in _SET_METRICS}}
    gold = [set(s) for s in true_sets]
    judged = [set(s) if ok else set() for s, ok in zip(pred_sets, valid_pred)]
    micro_f1, macro_f1, undefined = _set_f1(gold, judged, labels)
    return {
        "n": n,
        "n_invalid": sum(not v for v in valid_pred),
        "primary": primary,
        "mean_jaccard": _mean_jaccard(gold, judged, valid_pred),
        "micro_f1": micro_f1,
        "macro_f1": macro_f1,
        "undefined": undefined,
    }


def _checked_sets(true_sets: Sequence[Sequence[str]], pred_sets: Sequence[Sequence[str] | None],
                  known: set[str]) -> tuple[list[list[str]], list[list[str] | None]]:
    """Both sides as lists of lists, after the checks of :func:`operation_set_metrics` (see its Raises)."""
    true_lists = [None if s is None else list(s) for s in true_sets]
    pred_lists = [None if s is None else list(s) for s in pred_sets]
    if len(true_lists) != len(pred_lists):
        raise ValueError(f"true_sets has {len(true_lists)} items but pred_sets has {len(pred_lists)}")
    for i, s in enumerate(true_lists):
        if s is None:
            raise ValueError(f"gold operation list {i} is None")
        bad = [x for x in s if x not in known]
        if bad:
            raise ValueError(f"gold operation list {i} has ids not in labels: {bad!r}")
    return true_lists, pred_lists


def _mean_jaccard(gold: list[set[str]], judged: list[set[str]], valid: list[bool]) -> float:
    """Mean Jaccard index |A∩B| / |A∪B| (Jaccard 1901): 1.0 for two empty sets, 0.0 for an invalid prediction."""
    jaccards = []
    for a, b, ok in zip(gold, judged, valid):
        if not ok:
            jaccards.append(0.0)
        elif not a and not b:
            jaccards.append(1.0)
        else:
            jaccards.append(len(a & b) / len(a | b))
    return float(np.mean(jaccards))


def _set_f1(gold: list[set[str]], judged: list[set[str]],
            labels: list[str]) -> tuple[float | None, float | None, dict[str, str]]:
    """Multi-label micro and macro F1 over the ids present on either side.

    Returns:
        ``(micro_f1, macro_f1, undefined)``; both None (reason in ``undefined``) when no set holds an id.
    """
    mlb = MultiLabelBinarizer(classes=labels)
    mlb.fit([labels])
    y_true = mlb.transform(gold)
    y_pred = mlb.transform(judged)
    present = [i for i in range(len(labels)) if y_true[:, i].any() or y_pred[:, i].any()]
    if not present:
        reason = "no operation in any gold or predicted set (F1 is 0/0)"
        return None, None, {"micro_f1": reason, "macro_f1": reason}
    micro_f1 = float(f1_score(y_true, y_pred, average="micro", zero_division=0))
    macro_f1 = float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0))
    return micro_f1, macro_f1, {}
