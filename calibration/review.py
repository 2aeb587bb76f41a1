"""The review loop: export the judge's disagreements with gold, import a reviewer's decisions as a new gold version.

1. ``export_disagreements(record, "review.csv")`` writes one CSV row per (held-out item,
   axis) where the judge's label differs from the gold label.
2. A reviewer fills ``decision`` (``gold wrong`` / ``judge wrong`` / empty) and, for
   ``gold wrong``, ``corrected_label``.
3. ``import_review("review.csv", gold_path)`` writes a NEW gold-set file (``..._v2.jsonl``)
   with the corrected ``gold`` rows; the old file is never touched.

Label cells: a single-label axis holds one taxonomy id; an operation axis holds ids
joined by ``|`` (primary first), and ``__none__`` for an empty list (documents may
demonstrate no operation). A judge failure (no labels) is exported as ``__invalid__``.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from pathlib import Path
from typing import Any

from slicelab.calibration.gold import GOLD, GoldSet, load_gold
from slicelab.calibration.metrics import INVALID, NONE_CLASS
from slicelab.service.errors import ConfigError, RecordError
from slicelab.service.taxonomy import AxisDef, Taxonomy, load_taxonomy

#: Columns of the review CSV, in order.
COLUMNS = ["item_id", "axis", "gold_label", "judge_label", "confidence", "text", "decision", "corrected_label"]
GOLD_WRONG = "gold wrong"
JUDGE_WRONG = "judge wrong"
#: Allowed values of the ``decision`` column ("" = not reviewed, row skipped).
DECISIONS = (GOLD_WRONG, JUDGE_WRONG, "")
#: Separator of operation ids in a label cell.
SEP = "|"


# --------------------------------------------------------------------------- disagreements


def _key(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def disagreements(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Every (held-out item, axis) pair where the judge's label differs from gold.

    The pairs are those the axis metrics count (calibration/evaluate.py): single-label
    axes only where the gold label is not None (``failure_mode`` only on items scored
    wrong); operation axes always, comparing the ordered lists (primary first). A judge
    failure (label None) disagrees with every gold label.

    Args:
        record: a calibration record (``record["items"]``, ``record["axes"]``).

    Returns:
        Dicts ``{"item_id", "axis", "axis_kind", "gold", "judge", "confidence", "text",
        "status", "raw_output"}`` in item order, then axis order of ``record["axes"]``.
    """
    axes = {a: m.get("kind", "single") for a, m in record.get("axes", {}).items()}
    out = []
    for item in record.get("items", []):
        gold, judged = item.get("gold") or {}, item.get("judge") or {}
        for axis, kind in axes.items():
            g = gold.get(axis)
            if g is None and kind != "operations":
                continue
            j = judged.get(axis)
            if _key(j) == _key(g):
                continue
            out.append({
                "item_id": item["id"], "axis": axis, "axis_kind": kind, "gold": g, "judge": j,
                "confidence": float((item.get("confidence") or {}).get(axis) or 0.0),
                "text": item.get("text", ""), "status": item.get("status", ""),
                "raw_output": item.get("raw_output", ""),
            })
    return out


def format_label(value: Any, kind: str = "single") -> str:
    """A label as one cell: ids joined by ``|`` for operations, ``__none__`` for [], ``__invalid__`` for None."""
    if value is None:
        return INVALID
    if kind == "operations" or isinstance(value, list):
        return SEP.join(value) if value else NONE_CLASS
    return str(value)


# --------------------------------------------------------------------------- export


