"""A seed review set: items of a new benchmark to label as its first gold items.

Every readable item of the input is labeled by the labelers without an LLM trained on the
bundled gold sets; ``n`` items are picked: coverage first (greedy: each pick adds the most
not-yet-covered (axis, label) pairs of the predicted labels), then by how much the labelers
disagree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from slicelab.calibration.cheap_labels import cheap_predictions, train_cheap
from slicelab.calibration.gold import BUNDLED_ALL, load_gold
from slicelab.calibration.review_rows import review_item, sample_fields
from slicelab.calibration.review_store import ReviewItem, ReviewSet, new_review_id, now, save_review
from slicelab.service.errors import ConfigError
from slicelab.service.samples import EvalSample, Rejected
from slicelab.service.taxonomy import load_taxonomy

#: The labeler whose label fills an axis when the selected one gives none.
FALLBACK = "knn"

RULE = ("{n} of {total} items of {input} (labeled by the labelers without an LLM trained on the bundled gold "
        "sets): first by coverage (greedy: each pick adds the most (axis, label) pairs of the prefill labels "
        "not yet covered, each id of an operation list counting as a pair; ties by disagreement, then input "
        "order), then, once no item adds a pair, by disagreement: the share of applicable axes where the "
        "labelers disagree (operation axes: on the primary), then input order. Prefill: {prefill}.{skipped}")


def create_seed_review(input_path: Path, *, n: int = 40, benchmark: str | None = None, kind: str = "eval",
                       selection: dict[str, str] | None = None) -> ReviewSet:
    """Pick ``n`` items of an input file for a reviewer to label as new gold items; save the review set.

    Args:
        input_path: an eval samples file (every format ``label-benchmark`` reads) or, with
            ``kind="document"``, a documents file.
        n: how many items to pick (fewer when the file holds fewer readable new items).
        benchmark: the benchmark name (the items' ``source`` in the exported gold); default: the
            name the reader gives each item.
        kind: ``"eval"`` or ``"document"``.
        selection: axis → labeler whose label pre-fills the form (e.g. a record's ``selection``);
            default: the selection of the bundled record of the kind
            (:func:`calibration.offline.bundled_record`, built on first use). ``knn`` fills
            any axis the selected labeler leaves empty.

    Raises:
        ConfigError: ``n`` < 1, an unknown ``kind``, or no readable item that is not already in
            the bundled gold sets.
        InputFormatError: the file cannot be read (see :mod:`service.readers`).
    """
    if n < 1:
        raise ConfigError(f"n must be at least 1 (got {n})")
    if kind not in BUNDLED_ALL:
        raise ConfigError(f"kind {kind!r}: expected one of {', '.join(BUNDLED_ALL)}")
    taxonomy = load_taxonomy()
    gold = load_gold(BUNDLED_ALL[kind], taxonomy)
    samples, n_rejected, n_known = _read(Path(input_path), kind, benchmark, set(gold.items))
    if not samples:
        raise ConfigError(f"{input_path}: no readable {kind} item that is not already gold "
                          f"({n_rejected} rejected, {n_known} already in the bundled gold sets)")
    if selection is None:
        from slicelab.calibration.offline import bundled_record

        record = bundled_record(kind)
        selection, prefill_text = record["selection"], f"the labeler selected per axis by {record['id']}"
    else:
        prefill_text = "the labeler selected per axis"
    axes_defs = taxonomy.axes(kind)
    axes = [a.name for a in axes_defs]
    prefill_text += f" ({', '.join(f'{a}: {selection.get(a, FALLBACK)}' for a in axes)}; {FALLBACK} where it gives none)"
    trained = train_cheap(gold, sorted(gold.items), taxonomy)
    only_when = {a.name for a in axes_defs if a.only_when}
    items = []
    for s in samples:
        shown = cheap_predictions(trained, s, axes)
        applies = [a for a in axes if a not in only_when or (isinstance(s, EvalSample) and s.scored_wrong)]
        prefill = {a: _prefill(shown, selection.get(a, FALLBACK), a) if a in applies else None for a in axes}
        share = _disagreement(shown, applies)
        source = benchmark or (s.benchmark if isinstance(s, EvalSample) else s.source) or Path(input_path).stem
        items.append(review_item(s, sample_fields(s, source), axes, gold=None, annotators={}, labelers=shown,
                                 disagreement=share, reason="", prefill=prefill))
    picked = pick(items, n)
    skipped = f" Skipped: {n_rejected} unreadable records, {n_known} items already gold." if n_rejected or n_known else ""
    review = ReviewSet(id=new_review_id(), kind=kind, source="seed", record_id=None, input_path=str(input_path),
                       benchmark=benchmark, rule=RULE.format(n=len(picked), total=len(items), input=input_path,
                                                             prefill=prefill_text, skipped=skipped),
                       labeler="selected" if selection else FALLBACK, axes=axes, created_at=now(), items=picked)
    save_review(review)
    return review


def _read(path: Path, kind: str, benchmark: str | None, known: set[str]) -> tuple[list, int, int]:
    """``(readable items not already gold, number rejected, number already gold)`` of an input file."""
    from slicelab.service.readers import read_documents, read_eval_samples

    reader = read_eval_samples(path, benchmark=benchmark) if kind == "eval" else read_documents(path)
    items, rejected, already = [], 0, 0
    for it in reader:
        if isinstance(it, Rejected):
            rejected += 1
        elif it.id in known:
            already += 1
        else:
            items.append(it)
    return items, rejected, already


def _prefill(shown: dict[str, dict], name: str, axis: str) -> Any:
    """The selected labeler's label on an axis, else the fallback's."""
    value = shown.get(name, {}).get("labels", {}).get(axis)
    return value if value is not None else shown[FALLBACK]["labels"].get(axis)


def _disagreement(shown: dict[str, dict], axes: list[str]) -> float:
    """Share of ``axes`` where the labelers that give a label give more than one (operation axes: the primary)."""
    split = 0
    for a in axes:
        values = {_primary(lab["labels"].get(a)) for lab in shown.values() if lab["labels"].get(a) is not None}
        split += len(values) > 1
    return round(split / len(axes), 4) if axes else 0.0


def _primary(value: Any) -> Any:
    """A label's primary value: the first id of an operation list ("" for an empty list), else the label."""
    return (value[0] if value else "") if isinstance(value, list) else value


def pairs(labels: dict[str, Any]) -> set[tuple[str, str]]:
    """The (axis, label id) pairs of a label dict; each id of an operation list is a pair, None gives none."""
    out = set()
    for axis, value in labels.items():
        for v in value if isinstance(value, list) else [value]:
            if v is not None:
                out.add((axis, v))
    return out


def pick(items: list[ReviewItem], n: int) -> list[ReviewItem]:
    """``n`` items by coverage of their prefill labels, then disagreement (see :data:`RULE`); sets each ``reason``.

    Args:
        items: candidate items in input order, with ``prefill`` and ``disagreement`` set.
        n: how many to pick.
    """
    order = {it.id: k for k, it in enumerate(items)}
    left, covered, out = list(items), set(), []
    while left and len(out) < n:
        best = max(left, key=lambda it: (len(pairs(it.prefill) - covered), it.disagreement, -order[it.id]))
        new = sorted(pairs(best.prefill) - covered)
        if not new:
            break
        best.reason = (f"covers {len(new)} new (axis, label) pair{'s' if len(new) != 1 else ''}: "
                       + ", ".join(f"{a}={v}" for a, v in new) + f"; labelers disagree on {best.disagreement:.0%} of axes")
        covered |= set(new)
        out.append(best)
        left.remove(best)
    for it in sorted(left, key=lambda it: (-it.disagreement, order[it.id]))[:n - len(out)]:
        it.reason = f"labelers disagree on {it.disagreement:.0%} of axes (every label already covered)"
        out.append(it)
    return out
