"""Gold-file rows for review sets: the raw rows of gold files, an item's fields without labels, a review item."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from slicelab.calibration.gold import BUNDLED_ALL, GoldSet, load_gold
from slicelab.calibration.review_store import ReviewItem
from slicelab.service.errors import ConfigError
from slicelab.service.samples import EvalSample
from slicelab.service.taxonomy import load_taxonomy


def record_gold(record: dict[str, Any]) -> tuple[GoldSet, list[Path]]:
    """The gold set a calibration record measured, loaded as it was (one file, or a list merged), and its files.

    Raises:
        ConfigError: the files changed since the record (their sha256 differs from the record's).
        RecordError / TaxonomyError / OSError: they do not load (see :func:`calibration.gold.load_gold`).
    """
    spec = record["gold"]["path"]
    paths = [Path(p) for p in (spec if isinstance(spec, list) else [spec])]
    gold = load_gold(spec)
    if gold.sha256 != record["gold"]["sha256"]:
        raise ConfigError(f"gold set {', '.join(map(str, paths))} changed since record {record['id']} measured it "
                          "(sha256 differs); review a record of the current gold set")
    return gold, paths


def gold_rows(paths: list[Path]) -> dict[str, dict[str, Any]]:
    """Item id → its first row in the gold files (any annotator), as JSON data.

    The files are expected to load with :func:`calibration.gold.load_gold` already (rows are not checked here).
    """
    out: dict[str, dict[str, Any]] = {}
    for path in paths:
        for line in Path(path).read_text(encoding="utf-8-sig").split("\n"):
            if line.strip():
                row = json.loads(line)
                out.setdefault(row["id"], row)
    return out


#: Field of an exported reviewer row naming the review it came from (rows without it are independent annotations).
REVIEWED_IN = "reviewed_in"


def independent_annotators(paths: list[Path]) -> set[str]:
    """The annotators of gold files with a row not written by a review export (no ``reviewed_in`` field):
    the independent annotations a reviewer of the same name would replace. ``gold`` is not one.

    The files are expected to load with :func:`calibration.gold.load_gold` already (rows are not checked here).
    """
    names = set()
    for path in paths:
        for line in Path(path).read_text(encoding="utf-8-sig").split("\n"):
            row = json.loads(line) if line.strip() else {}
            if row and REVIEWED_IN not in row and row.get("annotator") != "gold":
                names.add(str(row.get("annotator")))
    return names


@lru_cache(maxsize=1)
def bundled_annotators() -> frozenset[str]:
    """:func:`independent_annotators` of every bundled gold set (both kinds), read once per process."""
    return frozenset(independent_annotators([Path(p) for paths in BUNDLED_ALL.values() for p in paths]))


def item_fields(row: dict[str, Any], axes: list[str]) -> dict[str, Any]:
    """A gold row without its labels and annotator: the item's fields as a new gold row starts from."""
    return {k: v for k, v in row.items() if k not in axes and k not in ("annotator", REVIEWED_IN)}


def sample_fields(item, source: str) -> dict[str, Any]:
    """A read sample or document as gold-row fields (the bundled format, no labels), with ``source``."""
    version = {"taxonomy_version": load_taxonomy().version}
    if isinstance(item, EvalSample):
        return {"id": item.id, "source": source, "question": item.question,
                "reference_answer": item.reference_answer, "model": item.model, "model_output": item.model_output,
                "model_answer": item.extracted_answer, "correct": item.correct, **version}
    return {"id": item.id, "source": source, "url": item.url, "text": item.text, **version}


def review_item(item, fields: dict[str, Any], axes: list[str], *, gold: dict[str, Any] | None,
                annotators: dict[str, dict], labelers: dict[str, dict], disagreement: float, reason: str,
                prefill: dict[str, Any]) -> ReviewItem:
    """A :class:`ReviewItem` of a sample or document: its texts from ``item``, its raw fields from ``fields``
    (a gold row, labels removed)."""
    sample = isinstance(item, EvalSample)
    return ReviewItem(
        id=item.id, benchmark=str(fields.get("source") or (item.benchmark if sample else item.source) or ""),
        question=item.question if sample else item.text,
        reference=item.reference_answer if sample else None,
        model_output=item.model_output if sample else None,
        correct=item.correct if sample else None,
        gold=gold, annotators=annotators, labelers=labelers, disagreement=disagreement, reason=reason,
        prefill={a: prefill.get(a) for a in axes}, fields=item_fields(fields, axes))
