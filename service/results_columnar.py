"""Column-at-a-time reading of a Parquet results file (slicelab, BBH and math layouts).

:func:`service.results.load_results` reads JSONL and unusual Parquet files record by record;
a Parquet file whose values are all plain is read here instead, with pyarrow, batch by batch
(:data:`BATCH_ROWS` rows), only the columns a results row needs, and — when ``runs`` is given —
only the rows of those runs: a row group whose ``run`` statistics (min/max) exclude every
requested run is not read at all, other rows are dropped right after their run is known.
Memory then depends on the rows kept, not on how many runs the file holds.

The rows are the record path's rows, value for value. Whenever a value would need that path's
per-record handling — a null or blank id, an id or count that is not an integer or string,
``correct``/``score`` that is missing or not a plain 0/1 value, counts out of range, text fields
that are not strings, a set-up column that is not a scalar, or a generation marker column — the
reader returns None and the caller reads the file record by record, which then reports the
same errors as before.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from slicelab.service.termination import normalize_finish_reason

#: Rows read from the file at a time.
BATCH_ROWS = 65_536
#: Every character Python's ``str.strip()`` removes (``c.isspace()``): a value made only of these is blank.
WHITESPACE = ("\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
              "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")
_COUNTS = ("n_samples", "n_correct")


@dataclass
class ColumnarRead:
    """The rows of one file and the set-up records of its runs.

    Attributes:
        table: ``pyarrow.Table[sample_id, run, correct, output, extracted_answer, finish_reason,
            n_samples, n_correct, source_line, output_chars, output_tokens]``, in file order.
        setup: ``[(run, record)]``, one per distinct combination of a run and its set-up columns
            (``record``: those columns by name, in file column order, as pandas reads them).
    """

    table: pa.Table
    setup: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


def read_columnar(path: Path, id_keys: tuple[str, ...], run_keys: tuple[str, ...], *, setup_columns: Collection[str] = (),
                  marker_columns: Collection[str] = (), runs: Collection[str] | None = None,
                  scores_only: bool = False) -> ColumnarRead | None:
    """Read ``path`` column by column, or None when the record-by-record path must read it.

    Args:
        path: a Parquet results file.
        id_keys, run_keys: the fields joined (``/`` and ``:``) into the sample id and the run.
        setup_columns: columns that carry set-up fields (collected per distinct value set).
        marker_columns: generation marker columns; a file holding one is left to the record path.
        runs: read only rows whose run is one of these (None: every row).
        scores_only: leave ``output``, ``extracted_answer``, ``finish_reason``, ``output_chars``
            and ``output_tokens`` null (not read).

    Returns:
        A :class:`ColumnarRead`, or None (see the module docstring).

    Raises:
        pyarrow.ArrowInvalid (and other pyarrow errors): the file is not readable Parquet.
    """
    pf = pq.ParquetFile(path)
    names = pf.schema_arrow.names
    if not set(id_keys) | set(run_keys) <= set(names) or set(marker_columns) & set(names):
        return None
    text = () if scores_only else ("output", "extracted_answer", "finish_reason", "finish_reason_inferred",
                                   "output_chars", "output_tokens", "completion_tokens")
    wanted = (*id_keys, *run_keys, "correct", "score", *_COUNTS, *text, *setup_columns)
    columns = [c for c in dict.fromkeys(wanted) if c in names]
    setup_cols = [c for c in names if c in set(setup_columns)]
    wanted_runs = pa.array(sorted(runs), pa.string()) if runs is not None else None
    parts, setups, offset = [], [], 0
    for group in range(pf.num_row_groups):
        size = pf.metadata.row_group(group).num_rows
        if wanted_runs is not None and _group_excluded(pf, group, run_keys, wanted_runs):
            offset += size
            continue
        for batch in pf.iter_batches(batch_size=BATCH_ROWS, row_groups=[group], columns=columns):
            lines = np.arange(offset + 1, offset + batch.num_rows + 1)
            offset += batch.num_rows
            built = _batch(pa.Table.from_batches([batch]), lines, id_keys, run_keys, wanted_runs, setup_cols)
            if built is None:
                return None
            if built[0].num_rows:
                parts.append(built[0])
                setups.append(built[1])
    if not parts:
        return ColumnarRead(pa.table({}))
    setup = pa.concat_tables(setups).group_by(setups[0].column_names, use_threads=False).aggregate([])
    return ColumnarRead(pa.concat_tables(parts), [(r.pop("run"), r) for r in _setup_records(setup, setup_cols)])


def _group_excluded(pf: pq.ParquetFile, group: int, run_keys: tuple[str, ...], runs: pa.Array) -> bool:
    """True when the row group's statistics show that no row holds a requested run."""
    if len(run_keys) != 1 or not pa.types.is_string(pf.schema_arrow.field(run_keys[0]).type):
        return False
    meta = pf.metadata.row_group(group)
    stats = meta.column(pf.schema_arrow.get_field_index(run_keys[0])).statistics
    if stats is None or not stats.has_min_max:
        return False
    return all(r < stats.min or r > stats.max for r in runs.to_pylist())


