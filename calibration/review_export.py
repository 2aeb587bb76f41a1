"""Export a review set's decisions as a new gold-set file (the bundled format, see :mod:`calibration.gold`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from slicelab.calibration.gold import BUNDLED_ALL, GOLD
from slicelab.calibration.records import load_record
from slicelab.calibration.review import write_gold_file
from slicelab.calibration.review_rows import REVIEWED_IN, independent_annotators, record_gold
from slicelab.calibration.review_store import (ReviewSet, applicable_axes, check_reviewer, load_review, now,
                                               read_decision_lines, review_path, save_review)
from slicelab.service.errors import ConfigError
from slicelab.service.taxonomy import load_taxonomy


def export_gold(review_id: str, reviewer: str, out: Path | None = None) -> Path:
    """Write a NEW gold JSONL from a review: loadable by :func:`calibration.gold.load_gold` and ``slicelab calibrate --gold``.

    The reviewer's labels of an item are its prefill (gold of a calibration review, the cheap
    labels of a seed review) with the reviewer's latest decision per axis applied; only items
    with at least one decision by ``reviewer`` count as reviewed.

    - Calibration review: every line of the record's gold file(s), unchanged, except the
      ``gold`` rows of reviewed items, which take the reviewer's labels; then, per reviewed
      item, a row with ``annotator: <reviewer>`` (an earlier row of that annotator for the
      item is replaced).
    - Seed review: every line of the bundled gold sets of the kind (v1, v2), then per reviewed
      item a ``gold`` row and an ``annotator: <reviewer>`` row (``source``: the benchmark).

    Default ``out``: ``$SLICELAB_HOME/reviews/<id>/gold_<reviewer>_<k>.jsonl`` (the first free
    ``k`` from 1). The file is recorded in ``review.json`` under ``exports``.

    Raises:
        RecordError: an invalid or unknown review id.
        ConfigError: a bad reviewer name or an annotator of the gold files (their independent rows are
            never replaced), no decision by ``reviewer``, a reviewed item still
            missing a label on an axis that applies to it (item and axis named), the record's
            gold file changed since the record, or ``out`` exists (never overwritten).
        RecordError / TaxonomyError: the written file does not load as a gold set (it is removed).
    """
    review = load_review(review_id)
    paths, annotators = _base_files(review)
    check_reviewer(reviewer, annotators)
    decided = _decisions_by(review, reviewer)
    labels = {}
    for item_id, by_axis in decided.items():
        item = review.item(item_id)
        labels[item_id] = item.prefill | {a: d["label"] for a, d in by_axis.items()}
        missing = [a for a in applicable_axes(review, item) if labels[item_id].get(a) is None]
        if missing:
            raise ConfigError(f"item {item_id!r} has no label on {', '.join(missing)}; decide "
                              f"{'it' if len(missing) == 1 else 'them'} before exporting")
    lines = _base_lines(paths, set(labels), reviewer, labels)
    for item_id, lab in labels.items():
        fields = review.item(item_id).fields
        if review.source == "seed":
            lines.append(_row(fields, GOLD, lab))
        lines.append(_row(fields | {REVIEWED_IN: review.id}, reviewer, lab))
    path = _out_path(review, reviewer, out)
    write_gold_file(path, lines, load_taxonomy())
    review.exports.append({"path": str(path), "reviewer": reviewer, "n_reviewed": len(labels), "at": now()})
    save_review(review)
    return path


def _decisions_by(review: ReviewSet, reviewer: str) -> dict[str, dict[str, dict]]:
    """The reviewer's latest decision per item and axis.

    Raises:
        ConfigError: none by this reviewer (the reviewers with decisions are listed).
    """
    out: dict[str, dict[str, dict]] = {}
    others = set()
    for d in read_decision_lines(review.id):
        others.add(d["reviewer"])
        if d["reviewer"] == reviewer:
            out.setdefault(d["item_id"], {})[d["axis"]] = d
    if not out:
        raise ConfigError(f"no decision by reviewer {reviewer!r} in review {review.id}; reviewers with decisions: "
                          f"{', '.join(sorted(others)) or 'none'}")
    return out


def _row(fields: dict[str, Any], annotator: str, labels: dict[str, Any]) -> bytes:
    """One gold-file line: the item's fields, ``annotator`` and its labels."""
    return (json.dumps(fields | {"annotator": annotator} | labels, ensure_ascii=False) + "\n").encode("utf-8")


def _base_files(review: ReviewSet) -> tuple[list[Path], list[str]]:
    """The gold files the new file starts from (the record's, or the bundled sets of the kind for a seed
    review) and their independent annotators (:func:`calibration.review_rows.independent_annotators`).

    Raises:
        ConfigError: the record's gold set changed since the record measured it.
    """
    if review.source == "seed":
        paths = [Path(p) for p in BUNDLED_ALL[review.kind]]
    else:
        _, paths = record_gold(load_record(review.record_id))
    return paths, sorted(independent_annotators(paths))


def _base_lines(paths: list[Path], reviewed: set[str], reviewer: str, labels: dict[str, dict]) -> list[bytes]:
    """The lines the new file starts from: every line of ``paths``, with the ``gold`` rows of reviewed items
    relabeled and the reviewer's earlier rows of them dropped."""
    out = []
    for path in paths:
        for raw in path.read_bytes().splitlines(keepends=True):
            body = raw.strip()
            if body:
                row = json.loads(body.decode("utf-8-sig"))
                if row.get("id") in reviewed and row.get("annotator") == reviewer:
                    continue
                if row.get("id") in reviewed and row.get("annotator") == GOLD:
                    raw = _row({k: v for k, v in row.items() if k not in labels[row["id"]]}, GOLD, labels[row["id"]])
            out.append(raw if raw.endswith(b"\n") else raw + b"\n")
    return out


def _out_path(review: ReviewSet, reviewer: str, out: Path | None) -> Path:
    """``out``, or the first free ``gold_<reviewer>_<k>.jsonl`` in the review's folder.

    Raises:
        ConfigError: ``out`` exists.
    """
    if out is not None:
        out = Path(out)
        if out.exists():
            raise ConfigError(f"{out} exists; refusing to overwrite it (choose another -o path)")
        return out
    folder = review_path(review.id)
    k = 1
    while (folder / f"gold_{reviewer}_{k}.jsonl").exists():
        k += 1
    return folder / f"gold_{reviewer}_{k}.jsonl"
