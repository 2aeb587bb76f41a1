"""Per-sample results of one or more evaluation runs, joined to labels by sample id.

One results table has one row per (sample, run)::

    DataFrame[sample_id, run, correct, output, extracted_answer, finish_reason,
              n_samples, n_correct, source_file, source_line, output_chars, output_tokens]

Files are read as they come (format detected per file, from the first record); a folder or an
lm-eval ``results_<timestamp>.json`` stands for every log file under it
(:func:`service.harness_logs.expand_logs`):

| adapter | detected by | sample_id | run |
|---|---|---|---|
| ``lm_eval`` | ``samples_*.jsonl`` with ``doc_id`` and ``arguments`` | ``<task>/<doc_id>/<filter>`` (as :mod:`service.readers`) | the model (from the ``results_*.json`` beside it), else the file stem |
| ``inspect`` | an Inspect AI log: ``.json`` (``eval`` + ``samples``) or ``.eval`` (zip) | ``<task>/<id>/epoch<n>`` (as :mod:`service.readers`) | the model of the output, else the log's |
| ``bbh`` | ``id`` + ``model`` + ``prompt_style`` (``bbh/model_outputs.jsonl``) | ``id`` | ``<model>:<prompt_style>`` |
| ``math`` | ``problem_id`` + ``model`` (``math/*_model_outputs.jsonl``) | ``problem_id`` | ``model`` |
| ``slicelab`` | anything else (JSONL or Parquet) | ``sample_id`` | ``run`` |

``id_field`` / ``run_field`` override the id and run of every JSON/Parquet record;
several fields joined with ``+`` (``"model+prompt_style"``) give ``"<model>:<prompt_style>"``.

Correctness: ``correct`` (true/false, 1/0), else ``score`` (a number in [0, 1]; correct
means full credit, ``score >= 1``, the rule lm-evaluation-harness metrics use in
:mod:`service.readers`). ``n_samples`` / ``n_correct`` (several generations per item, for
pass@k) default to 1 and ``int(correct)``. ``finish_reason`` is normalised to
``stop`` / ``length`` where the source uses another word for them; without one, a source's
``finish_reason_inferred`` is used (the Sky-T1 checkpoint files). ``output_chars`` is the full
generation's length in characters (the source's ``output_chars`` when it keeps only a tail of the
output, else ``len(output)``); ``output_tokens`` the generated tokens when the source records them
(``output_tokens``, ``completion_tokens``).

**Repeated generations.** Several rows of one (sample, run) are refused as duplicates unless they
are marked as repeated generations: a ``sample_index`` / ``generation`` / ``repeat`` / ``seed`` field,
the field named by ``generation_field`` (e.g. ``checkpoint``: training checkpoints read as samples of
one model), or ``aggregate_repeats=True`` (every repeat in file order). They become one row per
(sample, run) with ``n_samples`` = n (generations) and ``n_correct`` = c (correct ones), for the
unbiased pass@k of Chen et al. 2021; ``correct``, ``output``, ``extracted_answer`` and
``finish_reason`` are those of the **first** generation (lowest marker value, numbers before text;
file order with ``aggregate_repeats``), so ``correct`` is a pass@1 sample. A repeated marker value
within one (sample, run) is still a duplicate.

**Set-up.** ``results.attrs["setup"]`` holds each run's evaluation set-up, ``{run: {field: value}}``
(see :mod:`service.setup`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from slicelab.service.errors import ConfigError, InputFormatError, RecordError
from slicelab.service.samples import id_text
from slicelab.service.setup import SetupCollector, parse_sampling, setup_from_fields
from slicelab.service.termination import normalize_finish_reason

#: Columns of a results table, in order.
COLUMNS = ("sample_id", "run", "correct", "output", "extracted_answer", "finish_reason", "n_samples",
           "n_correct", "source_file", "source_line", "output_chars", "output_tokens")
#: Adapters :func:`load_results` knows, in detection order.
ADAPTERS = ("lm_eval", "inspect", "bbh", "math", "slicelab")
#: Fields that mark a row as one of several generations for its (sample, run).
GENERATION_FIELDS = ("sample_index", "generation", "repeat", "seed")
_ID_KEYS = {"bbh": ("id",), "math": ("problem_id",), "slicelab": ("sample_id",)}
_RUN_KEYS = {"bbh": ("model", "prompt_style"), "math": ("model",), "slicelab": ("run",)}
_UNMARKED = "__unmarked__"


def load_results(paths: list[str | Path] | str | Path, *, id_field: str | None = None,
                 run_field: str | None = None, rejects: list[dict[str, Any]] | None = None,
                 generation_field: str | None = None, aggregate_repeats: bool = False) -> pd.DataFrame:
    """Read per-sample results from one or more files into one table.

    Args:
        paths: results files: lm-evaluation-harness ``--log_samples`` JSONL or output folders (one run, or
            a folder of runs; :mod:`service.harness_logs`), Inspect AI logs (``.json``, ``.eval``), the
            shared BBH / math model-output JSONL files, or JSONL / Parquet with the minimal fields
            ``sample_id``, ``run``, ``correct`` (or ``score``), ``output``, ``finish_reason``
            and optionally ``n_samples``, ``n_correct``, ``extracted_answer`` and set-up fields.
        id_field: field (or ``+``-joined fields) holding the sample id, for every JSON/Parquet file.
        run_field: field (or ``+``-joined fields) holding the run name, for every JSON/Parquet file.
        rejects: when given, a bad row is appended to it as
            ``{"file", "line", "field", "reason"}`` and skipped; when None, the first bad row raises.
        generation_field: field telling repeated generations of one (sample, run) apart (e.g.
            ``checkpoint``), besides :data:`GENERATION_FIELDS`.
        aggregate_repeats: treat every repeated (sample, run) row as another generation, in file order.

    Returns:
        ``DataFrame[sample_id, run, correct, output, extracted_answer, finish_reason, n_samples,
        n_correct, source_file, source_line, output_chars, output_tokens]``: one row per (sample, run),
        ``correct`` a bool, ``n_samples`` >= 1 and 0 <= ``n_correct`` <= ``n_samples`` (ints);
        ``attrs["setup"]`` = ``{run: {field: value}}``.

    Raises:
        InputFormatError: a file is missing or unreadable (bad Parquet, bad UTF-8 in JSONL is a bad row).
        RecordError: (without ``rejects``) a row that cannot be used: not JSON, no id or run, no or bad
            ``correct``/``score``, bad ``n_samples``/``n_correct``, or a (sample_id, run) pair seen
            before without a generation marker (or with the same marker); the message names the file,
            line and field.
        ConfigError: no paths, or no row at all was usable.
    """
    paths = _expand([paths] if isinstance(paths, (str, Path)) else list(paths))
    if not paths:
        raise ConfigError("--results: give at least one results file")
    groups: dict[tuple[str, str], list[tuple[Any, dict[str, Any]]]] = {}
    seen: dict[tuple[str, str, Any], str] = {}
    setup = SetupCollector()
    for path in map(Path, paths):
        if not path.is_file():
            raise InputFormatError(f"{path}: no such results file")
        for n, (line, row, error) in enumerate(_rows(path, id_field, run_field, generation_field, setup)):
            if error is None:
                key, marker = (row["sample_id"], row["run"]), row.pop("_generation")
                if marker is None and aggregate_repeats:
                    marker = (str(path), n)
                dup = seen.get((*key, marker if marker is not None else _UNMARKED))
                if dup is None:
                    seen[(*key, marker if marker is not None else _UNMARKED)] = f"{path.name} line {line}"
                    groups.setdefault(key, []).append((marker, row))
                    continue
                error = RecordError(_duplicate_reason(path, key, marker, dup, generation_field), line=line,
                                    field=generation_field if marker is not None else "sample_id")
            if rejects is None:
                raise error
            rejects.append({"file": str(path), "line": line, "field": error.field, "reason": error.reason})
    if not groups:
        raise ConfigError(f"no usable result rows in {', '.join(map(str, paths))}"
                          + (f" ({len(rejects)} rejected)" if rejects else ""))
    rows = [_aggregate(g) for g in groups.values()]
    df = pd.DataFrame(rows, columns=list(COLUMNS)).astype({"correct": bool, "n_samples": int, "n_correct": int})
    df.attrs["setup"] = setup.table()
    return df


def _expand(paths: list[str | Path]) -> list[Path]:
    """Folders and lm-eval ``results_<ts>.json`` files replaced by the log files under them."""
    from slicelab.service.harness_logs import expand_logs, is_log_bundle

    out: list[Path] = []
    for p in map(Path, paths):
        out += expand_logs(p).files if is_log_bundle(p) else [p]
    return out


def _duplicate_reason(path: Path, key: tuple[str, str], marker: Any, first: str, generation_field: str | None) -> str:
    if marker is not None:
        return f"{path}: duplicate generation {marker!r} of (sample_id, run) {key!r}, first at {first}"
    return (f"{path}: duplicate (sample_id, run) {key!r}, first at {first}; repeated generations need a marker: "
            f"a {'/'.join(GENERATION_FIELDS)} field, --generation-field FIELD (e.g. checkpoint) or --aggregate-repeats")


def _order(marker: Any) -> tuple:
    if marker is None:
        return (0, 0.0, "")
    if isinstance(marker, tuple):  # (file, row) from aggregate_repeats: file order
        return (1, float(marker[1]), marker[0])
    try:
        return (1, float(marker), "")
    except (TypeError, ValueError):
        return (2, 0.0, str(marker))


def _aggregate(group: list[tuple[Any, dict[str, Any]]]) -> dict[str, Any]:
    """One row per (sample, run): the first generation's fields, n and c summed over the generations."""
    if len(group) == 1:
        return group[0][1]
    ordered = sorted(group, key=lambda g: _order(g[0]))
    first = dict(ordered[0][1])
    first["n_samples"] = sum(r["n_samples"] for _, r in ordered)
    first["n_correct"] = sum(r["n_correct"] for _, r in ordered)
    return first