def _batch(t: pa.Table, lines: np.ndarray, id_keys: tuple[str, ...], run_keys: tuple[str, ...],
           runs: pa.Array | None, setup_cols: list[str]) -> tuple[pa.Table, pa.Table] | None:
    if runs is not None:  # rows of other runs, and rows without a run, are not requested
        keep = _requested(t, run_keys, runs)
        if keep is None:
            return None
        t, lines = t.filter(keep), lines[keep.to_numpy(zero_copy_only=False)]
    run, sample_id, correct = _key(t, run_keys, ":"), _key(t, id_keys, "/"), _correct(t)
    if run is None or sample_id is None or correct is None:
        return None
    counts = _counts(t, correct)
    output = _string(t, "output")
    extracted = _string(t, "extracted_answer")
    reason, inferred = _finish(t, "finish_reason"), _finish(t, "finish_reason_inferred")
    chars = _count(t, "output_chars", pc.utf8_length(output) if output not in (None, False) else None)
    tokens = _count(t, "output_tokens" if "output_tokens" in t.column_names else "completion_tokens", None)
    if False in (output, extracted, reason, inferred, chars, tokens) or counts is None:
        return None
    n = t.num_rows
    rows = pa.table({"sample_id": sample_id, "run": run, "correct": correct,
                     "output": _or_null(output, n), "extracted_answer": _or_null(extracted, n),
                     "finish_reason": _or_null(_first(reason, inferred), n),
                     "n_samples": counts[0], "n_correct": counts[1], "source_line": pa.array(lines),
                     "output_chars": _or_null(chars, n, pa.int64()).cast(pa.int64()),
                     "output_tokens": _or_null(tokens, n, pa.int64()).cast(pa.int64())})
    if any(not _scalar(t.schema.field(c).type) for c in setup_cols):
        return None
    setup = t.select(setup_cols).append_column("run", run)
    return rows, setup.group_by(setup.column_names, use_threads=False).aggregate([])


def _requested(t: pa.Table, run_keys: tuple[str, ...], runs: pa.Array) -> pa.ChunkedArray | None:
    """Which rows hold a requested run (None: a run column the record path must read)."""
    run = _joined(t, run_keys, ":")
    return None if run is None else pc.fill_null(pc.is_in(run, value_set=runs), False)


def _scalar(kind: pa.DataType) -> bool:
    return pa.types.is_primitive(kind) or pa.types.is_string(kind) or pa.types.is_large_string(kind)


def _plain_strings(col: pa.ChunkedArray) -> pa.ChunkedArray | None:
    kind = col.type
    if pa.types.is_dictionary(kind):
        col, kind = col.cast(kind.value_type), kind.value_type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return col.cast(pa.string())
    return None


def _joined(t: pa.Table, keys: tuple[str, ...], sep: str) -> pa.ChunkedArray | None:
    """The key columns as text joined by ``sep`` (as :func:`service.samples.id_text` writes strings and
    integers); None when a column is of another type."""
    parts = []
    for key in keys:
        col = t.column(key)
        text = col.cast(pa.string()) if pa.types.is_integer(col.type) else _plain_strings(col)
        if text is None:
            return None
        parts.append(text)
    return parts[0] if len(parts) == 1 else pc.binary_join_element_wise(*parts, sep)


