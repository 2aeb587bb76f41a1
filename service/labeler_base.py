"""What every labeler shares: ``label(item) -> JudgeResult`` and the per-axis helpers.

:class:`Labeler` turns a subclass's ``predict(item) -> (labels, confidence)`` into a
:class:`~service.judge.base.JudgeResult` (failure rules applied), recording per axis which
labeler produced the label and its confidence (``extra["labeler_by_axis"]``,
``extra["confidence_by_axis"]``). Operation axes hold an ordered list (primary first); inside
classifiers an empty list is the class :data:`NONE_OP`.
"""

from __future__ import annotations

import hashlib
import json
import time
from abc import ABC, abstractmethod
from collections import Counter
from typing import Any

from slicelab.service.judge.base import JudgeResult, apply_failure_rules
from slicelab.service.samples import Document, EvalSample, Status
from slicelab.service.taxonomy import AxisDef, Kind, Taxonomy, load_taxonomy

#: Class standing for "no operation" (an empty operation list) inside classifiers.
NONE_OP = "__none__"


def modal(values: list[Any]) -> tuple[Any, float]:
    """The most common non-None value and its share of all values (ties: first seen).

    Lists are compared as tuples. Returns ``(None, 0.0)`` when every value is None.
    """
    keyed = [tuple(v) if isinstance(v, list) else v for v in values]
    counts = Counter(k for k in keyed if k is not None)
    if not counts:
        return None, 0.0
    best = max(counts, key=lambda k: (counts[k], -keyed.index(k)))
    value = list(best) if isinstance(best, tuple) else best
    return value, counts[best] / len(values)


def item_kind(item: EvalSample | Document) -> Kind:
    """``"eval"`` for an evaluation sample, ``"document"`` for a document."""
    return "eval" if isinstance(item, EvalSample) else "document"


def axes_for(taxonomy: Taxonomy, item: EvalSample | Document) -> list[AxisDef]:
    """The axes an item is labeled on: its kind's axes, ``only_when`` axes only for a sample scored wrong."""
    wrong = isinstance(item, EvalSample) and item.scored_wrong
    return [a for a in taxonomy.axes(item_kind(item)) if wrong or not a.only_when]


def target_class(axis: AxisDef, labels: dict[str, Any]) -> str | None:
    """The class a pool item has on an axis (operations: the primary, or NONE_OP)."""
    v = labels.get(axis.name)
    if axis.kind == "operations":
        return None if v is None else (v[0] if v else NONE_OP)
    return v


class Labeler(ABC):
    """A labeler: ``label(item) -> JudgeResult`` with per-axis labeler names and confidences."""

    backend: str = "abstract"
    model: str = ""

    def __init__(self, taxonomy: Taxonomy | None = None):
        self.taxonomy = taxonomy or load_taxonomy()

    @abstractmethod
    def predict(self, item: EvalSample | Document) -> tuple[dict[str, Any], dict[str, float]]:
        """Labels and per-axis confidence (0-1) for one item."""

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """What identifies this labeler's output."""

    def config_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.config(), sort_keys=True).encode()).hexdigest()[:16]

    def label(self, item: EvalSample | Document) -> JudgeResult:
        t0 = time.perf_counter()
        labels, conf = self.predict(item)
        labels, fm_source = apply_failure_rules(item, labels, self.backend)
        return JudgeResult(
            status=Status.labeled, labels=labels, raw_texts=[json.dumps(labels)], finish_reason=None,
            prompt_tokens=0, completion_tokens=0, attempts=1, model=self.model, backend=self.backend,
            error=None, latency_s=time.perf_counter() - t0, request_hash="", prompt_ref="",
            failure_mode_source=fm_source,
            extra={"labeler_by_axis": {a: self.backend for a in labels},
                   "confidence_by_axis": {a: round(c, 4) for a, c in conf.items()}},
        )


def operations_label(axis: AxisDef, best: str | None, extra: list[str]) -> Any:
    """An axis value from a predicted class: ``best`` itself on a single-label axis; on an operation
    axis the list ``[best, *extra]`` cut to ``max_items``, and for :data:`NONE_OP` (or no class) ``[]``,
    or the axis's first id where the axis needs at least one."""
    if axis.kind != "operations":
        return best
    if best is None or best == NONE_OP:
        return [] if axis.min_items == 0 else [axis.ids[0]]
    return [best, *extra][: axis.max_items]
