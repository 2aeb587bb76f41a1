"""Gold sets: items labeled by two independent annotators plus an adjudicated ``gold`` row.

Format (JSONL, one row per item and annotator): the item's fields as the
readers produce them, ``annotator`` (``annotator_a``, ``annotator_b``, ``gold``),
``taxonomy_version``, and the label fields of the taxonomy kind. Bundled sets
live in ``calibration/gold/``.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any


from slicelab.service.errors import RecordError, TaxonomyError
from slicelab.service.samples import Document, EvalSample
from slicelab.service.taxonomy import Kind, Taxonomy, load_taxonomy

GOLD_DIR = Path(__file__).resolve().parent / "gold"
BUNDLED = {"eval": GOLD_DIR / "eval_gold_v1.jsonl", "document": GOLD_DIR / "doc_gold_v1.jsonl"}
#: Every bundled round per kind (v1, then v2: MATH-500 across subjects, GSM8K, AIME 2025; math and science documents).
BUNDLED_ALL = {"eval": [GOLD_DIR / "eval_gold_v1.jsonl", GOLD_DIR / "eval_gold_v2.jsonl"],
               "document": [GOLD_DIR / "doc_gold_v1.jsonl", GOLD_DIR / "doc_gold_v2.jsonl"]}
GOLD = "gold"


@dataclass
class GoldSet:
    """A loaded gold set.

    Attributes:
        path: the file it came from; sha256: hex digest of its bytes.
        kind: ``"eval"`` or ``"document"`` (from the label fields present).
        items: item id → the sample or document (in file order).
        labels: annotator → item id → label dict (axis → id or list of ids).
        sources: item id → its ``source`` (the stratum of the split).
    """

    path: Path
    sha256: str
    kind: Kind
    items: dict[str, EvalSample | Document]
    labels: dict[str, dict[str, dict[str, Any]]]
    sources: dict[str, str]

    @property
    def annotators(self) -> list[str]:
        """Annotators other than the adjudicated ``gold``."""
        return sorted(a for a in self.labels if a != GOLD)

    def split(self, *, seed: int = 0, holdout_frac: float = 0.5) -> tuple[list[str], list[str]]:
        """Seeded split of the item ids, stratified by source, into (exemplar pool, held-out).

        Sources with a single item go to the held-out split (they cannot be stratified).
        Metrics are computed on the held-out ids only; exemplars come from the pool only.
        """
        from sklearn.model_selection import train_test_split  # about 1 s to import: only when a set is split

        ids = sorted(self.items)
        if holdout_frac <= 0:
            return ids, []  # the whole set is the pool (exemplars for another gold set)
        counts = Counter(self.sources[i] for i in ids)
        strat = [i for i in ids if counts[self.sources[i]] >= 2]
        singles = [i for i in ids if counts[self.sources[i]] < 2]
        pool, held = train_test_split(strat, test_size=holdout_frac, random_state=seed,
                                      stratify=[self.sources[i] for i in strat])
        return sorted(pool), sorted(held + singles)


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_gold(path: str | Path | list[str | Path], taxonomy: Taxonomy | None = None) -> GoldSet:
    """Load and validate a gold set (a list of paths: the sets merged, see :func:`merge_gold`).

    Every check runs here, before any judge call: a bad file fails at once, never after labeling.

    Raises:
        RecordError: a row is not JSON, lacks ``id``/``annotator``, has no question (eval) or
            text (document), leaves a label axis null, gives operations as something else than
            a list, lacks the failure_mode of a wrong item, or uses a label id outside
            the taxonomy (the message names the line, field, the value and what is allowed).
        TaxonomyError: the file mixes kinds, has no ``gold`` rows, or (eval) holds no wrong item
            (``correct: false`` with a ``model_output``), so failure_mode cannot be measured.
    """
    if isinstance(path, (list, tuple)):
        return merge_gold([load_gold(p, taxonomy) for p in path])
    path = Path(path)
    tax = taxonomy or load_taxonomy()
    items: dict[str, EvalSample | Document] = {}
    labels: dict[str, dict[str, dict[str, Any]]] = {}
    sources: dict[str, str] = {}
    kind: Kind | None = None
    # split on "\n" only, so text holding U+2028 and friends stays on its line
    for line_no, line in enumerate(path.read_text(encoding="utf-8-sig").split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise RecordError(f"{path}: not JSON: {e}", line=line_no) from e
        for key in ("id", "annotator"):
            if not row.get(key):
                raise RecordError(f"{path}: missing", line=line_no, field=key)
        row_kind: Kind = "eval" if "task_type" in row else "document"
        if kind is None:
            kind = row_kind
        elif row_kind != kind:
            raise TaxonomyError(f"{path}: line {line_no} is a {row_kind} row in a {kind} gold set")
        item_id = row["id"]
        _check_text(row, kind, path, line_no)
        if item_id not in items:
            items[item_id] = _item(row, kind, path, line_no)
            sources[item_id] = str(row.get("source") or "")
        labels.setdefault(row["annotator"], {})[item_id] = _labels(row, kind, tax, path, line_no)
    if kind is None or GOLD not in labels:
        raise TaxonomyError(f"{path}: no rows with annotator 'gold'")
    if kind == "eval" and not any(isinstance(i, EvalSample) and i.scored_wrong for i in items.values()):
        raise TaxonomyError(f"{path}: no wrong item (a row with correct: false and a model_output), so the "
                            "failure_mode axis cannot be measured; add wrong items with their failure_mode")
    return GoldSet(path, file_sha256(path), kind, items, labels, sources)


def merge_gold(sets: list[GoldSet]) -> GoldSet:
    """Several gold sets of one kind as one (e.g. two annotation rounds).

    The merged ``path`` is the first set's, ``sha256`` hashes the sets' digests in order.

    Raises:
        TaxonomyError: the sets hold different kinds, or share an item id.
    """
    if not sets:
        raise TaxonomyError("no gold sets to merge")
    kinds = {g.kind for g in sets}
    if len(kinds) > 1:
        raise TaxonomyError(f"cannot merge gold sets of different kinds: {sorted(kinds)}")
    items: dict[str, EvalSample | Document] = {}
    labels: dict[str, dict[str, dict[str, Any]]] = {}
    sources: dict[str, str] = {}
    for g in sets:
        shared = sorted(set(items) & set(g.items))
        if shared:
            raise TaxonomyError(f"{g.path}: item ids also in an earlier gold set: {shared[:5]}")
        items |= g.items
        sources |= g.sources
        for annotator, by_item in g.labels.items():
            labels.setdefault(annotator, {}).update(by_item)
    digest = hashlib.sha256("".join(g.sha256 for g in sets).encode()).hexdigest()
    return GoldSet(sets[0].path, digest, sets[0].kind, items, labels, sources)


def _item(row: dict, kind: Kind, path: Path, line_no: int) -> EvalSample | Document:
    if kind == "document":
        return Document(id=row["id"], text=row["text"], source=row.get("source") or "", url=row.get("url"),
                        source_file=str(path), source_line=line_no)
    source = row.get("source") or ""
    task = row["id"].split(":", 1)[-1].split("/", 1)[0] if source == "bbh" else source
    return EvalSample(
        id=row["id"], benchmark=source, task=task, question=row["question"],
        reference_answer=str(row.get("reference_answer") or ""), model=row.get("model"),
        model_output=row.get("model_output"), extracted_answer=row.get("model_answer"),
        correct=row.get("correct"), source_file=str(path), source_line=line_no,
    )


def _check_text(row: dict, kind: Kind, path: Path, line_no: int) -> None:
    """The item text every row must carry: ``question`` (eval) or ``text`` (document), a non-empty string."""
    key = "question" if kind == "eval" else "text"
    value = row.get(key)
    if not isinstance(value, str) or not value.strip():
        got = "missing" if key not in row else f"{type(value).__name__} {value!r}"[:80]
        raise RecordError(f"{path}: the item's {key} is {got}; expected non-empty text", line=line_no, field=key)


def _labels(row: dict, kind: Kind, tax: Taxonomy, path: Path, line_no: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    wrong = row.get("correct") is False and row.get("model_output") is not None
    for axis in tax.axes(kind):
        value = row.get(axis.name)
        if value is None:
            if axis.only_when == "scored_wrong" and not wrong:
                out[axis.name] = None
                continue
            needed = "for a wrong item (correct: false with a model_output)" if axis.only_when else "on every row"
            raise RecordError(f"{path}: {axis.name} is {'null' if axis.name in row else 'missing'}; a label is "
                              f"needed {needed}; allowed: {', '.join(axis.ids)}", line=line_no, field=axis.name)
        if axis.kind == "operations" and not isinstance(value, list):
            raise RecordError(f"{path}: {axis.name} is {type(value).__name__} {value!r}; expected a list of label "
                              f"ids such as [{axis.ids[0]!r}]", line=line_no, field=axis.name)
        values = value if axis.kind == "operations" else [value]
        for v in values:
            if v not in axis.ids:
                raise RecordError(f"{path}: unknown label {v!r}; allowed: {', '.join(axis.ids)}",
                                  line=line_no, field=axis.name)
        out[axis.name] = list(value) if axis.kind == "operations" else value
    return out