def export_disagreements(record: dict[str, Any], path: Path) -> int:
    """Write the judge-vs-gold disagreements of a record as a review CSV.

    Columns: ``item_id, axis, gold_label, judge_label, confidence, text, decision,
    corrected_label`` (UTF-8, csv module quoting; text may span lines). One row per
    (item, axis) disagreement (see :func:`disagreements`); operation labels as ``a|b|c``;
    ``decision`` and ``corrected_label`` are left empty for the reviewer. Rows are sorted
    by confidence, highest first (confident-and-wrong first), then item and axis.

    Args:
        record: a calibration record.
        path: the CSV to write (parent folders are created; an existing file is replaced).

    Returns:
        The number of rows written (header excluded).

    Raises:
        OSError: the file cannot be written.
    """
    rows = sorted(disagreements(record), key=lambda d: -d["confidence"])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for d in rows:
            w.writerow([d["item_id"], d["axis"], format_label(d["gold"], d["axis_kind"]),
                        format_label(d["judge"], d["axis_kind"]), f"{d['confidence']:.3f}", d["text"], "", ""])
    return len(rows)


# --------------------------------------------------------------------------- import


def default_out_path(gold_path: Path) -> Path:
    """The next version's file name: ``eval_gold_v1.jsonl`` → ``eval_gold_v2.jsonl``; ``x.jsonl`` → ``x_v2.jsonl``."""
    gold_path = Path(gold_path)
    m = re.fullmatch(r"(.*_v)(\d+)", gold_path.stem)
    stem = f"{m.group(1)}{int(m.group(2)) + 1}" if m else f"{gold_path.stem}_v2"
    return gold_path.with_name(stem + gold_path.suffix)


def _parse_label(cell: str, axis: AxisDef, line: int) -> Any:
    """A corrected_label cell as the gold row's value; RecordError naming line and allowed ids."""
    allowed = ", ".join(axis.ids)
    cell = cell.strip()
    if axis.kind == "single":
        if cell not in axis.ids:
            raise RecordError(f"{cell!r} is not a {axis.name} id; allowed: {allowed}", line=line,
                              field="corrected_label")
        return cell
    parts = [p.strip() for p in cell.split(SEP)] if cell else []
    if parts == [NONE_CLASS]:
        parts = []
    hint = (f"{axis.min_items}–{axis.max_items} {axis.name} ids joined by '|'"
            + (f" ({NONE_CLASS} for none)" if axis.min_items == 0 else ""))
    bad = [p for p in parts if p not in axis.ids]
    if not cell or bad:
        what = "empty" if not cell else f"unknown id(s) {', '.join(map(repr, bad))}"
        raise RecordError(f"{what}; expected {hint}; allowed: {allowed}", line=line, field="corrected_label")
    if len(set(parts)) != len(parts):
        raise RecordError(f"repeated id in {cell!r}; expected {hint}", line=line, field="corrected_label")
    if not axis.min_items <= len(parts) <= axis.max_items:
        raise RecordError(f"{len(parts)} ids in {cell!r}; expected {hint}", line=line, field="corrected_label")
    return parts


def _read_rows(csv_path: Path) -> list[tuple[int, dict[str, str]]]:
    """(starting line number, row) per non-blank CSV row; RecordError on missing columns."""
    text = Path(csv_path).read_text(encoding="utf-8-sig")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise RecordError(f"{csv_path}: empty file; expected the columns {', '.join(COLUMNS)}", line=1) from None
    missing = [c for c in ("item_id", "axis", "decision", "corrected_label") if c not in header]
    if missing:
        raise RecordError(f"{csv_path}: missing column(s) {', '.join(missing)}; expected {', '.join(COLUMNS)}",
                          line=1, field=missing[0])
    rows = []
    start = reader.line_num + 1
    for cells in reader:
        if any(c.strip() for c in cells):
            rows.append((start, dict(zip(header, cells + [""] * (len(header) - len(cells))))))
        start = reader.line_num + 1
    return rows


