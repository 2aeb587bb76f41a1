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

**Large files.** Parquet files of the slicelab, BBH and math layouts are read column by column
(:mod:`service.results_columnar`); ``runs`` reads only the rows of the runs named (a Parquet row
group whose statistics exclude them is skipped unread), so comparing two checkpoints of a file
that holds fifty costs the memory of two; ``scores_only`` leaves the text columns out.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from slicelab.service.errors import ConfigError, InputFormatError, RecordError
from slicelab.service.result_values import correct_value, count_value, counts, joined, missing, text_value
from slicelab.service.results_columnar import read_columnar
from slicelab.service.setup import ALIASES, SetupCollector, parse_sampling, setup_from_fields
from slicelab.service.termination import normalize_finish_reason

#: Columns of a results table, in order.
COLUMNS = ("sample_id", "run", "correct", "output", "extracted_answer", "finish_reason", "n_samples",
           "n_correct", "source_file", "source_line", "output_chars", "output_tokens")
#: Adapters :func:`load_results` knows, in detection order.
ADAPTERS = ("lm_eval", "inspect", "bbh", "math", "slicelab")
#: Fields that mark a row as one of several generations for its (sample, run).
GENERATION_FIELDS = ("sample_index", "generation", "repeat", "seed")
#: Columns left None by ``scores_only``.
TEXT_COLUMNS = ("output", "extracted_answer", "finish_reason", "output_chars", "output_tokens")
_ID_KEYS = {"bbh": ("id",), "math": ("problem_id",), "slicelab": ("sample_id",)}
_RUN_KEYS = {"bbh": ("model", "prompt_style"), "math": ("model",), "slicelab": ("run",)}
_UNMARKED = "__unmarked__"
_SETUP_COLUMNS = {"bbh": ("prompt_style",), "math": ("prompt_type", "sampling"), "slicelab": tuple(ALIASES)}
_PARQUET = (".parquet", ".pq")


