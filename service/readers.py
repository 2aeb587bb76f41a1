"""Read evaluation samples and pretraining documents from every supported file format.

Formats (see :func:`detect_format`): generic ``jsonl``, ``json`` (array of objects),
``csv`` and ``parquet`` records; lm-evaluation-harness ``--log_samples`` files
(``lm_eval``); Inspect AI logs, ``.json`` or ``.eval`` (``inspect``). A folder (an
lm-evaluation-harness output folder, or a folder of runs / logs) or a ``results_<timestamp>.json``
is read as every log file under it (:func:`read_log_samples`, files found by
:func:`service.harness_logs.expand_logs`).

Every input record becomes exactly one yielded item, in input order: an
:class:`EvalSample` / :class:`Document`, or a :class:`Rejected` that says where the
record was (``source_file``, 1-based ``source_line``) and why it was refused. A bad
record never stops the file; only a file that cannot be read at all raises
:class:`InputFormatError`. JSONL is read in 1 MiB blocks: a line longer than
:data:`MAX_RECORD_BYTES` is rejected without being held in memory. NaN and
±Infinity (accepted by Python's JSON reader, not by JSON) become None in extra
fields, and a question that is one is rejected.

The parts live in their own modules and are importable from here: raw records per file
format (:mod:`service.record_files`), format detection (:mod:`service.format_detection`),
field resolution and value checks (:mod:`service.record_fields`), and the log formats
(:mod:`service.lm_eval_samples`, :mod:`service.inspect_samples`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any

from slicelab.service.errors import ConfigError, InputFormatError, RecordError
from slicelab.service.format_detection import FORMATS, detect_format, is_array_file
from slicelab.service.harness_logs import LogFiles, expand_logs, is_log_bundle
from slicelab.service.inspect_samples import inspect_samples
from slicelab.service.lm_eval_samples import lm_eval_builder
from slicelab.service.record_fields import (
    EVAL_KEYS,
    MISSING,
    FieldMapping,
    ReadContext,
    answer_text,
    convert_records,
    correct_flag,
    field_value,
    id_keys,
    is_null,
    make_record,
    null_question,
    opt_str,
    pick,
    question_text,
    resolve_id,
)
from slicelab.service.record_files import (
    ARRAY_OR_JSONL,
    MAX_RECORD_BYTES,
    RECORD_READERS,
    clip,
    iter_array_or_jsonl,
    iter_jsonl,
    jsonable,
)
from slicelab.service.samples import Document, EvalSample, Rejected

__all__ = [
    "EVAL_KEYS", "FORMATS", "MAX_RECORD_BYTES", "FieldMapping", "detect_format", "read_documents",
    "read_eval_samples", "read_log_samples",
]


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
    if is_log_bundle(path):  # an lm-eval output folder, a folder of logs, or a results_<ts>.json
        _check_limit(limit)
        return islice(read_log_samples(path, mapping=mapping, benchmark=benchmark), limit)
    p, fmt = _check(path, fmt, limit)
    ctx = ReadContext(p, mapping or FieldMapping(), benchmark, fmt)
    if fmt == "inspect":
        items: Iterable[EvalSample | Rejected] = inspect_samples(ctx)
    elif fmt == "lm_eval":
        records = iter_array_or_jsonl(p) if p.suffix.lower() == ".json" or is_array_file(p) else iter_jsonl(p)
        items = convert_records(records, ctx, *lm_eval_builder(p))
    else:
        items = convert_records(RECORD_READERS[fmt](p), ctx, _generic_sample)
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
    reader = iter_jsonl if fmt == "lm_eval" else RECORD_READERS[fmt]
    items = convert_records(reader(p), ReadContext(p, mapping or FieldMapping(), None), _document)
    return islice(_dedupe(items), limit)


def read_log_samples(paths: list[str | Path] | str | Path, *, mapping=None, benchmark: str | None = None,
                     files: LogFiles | None = None):
    """Evaluation samples of every log file under ``paths`` (:func:`service.harness_logs.expand_logs`), file by file.

    A sample id is read once: the same ``<task>/<doc_id>/<filter>`` (lm-eval) or ``<task>/<id>/epoch<n>``
    (Inspect) in a later file is the same question evaluated in another run, and is not yielded again.

    Yields:
        :class:`~service.samples.EvalSample` or :class:`~service.samples.Rejected`, as
        :func:`read_eval_samples` gives them per file.

    Raises:
        InputFormatError: as :func:`service.harness_logs.expand_logs` (on the call), or a log file
            that cannot be read.
    """
    files = files or expand_logs(paths)
    readers = [(f, read_eval_samples(f, mapping=mapping, benchmark=benchmark)) for f in files.files]

    def items():
        seen: set[str] = set()
        for _, it in readers:
            ids: set[str] = set()
            for item in it:
                if not isinstance(item, Rejected):
                    if item.id in seen:
                        continue
                    ids.add(item.id)
                yield item
            seen |= ids

    return items()


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
            fmt = ARRAY_OR_JSONL  # an array saved as .jsonl; line by line when the whole file is not one
    return p, fmt


def _check_limit(limit: int | None) -> None:
    if limit is not None and limit < 0:
        raise ConfigError(f"limit must be >= 0, got {limit}")


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
                raw=clip(json.dumps(item.model_dump(exclude={"extra"}), ensure_ascii=False, default=str)),
            )
        else:
            first.setdefault(item.id, item.source_line)
        yield item


def _generic_sample(rec: dict, line: int, ctx: ReadContext) -> EvalSample:
    m = ctx.mapping
    used: set[str] = set()

    def field(name: str, mapped: str | None = None) -> tuple[str | None, Any]:
        keys = (mapped,) if mapped else EVAL_KEYS[name]
        key, value = (mapped, field_value(rec, mapped)) if mapped else pick(rec, keys)
        # the chosen key, and candidates present but null, stay out of extra
        used.update(k for k in keys if k == key or (k in rec and is_null(rec[k])))
        return key, (None if is_null(value) else value)

    sid, id_key = resolve_id(rec, m.id_field)
    used.update(id_keys(rec, id_key))
    q_map = m.question_field or m.text_field
    q_key, q_value = field("question", q_map)
    if q_value is None:
        null_key = next((k for k in ((q_map,) if q_map else EVAL_KEYS["question"]) if field_value(rec, k) is not MISSING), None)
        if null_key is not None:  # the field is there, its value is null / NaN / an empty CSV cell
            raise RecordError(null_question(null_key, field_value(rec, null_key), ctx), field=null_key)
        tried = q_map if q_map else ", ".join(EVAL_KEYS["question"])
        present = ", ".join(sorted(rec)[:12]) or "none"
        raise RecordError(f"missing question field; tried: {tried}; the record has: {present} "
                          "(name the question field with --text-field)", field=q_map or "question")
    c_key, c_value = field("correct", m.correct_field)
    values = {
        "id": sid or f"{ctx.path.stem}/{line}",
        "question": question_text(q_value, q_key or "question"),
        "reference_answer": answer_text(field("reference_answer", m.reference_field)[1]),
        "model_output": opt_str(field("model_output", m.output_field)[1]),
        "extracted_answer": opt_str(field("extracted_answer")[1]),
        "correct": correct_flag(c_value, c_key),
        "finish_reason": opt_str(field("finish_reason")[1]),
        "task": opt_str(field("task", m.task_field)[1]) or "",
        "benchmark": opt_str(field("benchmark", m.benchmark_field)[1]) or ctx.benchmark or ctx.path.stem,
        "model": opt_str(field("model")[1]),
    }
    extra = {k: jsonable(v) for k, v in rec.items() if k not in used}
    return make_record(EvalSample, **values, source_file=str(ctx.path), source_line=line, extra=extra)


def _document(rec: dict, line: int, ctx: ReadContext) -> Document:
    m = ctx.mapping
    did, id_key = resolve_id(rec, m.id_field, ("id",))
    text_key = m.text_field or "text"
    text = field_value(rec, text_key)
    if is_null(text):
        raise RecordError(f"missing text field; tried: {text_key}", field=text_key)
    if not isinstance(text, str):
        kind = type(text).__name__
        raise RecordError(f"text field {text_key!r} is not a string (got {kind})", field=text_key)
    if not text.strip():
        raise RecordError(f"empty text field {text_key!r}", field=text_key)
    used = {text_key, "source", "url", *id_keys(rec, id_key)}
    return make_record(
        Document,
        id=did or f"{ctx.path.stem}/{line}",
        text=text,
        source=opt_str(rec.get("source")) or ctx.path.stem,
        url=opt_str(rec.get("url")),
        source_file=str(ctx.path),
        source_line=line,
        extra={k: jsonable(v) for k, v in rec.items() if k not in used},
    )
