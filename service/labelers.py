"""Labelers without an LLM, and labelers that combine others — all behind ``label(item) -> JudgeResult``.

- :class:`KNNLabeler` — nearest-exemplar vote over a gold-labeled pool (TF-IDF
  cosine); per axis, ``k`` and the weighting (uniform or by similarity) are
  chosen by leave-one-out accuracy on the pool.
- :class:`StudentLabeler` — a classifier per axis trained on the pool
  (TF-IDF word 1-2-grams + character 2-5-grams + operation-cue scores, logistic
  regression; one-vs-rest for the non-primary operations).
- :class:`CascadeLabeler` — per axis, a cheap labeler's answer when its
  confidence clears a threshold, the LLM judge's otherwise (one judge call per
  item at most).
- :class:`PerAxisLabeler` — per axis, the labeler calibration selected.
- :class:`SelfConsistentJudge` — an LLM judge sampled ``k`` times at a temperature
  above zero; per axis the majority label, with its vote share as confidence.

Every result records, per axis, which labeler produced the label and its
confidence (``extra["labeler_by_axis"]``, ``extra["confidence_by_axis"]``).

The classes live in :mod:`service.labeler_base` (the :class:`Labeler` interface and per-axis
helpers), :mod:`service.pool_classifiers` (k-NN, student), :mod:`service.combined_labelers`
(per axis, cascade) and :mod:`service.self_consistency`; this module gathers them.
"""

from __future__ import annotations

from slicelab.service.combined_labelers import CascadeLabeler, CombinedLabeler, PerAxisLabeler
from slicelab.service.labeler_base import NONE_OP, Labeler, modal
from slicelab.service.pool_classifiers import KNN_KS, KNN_WEIGHTS, KNNLabeler, StudentLabeler, cue_features
from slicelab.service.self_consistency import SELF_CONSISTENT, SelfConsistentJudge

__all__ = [
    "KNN_KS", "KNN_WEIGHTS", "NONE_OP", "SELF_CONSISTENT", "CascadeLabeler", "CombinedLabeler", "KNNLabeler",
    "Labeler", "PerAxisLabeler", "SelfConsistentJudge", "StudentLabeler", "cue_features", "modal",
]
