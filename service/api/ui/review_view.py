"""What a review page shows of one item (per axis: the choices, the current decision, every labeler's
and annotator's labels) and the labels a submitted form holds."""

from __future__ import annotations

import re
from typing import Any

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException

from slicelab.calibration.review_store import axis_applies
from slicelab.service.taxonomy import Taxonomy

#: A whole number in a form or a page path: ASCII digits only, at most 9 of them.
DIGITS = re.compile(r"[0-9]{1,9}")
#: Characters of a refused value shown in the error.
MAX_SHOWN = 40

#: Suffix of the checkbox fields holding an operation axis's further operations (after the primary).
MORE = "__more"


def whole_number(value: str, field: str, low: int = 1, high: int = 100_000) -> int | None:
    """A form or path field holding an optional whole number in ``low..high`` (empty: None).

    Only ASCII digits count (not ``²`` or other Unicode digits, no sign), at most 9 of them.

    Raises:
        HTTPException: 422 naming ``field`` (and the value, cut to 40 characters) for anything else.
    """
    text = value.strip()
    if not text:
        return None
    if not DIGITS.fullmatch(text) or not low <= int(text) <= high:
        shown = text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN] + "…"
        raise HTTPException(422, f"{field}: expected a whole number from {low} to {high}, got {shown!r}")
    return int(text)


def label_text(value: Any) -> str:
    """A label value as text: operations joined by ``, `` (primary first), ``—`` for none."""
    if isinstance(value, list):
        return ", ".join(value) if value else "(none)"
    return "—" if value is None else str(value)


def columns(item: Any) -> list[dict[str, Any]]:
    """The label sources shown beside the decision: gold, each annotator, each labeler (with confidences)."""
    cols = [{"name": "gold", "labels": item.gold, "confidence": {}}] if item.gold is not None else []
    cols += [{"name": name, "labels": labels or {}, "confidence": {}}
             for name, labels in sorted(item.annotators.items())]
    cols += [{"name": name, "labels": lab.get("labels") or {}, "confidence": lab.get("confidence") or {}}
             for name, lab in item.labelers.items()]
    return cols


def axis_rows(taxonomy: Taxonomy, review: Any, item: Any, decided: dict[str, dict]) -> list[dict[str, Any]]:
    """One row per axis of the review: the decision form's state and each label source's cell.

    Args:
        taxonomy: the label vocabulary; review: the ReviewSet; item: one of its ReviewItems.
        decided: axis → the latest decision line of this item (from ``review_sets.decisions``).

    Returns:
        Per axis ``{"name", "kind", "description", "options" [(id, meaning)], "applicable",
        "value", "primary", "more", "allow_none", "max_items", "decided", "changed", "cells"}``;
        ``value`` is the decision where one was saved, else the prefill; each cell
        ``{"text", "confidence" (0-1 or None), "same" (equals value; both None on an axis that does not apply)}``.
    """
    rows = []
    cols = columns(item)
    for name in review.axes:
        axis = taxonomy.axis(review.kind, name)
        dec = decided.get(name)
        value = dec["label"] if dec else item.prefill.get(name)
        ops = axis.kind == "operations"
        values = list(value or []) if ops else []
        cells = []
        for col in cols:
            got = col["labels"].get(name)
            cells.append({"text": label_text(got), "confidence": col["confidence"].get(name),
                          "same": got == value})
        rows.append({"name": name, "kind": axis.kind, "description": axis.description,
                     "options": [(lab.id, lab.meaning) for lab in axis.labels],
                     "applicable": axis_applies(axis, item), "value": value,
                     "primary": values[0] if values else None, "more": values[1:],
                     "allow_none": ops and axis.min_items == 0, "max_items": axis.max_items,
                     "decided": dec is not None, "changed": dec is not None and dec["label"] != item.prefill.get(name),
                     "cells": cells})
    return rows


def form_labels(taxonomy: Taxonomy, review: Any, item: Any, form: FormData, only: str | None = None) -> dict[str, Any]:
    """The labels a review form holds: every applicable axis, or only axis ``only``.

    A single-label axis is the field ``<axis>``; an operation axis the primary ``<axis>``
    (empty: no operation, where the axis allows none) and the checked ``<axis>__more`` values.

    Raises:
        HTTPException: 422 naming the axis: no label chosen, too many operations, or ``only``
            not an applicable axis of the review.
    """
    out: dict[str, Any] = {}
    for name in review.axes:
        axis = taxonomy.axis(review.kind, name)
        if (only and name != only) or not axis_applies(axis, item):
            continue
        chosen = str(form.get(name) or "")
        if axis.kind == "single":
            if not chosen:
                raise HTTPException(422, f"{name}: choose a label")
            out[name] = chosen
            continue
        more = [str(v) for v in form.getlist(name + MORE) if v and v != chosen]
        ops = ([chosen] if chosen else []) + list(dict.fromkeys(more))
        if len(ops) < axis.min_items or (not chosen and more):
            raise HTTPException(422, f"{name}: choose the primary operation first")
        if len(ops) > axis.max_items:
            raise HTTPException(422, f"{name}: at most {axis.max_items} operations (got {len(ops)}: {', '.join(ops)})")
        out[name] = ops
    if only and only not in out:
        if only in review.axes:
            raise HTTPException(422, f"axis {only!r} does not apply to this item (only to an answer scored wrong "
                                     "with a model output)")
        raise HTTPException(422, f"axis {only!r} is not an axis of this review; its axes: {', '.join(review.axes)}")
    return out
