"""Agreement metrics between an LLM judge and gold labels, one label axis at a time: one import for callers.

- single-label axes, the shared conventions (:data:`INVALID`, :data:`NONE_CLASS`,
  :data:`EMPTY_SPLIT`) and the coverage curve: :mod:`calibration.single_label`;
- ordered operation lists: :mod:`calibration.operation_sets`;
- several raters (Krippendorff's alpha): :mod:`calibration.reliability`.

Intervals (Wilson, percentile bootstrap) are general statistics: :mod:`service.stats`.
"""

from __future__ import annotations

from slicelab.calibration.operation_sets import operation_set_metrics
from slicelab.calibration.reliability import krippendorff_alpha
from slicelab.calibration.single_label import EMPTY_SPLIT, INVALID, NONE_CLASS, coverage_curve, single_label_metrics

__all__ = [
    "INVALID",
    "NONE_CLASS",
    "EMPTY_SPLIT",
    "single_label_metrics",
    "operation_set_metrics",
    "krippendorff_alpha",
    "coverage_curve",
]
