"""Per-sample results of one or more evaluation runs, joined to labels by sample id.

One results table has one row per (sample, run)::

    DataFrame[sample_id, run, correct, output, extracted_answer, finish_reason,
              n_samples, n_correct, source_file, source_line]

Files are read as they come (format detected per file, from the first record):

| adapter | detected by | sample_id | run |
|---|---|---|---|
| ``lm_eval`` | ``samples_*.jsonl`` with ``doc_id`` and ``arguments`` | ``<task>/<doc_id>/<filter>`` (as :mod:`service.readers`) | the model (from the ``results_*.json`` beside it), else the file stem |
| ``bbh`` | ``id`` + ``model`` + ``prompt_style`` (``bbh/model_outputs.jsonl``) | ``id`` | ``<model>:<prompt_style>`` |
| ``math`` | ``problem_id`` + ``model`` (``math/*_model_outputs.jsonl``) | ``problem_id`` | ``model`` |
| ``slicelab`` | anything else (JSONL or Parquet) | ``sample_id`` | ``run`` |

``id_field`` / ``run_field`` override the id and run of every JSON/Parquet record;
several fields joined with ``+`` (``"model+prompt_style"``) give ``"<model>:<prompt_style>"``.

Correctness: ``correct`` (true/false, 1/0), else ``score`` (a number in [0, 1]; correct
means full credit, ``score >= 1``, the rule lm-evaluation-harness metrics use in
:mod:`service.readers`). ``n_samples`` / ``n_correct`` (several generations per item, for
pass@k) default to 1 and ``int(correct)``. ``finish_reason`` is normalised to
``stop`` / ``length`` where the source uses another word for them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from service.errors import ConfigError, InputFormatError, RecordError
from service.samples import id_text

#: Columns of a results table, in order.
COLUMNS = ("sample_id", "run", "correct", "output", "extracted_answer", "finish_reason", "n_samples",
           "n_correct", "source_file", "source_line")
#: Adapters :func:`load_results` knows, in detection order.
ADAPTERS = ("lm_eval", "bbh", "math", "slicelab")
_FINISH = {"stop": "stop", "eos": "stop", "end_turn": "stop", "stop_sequence": "stop", "length": "length",
           "max_tokens": "length", "model_length": "length"}
_ID_KEYS = {"bbh": ("id",), "math": ("problem_id",), "slicelab": ("sample_id",)}
_RUN_KEYS = {"bbh": ("model", "prompt_style"), "math": ("model",), "slicelab": ("run",)}


def load_results(paths: list[str | Path] | str | Path, *, id_field: str | None = None,
                 run_field: str | None = None, rejects: list[dict[str, Any]] | None = None) -> pd.DataFrame:
    """Read per-sample results from one or more files into one table.

    Args:
        paths: results files: lm-evaluation-harness ``--log_samples`` JSONL, the shared
            BBH / math model-output JSONL files, or JSONL / Parquet with the minimal fields
            ``sample_id``, ``run``, ``correct`` (or ``score``), ``output``, ``finish_reason``
            and optionally ``n_samples``, ``n_correct``, ``extracted_answer``.
        id_field: field (or ``+``-joined fields) holding the sample id, for every JSON/Parquet file.
        run_field: field (or ``+``-joined fields) holding the run name, for every JSON/Parquet file.
        rejects: when given, a bad row is appended to it as
            ``{"file", "line", "field", "reason"}`` and skipped; when None, the first bad row raises.

    Returns:
        ``DataFrame[sample_id, run, correct, output, extracted_answer, finish_reason, n_samples,
        n_correct, source_file, source_line]``: one row per (sample, run), ``correct`` a bool,
        ``n_samples`` ≥ 1 and 0 ≤ ``n_correct`` ≤ ``n_samples`` (ints).

    Raises:
        InputFormatError: a file is missing or unreadable (bad Parquet, bad UTF-8 in JSONL is a bad row).
        RecordError: (without ``rejects``) a row that cannot be used: not JSON, no id or run, no or bad
            ``correct``/``score``, bad ``n_samples``/``n_correct``, or a (sample_id, run) pair seen
            before; the message names the file, line and field.
        ConfigError: no paths, or no row at all was usable.
    """
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    if not paths:
        raise ConfigError("--results: give at least one results file")
    rows: list[dict[str, Any]] = []
    seen: dict[tuple[str, str], str] = {}
    for path in map(Path, paths):
        if not path.is_file():
            raise InputFormatError(f"{path}: no such results file")
        for line, row, error in _rows(path, id_field, run_field):
            if error is None:
                key = (row["sample_id"], row["run"])
                if key in seen:
                    error = RecordError(f"{path}: duplicate (sample_id, run) {key!r}, first at {seen[key]}",
                                        line=line, field="sample_id")
                else:
                    seen[key] = f"{path.name} line {line}"
                    rows.append(row)
                    continue
            if rejects is None:
                raise error
            rejects.append({"file": str(path), "line": line, "field": error.field, "reason": error.reason})
    if not rows:
        raise ConfigError(f"no usable result rows in {', '.join(map(str, paths))}"
                          + (f" ({len(rejects)} rejected)" if rejects else ""))
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    return df.astype({"correct": bool, "n_samples": int, "n_correct": int})


def detect_adapter(path: Path) -> str:
    """Which adapter reads ``path`` (one of :data:`ADAPTERS`), from its name and first record."""
    from service.readers import detect_format

    try:
        if detect_format(path) == "lm_eval":
            return "lm_eval"
    except InputFormatError:
        pass
    first = next((rec for _, rec, _ in _records(path) if rec is not None), {})
    if {"id", "model", "prompt_style"} <= first.keys():
        return "bbh"
    if {"problem_id", "model"} <= first.keys():
        return "math"
    return "slicelab"


# --------------------------------------------------------------------------- per file


def _rows(path: Path, id_field: str | None, run_field: str | None
          ) -> Iterator[tuple[int | None, dict[str, Any], RecordError | None]]:
    adapter = detect_adapter(path)
    if adapter == "lm_eval":
        yield from _lm_eval_rows(path)
        return
    id_keys = tuple(id_field.split("+")) if id_field else _ID_KEYS[adapter]
    run_keys = tuple(run_field.split("+")) if run_field else _RUN_KEYS[adapter]
    for line, rec, reason in _records(path):
        if rec is None:
            yield line, {}, RecordError(f"{path}: {reason}", line=line)
            continue
        try:
            yield line, _row(rec, path, line, id_keys, run_keys), None
        except RecordError as e:
            yield line, {}, RecordError(f"{path}: {e.reason}", line=line, field=e.field)


def _records(path: Path) -> Iterator[tuple[int, dict | None, str | None]]:
    """(1-based line or row, record or None, reason) for every record of a JSONL or Parquet file."""
    if path.suffix.lower() in (".parquet", ".pq"):
        try:
            df = pd.read_parquet(path)
        except Exception as e:  # pyarrow raises several types for a bad file
            raise InputFormatError(f"{path}: not a readable Parquet file: {e}") from None
        for i, rec in enumerate(df.to_dict(orient="records"), start=1):
            yield i, rec, None
        return
    with path.open("rb") as fh:
        for line, data in enumerate(fh, start=1):
            data = data[3:] if line == 1 and data.startswith(b"\xef\xbb\xbf") else data
            if not data.strip():
                continue
            try:
                rec = json.loads(data.decode("utf-8"))
            except UnicodeDecodeError as e:
                yield line, None, f"invalid UTF-8 at byte {e.start}"
                continue
            except json.JSONDecodeError as e:
                yield line, None, f"invalid JSON: {e}"
                continue
            if not isinstance(rec, dict):
                yield line, None, f"not a JSON object (got {type(rec).__name__})"
                continue
            yield line, rec, None


def _row(rec: dict, path: Path, line: int, id_keys: tuple[str, ...], run_keys: tuple[str, ...]) -> dict[str, Any]:
    sample_id = _joined(rec, id_keys, "/")
    run = _joined(rec, run_keys, ":")
    correct = _correct(rec)
    n_samples, n_correct = _counts(rec, correct)
    return {"sample_id": sample_id, "run": run, "correct": correct, "output": _text(rec.get("output")),
            "extracted_answer": _text(rec.get("extracted_answer")),
            "finish_reason": _finish(rec.get("finish_reason")), "n_samples": n_samples, "n_correct": n_correct,
            "source_file": str(path), "source_line": line}


def _lm_eval_rows(path: Path) -> Iterator[tuple[int | None, dict[str, Any], RecordError | None]]:
    from service.readers import read_eval_samples
    from service.samples import Rejected

    for item in read_eval_samples(path, fmt="lm_eval"):
        if isinstance(item, Rejected):
            yield item.source_line, {}, RecordError(f"{path}: {item.reason}", line=item.source_line)
        elif item.correct is None:
            yield item.source_line, {}, RecordError(f"{path}: sample {item.id!r} has no scored metric",
                                                    line=item.source_line, field="metrics")
        else:
            yield item.source_line, {
                "sample_id": item.id, "run": item.model or path.stem, "correct": item.correct,
                "output": item.model_output, "extracted_answer": item.extracted_answer,
                "finish_reason": _finish(item.finish_reason), "n_samples": 1, "n_correct": int(item.correct),
                "source_file": str(path), "source_line": item.source_line}, None


# --------------------------------------------------------------------------- values


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _joined(rec: dict, keys: tuple[str, ...], sep: str) -> str:
    parts = []
    for key in keys:
        v = rec.get(key)
        if _missing(v) or (isinstance(v, str) and not v.strip()):
            raise RecordError(f"missing {key!r}; fields present: {', '.join(sorted(rec))}", field=key)
        parts.append(id_text(v))
    return sep.join(parts)


def _correct(rec: dict) -> bool:
    v = rec.get("correct")
    if not _missing(v):
        if isinstance(v, bool):
            return v
        if isinstance(v, (int, float)) and v in (0, 1):
            return bool(v)
        if isinstance(v, str) and v.strip().lower() in ("true", "false", "1", "0"):
            return v.strip().lower() in ("true", "1")
        raise RecordError(f"bad value {v!r}; allowed: true/false, 1/0", field="correct")
    s = rec.get("score")
    if _missing(s):
        present = [f"{k} is {_shown(rec[k])}" for k in ("correct", "score") if k in rec]
        if present:
            raise RecordError(f"{' and '.join(present)}; expected correct true/false (or 1/0) or a score in [0, 1]",
                              field="score" if "score" in rec else "correct")
        raise RecordError("no 'correct' or 'score' field", field="correct")
    if isinstance(s, bool):
        return s
    if not isinstance(s, (int, float)) or not 0 <= s <= 1:
        raise RecordError(f"bad value {s!r}; allowed: a number in [0, 1] (correct means score >= 1)", field="score")
    return s >= 1


def _shown(v: Any) -> str:
    """A value as an error shows it: ``NaN`` and ``null`` by name."""
    if v is None:
        return "null"
    if isinstance(v, float) and math.isnan(v):
        return "NaN"
    return repr(v)


def _counts(rec: dict, correct: bool) -> tuple[int, int]:
    n, c = rec.get("n_samples"), rec.get("n_correct")
    if _missing(n) and _missing(c):
        return 1, int(correct)
    for name, v in (("n_samples", n), ("n_correct", c)):
        integral = isinstance(v, (int, float)) and not isinstance(v, bool) and float(v).is_integer()
        if not integral:
            raise RecordError(f"bad value {v!r}; n_samples and n_correct must both be integers", field=name)
    n, c = int(n), int(c)
    if n < 1 or not 0 <= c <= n:
        raise RecordError(f"n_correct={c}, n_samples={n}; need n_samples >= 1 and 0 <= n_correct <= n_samples",
                          field="n_correct")
    return n, c


def _text(v: Any) -> str | None:
    return None if _missing(v) else (v if isinstance(v, str) else str(v))


def _finish(v: Any) -> str | None:
    if _missing(v):
        return None
    s = str(v).strip().lower()
    return _FINISH.get(s, s) or None
