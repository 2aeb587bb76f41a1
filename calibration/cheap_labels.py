"""Labels and per-axis confidence of the labelers without an LLM (k-NN, student, cues, shape) for review sets."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from slicelab.calibration.gold import GOLD, GoldSet
from slicelab.calibration.run import cheap_labelers
from slicelab.service.samples import Document, EvalSample
from slicelab.service.taxonomy import Taxonomy


#: Trained labelers kept in this process, newest last: cache key → labelers.
_TRAINED: OrderedDict[tuple, dict[str, Any]] = OrderedDict()
_TRAINED_MAX = 4
_LOCK = threading.Lock()


def train_cheap(gold: GoldSet, pool: list[str], taxonomy: Taxonomy) -> dict[str, Any]:
    """The labelers of :func:`calibration.run.cheap_labelers` for the gold set's kind, trained on ``pool``
    (item ids of ``gold``, their ``gold`` labels), by name.

    Training is deterministic and the student takes seconds, so the last few trained sets are
    kept in this process and reused for the same gold digest, pool and taxonomy.
    """
    key = (gold.kind, gold.sha256, tuple(sorted(pool)), taxonomy.content_hash)
    with _LOCK:
        if key not in _TRAINED:
            items = [gold.items[i] for i in pool]
            labels = {i: gold.labels[GOLD][i] for i in pool}
            _TRAINED[key] = {name: make(items, labels, taxonomy) for name, make in cheap_labelers(gold.kind).items()}
            while len(_TRAINED) > _TRAINED_MAX:
                _TRAINED.popitem(last=False)
        _TRAINED.move_to_end(key)
        return _TRAINED[key]


def cheap_predictions(labelers: dict[str, Any], item: EvalSample | Document, axes: list[str]
                      ) -> dict[str, dict[str, dict[str, Any]]]:
    """Every labeler's labels for one item, on every axis.

    Returns:
        ``{name: {"labels": {axis: label or None}, "confidence": {axis: float 0-1 or None}}}``:
        None where the labeler gives no label on the axis (e.g. the shape rules outside
        ``task_type`` / ``output_constraint``). Confidence is the labeler's own (k-NN: the vote
        share; student: the classifier's probability; rules: 1.0).
    """
    out = {}
    for name, labeler in labelers.items():
        labels, conf = labeler.predict(item)
        out[name] = {"labels": {a: labels.get(a) for a in axes},
                     "confidence": {a: (round(float(conf[a]), 4) if conf.get(a) is not None and a in labels else None)
                                    for a in axes}}
    return out
