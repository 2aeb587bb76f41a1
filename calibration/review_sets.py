"""Review sets: reviewers correct or seed gold labels item by item, then export a new gold version.

Two sources:

- :func:`create_calibration_review`: the held-out items of a calibration record, most
  disagreement between a labeler (the judge by default) and gold first; the form starts
  from the gold labels.
- :func:`create_seed_review`: ``n`` items of a new benchmark's file, picked for coverage of
  the predicted labels, then labeler disagreement; the form starts from the cheap labels.

Decisions are appended to ``decisions.jsonl`` (fsync'd; the latest per item and axis wins)
and :func:`export_gold` writes a new gold file that ``slicelab calibrate --gold`` takes.
Storage, id rules and errors: :mod:`calibration.review_store`.
"""

from __future__ import annotations

from slicelab.calibration.review_calibration import create_calibration_review
from slicelab.calibration.review_export import export_gold
from slicelab.calibration.review_store import (ReviewItem, ReviewSet, decisions, list_reviews, load_review, progress,
                                               reviews_dir, save_decision)
from slicelab.calibration.seed import create_seed_review

__all__ = ["ReviewItem", "ReviewSet", "create_calibration_review", "create_seed_review", "decisions", "export_gold",
           "list_reviews", "load_review", "progress", "reviews_dir", "save_decision"]
