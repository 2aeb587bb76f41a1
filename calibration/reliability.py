"""Agreement among any number of raters: Krippendorff's alpha, with missing ratings.

Follows the conventions of :mod:`calibration.single_label`: plain JSON values, never NaN,
``None`` with a ``reason`` where alpha is undefined. Alpha itself comes from the
``krippendorff`` package.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import krippendorff
import numpy as np

from slicelab.service.stats import finite_or_none


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
    order = _categories(ratings, value_order)
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

    matrix = _reliability_matrix(ratings, items, {v: i for i, v in enumerate(order)})
    pairable = np.sum(~np.isnan(matrix), axis=0) >= 2
    result["n_pairable_items"] = int(np.sum(pairable))
    result["reason"] = _undefined_reason(matrix[:, pairable])
    if result["reason"]:
        return result
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore")
        alpha = krippendorff.alpha(
            reliability_data=matrix,
            level_of_measurement=level,
            value_domain=list(range(len(order))),
        )
    result["alpha"] = finite_or_none(alpha)
    if result["alpha"] is None:
        result["reason"] = "krippendorff.alpha returned a non-finite value"
    return result


def _categories(ratings: Mapping[str, Mapping[str, str | None]], value_order: Sequence[str] | None) -> list[str]:
    """The categories in code order: ``value_order`` (checked), else the sorted distinct labels.

    Raises:
        ValueError: ``value_order`` has duplicates or lacks a label that occurs.
    """
    values = {v for r in ratings for v in ratings[r].values() if v is not None}
    if value_order is None:
        return sorted(values)
    order = list(value_order)
    if len(set(order)) != len(order):
        raise ValueError(f"value_order has duplicates: {order!r}")
    unknown = sorted(repr(v) for v in values - set(order))
    if unknown:
        raise ValueError(f"labels not in value_order: {', '.join(unknown)}")
    return order


def _reliability_matrix(ratings: Mapping[str, Mapping[str, str | None]], items: list[str],
                        code: dict[str, int]) -> np.ndarray:
    """Shape ``(n_raters, n_items)``: the category code of each rating, ``np.nan`` where there is none."""
    matrix = np.full((len(ratings), len(items)), np.nan)
    column = {item: j for j, item in enumerate(items)}
    for i, r in enumerate(ratings):
        for item, v in ratings[r].items():
            if v is not None:
                matrix[i, column[item]] = code[v]
    return matrix


def _undefined_reason(pairable: np.ndarray) -> str | None:
    """Why alpha is undefined on the pairable columns (items) of a reliability matrix; None when it is defined."""
    if pairable.shape[1] == 0:
        return "no item rated by at least 2 raters"
    if len(np.unique(pairable[~np.isnan(pairable)])) < 2:
        return "only one value among pairable ratings: expected disagreement D_e = 0"
    return None
