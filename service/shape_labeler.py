"""Rule labelers that need no pool and no LLM, so they label a benchmark no gold item came from as they label the gold.

- ``shape``: ``task_type`` and ``output_constraint`` from the answer-shape rules
  (:mod:`service.answer_shape`);
- ``cues``: the operation axes (``solving_operations``, ``demonstrated_operations``)
  from operation cues and benchmark categories, and ``background_condition`` from
  background cues (:mod:`service.op_cues`).
"""

from __future__ import annotations

from typing import Any

from slicelab.service.answer_shape import answer_shape
from slicelab.service.labelers import Labeler
from slicelab.service.op_cues import category_of, cued_background, cued_operations, shows_work
from slicelab.service.samples import Document, EvalSample

#: The axes the shape labeler labels (evaluation items only).
SHAPE_AXES = ("task_type", "output_constraint")


class ShapeLabeler(Labeler):
    """Labels ``task_type`` and ``output_constraint`` of evaluation items by :func:`service.answer_shape.answer_shape`.

    It needs no gold pool, so it labels a benchmark no gold item came from exactly as it
    labels the gold sets. Other axes, documents and items with an empty reference get no
    label from it (calibration counts those as invalid; a per-axis selection never picks it
    there). Confidence is 1.0 for every label it gives.
    """

    backend = "shape"
    model = "answer-shape-rules"

    def predict(self, item: EvalSample | Document) -> tuple[dict[str, Any], dict[str, float]]:
        """``({task_type, output_constraint}, {axis: 1.0})``, or two empty dicts when the form says nothing."""
        if not isinstance(item, EvalSample):
            return {}, {}
        shape = answer_shape(item.question, item.reference_answer)
        if shape is None:
            return {}, {}
        labels = {"task_type": shape.task_type, "output_constraint": shape.output_constraint}
        return labels, {a: 1.0 for a in labels}

    def config(self) -> dict[str, Any]:
        """Backend name and taxonomy provenance (the rules are code: ``code_version`` tells them apart)."""
        return {"backend": self.backend, **self.taxonomy.provenance()}


class CueLabeler(Labeler):
    """Labels the operation axes by :func:`service.op_cues.cued_operations` (and background by cues).

    Evaluation items: ``solving_operations`` from the question's cues and the benchmark's
    category (MATH ``subject``); with no cue, ``arithmetic`` when the question holds a
    number; ``background_condition`` by :func:`service.op_cues.cued_background`.
    Documents: ``demonstrated_operations`` from the first 4,000 characters and a MATH subject
    in the document id (``arithmetic`` for a worked solution with numbers and no other cue), only
    when the document carries out a solution (:func:`service.op_cues.shows_work`), else an
    empty list (documents rarely demonstrate operations). Confidence: 1.0.
    """

    backend = "cues"
    model = "operation-cue-rules"

    def predict(self, item: EvalSample | Document) -> tuple[dict[str, Any], dict[str, float]]:
        """``({operation axis: [ids], background_condition (eval)}, {axis: 1.0})``."""
        if isinstance(item, EvalSample):
            ops = cued_operations(item.question, category_of(item.id, item.extra))
            labels = {"solving_operations": ops or ["arithmetic"],
                      "background_condition": cued_background(item.question)}
            return labels, {a: 1.0 for a in labels}
        text = item.text[:4000]
        ops = cued_operations(text, category_of(item.id, item.extra)) if shows_work(text) else []
        return {"demonstrated_operations": ops}, {"demonstrated_operations": 1.0}

    def config(self) -> dict[str, Any]:
        """Backend name and taxonomy provenance."""
        return {"backend": self.backend, **self.taxonomy.provenance()}
