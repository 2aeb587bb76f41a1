"""Output rows: one per sample, with source fields, labels, status and provenance.

Columns (eval kind)::

    id, benchmark, task, question, reference_answer, model, model_output,
    extracted_answer, correct, finish_reason, source_file, source_line, extra_json,
    <every label axis>, primary_operation, failure_mode_source,
    status, error, judge_raw_output (list[str], one per attempt), judge_finish_reason,
    judge_attempts, judge_max_tokens (output budget of the last attempt),
    input_truncated, input_chars_kept (the question or document text as the judge saw it),
    judge_prompt_tokens, judge_completion_tokens, judge_latency_s,
    judge_model, judge_backend, taxonomy_name, taxonomy_version, taxonomy_hash,
    prompt_ref, request_hash, cache_hit, code_version, run_key

List columns (operations, raw outputs) round-trip through Parquet as Python lists
(:func:`read_table`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from slicelab.service.errors import ConfigError
from slicelab.service.judge.base import JudgeResult
from slicelab.service.prompts import input_cut
from slicelab.service.samples import Document, EvalSample, Rejected, Status
from slicelab.service.taxonomy import Kind, Taxonomy

OUTPUT_FORMATS = ("parquet", "jsonl")


def source_fields(item: EvalSample | Document) -> dict[str, Any]:
    """The item's own fields as output columns (``extra`` serialized as JSON text)."""
    data = item.model_dump(mode="json")
    data["extra_json"] = json.dumps(data.pop("extra"), ensure_ascii=False, sort_keys=True)
    return data


def label_columns(taxonomy: Taxonomy, kind: Kind, labels: dict[str, Any] | None) -> dict[str, Any]:
    """One column per taxonomy axis (None when unlabeled), plus ``primary_operation``."""
    cols: dict[str, Any] = {}
    for axis in taxonomy.axes(kind):
        value = (labels or {}).get(axis.name)
        cols[axis.name] = list(value) if axis.kind == "operations" and value is not None else value
        if axis.kind == "operations":
            cols["primary_operation"] = value[0] if value else None
    return cols


def _labeler_columns(taxonomy: Taxonomy, kind: Kind, result: JudgeResult) -> dict[str, Any]:
    """``labeler_<axis>`` (judge, knn, student...) and ``confidence_<axis>`` for every axis."""
    by_axis = result.extra.get("labeler_by_axis") or {}
    conf = result.extra.get("confidence_by_axis") or {}
    cols: dict[str, Any] = {}
    for axis in taxonomy.axes(kind):
        labeled = result.labels is not None and axis.name in result.labels
        cols[f"labeler_{axis.name}"] = (by_axis.get(axis.name) or "judge") if labeled else None
        cols[f"confidence_{axis.name}"] = conf.get(axis.name) if labeled else None
    return cols


def labeled_row(item: EvalSample | Document, result: JudgeResult, taxonomy: Taxonomy,
                provenance: dict[str, Any]) -> dict[str, Any]:
    """The output row of one judged item."""
    kind: Kind = "eval" if isinstance(item, EvalSample) else "document"
    return {
        **source_fields(item),
        **label_columns(taxonomy, kind, result.labels),
        **_labeler_columns(taxonomy, kind, result),
        "failure_mode_source": result.failure_mode_source,
        "status": str(result.status),
        "error": result.error,
        "judge_raw_output": list(result.raw_texts),
        "judge_finish_reason": result.finish_reason,
        "judge_attempts": result.attempts,
        "judge_max_tokens": result.max_tokens,
        **dict(zip(("input_truncated", "input_chars_kept"), input_cut(item))),
        "judge_prompt_tokens": result.prompt_tokens,
        "judge_completion_tokens": result.completion_tokens,
        "judge_latency_s": round(result.latency_s, 4),
        "judge_model": result.model,
        "judge_backend": result.backend,
        "exemplar_k": result.extra.get("exemplar_k", 0),
        "exemplar_ids": list(result.extra.get("exemplar_ids", [])),
        "prompt_ref": result.prompt_ref,
        "request_hash": result.request_hash,
        "cache_hit": bool(result.extra.get("cache_hit", False)),
        **provenance,
    }


def rejected_row(rej: Rejected, taxonomy: Taxonomy, kind: Kind, provenance: dict[str, Any]) -> dict[str, Any]:
    """The output row of an input record that could not be read (status ``rejected_input``)."""
    return {
        "id": rej.id,
        "source_file": rej.source_file,
        "source_line": rej.source_line,
        **label_columns(taxonomy, kind, None),
        "status": str(Status.rejected_input),
        "error": rej.reason,
        "judge_raw_output": [],
        "judge_attempts": 0,
        "cache_hit": False,
        **provenance,
    }


