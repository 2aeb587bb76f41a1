"""A review set from a calibration record: its held-out items, labeler-vs-gold disagreements first."""

from __future__ import annotations

from itertools import combinations
from typing import Any

from slicelab.calibration.cheap_labels import cheap_predictions, train_cheap
from slicelab.calibration.gold import GOLD, GoldSet, load_gold
from slicelab.calibration.review_rows import gold_rows, record_gold, review_item
from slicelab.calibration.review_store import ReviewSet, new_review_id, now, same_label, save_review
from slicelab.calibration.run import cheap_labelers
from slicelab.service.errors import ConfigError
from slicelab.service.taxonomy import load_taxonomy

RULE = ("held-out items of the record, ordered by the number of axes where {labeler} differs from gold "
        "(single-label axes where gold has a label; operation lists compared in order), then by the number of "
        "axes where the annotators differ, then by {labeler}'s highest confidence on a differing axis, then id")


def create_calibration_review(record: dict[str, Any], *, labeler: str | None = None) -> ReviewSet:
    """A review set of a calibration record's held-out items, saved under ``$SLICELAB_HOME/reviews/``.

    Labelers shown per item: the judge (the record's modal labels and their vote share, when the
    record ran one) and the labelers without an LLM (k-NN, student, cues, shape), re-trained on
    the record's exemplar pool (its seeded split of the gold set, or its ``--exemplars`` file).
    Items are ordered most disagreement first: ``disagreement`` = axes where ``labeler`` differs
    from gold + (axes where annotators differ) / (number of axes + 1), so annotator
    disagreement only breaks ties. The form starts from the gold labels.

    Args:
        record: a calibration record (``slicelab calibrate`` or :func:`calibration.offline.calibrate_offline`).
        labeler: the labeler compared with gold (``judge``, ``knn``, ``student``, ``cues``, ``shape``);
            None: ``judge`` when the record ran one, else ``knn`` (the review's ``labeler`` says which).

    Raises:
        ConfigError: the record's gold file changed since it was measured (digest differs), or
            ``labeler`` is not one the record's items have (the available ones are listed).
        RecordError / TaxonomyError: the gold file does not load (see :func:`calibration.gold.load_gold`).
    """
    taxonomy = load_taxonomy()
    gold, paths = record_gold(record)
    axes = [a.name for a in taxonomy.axes(gold.kind)]
    judged = {it["id"]: it for it in record.get("items") or []}
    available = (["judge"] if judged else []) + list(cheap_labelers(gold.kind))
    labeler = labeler or ("judge" if judged else "knn")
    if labeler not in available:
        raise ConfigError(f"labeler {labeler!r} has no labels in record {record['id']}; available: "
                          f"{', '.join(available)}")
    pool_set, pool, heldout = _pool_and_heldout(record, gold, taxonomy)
    trained = train_cheap(pool_set, pool, taxonomy)
    rows = gold_rows(paths)
    items = []
    for i in heldout:
        shown = {}
        if i in judged:
            shown["judge"] = {"labels": {a: judged[i].get("judge", {}).get(a) for a in axes},
                              "confidence": {a: (judged[i].get("confidence") or {}).get(a) for a in axes}}
        shown |= cheap_predictions(trained, gold.items[i], axes)
        annotators = {a: gold.labels[a][i] for a in gold.annotators if i in gold.labels[a]}
        score, reason, conf = _disagreement(gold.labels[GOLD][i], annotators, shown[labeler], labeler, axes)
        items.append((conf, review_item(gold.items[i], rows[i], axes, gold=gold.labels[GOLD][i],
                                        annotators=annotators, labelers=shown, disagreement=score, reason=reason,
                                        prefill=dict(gold.labels[GOLD][i]))))
    items.sort(key=lambda p: (-p[1].disagreement, -p[0], p[1].id))
    review = ReviewSet(id=new_review_id(), kind=gold.kind, source="calibration", record_id=record["id"],
                       input_path=None, benchmark=None, rule=RULE.format(labeler=labeler), labeler=labeler,
                       axes=axes, created_at=now(), items=[it for _, it in items])
    save_review(review)
    return review


def _pool_and_heldout(record: dict[str, Any], gold: GoldSet, taxonomy) -> tuple[GoldSet, list[str], list[str]]:
    """The record's exemplar pool (the gold set it came from and its ids) and held-out ids.

    Held-out: the record's items when it lists them, else its split of the gold set.
    """
    split = record["split"]
    exemplars = split.get("exemplars")
    if exemplars:
        pool_set = load_gold(exemplars["path"], taxonomy)
        pool, heldout = sorted(pool_set.items), sorted(gold.items)
    else:
        pool_set = gold
        pool, heldout = gold.split(seed=split["seed"], holdout_frac=split["holdout_frac"])
    listed = [it["id"] for it in record.get("items") or [] if it["id"] in gold.items]
    return pool_set, pool, listed or heldout


def _disagreement(gold: dict[str, Any], annotators: dict[str, dict], shown: dict[str, dict], labeler: str,
                  axes: list[str]) -> tuple[float, str, float]:
    """``(disagreement, reason, the labeler's highest confidence on a differing axis)`` of one item."""
    labels, conf = shown["labels"], shown["confidence"]
    differ = [a for a in axes if gold.get(a) is not None and not same_label(labels.get(a), gold.get(a))]
    ann_differ = [a for a in axes
                  if any(not same_label(x.get(a), y.get(a)) for x, y in combinations(annotators.values(), 2))]
    score = len(differ) + len(ann_differ) / (len(axes) + 1)
    parts = [f"{labeler}≠gold on {len(differ)} {'axis' if len(differ) == 1 else 'axes'}"
             + (f" ({', '.join(differ)})" if differ else "")]
    if ann_differ:
        parts.append(f"annotators differ on {', '.join(ann_differ)}")
    top = max((conf.get(a) or 0.0 for a in differ), default=0.0)
    return round(score, 4), "; ".join(parts), top