def detect_adapter(path: Path) -> str:
    """Which adapter reads ``path`` (one of :data:`ADAPTERS`), from its name and first record."""
    from slicelab.service.readers import detect_format

    try:
        fmt = detect_format(path)
        if fmt in ("lm_eval", "inspect"):
            return fmt
    except InputFormatError:
        pass
    first = next((rec for _, rec, _ in _records(path) if rec is not None), {})
    if {"id", "model", "prompt_style"} <= first.keys():
        return "bbh"
    if {"problem_id", "model"} <= first.keys():
        return "math"
    return "slicelab"


# --------------------------------------------------------------------------- per file


def _rows(path: Path, id_field: str | None, run_field: str | None, generation_field: str | None,
          setup: SetupCollector) -> Iterator[tuple[int | None, dict[str, Any], RecordError | None]]:
    adapter = detect_adapter(path)
    if adapter in ("lm_eval", "inspect"):
        from slicelab.service.harness_results import harness_rows

        yield from harness_rows(path, adapter, setup)
        return
    id_keys = tuple(id_field.split("+")) if id_field else _ID_KEYS[adapter]
    run_keys = tuple(run_field.split("+")) if run_field else _RUN_KEYS[adapter]
    gen_keys = (generation_field,) if generation_field else GENERATION_FIELDS
    for line, rec, reason in _records(path):
        if rec is None:
            yield line, {}, RecordError(f"{path}: {reason}", line=line)
            continue
        try:
            row = _row(rec, path, line, id_keys, run_keys)
            row["_generation"] = _generation(rec, gen_keys, generation_field)
            setup.add(row["run"], _record_setup(rec, adapter))
            yield line, row, None
        except RecordError as e:
            yield line, {}, RecordError(f"{path}: {e.reason}", line=line, field=e.field)


