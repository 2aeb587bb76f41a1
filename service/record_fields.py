"""Fields of one input record: where each sample field comes from, and how its value is read.

A field is found by a key or a dotted path into nested objects (:func:`field_value`), from the
defaults of :data:`EVAL_KEYS` or the overrides of a :class:`FieldMapping`. Values are checked
and normalised here (question text, reference answer, the ``correct`` flag, ids); a value that
cannot be used raises :class:`~service.errors.RecordError`, which :func:`convert_records`
turns into a :class:`~service.samples.Rejected` naming the record's file and line.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import ValidationError

from slicelab.service.errors import RecordError
from slicelab.service.record_files import RawRecord
from slicelab.service.result_values import correct_token
from slicelab.service.samples import Rejected, id_text

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
#: What :func:`field_value` returns for a key or path that is not there.
MISSING = object()


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


class ReadContext(NamedTuple):
    """What every record of one file is read with: the file, the field overrides, the
    benchmark name given by the caller (None: from the records or the file) and the format."""

    path: Path
    mapping: FieldMapping
    benchmark: str | None
    fmt: str = ""


def convert_records(
    raws: Iterable[RawRecord],
    ctx: ReadContext,
    build: Callable[[dict, int, ReadContext], Any],
    id_of: Callable[[dict], str | None] | None = None,
) -> Iterator[Any]:
    """Turn raw records into samples/documents with ``build(record, line, ctx)``, every failure into a Rejected.

    A record that could not be read, or whose ``build`` raises :class:`RecordError`, becomes a
    :class:`Rejected` with its file, line and reason; its id is ``id_of(record)`` (default: the
    generic id fields) or ``"<file stem>/<line>"``.
    """
    id_of = id_of or (lambda rec: safe_id(rec, ctx.mapping.id_field))
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


def make_record(cls: type, /, **values: Any) -> Any:
    """``cls(**values)``; a pydantic validation error becomes a :class:`RecordError` naming the fields."""
    try:
        return cls(**values)
    except ValidationError as e:
        errs = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
        raise RecordError(f"invalid record: {errs}") from None


def field_value(rec: Any, path: str) -> Any:
    """Value at a key or dotted path (list items by index), or :data:`MISSING`."""
    if isinstance(rec, dict) and path in rec:
        return rec[path]
    cur = rec
    for part in path.split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and part.lstrip("-").isdigit() and -len(cur) <= int(part) < len(cur):
            cur = cur[int(part)]
        else:
            return MISSING
    return cur


def is_null(v: Any) -> bool:
    """Whether ``v`` is None, :data:`MISSING` or NaN."""
    return v is None or v is MISSING or (isinstance(v, float) and math.isnan(v))


def pick(rec: dict, keys: Iterable[str]) -> tuple[str | None, Any]:
    """The first key whose value is present and not null, with its value (``(None, None)`` when none)."""
    for k in keys:
        v = field_value(rec, k)
        if not is_null(v):
            return k, v
    return None, None


def resolve_id(
    rec: dict, mapped: str | None, keys: Iterable[str] = EVAL_KEYS["id"]
) -> tuple[str | None, str | None]:
    """(id, key used); the key is None when no key gave an id.

    Raises:
        RecordError: a part of the ``mapped`` id field is missing or empty.
    """
    if mapped:
        parts = [mapped] if mapped in rec else mapped.split("+")
        values = [field_value(rec, part) for part in parts]
        for part, v in zip(parts, values):
            if is_null(v) or str(v).strip() == "":
                raise RecordError(f"missing id field {part!r}", field=part)
        return "/".join(id_text(v) for v in values), mapped
    for k in keys:
        v = field_value(rec, k)
        if not is_null(v) and str(v).strip():
            return id_text(v), k
    return None, None


def id_keys(rec: dict, id_key: str | None) -> list[str]:
    """The top-level keys an id was taken from (so they stay out of ``extra``)."""
    if not id_key:
        return []
    return [id_key] if id_key in rec else id_key.split("+")


def safe_id(rec: dict, mapped: str | None) -> str | None:
    """The record's id as :func:`resolve_id` gives it, or None where it raises."""
    try:
        return resolve_id(rec, mapped)[0]
    except RecordError:
        return None


def question_text(value: Any, key: str) -> str:
    """A question value as text.

    Raises:
        RecordError: the value is not a string or number, is NaN/±Infinity, or is blank.
    """
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise RecordError(f"question field {key!r} is not a string (got {type(value).__name__})", field=key)
    if isinstance(value, float) and not math.isfinite(value):
        raise RecordError(f"question field {key!r} is {value!r}, not text", field=key)
    text = str(value)
    if not text.strip():
        raise RecordError(f"empty question field {key!r}", field=key)
    return text


def null_question(key: str, value: Any, ctx: ReadContext | None = None) -> str:
    """Why a question field that is present but null (None, NaN, an empty CSV cell) is refused."""
    if ctx is not None and ctx.fmt == "csv":
        return f"empty question field {key!r}"
    if isinstance(value, float):
        return f"question field {key!r} is NaN, not text"
    return f"question field {key!r} is null, not text"


def answer_text(value: Any) -> str:
    """A reference answer as text: ``""`` for null, list items joined with ``" | "``."""
    if is_null(value):
        return ""
    if isinstance(value, (list, tuple)):
        return " | ".join(answer_text(v) for v in value)
    return value if isinstance(value, str) else str(value)


def opt_str(value: Any) -> str | None:
    """None for a null value, else the value as text."""
    return None if is_null(value) else (value if isinstance(value, str) else str(value))


def correct_flag(value: Any, key: str | None) -> bool | None:
    """A ``correct`` value as a bool (None when null): true/false, 1/0, or those words as text.

    Raises:
        RecordError: any other value.
    """
    if is_null(value):
        return None
    token = correct_token(value)
    if token is None:
        raise RecordError(f"correct field {key!r} has value {value!r}; allowed: true/false, 1/0", field=key)
    return token


def apply_mapping(values: dict[str, Any], rec: dict, mapping: FieldMapping) -> None:
    """Apply explicit FieldMapping overrides, in place, to values computed for a log format.

    Raises:
        RecordError: a mapped question is missing or null, a mapped id part is missing, or a
            mapped ``correct`` value is not readable.
    """
    for attr, target in _MAPPED.items():
        path = getattr(mapping, attr) or (mapping.text_field if attr == "question_field" else None)
        if not path:
            continue
        if target == "id":
            values["id"] = resolve_id(rec, path)[0]
            continue
        v = field_value(rec, path)
        if target == "question":
            if v is not MISSING and is_null(v):
                raise RecordError(null_question(path, v), field=path)
            if is_null(v):
                raise RecordError(f"missing question field; tried: {path}", field=path)
            values["question"] = question_text(v, path)
        elif target == "correct":
            values["correct"] = correct_flag(v, path)
        elif target == "reference_answer":
            values[target] = answer_text(v)
        else:
            values[target] = opt_str(v) or ("" if target in ("task", "benchmark") else None)
