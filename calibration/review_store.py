"""Review sets on disk: ``$SLICELAB_HOME/reviews/<review_id>/``.

A review set is a list of items a reviewer labels in order (most disagreement first). Its
folder holds ``review.json`` (the :class:`ReviewSet`, rewritten atomically) and
``decisions.jsonl``: one JSON line per saved (item, axis) decision, appended under an
exclusive lock, flushed and ``os.fsync``'d before :func:`save_decision` returns. Lines are
never rewritten; the latest line per (item id, axis) wins.

Review ids look like ``rev-20250101T120000-1a2b3c``; any other id is refused (no path
outside the reviews folder can be named).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

from slicelab.calibration.records import home
from slicelab.calibration.review_log import append_decisions_to, read_decisions
from slicelab.service.errors import ConfigError, RecordError
from slicelab.service.taxonomy import AxisDef, load_taxonomy

REVIEW_ID = re.compile(r"rev-[0-9T]+-[0-9a-f]{6}")
#: Reviewer names: letters, digits, ``_ . -`` (they name an annotator row and a file).
REVIEWER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
REVIEW_FILE = "review.json"
DECISIONS_FILE = "decisions.jsonl"


@dataclass
class ReviewItem:
    """One item of a review set (see docs/calibration.md, "Review sets").

    Label values: a single-label axis holds one taxonomy id (None where the axis does not
    apply, e.g. ``failure_mode`` of an answer not scored wrong); an operation axis a list of
    ids, primary first. ``labelers`` maps a labeler name to ``{"labels": {axis: label},
    "confidence": {axis: float 0-1 or None}}``.
    """

    id: str
    benchmark: str
    question: str
    reference: str | None
    model_output: str | None
    correct: bool | None
    gold: dict[str, Any] | None
    annotators: dict[str, dict[str, Any]]
    labelers: dict[str, dict[str, dict]]
    disagreement: float
    reason: str
    prefill: dict[str, Any]
    fields: dict[str, Any]


@dataclass
class ReviewSet:
    """A review set: where its items came from, the rule that chose and ordered them, the items in review order.

    ``kind`` is ``"eval"`` or ``"document"``; ``source`` is ``"calibration"`` (``record_id`` set)
    or ``"seed"`` (``input_path`` and ``benchmark`` set). ``exports`` lists the gold files
    written from it: ``{"path", "reviewer", "n_reviewed", "at"}``.
    """

    id: str
    kind: str
    source: str
    record_id: str | None
    input_path: str | None
    benchmark: str | None
    rule: str
    labeler: str
    axes: list[str]
    created_at: str
    items: list[ReviewItem]
    exports: list[dict[str, Any]] = field(default_factory=list)

    def item(self, item_id: str) -> ReviewItem:
        """The item with this id.

        Raises:
            RecordError: no such item in this review (field ``item_id``).
        """
        for it in self.items:
            if it.id == item_id:
                return it
        raise RecordError(f"no item {item_id!r} in review {self.id}", field="item_id")


def reviews_dir() -> Path:
    """The folder of every review set: ``$SLICELAB_HOME/reviews``."""
    return home() / "reviews"


def new_review_id() -> str:
    """A fresh id: ``rev-<YYYYmmddTHHMMSS UTC>-<6 random hex digits>``."""
    return f"rev-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{secrets.token_hex(3)}"


def now() -> str:
    """The current UTC time as ``YYYY-mm-ddTHH:MM:SSZ``."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def review_path(review_id: str) -> Path:
    """The folder of a review set (it need not exist).

    Raises:
        RecordError: the id does not match ``rev-<digits and T>-<6 hex>`` (field ``review_id``).
    """
    if not isinstance(review_id, str) or not REVIEW_ID.fullmatch(review_id):
        raise RecordError(f"{review_id!r} is not a review id (expected rev-YYYYmmddTHHMMSS-xxxxxx)",
                          field="review_id")
    return reviews_dir() / review_id


def check_reviewer(reviewer: str, annotators: Iterable[str] = ()) -> str:
    """The reviewer name, checked: 1-64 letters, digits, ``_ . -``, starting with a letter or digit (the whole
    string: no trailing newline or space), not ``gold`` and not one of ``annotators``.

    This one rule serves the CLI, the Python functions and the review pages' login. ``annotators``:
    the annotators of the gold set the decisions go into, whose independent rows an export under
    the same name would replace.

    Raises:
        ConfigError: another name (the value is shown), or an annotator's name (the annotators listed).
    """
    if not isinstance(reviewer, str) or not REVIEWER.fullmatch(reviewer) or reviewer == "gold":
        raise ConfigError(f"reviewer {reviewer!r} is not allowed: use 1-64 letters, digits, '_', '.', '-', starting "
                          "with a letter or digit (not 'gold', the adjudicated row)")
    names = sorted(set(annotators))
    if reviewer in names:
        raise ConfigError(f"reviewer {reviewer!r} is an annotator of the gold set ({', '.join(names)}); choose "
                          "another name (exporting under it would replace that annotator's independent labels)")
    return reviewer


