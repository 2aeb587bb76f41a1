"""Raw records of the generic input files: JSONL, JSON arrays, CSV and Parquet.

Each reader yields one :class:`RawRecord` per input record, in input order: the record as a
dict, or the reason it could not become one (with the 1-based line or position). Only a file
that cannot be read at all raises :class:`~service.errors.InputFormatError`. JSONL is read in
1 MiB blocks (:data:`BLOCK_BYTES`): a line longer than :data:`MAX_RECORD_BYTES` is refused
without being held in memory.
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import math
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

from slicelab.service.errors import InputFormatError

_RAW_CHARS = 2000  # characters of a rejected record kept in Rejected.raw
#: Longest JSONL line read, bytes (16 MiB). A longer line is rejected while it is
#: skipped in 1 MiB blocks, so memory stays bounded whatever the file holds.
MAX_RECORD_BYTES = 16 << 20
#: Bytes read at a time from a JSONL file (1 MiB).
BLOCK_BYTES = 1 << 20
#: Reader choice for a detected JSON array saved under a .jsonl name: the array when the
#: whole file is one, else JSONL lines.
ARRAY_OR_JSONL = "json-or-jsonl"


class RawRecord(NamedTuple):
    """One input record before interpretation: a dict, or the error that prevented one.

    Attributes:
        line: 1-based line (JSONL, CSV: the row's first line) or position (JSON array, Parquet).
        record: the record, or None when it could not be read.
        error: why it could not be read (None when ``record`` is set).
        raw: the record's text, clipped to 2,000 characters (:func:`clip`).
    """

    line: int
    record: dict[str, Any] | None
    error: str | None
    raw: str


def clip(text: str) -> str:
    """``text`` cut to its first 2,000 characters (``…`` appended when cut)."""
    return text if len(text) <= _RAW_CHARS else text[:_RAW_CHARS] + "…"


def read_lines(fh, limit: int) -> Iterator[tuple[bytes, int]]:
    """``(line, length in bytes)`` per line of a binary file, read in 1 MiB blocks.

    A line longer than ``limit`` bytes (newline included) comes back as its first
    2,000 bytes with its full length; the rest is read and dropped, so
    memory stays near ``limit`` whatever the line's size.
    """
    while True:
        part = fh.readline(BLOCK_BYTES)
        if not part:
            return
        parts, n = [part], len(part)
        while not part.endswith(b"\n"):
            part = fh.readline(BLOCK_BYTES)
            if not part:
                break
            n += len(part)
            if n <= limit:
                parts.append(part)
            elif len(parts) > 1:
                parts = [parts[0][:_RAW_CHARS]]  # over the limit: keep only the head
        yield (parts[0][:_RAW_CHARS], n) if n > limit else (b"".join(parts), n)


def iter_jsonl(path: Path) -> Iterator[RawRecord]:
    """The records of a JSONL file, one per non-blank line (a leading UTF-8 BOM is dropped)."""
    with path.open("rb") as fh:
        for line_no, (data, size) in enumerate(read_lines(fh, MAX_RECORD_BYTES), start=1):
            if size > MAX_RECORD_BYTES:
                raw = clip(data.decode("utf-8", "replace"))
                yield RawRecord(line_no, None, f"line is {size:,} bytes, over the limit of {MAX_RECORD_BYTES:,} "
                                               "bytes (MAX_RECORD_BYTES); the record was skipped", raw)
                continue
            if line_no == 1 and data.startswith(b"\xef\xbb\xbf"):
                data = data[3:]
            if not data.strip():
                continue
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as e:
                raw = clip(data.decode("utf-8", "replace").rstrip("\r\n"))
                yield RawRecord(line_no, None, f"invalid UTF-8 at byte {e.start}: {e.reason}", raw)
                continue
            yield _parse_json_record(line_no, text.rstrip("\r\n"))


def _parse_json_record(line: int, text: str) -> RawRecord:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        return RawRecord(line, None, f"invalid JSON: {e}", clip(text))
    if not isinstance(obj, dict):
        return RawRecord(line, None, f"not a JSON object (got {type(obj).__name__})", clip(text))
    return RawRecord(line, obj, None, clip(text))


def load_json(path: Path) -> Any:
    """The whole file as one JSON value (a leading UTF-8 BOM is dropped).

    Raises:
        InputFormatError: the file is not valid UTF-8 or not valid JSON (the message names the position).
    """
    data = path.read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise InputFormatError(f"{path}: not valid UTF-8 at byte {e.start}: {e.reason}") from None
    except json.JSONDecodeError as e:
        raise InputFormatError(f"{path}: not valid JSON: {e}") from None


def iter_json_array(path: Path) -> Iterator[RawRecord]:
    """The records of a file holding one JSON array (position as line).

    Raises:
        InputFormatError: on the call: the file is not valid JSON, or not an array.
    """
    obj = load_json(path)  # loaded now, so a bad file raises when the reader is called
    if not isinstance(obj, list):
        raise InputFormatError(f"{path}: expected a JSON array of objects, got a {type(obj).__name__}")

    def raws() -> Iterator[RawRecord]:
        for i, item in enumerate(obj, start=1):
            raw = clip(json.dumps(item, ensure_ascii=False, default=str))
            if isinstance(item, dict):
                yield RawRecord(i, item, None, raw)
            else:
                yield RawRecord(i, None, f"not a JSON object (got {type(item).__name__})", raw)

    return raws()


def iter_array_or_jsonl(path: Path) -> Iterator[RawRecord]:
    """A .jsonl file that starts like a JSON array: the array when the whole file is one, else JSONL lines."""
    try:
        return iter_json_array(path)
    except InputFormatError:
        return iter_jsonl(path)


def iter_csv(path: Path) -> Iterator[RawRecord]:
    """The rows of a CSV file with a header, as ``{column: cell}`` (an empty cell is None).

    Raises:
        InputFormatError: during iteration: the header repeats a column name.
    """
    # surrogateescape keeps invalid bytes as lone surrogates, so only their row is rejected.
    with path.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            return
        if len(set(header)) != len(header):
            raise InputFormatError(f"{path}: duplicate column names in the CSV header: {header}")
        end = reader.line_num
        for row in reader:
            start, end = end + 1, reader.line_num
            if not row or all(not cell.strip() for cell in row):
                continue
            raw = clip(",".join(row).encode("utf-8", "surrogateescape").decode("utf-8", "replace"))
            bad = next((name for name, cell in zip(header, row) if _has_surrogate(cell)), None)
            if bad is not None or any(_has_surrogate(cell) for cell in row):
                where = f"column {bad!r}" if bad is not None else "this row"
                yield RawRecord(start, None, f"invalid UTF-8 in {where}", raw)
            elif len(row) != len(header):
                yield RawRecord(start, None, f"row has {len(row)} fields, the header has {len(header)}", raw)
            else:
                yield RawRecord(start, {k: (v if v != "" else None) for k, v in zip(header, row)}, None, raw)


def _has_surrogate(text: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def iter_parquet(path: Path) -> Iterator[RawRecord]:
    """The rows of a Parquet file as JSON-serialisable dicts (:func:`jsonable`; pandas index columns dropped).

    Raises:
        InputFormatError: during iteration: the file is not a readable Parquet file.
    """
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises several types for a bad file
        raise InputFormatError(f"{path}: not a readable Parquet file: {e}") from None
    row = 0
    for batch in pf.iter_batches(batch_size=1024):
        for rec in batch.to_pylist():
            row += 1
            rec = {k: jsonable(v) for k, v in rec.items() if not k.startswith("__index_level_")}
            yield RawRecord(row, rec, None, clip(json.dumps(rec, ensure_ascii=False, default=str)))


#: Record reader per generic format.
RECORD_READERS: dict[str, Callable[[Path], Iterator[RawRecord]]] = {
    "jsonl": iter_jsonl,
    "json": iter_json_array,
    "csv": iter_csv,
    "parquet": iter_parquet,
    ARRAY_OR_JSONL: iter_array_or_jsonl,
}


def jsonable(v: Any) -> Any:
    """A JSON-serialisable copy of ``v`` (numpy scalars/arrays, dates, bytes converted;
    NaN and ±Infinity, which JSON cannot hold, become None)."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, set)):
        return [jsonable(x) for x in v]
    if hasattr(v, "tolist"):  # numpy scalar or array
        return jsonable(v.tolist())
    if isinstance(v, (_dt.date, _dt.time)):
        return v.isoformat()
    if isinstance(v, _dt.timedelta):
        return v.total_seconds()
    if isinstance(v, Decimal):
        return float(v)
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return str(v)
