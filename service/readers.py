"""Read evaluation samples and pretraining documents from every supported file format.

Formats (see :func:`detect_format`): generic ``jsonl``, ``json`` (array of objects),
``csv`` and ``parquet`` records; lm-evaluation-harness ``--log_samples`` files
(``lm_eval``); Inspect AI logs, ``.json`` or ``.eval`` (``inspect``). A folder (an
lm-evaluation-harness output folder, or a folder of runs / logs) or a ``results_<timestamp>.json``
is read as every log file under it (:mod:`service.harness_logs`).

Every input record becomes exactly one yielded item, in input order: an
:class:`EvalSample` / :class:`Document`, or a :class:`Rejected` that says where the
record was (``source_file``, 1-based ``source_line``) and why it was refused. A bad
record never stops the file; only a file that cannot be read at all raises
:class:`InputFormatError`. JSONL is read in 1 MiB blocks: a line longer than
:data:`MAX_RECORD_BYTES` is rejected without being held in memory. NaN and
±Infinity (accepted by Python's JSON reader, not by JSON) become None in extra
fields, and a question that is one is rejected.
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from itertools import islice
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import ValidationError

from slicelab.service.errors import ConfigError, InputFormatError, RecordError
from slicelab.service.lm_eval_log import LOGLIKELIHOOD, chosen_option, metric_correct, option_loglikelihoods
from slicelab.service.samples import Document, EvalSample, Rejected, id_text

#: Every value ``fmt`` may take.
FORMATS = ("jsonl", "json", "csv", "parquet", "lm_eval", "inspect")

#: Source keys tried, in order, for each EvalSample field of a generic record.
EVAL_KEYS: dict[str, tuple[str, ...]] = {
    "id": ("id", "sample_id", "problem_id", "doc_id"),
    "question": ("question", "problem", "input", "prompt"),
    "reference_answer": ("reference_answer", "target", "answer", "gt"),
    "model_output": ("model_output", "output", "prediction", "response"),
    "extracted_answer": ("extracted_answer", "model_answer", "pred"),
    "correct": ("correct", "is_correct"),
    "finish_reason": ("finish_reason",),
    "task": ("task", "subject"),
    "benchmark": ("benchmark", "source"),
    "model": ("model",),
}
#: FieldMapping attribute -> EvalSample field it overrides.
_MAPPED = {
    "id_field": "id",
    "question_field": "question",
    "reference_field": "reference_answer",
    "output_field": "model_output",
    "correct_field": "correct",
    "task_field": "task",
    "benchmark_field": "benchmark",
}
_LM_EVAL_NAME = re.compile(
    r"^samples_(?P<task>.+)_(?P<ts>\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}(?:\.\d+)?)\.jsonl?$"
)
_FINISH = {"stop": "stop", "end_turn": "stop", "max_tokens": "length", "model_length": "length"}
_RAW_CHARS = 2000  # characters of a rejected record kept in Rejected.raw
#: Longest JSONL line read, bytes (16 MiB). A longer line is rejected while it is
#: skipped in 1 MiB blocks, so memory stays bounded whatever the file holds.
MAX_RECORD_BYTES = 16 << 20
_BLOCK = 1 << 20
_MISSING = object()
_ARRAY_OR_JSONL = "json-or-jsonl"  # internal reader choice for a detected array saved under a .jsonl name


@dataclass
class FieldMapping:
    """Source field names that override the default field resolution.

    Each value is a key or a dotted path into nested objects (``"doc.question"``;
    list items by index, ``"choices.0"``). A key that literally contains dots wins
    over the path reading. ``id_field`` may join several paths with ``+``
    (``"id+annotator"`` gives ids like ``"aime:2024-I-10/gold"``), for files that
    hold several rows per item. ``text_field`` is the document text; for eval
    samples it is an alias of ``question_field``.
    """

    id_field: str | None = None
    question_field: str | None = None
    reference_field: str | None = None
    output_field: str | None = None
    correct_field: str | None = None
    task_field: str | None = None
    benchmark_field: str | None = None
    text_field: str | None = None


class _Raw(NamedTuple):
    """One input record before interpretation: a dict, or the error that prevented one."""

    line: int
    record: dict[str, Any] | None
    error: str | None
    raw: str


class _Ctx(NamedTuple):
    path: Path
    mapping: FieldMapping
    benchmark: str | None
    fmt: str = ""


# --------------------------------------------------------------------------- public API


def _is_array_file(path: Path) -> bool:
    """Whether a .jsonl file is one JSON array (saved under a JSONL name), judged from its start.

    Yes when its first non-blank line starts with ``[`` and either is not a complete
    JSON value by itself (a pretty-printed array) or is an array followed by nothing
    but whitespace (a one-line array). A first line that is a complete value followed
    by more lines is JSONL: that line becomes a rejected record and the rest is read.
    Reads the first line (bounded by :data:`MAX_RECORD_BYTES`) and the rest only up
    to its first non-blank byte.
    """
    try:
        with path.open("rb") as fh:
            for data, size in _lines(fh, MAX_RECORD_BYTES):
                data = data.lstrip(b"\xef\xbb\xbf \t\r\n")
                if not data:
                    continue
                if not data.startswith(b"["):
                    return False
                if size <= MAX_RECORD_BYTES:
                    try:
                        json.loads(data.decode("utf-8"))
                    except ValueError:  # not a complete value on its own (or not UTF-8): the array goes on
                        return True
                return _rest_is_blank(fh)
    except OSError:
        return False
    return False


def _rest_is_blank(fh) -> bool:
    """Whether the rest of a binary file holds only whitespace (read in 1 MiB blocks up to the first other byte)."""
    while block := fh.read(_BLOCK):
        if block.strip():
            return False
    return True


def detect_format(path: str | Path) -> str:
    """Guess the input format of ``path`` from its name and, where needed, its start.

    Args:
        path: the input file.

    Returns:
        One of ``jsonl``, ``json``, ``csv``, ``parquet``, ``lm_eval``, ``inspect``.

    Raises:
        InputFormatError: the suffix is not one of the known ones.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        if _is_array_file(p):  # a JSON array saved under a .jsonl name: read it as the array it is
            return "lm_eval" if _array_looks_lm_eval(p) else "json"
        return "lm_eval" if _LM_EVAL_NAME.match(p.name) or _looks_lm_eval(p) else "jsonl"
    if suffix == ".eval":  # Inspect AI binary log: a zip of JSON (service.harness_logs)
        return "inspect"
    if suffix == ".json":
        if _array_looks_lm_eval(p):  # older harness versions saved samples_<task>_<ts>.json as one array
            return "lm_eval"
        return "inspect" if _looks_inspect(p) else "json"
    if suffix == ".csv":
        return "csv"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    raise InputFormatError(
        f"{p}: cannot tell the input format from suffix {suffix or '(none)'!r}; allowed formats: "
        f"{', '.join(FORMATS)} (.jsonl/.ndjson, .json, .eval, .csv, .parquet); choose one with --input-format (fmt= in Python)"
    )


def read_eval_samples(
    path: str | Path,
    *,
    fmt: str | None = None,
    mapping: FieldMapping | None = None,
    benchmark: str | None = None,
    limit: int | None = None,
) -> Iterator[EvalSample | Rejected]:
    """Read evaluation samples from one file, lazily and in input order.

    Args:
        path: the input file.
        fmt: one of :data:`FORMATS`; detected with :func:`detect_format` when None.
        mapping: source-field overrides (applied to every format).
        benchmark: benchmark name for records that carry none (generic formats), or
            instead of ``"lm_eval:<task>"`` / ``"inspect:<task>"`` for logs.
        limit: stop after this many yielded items (samples and rejects together).

    Yields:
        One :class:`EvalSample` or :class:`Rejected` per input record (blank JSONL/CSV
        lines yield nothing). A record is rejected when it is not valid UTF-8 or JSON,
        lacks a question, has an unreadable ``correct`` value, or repeats an earlier id
        (files with several rows per item need a composite ``mapping.id_field``).

    Raises:
        InputFormatError: on the call: the file is missing, its format is unknown, or
            (json, inspect) the whole file is not valid JSON of the expected shape;
            during iteration: a CSV header repeats a column, or a Parquet file is unreadable.
        ConfigError: ``limit`` is negative.
    """
    from slicelab.service.harness_logs import is_log_bundle, read_log_samples

    if is_log_bundle(path):  # an lm-eval output folder, a folder of logs, or a results_<ts>.json
        _check_limit(limit)
        return islice(read_log_samples(path, mapping=mapping, benchmark=benchmark), limit)
    p, fmt = _check(path, fmt, limit)
    ctx = _Ctx(p, mapping or FieldMapping(), benchmark, fmt)
    if fmt == "inspect":
        items: Iterable[EvalSample | Rejected] = _inspect_samples(ctx)
    elif fmt == "lm_eval":
        records = _iter_array_or_jsonl(p) if p.suffix.lower() == ".json" or _is_array_file(p) else _iter_jsonl(p)
        items = _convert(records, ctx, *_lm_eval_builder(p))
    else:
        items = _convert(_RECORD_READERS[fmt](p), ctx, _generic_sample)
    return islice(_dedupe(items), limit)


def read_documents(
    path: str | Path,
    *,
    fmt: str | None = None,
    mapping: FieldMapping | None = None,
    limit: int | None = None,
) -> Iterator[Document | Rejected]:
    """Read pretraining documents from one file, lazily and in input order.

    The text comes from ``text`` (or ``mapping.text_field``), the id from ``id`` (or
    ``mapping.id_field``; else ``"<file stem>/<line>"``), ``source`` and ``url`` from
    the fields of those names; all other fields go to ``extra``.

    Args:
        path: a ``jsonl``, ``json``, ``csv`` or ``parquet`` file (``lm_eval`` files are
            read as plain JSONL).
        fmt: the format; detected with :func:`detect_format` when None.
        mapping: source-field overrides (``id_field``, ``text_field``).
        limit: stop after this many yielded items.

    Yields:
        One :class:`Document` or :class:`Rejected` per input record. Records whose text
        is missing, not a string, or empty/whitespace-only are rejected, as are
        repeated ids and lines that are not valid UTF-8 / JSON objects.

    Raises:
        InputFormatError: on the call: the file is missing, its format is unknown or is
            ``inspect``, or a json file is not a JSON array; during iteration: a CSV header
            repeats a column, or a Parquet file is unreadable.
        ConfigError: ``limit`` is negative.
    """
    p, fmt = _check(path, fmt, limit)
    if fmt == "inspect":
        raise InputFormatError(
            f"{p}: Inspect logs hold eval samples, not documents; use jsonl, json, csv or parquet"
        )
    reader = _iter_jsonl if fmt == "lm_eval" else _RECORD_READERS[fmt]
    items = _convert(reader(p), _Ctx(p, mapping or FieldMapping(), None), _document)
    return islice(_dedupe(items), limit)


# --------------------------------------------------------------------------- shared plumbing


def _check(path: str | Path, fmt: str | None, limit: int | None) -> tuple[Path, str]:
    p = Path(path)
    if fmt is not None and fmt not in FORMATS:
        raise InputFormatError(f"{p}: unknown format {fmt!r}; allowed formats: {', '.join(FORMATS)}")
    if not p.is_file():
        raise InputFormatError(f"{p}: no such file")
    _check_limit(limit)
    if fmt is None:
        fmt = detect_format(p)
        if fmt == "json" and p.suffix.lower() in (".jsonl", ".ndjson"):
            fmt = _ARRAY_OR_JSONL  # an array saved as .jsonl; line by line when the whole file is not one
    return p, fmt


def _check_limit(limit: int | None) -> None:
    if limit is not None and limit < 0:
        raise ConfigError(f"limit must be >= 0, got {limit}")


def _convert(
    raws: Iterable[_Raw],
    ctx: _Ctx,
    build: Callable[[dict, int, _Ctx], Any],
    id_of: Callable[[dict], str | None] | None = None,
) -> Iterator[Any]:
    """Turn raw records into samples/documents, every failure into a Rejected.

    ``id_of`` gives a rejected record's id (default: the generic id fields).
    """
    id_of = id_of or (lambda rec: _safe_id(rec, ctx.mapping.id_field))
    for r in raws:
        fallback_id = f"{ctx.path.stem}/{r.line}"
        if r.record is None:
            yield Rejected(
                id=fallback_id, source_file=str(ctx.path), source_line=r.line, reason=r.error or "", raw=r.raw
            )
            continue
        try:
            yield build(r.record, r.line, ctx)
        except RecordError as e:
            rid = id_of(r.record) or fallback_id
            yield Rejected(id=rid, source_file=str(ctx.path), source_line=r.line, reason=e.reason, raw=r.raw)


def _dedupe(items: Iterable[Any]) -> Iterator[Any]:
    """Reject every sample whose id an earlier item of the same file already had.

    Rejected items keep their own reason (their ids still count as seen).
    """
    first: dict[str, int | None] = {}
    for item in items:
        if item.id in first and not isinstance(item, Rejected):
            item = Rejected(
                id=item.id,
                source_file=item.source_file,
                source_line=item.source_line,
                reason=f"duplicate id {item.id!r} (first at line {first[item.id]})",
                raw=_clip(json.dumps(item.model_dump(exclude={"extra"}), ensure_ascii=False, default=str)),
            )
        else:
            first.setdefault(item.id, item.source_line)
        yield item


def _clip(text: str) -> str:
    return text if len(text) <= _RAW_CHARS else text[:_RAW_CHARS] + "…"


def _make(cls: type, /, **values: Any) -> Any:
    try:
        return cls(**values)
    except ValidationError as e:
        errs = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
        raise RecordError(f"invalid record: {errs}") from None


# --------------------------------------------------------------------------- raw record readers


def _lines(fh, limit: int) -> Iterator[tuple[bytes, int]]:
    """``(line, length in bytes)`` per line of a binary file, read in 1 MiB blocks.

    A line longer than ``limit`` bytes (newline included) comes back as its first
    ``_RAW_CHARS`` bytes with its full length; the rest is read and dropped, so
    memory stays near ``limit`` whatever the line's size.
    """
    while True:
        part = fh.readline(_BLOCK)
        if not part:
            return
        parts, n = [part], len(part)
        while not part.endswith(b"\n"):
            part = fh.readline(_BLOCK)
            if not part:
                break
            n += len(part)
            if n <= limit:
                parts.append(part)
            elif len(parts) > 1:
                parts = [parts[0][:_RAW_CHARS]]  # over the limit: keep only the head
        yield (parts[0][:_RAW_CHARS], n) if n > limit else (b"".join(parts), n)


def _iter_jsonl(path: Path) -> Iterator[_Raw]:
    with path.open("rb") as fh:
        for line_no, (data, size) in enumerate(_lines(fh, MAX_RECORD_BYTES), start=1):
            if size > MAX_RECORD_BYTES:
                raw = _clip(data.decode("utf-8", "replace"))
                yield _Raw(line_no, None, f"line is {size:,} bytes, over the limit of {MAX_RECORD_BYTES:,} bytes "
                                          "(MAX_RECORD_BYTES); the record was skipped", raw)
                continue
            if line_no == 1 and data.startswith(b"\xef\xbb\xbf"):
                data = data[3:]
            if not data.strip():
                continue
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as e:
                raw = _clip(data.decode("utf-8", "replace").rstrip("\r\n"))
                yield _Raw(line_no, None, f"invalid UTF-8 at byte {e.start}: {e.reason}", raw)
                continue
            yield _parse_json_record(line_no, text.rstrip("\r\n"))


def _parse_json_record(line: int, text: str) -> _Raw:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        return _Raw(line, None, f"invalid JSON: {e}", _clip(text))
    if not isinstance(obj, dict):
        return _Raw(line, None, f"not a JSON object (got {type(obj).__name__})", _clip(text))
    return _Raw(line, obj, None, _clip(text))


def _load_json(path: Path) -> Any:
    data = path.read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise InputFormatError(f"{path}: not valid UTF-8 at byte {e.start}: {e.reason}") from None
    except json.JSONDecodeError as e:
        raise InputFormatError(f"{path}: not valid JSON: {e}") from None


def _iter_json_array(path: Path) -> Iterator[_Raw]:
    obj = _load_json(path)  # loaded now, so a bad file raises when the reader is called
    if not isinstance(obj, list):
        raise InputFormatError(f"{path}: expected a JSON array of objects, got a {type(obj).__name__}")

    def raws() -> Iterator[_Raw]:
        for i, item in enumerate(obj, start=1):
            raw = _clip(json.dumps(item, ensure_ascii=False, default=str))
            if isinstance(item, dict):
                yield _Raw(i, item, None, raw)
            else:
                yield _Raw(i, None, f"not a JSON object (got {type(item).__name__})", raw)

    return raws()


def _iter_array_or_jsonl(path: Path) -> Iterator[_Raw]:
    """A .jsonl file that starts like a JSON array: the array when the whole file is one, else JSONL lines."""
    try:
        return _iter_json_array(path)
    except InputFormatError:
        return _iter_jsonl(path)


def _iter_csv(path: Path) -> Iterator[_Raw]:
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
            raw = _clip(",".join(row).encode("utf-8", "surrogateescape").decode("utf-8", "replace"))
            bad = next((name for name, cell in zip(header, row) if _has_surrogate(cell)), None)
            if bad is not None or any(_has_surrogate(cell) for cell in row):
                where = f"column {bad!r}" if bad is not None else "this row"
                yield _Raw(start, None, f"invalid UTF-8 in {where}", raw)
            elif len(row) != len(header):
                yield _Raw(start, None, f"row has {len(row)} fields, the header has {len(header)}", raw)
            else:
                yield _Raw(start, {k: (v if v != "" else None) for k, v in zip(header, row)}, None, raw)


def _has_surrogate(text: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def _iter_parquet(path: Path) -> Iterator[_Raw]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises several types for a bad file
        raise InputFormatError(f"{path}: not a readable Parquet file: {e}") from None
    row = 0
    for batch in pf.iter_batches(batch_size=1024):
        for rec in batch.to_pylist():
            row += 1
            rec = {k: _jsonable(v) for k, v in rec.items() if not k.startswith("__index_level_")}
            yield _Raw(row, rec, None, _clip(json.dumps(rec, ensure_ascii=False, default=str)))


_RECORD_READERS: dict[str, Callable[[Path], Iterator[_Raw]]] = {
    "jsonl": _iter_jsonl,
    "json": _iter_json_array,
    "csv": _iter_csv,
    "parquet": _iter_parquet,
    _ARRAY_OR_JSONL: _iter_array_or_jsonl,
}


# --------------------------------------------------------------------------- values


def _get(rec: Any, path: str) -> Any:
    """Value at a key or dotted path, or _MISSING."""
    if isinstance(rec, dict) and path in rec:
        return rec[path]
    cur = rec
    for part in path.split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and part.lstrip("-").isdigit() and -len(cur) <= int(part) < len(cur):
            cur = cur[int(part)]
        else:
            return _MISSING
    return cur


def _is_null(v: Any) -> bool:
    return v is None or v is _MISSING or (isinstance(v, float) and math.isnan(v))


def _pick(rec: dict, keys: Iterable[str]) -> tuple[str | None, Any]:
    """The first key whose value is present and not null, with its value."""
    for k in keys:
        v = _get(rec, k)
        if not _is_null(v):
            return k, v
    return None, None


def _resolve_id(
    rec: dict, mapped: str | None, keys: Iterable[str] = EVAL_KEYS["id"]
) -> tuple[str | None, str | None]:
    """(id, key used); the key is None when no key gave an id. Raises for a missing mapped part."""
    if mapped:
        parts = [mapped] if mapped in rec else mapped.split("+")
        values = [_get(rec, part) for part in parts]
        for part, v in zip(parts, values):
            if _is_null(v) or str(v).strip() == "":
                raise RecordError(f"missing id field {part!r}", field=part)
        return "/".join(id_text(v) for v in values), mapped
    for k in keys:
        v = _get(rec, k)
        if not _is_null(v) and str(v).strip():
            return id_text(v), k
    return None, None


def _id_keys(rec: dict, id_key: str | None) -> list[str]:
    """The top-level keys an id was taken from (so they stay out of ``extra``)."""
    if not id_key:
        return []
    return [id_key] if id_key in rec else id_key.split("+")


def _safe_id(rec: dict, mapped: str | None) -> str | None:
    try:
        return _resolve_id(rec, mapped)[0]
    except RecordError:
        return None


def _question(value: Any, key: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise RecordError(f"question field {key!r} is not a string (got {type(value).__name__})", field=key)
    if isinstance(value, float) and not math.isfinite(value):
        raise RecordError(f"question field {key!r} is {value!r}, not text", field=key)
    text = str(value)
    if not text.strip():
        raise RecordError(f"empty question field {key!r}", field=key)
    return text


def _null_question(key: str, value: Any, ctx: _Ctx | None = None) -> str:
    """Why a question field that is present but null (None, NaN, an empty CSV cell) is refused."""
    if ctx is not None and ctx.fmt == "csv":
        return f"empty question field {key!r}"
    if isinstance(value, float):
        return f"question field {key!r} is NaN, not text"
    return f"question field {key!r} is null, not text"


def _answer(value: Any) -> str:
    if _is_null(value):
        return ""
    if isinstance(value, (list, tuple)):
        return " | ".join(_answer(v) for v in value)
    return value if isinstance(value, str) else str(value)


def _opt_str(value: Any) -> str | None:
    return None if _is_null(value) else (value if isinstance(value, str) else str(value))


def _correct(value: Any, key: str | None) -> bool | None:
    if _is_null(value):
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    raise RecordError(f"correct field {key!r} has value {value!r}; allowed: true/false, 1/0", field=key)


def _jsonable(v: Any) -> Any:
    """A JSON-serialisable copy of ``v`` (numpy scalars/arrays, dates, bytes converted;
    NaN and ±Infinity, which JSON cannot hold, become None)."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, set)):
        return [_jsonable(x) for x in v]
    if hasattr(v, "tolist"):  # numpy scalar or array
        return _jsonable(v.tolist())
    if isinstance(v, (_dt.date, _dt.time)):
        return v.isoformat()
    if isinstance(v, _dt.timedelta):
        return v.total_seconds()
    if isinstance(v, Decimal):
        return float(v)
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return str(v)


# --------------------------------------------------------------------------- generic records


def _generic_sample(rec: dict, line: int, ctx: _Ctx) -> EvalSample:
    m = ctx.mapping
    used: set[str] = set()

    def field(name: str, mapped: str | None = None) -> tuple[str | None, Any]:
        keys = (mapped,) if mapped else EVAL_KEYS[name]
        key, value = (mapped, _get(rec, mapped)) if mapped else _pick(rec, keys)
        # the chosen key, and candidates present but null, stay out of extra
        used.update(k for k in keys if k == key or (k in rec and _is_null(rec[k])))
        return key, (None if _is_null(value) else value)

    sid, id_key = _resolve_id(rec, m.id_field)
    used.update(_id_keys(rec, id_key))
    q_map = m.question_field or m.text_field
    q_key, q_value = field("question", q_map)
    if q_value is None:
        null_key = next((k for k in ((q_map,) if q_map else EVAL_KEYS["question"]) if _get(rec, k) is not _MISSING), None)
        if null_key is not None:  # the field is there, its value is null / NaN / an empty CSV cell
            raise RecordError(_null_question(null_key, _get(rec, null_key), ctx), field=null_key)
        tried = q_map if q_map else ", ".join(EVAL_KEYS["question"])
        present = ", ".join(sorted(rec)[:12]) or "none"
        raise RecordError(f"missing question field; tried: {tried}; the record has: {present} "
                          "(name the question field with --text-field)", field=q_map or "question")
    c_key, c_value = field("correct", m.correct_field)
    values = {
        "id": sid or f"{ctx.path.stem}/{line}",
        "question": _question(q_value, q_key or "question"),
        "reference_answer": _answer(field("reference_answer", m.reference_field)[1]),
        "model_output": _opt_str(field("model_output", m.output_field)[1]),
        "extracted_answer": _opt_str(field("extracted_answer")[1]),
        "correct": _correct(c_value, c_key),
        "finish_reason": _opt_str(field("finish_reason")[1]),
        "task": _opt_str(field("task", m.task_field)[1]) or "",
        "benchmark": _opt_str(field("benchmark", m.benchmark_field)[1]) or ctx.benchmark or ctx.path.stem,
        "model": _opt_str(field("model")[1]),
    }
    extra = {k: _jsonable(v) for k, v in rec.items() if k not in used}
    return _make(EvalSample, **values, source_file=str(ctx.path), source_line=line, extra=extra)


def _document(rec: dict, line: int, ctx: _Ctx) -> Document:
    m = ctx.mapping
    did, id_key = _resolve_id(rec, m.id_field, ("id",))
    text_key = m.text_field or "text"
    text = _get(rec, text_key)
    if _is_null(text):
        raise RecordError(f"missing text field; tried: {text_key}", field=text_key)
    if not isinstance(text, str):
        kind = type(text).__name__
        raise RecordError(f"text field {text_key!r} is not a string (got {kind})", field=text_key)
    if not text.strip():
        raise RecordError(f"empty text field {text_key!r}", field=text_key)
    used = {text_key, "source", "url", *_id_keys(rec, id_key)}
    return _make(
        Document,
        id=did or f"{ctx.path.stem}/{line}",
        text=text,
        source=_opt_str(rec.get("source")) or ctx.path.stem,
        url=_opt_str(rec.get("url")),
        source_file=str(ctx.path),
        source_line=line,
        extra={k: _jsonable(v) for k, v in rec.items() if k not in used},
    )


def _override(values: dict[str, Any], rec: dict, mapping: FieldMapping) -> None:
    """Apply explicit FieldMapping overrides to values computed for a log format."""
    for attr, target in _MAPPED.items():
        path = getattr(mapping, attr) or (mapping.text_field if attr == "question_field" else None)
        if not path:
            continue
        if target == "id":
            values["id"] = _resolve_id(rec, path)[0]
            continue
        v = _get(rec, path)
        if target == "question":
            if v is not _MISSING and _is_null(v):
                raise RecordError(_null_question(path, v), field=path)
            if _is_null(v):
                raise RecordError(f"missing question field; tried: {path}", field=path)
            values["question"] = _question(v, path)
        elif target == "correct":
            values["correct"] = _correct(v, path)
        elif target == "reference_answer":
            values[target] = _answer(v)
        else:
            values[target] = _opt_str(v) or ("" if target in ("task", "benchmark") else None)


# --------------------------------------------------------------------------- lm-evaluation-harness


def _looks_lm_eval(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            for data, size in _lines(fh, MAX_RECORD_BYTES):
                if size > MAX_RECORD_BYTES:
                    return False
                if data.strip():
                    obj = json.loads(data.decode("utf-8-sig"))
                    return isinstance(obj, dict) and "doc_id" in obj and "arguments" in obj
    except (OSError, ValueError):
        pass
    return False


def _array_looks_lm_eval(path: Path) -> bool:
    """Whether a file is one JSON array of lm-eval sample records (``doc_id`` and ``arguments``)."""
    try:
        obj = _load_json(path)
    except InputFormatError:
        return False
    return isinstance(obj, list) and bool(obj) and isinstance(obj[0], dict) and {"doc_id", "arguments"} <= obj[0].keys()


def _first_leaf(v: Any) -> Any:
    while isinstance(v, (list, tuple)) and v:
        v = v[0]
    return None if isinstance(v, (list, tuple)) else v


def _first_argument(arguments: Any) -> str | None:
    """The prompt: ``arguments["gen_args_0"]["arg_0"]``, or ``arguments[0][0]`` in older logs."""
    first = arguments
    if isinstance(first, dict) and first:
        first = first.get("gen_args_0", next(iter(first.values())))
    if isinstance(first, dict) and first:
        first = first.get("arg_0", next(iter(first.values())))
    elif isinstance(first, (list, tuple)):
        first = _first_leaf(first)
    return None if _is_null(first) or isinstance(first, (dict, list)) else str(first)


def _lm_eval_model(path: Path, timestamp: str | None) -> str | None:
    """The model name from the ``results_<timestamp>.json`` next to the samples file, if any."""
    if not timestamp:
        return None
    try:
        res = json.loads((path.parent / f"results_{timestamp}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if isinstance(res.get("model_name"), str) and res["model_name"]:
        return res["model_name"]
    args = str((res.get("config") or {}).get("model_args") or "")
    found = re.search(r"(?:^|,)\s*(?:pretrained|model)=([^,]+)", args)
    return found.group(1) if found else None


def _lm_eval_builder(path: Path) -> tuple[Callable[..., EvalSample], Callable[[dict], str | None]]:
    """(build, id_of) for the records of one lm-eval samples file."""
    named = _LM_EVAL_NAME.match(path.name)
    if named:
        task, ts = named["task"], named["ts"]
    elif path.name.startswith("samples_") and "_" in path.stem[len("samples_"):]:
        task, ts = path.stem[len("samples_"):].rsplit("_", 1)[0], None
    else:
        task, ts = path.stem, None
    model = _lm_eval_model(path, ts)

    def id_of(rec: dict) -> str | None:
        if _is_null(rec.get("doc_id")):
            return None
        return f"{task}/{rec['doc_id']}/{_opt_str(rec.get('filter')) or 'none'}"

    def build(rec: dict, line: int, ctx: _Ctx) -> EvalSample:
        if _is_null(rec.get("doc_id")):
            raise RecordError("missing doc_id field", field="doc_id")
        filt = _opt_str(rec.get("filter")) or "none"
        prompt = _first_argument(rec.get("arguments"))
        doc = rec.get("doc")
        _, question = _pick(doc, ("question", "problem")) if isinstance(doc, dict) else (None, None)
        if not (isinstance(question, str) and question.strip()):
            question = prompt
        if not question or not question.strip():
            tried = "doc.question, doc.problem, first argument"
            raise RecordError(f"missing question field; tried: {tried}", field="doc")
        metric = next((m for m in rec.get("metrics") or [] if isinstance(m, str) and m in rec), None)
        correct = metric_correct(rec, metric)
        lls = option_loglikelihoods(rec)
        choice = chosen_option(rec, lls) if lls else None
        resps = _first_leaf(rec.get("resps"))
        filtered = _first_leaf(rec.get("filtered_resps"))
        values: dict[str, Any] = {
            "id": id_of(rec),
            "benchmark": ctx.benchmark or f"lm_eval:{task}",
            "task": task,
            "question": question,
            "reference_answer": _answer(rec.get("target")),
            # resps holds the full generation; filtered_resps the filter's extraction
            # (e.g. "[invalid]" for gsm8k strict-match), identical when the filter is "none".
            "model_output": _opt_str(resps if resps is not None else filtered),
            "extracted_answer": _opt_str(filtered) if filt != "none" else None,
            "correct": correct,
            "model": model,
        }
        if choice:  # multiple choice: the argmax option is the answer; there is no generated text
            values |= {"model_output": None, "extracted_answer": choice.pop("extracted_answer")}
        _override(values, rec, ctx.mapping)
        extra = {
            "doc_id": rec.get("doc_id"),
            "filter": filt,
            "prompt": prompt,
            "metric": metric,
            **{k: rec[k] for k in ("doc_hash", "prompt_hash", "target_hash") if k in rec},
            **({metric: rec[metric]} if metric else {}),
            "scores": {m: rec[m] for m in rec.get("metrics") or [] if isinstance(m, str) and m in rec},
            **({"response_type": LOGLIKELIHOOD, **choice} if choice else {}),
            "doc": doc,
        }
        return _make(
            EvalSample, **values, source_file=str(ctx.path), source_line=line, extra=_jsonable(extra)
        )

    return build, id_of


# --------------------------------------------------------------------------- Inspect AI


def _looks_inspect(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            head = fh.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
        if not head.startswith(b"{"):
            return False
        obj = _load_json(path)
    except (OSError, InputFormatError):
        return False
    return isinstance(obj, dict) and "eval" in obj and "samples" in obj


def _resolve_attachment(text: str, sample: dict) -> str:
    if text.startswith("attachment://"):
        return str((sample.get("attachments") or {}).get(text[len("attachment://"):], text))
    return text


def _content_text(content: Any, sample: dict) -> str:
    """Text of a chat message content: a string, or the ``text`` parts of a list."""
    if isinstance(content, str):
        return _resolve_attachment(content, sample)
    if isinstance(content, list):
        parts = [p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        return "\n".join(_resolve_attachment(str(p), sample) for p in parts)
    return ""


def _inspect_question(sample: dict) -> str:
    inp = sample.get("input")
    if isinstance(inp, list):
        text = "\n\n".join(
            _content_text(msg.get("content"), sample)
            for msg in inp
            if isinstance(msg, dict) and msg.get("role") == "user"
        )
    else:
        text = _content_text(inp, sample)
    if not text.strip():
        raise RecordError("missing question field; tried: input", field="input")
    choices = sample.get("choices")
    if isinstance(choices, list) and choices:
        letters = [chr(65 + i) if i < 26 else str(i + 1) for i in range(len(choices))]
        text += "\n\nOptions:\n" + "\n".join(f"({letter}) {c}" for letter, c in zip(letters, choices))
    return text


def _inspect_score(value: Any) -> bool | None:
    if isinstance(value, (str, bool, int, float)):
        if value in ("C", 1):  # 1 == 1.0 == True
            return True
        if value in ("I", 0):
            return False
    return None


def _inspect_samples(ctx: _Ctx) -> Iterator[EvalSample | Rejected]:
    from slicelab.service.harness_logs import load_inspect_log

    log = load_inspect_log(ctx.path)
    if not isinstance(log, dict) or not isinstance(log.get("samples"), list):
        raise InputFormatError(
            f"{ctx.path}: not an Inspect JSON log (expected an object with a 'samples' list)"
        )
    ev = log.get("eval") or {}
    task = str(ev.get("task") or ctx.path.stem)

    def id_of(sample: dict) -> str | None:
        if _is_null(sample.get("id")):
            return None
        return f"{task}/{sample['id']}/epoch{sample.get('epoch', 1)}"

    def build(sample: dict, line: int, ctx: _Ctx) -> EvalSample:
        if _is_null(sample.get("id")):
            raise RecordError("missing id field", field="id")
        output = sample.get("output") or {}
        choice0 = (output.get("choices") or [None])[0] or {}
        message = choice0.get("message") or {}
        model_output = _content_text(message.get("content"), sample) if message else output.get("completion")
        stop = choice0.get("stop_reason")
        scores = sample.get("scores") or {}
        scorer, score = next(iter(scores.items()), (None, None))
        score = score if isinstance(score, dict) else {}
        values: dict[str, Any] = {
            "id": id_of(sample),
            "benchmark": ctx.benchmark or f"inspect:{task}",
            "task": task,
            "question": _inspect_question(sample),
            "reference_answer": _answer(sample.get("target")),
            "model_output": model_output or None,
            "extracted_answer": _opt_str(score.get("answer")),
            "correct": _inspect_score(score.get("value")),
            "finish_reason": _FINISH.get(stop, stop) if isinstance(stop, str) else None,
            "model": _opt_str(output.get("model")) or _opt_str(ev.get("model")),
        }
        _override(values, sample, ctx.mapping)
        extra = {
            "sample_id": sample.get("id"),
            "epoch": sample.get("epoch"),
            "choices": sample.get("choices"),
            "scorer": scorer,
            "score_value": score.get("value"),
            "scores": {k: v.get("value") for k, v in scores.items() if isinstance(v, dict)},
            "metadata": sample.get("metadata") or {},
            **({"error": sample["error"]} if sample.get("error") else {}),
        }
        return _make(
            EvalSample, **values, source_file=str(ctx.path), source_line=line, extra=_jsonable(extra)
        )

    raws = (
        _Raw(i, s, None, "")
        if isinstance(s, dict)
        else _Raw(i, None, f"sample is not an object (got {type(s).__name__})", "")
        for i, s in enumerate(log["samples"], start=1)
    )
    return _convert(raws, ctx, build, id_of)