def load_results(paths: list[str | Path] | str | Path, *, id_field: str | None = None,
                 run_field: str | None = None, rejects: list[dict[str, Any]] | None = None,
                 generation_field: str | None = None, aggregate_repeats: bool = False,
                 runs: Collection[str] | None = None, scores_only: bool = False) -> pd.DataFrame:
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
        runs: read only the rows of these runs: rows of other runs, and rows without a run, are skipped
            unchecked (a line that is not a JSON object, whose run is unknown, is still reported);
            ``attrs["setup"]`` holds these runs only. None: every run.
        scores_only: leave :data:`TEXT_COLUMNS` None (Parquet files do not read them).

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
        ConfigError: no paths, a run of ``runs`` that no file holds (the message lists those present),
            or no row at all was usable.
    """
    paths = _expand([paths] if isinstance(paths, (str, Path)) else list(paths))
    if not paths:
        raise ConfigError("--results: give at least one results file")
    wanted = frozenset(runs) if runs is not None else None
    df = None
    if generation_field is None and not aggregate_repeats:
        df = _read_columnar(paths, id_field, run_field, wanted, scores_only)
    if df is None:
        df = _read_records(paths, id_field, run_field, rejects, generation_field, aggregate_repeats, wanted,
                           scores_only)
    return df


def _read_records(paths: list[Path], id_field: str | None, run_field: str | None,
                  rejects: list[dict[str, Any]] | None, generation_field: str | None, aggregate_repeats: bool,
                  wanted: frozenset[str] | None, scores_only: bool) -> pd.DataFrame:
    """:func:`load_results` record by record."""
    groups: dict[tuple[str, str], list[tuple[Any, dict[str, Any]]]] = {}
    seen: dict[tuple[str, str, Any], str] = {}
    setup = SetupCollector()
    for path in map(Path, paths):
        if not path.is_file():
            raise InputFormatError(f"{path}: no such results file")
        for n, (line, row, error) in enumerate(_rows(path, id_field, run_field, generation_field, setup, wanted)):
            if error is None:
                key, marker = (row["sample_id"], row["run"]), row.pop("_generation")
                if scores_only:
                    row.update(dict.fromkeys(TEXT_COLUMNS))
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
    if wanted is not None:
        _check_wanted({run for _, run in groups}, wanted, paths, id_field, run_field)
    if not groups:
        raise ConfigError(f"no usable result rows in {', '.join(map(str, paths))}"
                          + (f" ({len(rejects)} rejected)" if rejects else ""))
    rows = [_aggregate(g) for g in groups.values()]
    df = pd.DataFrame(rows, columns=list(COLUMNS)).astype({"correct": bool, "n_samples": int, "n_correct": int})
    df.attrs["setup"] = _setup_of(setup, wanted)
    return df


def _read_columnar(paths: list[Path], id_field: str | None, run_field: str | None, wanted: frozenset[str] | None,
                   scores_only: bool) -> pd.DataFrame | None:
    """:func:`load_results` column by column (:mod:`service.results_columnar`), when every file allows it
    and no (sample, run) repeats; None otherwise."""
    setup, parts = SetupCollector(), []
    for path in paths:
        if not path.is_file() or path.suffix.lower() not in _PARQUET:
            return None
        try:
            adapter = detect_adapter(path)
            if adapter not in _SETUP_COLUMNS:
                return None
            read = read_columnar(path, *_keys(adapter, id_field, run_field),
                                 setup_columns=_SETUP_COLUMNS[adapter], marker_columns=GENERATION_FIELDS,
                                 runs=wanted, scores_only=scores_only)
        except (InputFormatError, pa.ArrowException, OSError):  # a bad file: the record path reports it
            return None
        if read is None:
            return None
        if read.table.num_rows:
            parts.append(read.table.append_column("source_file", pa.repeat(str(path), read.table.num_rows)))
        for run, rec in read.setup:
            setup.add(run, _record_setup(rec, adapter))
    table = pa.concat_tables(parts) if parts else None
    if wanted is not None:
        _check_wanted(set(pc.unique(table.column("run")).to_pylist()) if table else set(), wanted, paths,
                      id_field, run_field)
    if table is None:
        return None
    df = pd.DataFrame({c: _series(table.column(c)) for c in COLUMNS}).astype(
        {"correct": bool, "n_samples": int, "n_correct": int})
    if df.duplicated(["sample_id", "run"]).any():
        return None
    df.attrs["setup"] = _setup_of(setup, wanted)
    return df


def _series(col: pa.ChunkedArray) -> pd.Series:
    """A column as :class:`pandas.DataFrame` infers it from the same Python values (all null: object None)."""
    if col.null_count == len(col):
        return pd.Series(np.full(len(col), None, dtype=object))
    return col.to_pandas()


def _keys(adapter: str, id_field: str | None, run_field: str | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(id fields, run fields) of an adapter's records, ``id_field``/``run_field`` overriding them."""
    return (tuple(id_field.split("+")) if id_field else _ID_KEYS[adapter],
            tuple(run_field.split("+")) if run_field else _RUN_KEYS[adapter])


def _setup_of(setup: SetupCollector, wanted: frozenset[str] | None) -> dict[str, dict[str, Any]]:
    table = setup.table()
    return table if wanted is None else {run: v for run, v in table.items() if run in wanted}


def _check_wanted(found: set[str], wanted: frozenset[str], paths: list[Path], id_field: str | None,
                  run_field: str | None) -> None:
    """Raise the error of :func:`service.slice_stats.check_runs` for a requested run no file holds."""
    missing = sorted(wanted - found)
    if missing:
        present = sorted(run_names(paths, id_field=id_field, run_field=run_field))
        raise ConfigError(f"run {missing[0]!r} is not in the results; runs present: {', '.join(present)}")


def run_names(paths: list[str | Path], *, id_field: str | None = None, run_field: str | None = None) -> set[str]:
    """The runs that the usable rows of ``paths`` hold (Parquet: from the run columns alone)."""
    found: set[str] = set()
    for path in _expand(list(paths)):
        adapter = detect_adapter(path) if path.is_file() else None
        if adapter in _SETUP_COLUMNS and path.suffix.lower() in _PARQUET:
            run_keys = _keys(adapter, id_field, run_field)[1]
            try:
                frame = pd.read_parquet(path, columns=list(run_keys)).drop_duplicates()
                found |= {joined(rec, run_keys, ":") for rec in frame.to_dict(orient="records")}
                continue
            except Exception:  # a missing column, a bad value: read the records
                pass
        if path.is_file():
            found |= {row["run"] for _, row, error in _rows(path, id_field, run_field, None, SetupCollector(), None)
                      if error is None}
    return found


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
    if path.suffix.lower() in _PARQUET:  # every record of a Parquet file has every column
        first = dict.fromkeys(_parquet_columns(path))
    else:
        first = next((rec for _, rec, _ in _records(path) if rec is not None), {})
    if {"id", "model", "prompt_style"} <= first.keys():
        return "bbh"
    if {"problem_id", "model"} <= first.keys():
        return "math"
    return "slicelab"