def import_review(csv_path: Path, gold_path: Path, out_path: Path | None = None) -> Path:
    """Apply a reviewer's decisions to a gold set, writing a new gold-set version.

    Each CSV row's ``decision`` must be ``gold wrong``, ``judge wrong`` or empty (case and
    surrounding spaces ignored). Empty rows and ``judge wrong`` rows change nothing (the
    gold label stands); ``corrected_label`` must then be empty. A ``gold wrong`` row needs
    ``corrected_label``: one taxonomy id of the axis, or for operation axes ``a|b|c`` within
    the axis's item bounds (1–3 for eval, 0–3 for documents; ``__none__`` for no operation).
    The new file copies every line of the old one byte for byte, except the
    ``annotator == "gold"`` rows of corrected items, whose axis values are replaced
    (annotator_a/annotator_b rows are kept as they were). Nothing is written unless every
    row is valid; the old file is never modified.

    Args:
        csv_path: the reviewed CSV (columns as :func:`export_disagreements` writes them).
        gold_path: the gold set the review applies to (the record's gold file).
        out_path: the new file; default :func:`default_out_path` (``_v1`` → ``_v2``, same folder).

    Returns:
        The path of the new gold-set file.

    Raises:
        RecordError: a bad CSV row (the message names its line, the field and the allowed
            values): unknown item id or axis, bad decision, bad or missing corrected_label,
            a ``gold_label`` cell that differs from the gold file's label (the review was
            exported from another gold version), a correction equal to the current gold
            label, or two rows correcting the same (item, axis) differently. Also raised
            by :func:`calibration.gold.load_gold` for an invalid gold file.
        ConfigError: ``out_path`` exists (never overwritten), equals ``gold_path``, or the
            default folder is not writable (pass ``out_path``).
        OSError: the CSV or gold file cannot be read.
    """
    gold_path = Path(gold_path)
    taxonomy = load_taxonomy()
    gold = load_gold(gold_path, taxonomy)
    corrections = _corrections(Path(csv_path), gold, gold_path, {a.name: a for a in taxonomy.axes(gold.kind)})
    out = _new_version_path(gold_path, out_path)
    write_gold_file(out, _corrected_lines(gold_path, corrections), taxonomy)
    return out


def _corrections(csv_path: Path, gold: GoldSet, gold_path: Path, axes: dict[str, AxisDef]) -> dict[str, dict[str, Any]]:
    """``{item id: {axis: corrected value}}`` from the ``gold wrong`` rows of a review CSV.

    Raises:
        RecordError: a bad row (see :func:`import_review`), or two rows correcting one (item, axis) differently.
    """
    corrections: dict[str, dict[str, Any]] = {}
    seen_at: dict[tuple[str, str], int] = {}
    for line, row in _read_rows(csv_path):
        correction = _row_correction(line, row, gold, gold_path, axes)
        if correction is None:
            continue
        item_id, axis_name, value = correction
        earlier = corrections.get(item_id, {}).get(axis_name)
        if axis_name in corrections.get(item_id, {}) and _key(earlier) != _key(value):
            raise RecordError(f"{item_id} / {axis_name} is corrected differently on line "
                              f"{seen_at[(item_id, axis_name)]}", line=line, field="corrected_label")
        corrections.setdefault(item_id, {})[axis_name] = value
        seen_at[(item_id, axis_name)] = line
    return corrections


