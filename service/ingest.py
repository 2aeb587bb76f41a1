"""One per-sample table from evaluation-harness logs: results, scores per metric and run set-up joined.

The table (``slicelab ingest``) has one row per (sample, run)::

    DataFrame[sample_id, run, task, benchmark, filter, correct, score_<metric>..., output, extracted_answer,
              finish_reason, n_samples, n_correct, output_chars, output_tokens, reader, source_file,
              source_line, <set-up field>...]

``correct``, ``n_samples``/``n_correct`` and the set-up are those of :func:`service.results.load_results`;
``score_<metric>`` holds every metric the log records for the sample (lm-eval ``metrics``, one per
Inspect scorer), as a number: Inspect's letter values map as ``inspect_ai.scorer.value_to_float``
does (``C`` 1, ``P`` 0.5, ``I`` and ``N`` 0; yes/true 1, no/false 0).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from slicelab.service.harness_logs import LogFiles, expand_logs

_LETTERS = {"C": 1.0, "P": 0.5, "I": 0.0, "N": 0.0, "yes": 1.0, "true": 1.0, "no": 0.0, "false": 0.0}
#: Leading columns of the ingested table, in order (metric and set-up columns follow).
LEADING = ("sample_id", "run", "task", "benchmark", "filter", "correct")
TRAILING = ("output", "extracted_answer", "finish_reason", "n_samples", "n_correct", "output_chars",
            "output_tokens", "reader", "source_file", "source_line")


def score_value(v: Any) -> float | None:
    """A metric value as a number (see the module docstring), or None when it is not one."""
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)):
        return float(v) if math.isfinite(v) else None
    if isinstance(v, str):
        if v.strip() in _LETTERS or v.strip().lower() in _LETTERS:
            return _LETTERS.get(v.strip(), _LETTERS.get(v.strip().lower()))
        try:
            return float(v)
        except ValueError:
            return None
    return None


def ingest_logs(paths: list[str | Path], *, rejects: list[dict[str, Any]] | None = None,
                files: LogFiles | None = None) -> pd.DataFrame:
    """The joined per-sample table of every evaluation log under ``paths``.

    Args:
        paths: lm-evaluation-harness output folders / samples files / ``results_<ts>.json``, Inspect
            ``.json`` / ``.eval`` logs, or folders of them (:func:`service.harness_logs.expand_logs`).
        rejects: bad rows are appended here (``{"file", "line", "field", "reason"}``) and skipped;
            when None the first bad row raises.
        files: the already expanded log files (skips :func:`expand_logs`).

    Returns:
        The table described in the module docstring; ``attrs["setup"]`` as :func:`load_results`.

    Raises:
        InputFormatError: a path is missing or holds no log; a log cannot be read.
        RecordError: (without ``rejects``) an unusable sample; ConfigError: no usable row.
    """
    from slicelab.service.readers import read_eval_samples
    from slicelab.service.results import load_results
    from slicelab.service.samples import Rejected

    files = files or expand_logs(paths)
    res = load_results(files.files, rejects=rejects)
    meta: dict[tuple[str, int], dict[str, Any]] = {}
    for f in files.files:
        for s in read_eval_samples(f):
            if isinstance(s, Rejected):
                continue
            ex = s.extra or {}
            scores = ex.get("scores") or {}
            meta[(str(f), s.source_line)] = {
                "task": s.task, "benchmark": s.benchmark, "filter": ex.get("filter"),
                **{f"score_{m}": score_value(v) for m, v in scores.items()}}
    extra = pd.DataFrame([meta.get((r.source_file, r.source_line), {}) for r in res.itertuples(index=False)],
                         index=res.index)
    out = pd.concat([res, extra], axis=1)
    for c in ("task", "benchmark", "filter"):  # absent when no file is an evaluation log
        if c not in out:
            out[c] = None
    out["reader"] = out["source_file"].map({str(f): r for f, r in files.readers.items()})
    setup = res.attrs.get("setup") or {}
    fields = sorted({k for v in setup.values() for k in v} - set(out.columns))
    for k in fields:
        out[k] = [_cell(setup.get(run, {}).get(k)) for run in out["run"]]
    scores = sorted(c for c in out.columns if c.startswith("score_"))
    cols = [c for c in LEADING if c in out] + scores + [c for c in TRAILING if c in out] + fields
    out = out[cols]
    out.attrs["setup"] = setup
    return out


def _cell(v: Any) -> Any:
    """A set-up value as a Parquet-friendly cell: lists and dicts as JSON text."""
    import json

    return json.dumps(v, sort_keys=True) if isinstance(v, (list, dict)) else v