# --------------------------------------------------------------------------- per file


def _rows(path: Path, id_field: str | None, run_field: str | None, generation_field: str | None,
          setup: SetupCollector, wanted: frozenset[str] | None) -> Iterator[tuple[int | None, dict[str, Any],
                                                                              RecordError | None]]:
    adapter = detect_adapter(path)
    if adapter in ("lm_eval", "inspect"):
        from slicelab.service.harness_results import harness_rows

        yield from (r for r in harness_rows(path, adapter, setup)
                    if wanted is None or r[2] is not None or r[1]["run"] in wanted)
        return
    id_keys, run_keys = _keys(adapter, id_field, run_field)
    gen_keys = (generation_field,) if generation_field else GENERATION_FIELDS
    for line, rec, reason in _records(path):
        if rec is None:
            yield line, {}, RecordError(f"{path}: {reason}", line=line)
            continue
        if wanted is not None and _run_of(rec, run_keys) not in wanted:
            continue
        try:
            row = _row(rec, path, line, id_keys, run_keys)
            row["_generation"] = _generation(rec, gen_keys, generation_field)
            setup.add(row["run"], _record_setup(rec, adapter))
            yield line, row, None
        except RecordError as e:
            yield line, {}, RecordError(f"{path}: {e.reason}", line=line, field=e.field)


def _run_of(rec: dict, run_keys: tuple[str, ...]) -> str | None:
    try:
        return joined(rec, run_keys, ":")
    except RecordError:
        return None


def _generation(rec: dict, keys: tuple[str, ...], required: str | None) -> Any:
    for key in keys:
        v = rec.get(key)
        if not missing(v):
            return v.item() if hasattr(v, "item") else v
    if required:
        raise RecordError(f"missing {required!r} (--generation-field); fields present: {', '.join(sorted(rec))}",
                          field=required)
    return None


def _record_setup(rec: dict, adapter: str) -> dict[str, Any]:
    if adapter == "bbh":
        return {"prompt_template": rec["prompt_style"]} if not missing(rec.get("prompt_style")) else {}
    if adapter == "math":
        out = setup_from_fields({k: rec.get(k) for k in ("prompt_type",)})
        if isinstance(rec.get("sampling"), str):
            out.update(parse_sampling(rec["sampling"]))
        return out
    return setup_from_fields(rec)


def _parquet_columns(path: Path) -> list[str]:
    """The column names of a Parquet file holding rows (none for an empty file)."""
    try:
        meta = pq.ParquetFile(path).metadata
    except Exception as e:  # pyarrow raises several types for a bad file
        raise InputFormatError(f"{path}: not a readable Parquet file: {e}") from None
    return meta.schema.to_arrow_schema().names if meta.num_rows else []


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
    sample_id = joined(rec, id_keys, "/")
    run = joined(rec, run_keys, ":")
    correct = correct_value(rec)
    n_samples, n_correct = counts(rec, correct)
    output = text_value(rec.get("output"))
    finish = normalize_finish_reason(rec.get("finish_reason"))
    if finish is None:
        finish = normalize_finish_reason(rec.get("finish_reason_inferred"))
    return {"sample_id": sample_id, "run": run, "correct": correct, "output": output,
            "extracted_answer": text_value(rec.get("extracted_answer")), "finish_reason": finish,
            "n_samples": n_samples, "n_correct": n_correct, "source_file": str(path), "source_line": line,
            "output_chars": count_value(rec.get("output_chars"), len(output) if output is not None else None),
            "output_tokens": count_value(rec.get("output_tokens", rec.get("completion_tokens")), None)}