def empty_table(taxonomy: Taxonomy, kind: Kind) -> pd.DataFrame:
    """A zero-row output table with every column a labeled row would have."""
    item = EvalSample(id="-", question="-") if kind == "eval" else Document(id="-", text="-")
    result = JudgeResult(status=Status.labeled, labels=None, raw_texts=[], finish_reason=None, prompt_tokens=0,
                         completion_tokens=0, attempts=0, model="", backend="", error=None, latency_s=0.0,
                         request_hash="", prompt_ref="")
    row = labeled_row(item, result, taxonomy, {**taxonomy.provenance(), "code_version": "", "run_key": ""})
    return pd.DataFrame([row]).iloc[0:0]


def check_output(path: Path, fmt: str | None, input_path: Path | None = None) -> str:
    """Validate an output path before any work is done; return the output format.

    The format is ``fmt`` if given, else taken from the suffix (``.jsonl`` → jsonl, ``.parquet``),
    else parquet for a name without a suffix; another suffix (``.csv``) without ``fmt`` is refused.

    Raises:
        ConfigError: unknown format or suffix, a suffix that contradicts ``fmt``, the path is a folder
            or the input file, or its folder cannot be created or written.
    """
    suffix_fmt = {".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl"}.get(path.suffix.lower())
    if suffix_fmt is None and path.suffix and not fmt:
        raise ConfigError(f"--output {path}: suffix {path.suffix} is not an output format; use .parquet or .jsonl "
                          f"(or give --format)")
    fmt = fmt or suffix_fmt or "parquet"
    if fmt not in OUTPUT_FORMATS:
        raise ConfigError(f"--format: unknown output format {fmt!r}; allowed: {', '.join(OUTPUT_FORMATS)}")
    if suffix_fmt and suffix_fmt != fmt:
        raise ConfigError(f"--output {path} has suffix {path.suffix} but --format is {fmt}; make them agree")
    if path.is_dir():
        raise ConfigError(f"--output {path} is a folder; give a file name such as {path / 'labels.parquet'}")
    if input_path is not None and path.resolve() == Path(input_path).resolve():
        raise ConfigError(f"--output {path} is the input file; choose another name")
    try:
        path.resolve().parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"--output {path}: cannot create its folder: {e}") from e
    if not os.access(path.resolve().parent, os.W_OK):
        raise ConfigError(f"--output {path}: folder {path.resolve().parent} is not writable")
    check_writable(path, "--output")
    return fmt


def check_writable(path: Path, option: str, *also: Path) -> None:
    """Check, before any work, that ``path`` (and the files in ``also`` written beside it) can be written.

    Creates missing folders; an existing file is opened for writing without being changed, a new
    one is tried with a temporary file in its folder (removed at once).

    Raises:
        ConfigError: a path is a folder, its folder cannot be created, or the file cannot be
            written there (read-only file system, no permission); the message names ``option``.
    """
    import tempfile

    for p in (Path(path), *map(Path, also)):
        if p.is_dir():
            raise ConfigError(f"{option} {p} is a folder; give a file name")
        folder = p.resolve().parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if p.exists():
                open(p, "r+b").close()  # opened for writing, nothing changed
            else:
                tempfile.NamedTemporaryFile(dir=folder, prefix=".slicelab-write-check-").close()
        except OSError as e:
            raise ConfigError(f"{option} {p}: cannot be written ({e.strerror or e}); "
                              "choose another path before any work is done") from None


def check_writable_dir(path: Path, option: str) -> None:
    """Check, before any work, that files can be created in folder ``path`` (created when missing).

    Raises:
        ConfigError: ``path`` is a file, or cannot be created or written (the message names ``option``).
    """
    import tempfile

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{option} {path} is a file; give a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        tempfile.NamedTemporaryFile(dir=path, prefix=".slicelab-write-check-").close()
    except OSError as e:
        raise ConfigError(f"{option} {path}: cannot be written ({e.strerror or e}); "
                          "choose another folder before any work is done") from None


def write_table(df: pd.DataFrame, path: Path, fmt: str = "parquet") -> None:
    """Write the output table as Parquet or JSONL (one object per line, UTF-8)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        df.to_parquet(path, index=False)
    elif fmt == "jsonl":
        df.to_json(path, orient="records", lines=True, force_ascii=False)
    else:
        raise ValueError(f"--format: unknown output format {fmt!r}; allowed: {', '.join(OUTPUT_FORMATS)}")


def read_table(path: Path) -> pd.DataFrame:
    """Read an output table (Parquet or JSONL); list columns come back as Python lists.

    Text stays text: JSONL is read without pandas' type guessing, so an id ``"001"``
    (or a question ``"42"``) comes back as the string it was written as, never as a number.
    """
    path = Path(path)
    if path.suffix in (".jsonl", ".json"):
        df = pd.read_json(path, lines=True, dtype=False)
    else:
        df = pd.read_parquet(path)
    for col in df.columns:
        if df[col].dtype == object and df[col].map(lambda v: isinstance(v, np.ndarray)).any():
            df[col] = df[col].map(lambda v: v.tolist() if isinstance(v, np.ndarray) else v)
    return df