def _key(t: pa.Table, keys: tuple[str, ...], sep: str) -> pa.ChunkedArray | None:
    """The joined key; None when a part is null or blank, or of a type :func:`_joined` does not read."""
    for key in keys:
        text = _plain_strings(t.column(key))
        if t.column(key).null_count or (text is not None and pc.any(pc.equal(pc.utf8_length(
                pc.utf8_trim(text, characters=WHITESPACE)), 0)).as_py()):
            return None
    return _joined(t, keys, sep)


def _correct(t: pa.Table) -> pa.ChunkedArray | None:
    """``correct`` (bool, or 0/1 numbers), else ``score >= 1`` (bool, or numbers in [0, 1]); no nulls."""
    name = "correct" if "correct" in t.column_names else "score" if "score" in t.column_names else None
    if name is None:
        return None
    col = t.column(name)
    if col.null_count:
        return None
    if pa.types.is_boolean(col.type):
        return col
    if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
        return None
    values = col.to_numpy()
    if name == "correct":
        return pa.chunked_array([values == 1]) if np.isin(values, (0, 1)).all() else None
    return pa.chunked_array([values >= 1]) if ((values >= 0) & (values <= 1)).all() else None


def _counts(t: pa.Table, correct: pa.ChunkedArray) -> tuple[pa.Array, pa.Array] | None:
    """(n_samples, n_correct): 1 and ``correct`` without the columns; integral, 0 <= c <= n, n >= 1."""
    present = [c for c in _COUNTS if c in t.column_names]
    if not present:
        return pa.array(np.ones(t.num_rows, dtype=np.int64)), pa.array(correct.to_numpy().astype(np.int64))
    if len(present) < 2:
        return None
    out = []
    for name in _COUNTS:
        col = t.column(name)
        if col.null_count or not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
            return None
        values = col.to_numpy()
        if pa.types.is_floating(col.type) and not np.all(np.mod(values, 1) == 0):
            return None
        out.append(values.astype(np.int64))
    n, c = out
    if not ((n >= 1) & (c >= 0) & (c <= n)).all():
        return None
    return pa.array(n), pa.array(c)


def _string(t: pa.Table, name: str) -> pa.ChunkedArray | None | bool:
    """The column as strings (None: absent; False: not a string column)."""
    if name not in t.column_names:
        return None
    text = _plain_strings(t.column(name))
    return False if text is None else text


def _finish(t: pa.Table, name: str) -> pa.ChunkedArray | None | bool:
    """The column normalised by :func:`service.termination.normalize_finish_reason`, one call per distinct value."""
    text = _string(t, name)
    if text is None or text is False:
        return text
    codes = pc.dictionary_encode(text).combine_chunks()
    normal = pa.array([normalize_finish_reason(v) for v in codes.dictionary.to_pylist()], pa.string())
    return pa.chunked_array([normal.take(codes.indices)])


def _count(t: pa.Table, name: str, default: pa.ChunkedArray | None) -> pa.ChunkedArray | None | bool:
    """A non-negative count as an int (floats truncated), else ``default`` (also for non-number columns);
    False for an infinite count (the record path's error)."""
    if name not in t.column_names:
        return default
    col = t.column(name)
    if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
        return default
    if pa.types.is_floating(col.type) and pc.any(pc.is_inf(col)).as_py():
        return False
    ok = pc.fill_null(pc.greater_equal(col, 0), False)  # NaN >= 0 is false
    values = pc.cast(pc.trunc(col) if pa.types.is_floating(col.type) else col, pa.int64(), safe=False)
    fallback = default if default is not None else pa.nulls(len(col), pa.int64())
    return pc.if_else(ok, values, pc.cast(fallback, pa.int64()))


def _first(col: pa.ChunkedArray | None, other: pa.ChunkedArray | None) -> pa.ChunkedArray | None:
    """``col``'s value, else ``other``'s, row by row (either may be absent)."""
    return other if col is None else col if other is None else pc.coalesce(col, other)


def _or_null(col: Any, n: int, kind: pa.DataType = pa.string()) -> Any:
    return col if col is not None else pa.nulls(n, kind)


def _setup_records(setup: pa.Table, setup_cols: list[str]) -> list[dict[str, Any]]:
    """One dict per distinct (run, set-up values) row, columns in file order, values as pandas gives them."""
    frame = setup.to_pandas()
    return [{"run": rec["run"], **{c: rec[c] for c in setup_cols}} for rec in frame.to_dict(orient="records")]