def save_review(review: ReviewSet) -> Path:
    """Write ``review.json`` (atomically: a temporary file renamed over it) and return the review's folder.

    Raises:
        RecordError: the review's id is not a review id.
        OSError: the folder cannot be written.
    """
    folder = review_path(review.id)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{REVIEW_FILE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(asdict(review), ensure_ascii=False, indent=1, allow_nan=False), encoding="utf-8")
    os.replace(tmp, folder / REVIEW_FILE)
    (folder / DECISIONS_FILE).touch()
    return folder


def load_review(review_id: str) -> ReviewSet:
    """A saved review set.

    Raises:
        RecordError: an invalid id, no such review (the known ids are listed), or an
            unreadable ``review.json`` (its path named).
    """
    path = review_path(review_id) / REVIEW_FILE
    if not path.is_file():
        known = sorted(p.parent.name for p in reviews_dir().glob(f"*/{REVIEW_FILE}"))
        raise RecordError(f"no review {review_id!r} in {reviews_dir()}; known: {', '.join(known[-10:]) or 'none'}",
                          field="review_id")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        items = [ReviewItem(**it) for it in data.pop("items")]
        return ReviewSet(**data, items=items)
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise RecordError(f"{path}: not a readable review set ({e})") from None


def read_decision_lines(review_id: str) -> list[dict[str, Any]]:
    """Every decision line of a review, in the order saved (a torn last line, from a crash, is skipped).

    Raises:
        RecordError: an invalid id, or a line that is not JSON or not a decision object (the file
            and line named; see :mod:`calibration.review_log`).
    """
    return read_decisions(review_path(review_id) / DECISIONS_FILE)


def decisions(review_id: str) -> dict[str, dict[str, dict]]:
    """The latest decision line per item and axis: ``{item_id: {axis: {"item_id", "axis", "label", "reviewer", "at"}}}``.

    Raises:
        RecordError: an invalid or unknown review id, or a damaged decisions file (file and line named).
    """
    load_review(review_id)
    return latest_decisions(review_id)


def latest(lines: list[dict[str, Any]]) -> dict[str, dict[str, dict]]:
    """The latest of checked decision lines per item and axis (see :func:`decisions`)."""
    out: dict[str, dict[str, dict]] = {}
    for d in lines:
        out.setdefault(d["item_id"], {})[d["axis"]] = d
    return out


def latest_decisions(review_id: str) -> dict[str, dict[str, dict]]:
    """:func:`decisions` of a review known to exist (its ``review.json`` is not read).

    Raises:
        RecordError: a damaged decisions file (file and line named).
    """
    return latest(read_decision_lines(review_id))