def _row_correction(line: int, row: dict[str, str], gold: GoldSet, gold_path: Path, axes: dict[str, AxisDef]
                    ) -> tuple[str, str, Any] | None:
    """``(item id, axis, corrected value)`` of one review row; None for a row that changes nothing.

    Raises:
        RecordError: the row's decision, item, axis, gold_label or corrected_label is not valid.
    """
    item_id, axis_name = row.get("item_id", "").strip(), row.get("axis", "").strip()
    decision = " ".join(row.get("decision", "").split()).lower()
    corrected = row.get("corrected_label", "").strip()
    if decision not in DECISIONS:
        raise RecordError(f"unknown decision {row.get('decision')!r}; allowed: "
                          f"'{GOLD_WRONG}', '{JUDGE_WRONG}' or empty", line=line, field="decision")
    if not decision:
        if corrected:
            raise RecordError(f"corrected_label {corrected!r} without a decision; set decision to "
                              f"'{GOLD_WRONG}' to apply it", line=line, field="decision")
        return None
    if item_id not in gold.items:
        raise RecordError(f"item {item_id!r} is not in {gold_path.name}", line=line, field="item_id")
    if axis_name not in axes:
        raise RecordError(f"unknown {gold.kind} axis {axis_name!r}; allowed: {', '.join(axes)}",
                          line=line, field="axis")
    if decision == JUDGE_WRONG:
        if corrected:
            raise RecordError(f"corrected_label {corrected!r} is only used with decision '{GOLD_WRONG}' "
                              f"(here: '{JUDGE_WRONG}', the gold label stands)", line=line,
                              field="corrected_label")
        return None
    axis = axes[axis_name]
    value = _parse_label(corrected, axis, line)
    current = gold.labels[GOLD][item_id].get(axis_name)
    exported = row.get("gold_label", "").strip()
    if exported and exported != format_label(current, axis.kind):
        raise RecordError(f"gold_label {exported!r} differs from {format_label(current, axis.kind)!r} in "
                          f"{gold_path.name} for {item_id}: was the review exported from another gold version?",
                          line=line, field="gold_label")
    if _key(value) == _key(current):
        raise RecordError(f"corrected_label {corrected!r} equals the current gold label of {item_id}",
                          line=line, field="corrected_label")
    return item_id, axis_name, value


def _new_version_path(gold_path: Path, out_path: Path | None) -> Path:
    """The new gold set's path: ``out_path``, else :func:`default_out_path`.

    Raises:
        ConfigError: it is ``gold_path``, it exists, or the default folder is not writable.
    """
    out = Path(out_path) if out_path is not None else default_out_path(gold_path)
    if out.resolve() == gold_path.resolve():
        raise ConfigError(f"{out}: the new gold set must not replace the old one; choose another -o path")
    if out.exists():
        raise ConfigError(f"{out} exists; refusing to overwrite it (choose another -o path)")
    if out_path is None and not os.access(out.parent, os.W_OK):
        raise ConfigError(f"{out.parent} is read-only; pass -o/--output with a writable path for the new gold set")
    return out


def _corrected_lines(gold_path: Path, corrections: dict[str, dict[str, Any]]) -> list[bytes]:
    """The gold file's lines, byte for byte, with the corrections applied to the ``gold`` rows."""
    new_lines = []
    for raw in gold_path.read_bytes().splitlines(keepends=True):
        body = raw.rstrip(b"\r\n")
        if body.strip():
            row = json.loads(body.decode("utf-8-sig"))
            fix = corrections.get(row.get("id"))
            if fix and row.get("annotator") == GOLD:
                row.update(fix)
                bom = b"\xef\xbb\xbf" if body.startswith(b"\xef\xbb\xbf") else b""
                raw = bom + json.dumps(row, ensure_ascii=False).encode("utf-8") + raw[len(body):]
        new_lines.append(raw)
    return new_lines


def write_gold_file(out: Path, lines: list[bytes], taxonomy: Taxonomy) -> None:
    """Write a new gold-set file (never over an existing one); remove it again unless it loads as a gold set.

    Raises:
        ConfigError: ``out`` exists (or appeared meanwhile) or cannot be written.
        RecordError / TaxonomyError: the written file does not load (see :func:`calibration.gold.load_gold`);
            it is removed.
    """
    try:
        f = out.open("xb")  # "x": fails if the file appeared meanwhile
    except FileExistsError:
        raise ConfigError(f"{out} exists; refusing to overwrite it (choose another -o path)") from None
    except OSError as e:
        raise ConfigError(f"{out}: cannot write the new gold set ({e}); pass -o/--output with a writable path") from e
    try:
        with f:
            f.write(b"".join(lines))
    except BaseException:
        out.unlink(missing_ok=True)  # never leave half a gold set behind
        raise
    try:
        load_gold(out, taxonomy)  # the new version must load like the old one
    except Exception:
        out.unlink(missing_ok=True)
        raise