def _generation(rec: dict, keys: tuple[str, ...], required: str | None) -> Any:
    for key in keys:
        v = rec.get(key)
        if not _missing(v):
            return v.item() if hasattr(v, "item") else v
    if required:
        raise RecordError(f"missing {required!r} (--generation-field); fields present: {', '.join(sorted(rec))}",
                          field=required)
    return None


def _record_setup(rec: dict, adapter: str) -> dict[str, Any]:
    if adapter == "bbh":
        return {"prompt_template": rec["prompt_style"]} if not _missing(rec.get("prompt_style")) else {}
    if adapter == "math":
        out = setup_from_fields({k: rec.get(k) for k in ("prompt_type",)})
        if isinstance(rec.get("sampling"), str):
            out.update(parse_sampling(rec["sampling"]))
        return out
    return setup_from_fields(rec)


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
    output = _text(rec.get("output"))
    finish = normalize_finish_reason(rec.get("finish_reason"))
    if finish is None:
        finish = normalize_finish_reason(rec.get("finish_reason_inferred"))
    return {"sample_id": sample_id, "run": run, "correct": correct, "output": output,
            "extracted_answer": _text(rec.get("extracted_answer")), "finish_reason": finish,
            "n_samples": n_samples, "n_correct": n_correct, "source_file": str(path), "source_line": line,
            "output_chars": _count(rec.get("output_chars"), len(output) if output is not None else None),
            "output_tokens": _count(rec.get("output_tokens", rec.get("completion_tokens")), None)}


def _count(v: Any, default: int | None) -> int | None:
    if isinstance(v, (int, float)) and not isinstance(v, bool) and not _missing(v) and v >= 0:
        return int(v)
    return default


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