def append_decisions(review_id: str, lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Append decision lines in one write, under an exclusive lock, then flush and fsync the file.

    The file is checked first (nothing is written to a damaged file); a torn last line (a write
    cut short by a crash, never acknowledged) is cut off. Returns every decision line after the append.

    Raises:
        RecordError: a damaged decisions file (file and line named).
    """
    return append_decisions_to(review_path(review_id) / DECISIONS_FILE, lines)


def scored_wrong(item: ReviewItem) -> bool:
    """Whether an item is an answer scored wrong (``correct`` false with a model output): the rule under which
    ``only_when`` axes (``failure_mode``) apply, as in :attr:`service.samples.EvalSample.scored_wrong`."""
    return item.correct is False and item.model_output is not None


def axis_applies(axis: AxisDef, item: ReviewItem) -> bool:
    """Whether ``axis`` takes a label on ``item``: every axis, except ``only_when`` axes on an item not
    :func:`scored_wrong`."""
    return not axis.only_when or scored_wrong(item)


def check_label(axis: AxisDef, item: ReviewItem, value: Any) -> Any:
    """One decided label, checked against the taxonomy; returns it as stored (operations: a list).

    A single-label axis takes one id of the axis; ``failure_mode`` (an ``only_when`` axis) takes
    an id only on an answer scored wrong and must be None otherwise. An operation axis takes a
    list of distinct ids (a single id is read as a one-id list) within the axis's item bounds.

    Raises:
        ConfigError: the value breaks one of these rules (item, axis, value and allowed ids named).
    """
    where = f"item {item.id!r}, axis {axis.name}"
    allowed = ", ".join(axis.ids)
    if not axis_applies(axis, item):
        if value is not None:
            raise ConfigError(f"{where}: {value!r} given, but {axis.name} applies only to an answer scored wrong "
                              "with a model output; leave it empty (null)")
        return None
    if axis.kind == "single":
        if value not in axis.ids:
            raise ConfigError(f"{where}: unknown label {value!r}; allowed: {allowed}")
        return value
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list):
        raise ConfigError(f"{where}: {value!r} is not a list of label ids; allowed ids: {allowed}")
    bad = [v for v in values if v not in axis.ids]
    if bad:
        raise ConfigError(f"{where}: unknown label(s) {', '.join(map(repr, bad))}; allowed: {allowed}")
    if len(set(values)) != len(values) or not axis.min_items <= len(values) <= axis.max_items:
        raise ConfigError(f"{where}: {values!r}: expected {axis.min_items}-{axis.max_items} distinct ids, "
                          "primary first")
    return list(values)


def save_decision(review_id: str, item_id: str, labels: dict[str, Any], reviewer: str) -> dict[str, dict]:
    """Save a reviewer's labels for one item: one decision line per axis, fsync'd before returning.

    Every value is checked first (:func:`check_label`); nothing is written unless all are valid.

    Args:
        review_id: the review set.
        item_id: an item of it.
        labels: axis → label (single id, None for a non-applicable ``failure_mode``, or list of ids).
        reviewer: who decided (see :func:`check_reviewer`).

    Returns:
        The item's current decisions: axis → latest decision line.

    Raises:
        RecordError: an invalid or unknown review id, or an item id not in the review (field ``item_id``).
        ConfigError: no labels, an axis not of the review's kind, a label id outside the taxonomy
            or not allowed on that item, or a bad reviewer name (each named with the value).
    """
    review = load_review(review_id)
    item = review.item(item_id)
    check_reviewer(reviewer)
    if not isinstance(labels, dict) or not labels:
        raise ConfigError(f"item {item_id!r}: no labels given; axes: {', '.join(review.axes)}")
    axes = {a.name: a for a in load_taxonomy().axes(review.kind)}
    unknown = [a for a in labels if a not in review.axes]
    if unknown:
        raise ConfigError(f"item {item_id!r}: unknown {review.kind} axis {unknown[0]!r}; "
                          f"axes: {', '.join(review.axes)}")
    at = now()
    lines = [{"item_id": item_id, "axis": a, "label": check_label(axes[a], item, v), "reviewer": reviewer, "at": at}
             for a, v in labels.items()]
    return latest(append_decisions(review_id, lines)).get(item_id, {})


def same_label(a: Any, b: Any) -> bool:
    """Two labels are equal (operation lists compared in order, primary first)."""
    return (tuple(a) if isinstance(a, list) else a) == (tuple(b) if isinstance(b, list) else b)


def progress(review_id: str, reviewer: str | None = None) -> dict[str, int]:
    """How far a review is, by every reviewer or by ``reviewer`` only (see :func:`review_progress`).

    Raises:
        RecordError: an invalid or unknown review id, or a damaged decisions file (file and line named).
    """
    return review_progress(load_review(review_id), reviewer)


def review_progress(review: ReviewSet, reviewer: str | None = None) -> dict[str, int]:
    """How far a loaded review is, counting the decisions of every reviewer or of ``reviewer`` only.

    Returns:
        ``{"n_items", "n_reviewed": items with a decision on at least one axis, "n_complete": items
        with a decision on every axis that applies to them, "n_changed": (item, axis) decisions
        whose label differs from the item's prefill}``.

    Raises:
        RecordError: a damaged decisions file (file and line named).
    """
    lines = read_decision_lines(review.id)
    dec = latest([d for d in lines if reviewer is None or d["reviewer"] == reviewer])
    changed = complete = 0
    for item in review.items:
        got = dec.get(item.id, {})
        changed += sum(not same_label(d["label"], item.prefill.get(a)) for a, d in got.items())
        complete += bool(got) and all(a in got for a in applicable_axes(review, item))
    return {"n_items": len(review.items), "n_reviewed": sum(bool(dec.get(i.id)) for i in review.items),
            "n_complete": complete, "n_changed": changed}


def applicable_axes(review: ReviewSet, item: ReviewItem) -> list[str]:
    """The review's axes that apply to an item (:func:`axis_applies`)."""
    axes = {a.name: a for a in load_taxonomy().axes(review.kind)}
    return [a for a in review.axes if axis_applies(axes[a], item)]


def list_reviews() -> list[dict[str, Any]]:
    """Every saved review set, newest first: ``{id, source, kind, record_id, benchmark, created_at, n_items,
    n_reviewed, error}``.

    ``error`` is None, or the message of a review that cannot be read (an unreadable ``review.json``:
    the other fields None; a damaged ``decisions.jsonl``: ``n_reviewed`` None), so one damaged review
    is shown as such and never hides the others.
    """
    out = []
    for path in reviews_dir().glob(f"*/{REVIEW_FILE}"):
        if not REVIEW_ID.fullmatch(path.parent.name):
            continue
        row: dict[str, Any] = dict.fromkeys(("source", "kind", "record_id", "benchmark", "created_at", "n_items",
                                             "n_reviewed", "error"))
        row["id"] = path.parent.name
        try:
            review = load_review(path.parent.name)
            row.update(source=review.source, kind=review.kind, record_id=review.record_id, benchmark=review.benchmark,
                       created_at=review.created_at, n_items=len(review.items))
            row["n_reviewed"] = review_progress(review)["n_reviewed"]
        except RecordError as e:
            row["error"] = str(e)
        out.append(row)
    return sorted(out, key=lambda r: (r["created_at"] or "", r["id"]), reverse=True)
