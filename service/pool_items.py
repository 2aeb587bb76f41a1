"""Instruction pools: problems with solutions, read and labeled with the evaluation taxonomy.

A pool record is a problem with its solution, in any format :mod:`service.readers`
reads (JSONL, JSON array, CSV, Parquet):

- fields: the problem from ``question``/``problem``/``input``/``prompt``, the solution
  from ``solution`` (or ``output``/``response``), the final answer from
  ``answer``/``reference_answer``/``target``, the subject from ``task``/``subject``;
- or one ``text`` field holding ``Problem: ... Solution: ...`` or
  ``Question: ... Answer: ...`` (the layout of MATH and GSM8K train items in
  ``pretrain/math_docs.jsonl``); the final answer is then the last ``\\boxed{...}`` of
  the solution or what follows ``####``; ``source`` and ``meta.subject`` are kept.

Pools already labeled by ``slicelab label-benchmark`` (a table with ``status``,
``primary_operation`` and ``solving_operations``) are used as they are: that is the
path through the RQ queue with the configured judge, its label cache and the
calibration-selected labeler per axis. Other pools are labeled in-process by a cheap
labeler trained on the bundled gold pool (:mod:`service.pool_labels`: k-NN or
student, no LLM, no queue).

Every row gets ``source`` (the record's source or benchmark), ``text`` (problem, a blank
line, solution) and ``tokens``: the ``tokens`` field when every record has one, else
:func:`service.sampling.estimate_tokens` of ``text``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from slicelab.service.errors import ConfigError, InputFormatError
from slicelab.service.samples import EvalSample, Rejected
from slicelab.service.sampling import TOKENS_PER_WORD, estimate_tokens

#: Columns that mark a table as already labeled with the evaluation taxonomy.
LABELED_COLUMNS = ("status", "primary_operation", "solving_operations")
_SPLIT = re.compile(r"^\s*(?:Problem|Question):\s*(?P<problem>.*?)\n\s*(?:Solution|Answer):\s*(?P<solution>.*)$",
                    re.DOTALL)
_BOXED = re.compile(r"\\boxed\s*\{")


def final_answer(solution: str) -> str:
    """The last ``\\boxed{...}`` of a solution (braces balanced), or the text after ``####``, or ``""``."""
    starts = [m.end() for m in _BOXED.finditer(solution)]
    if starts:
        depth, i = 1, starts[-1]
        while i < len(solution) and depth:
            depth += {"{": 1, "}": -1}.get(solution[i], 0)
            i += 1
        return solution[starts[-1]:i - 1].strip() if depth == 0 else ""
    tail = solution.rsplit("####", 1)[1].strip() if "####" in solution else ""
    return tail.splitlines()[0].strip() if tail else ""


def _from_text(doc) -> EvalSample | Rejected:
    """A text-only pool record (``Problem: ... Solution: ...``) as an evaluation sample."""
    m = _SPLIT.match(doc.text)
    if not m or not m.group("problem").strip():
        return Rejected(id=doc.id, source_file=doc.source_file, source_line=doc.source_line,
                        reason="text field holds no 'Problem: ... Solution: ...' or 'Question: ... Answer: ...' "
                               "layout; give problem and solution fields instead", raw=doc.text[:2000])
    solution = m.group("solution").strip()
    meta = doc.extra.get("meta") if isinstance(doc.extra.get("meta"), dict) else {}
    return EvalSample(id=doc.id, benchmark=doc.source, task=str(meta.get("subject") or ""),
                      question=m.group("problem").strip(), reference_answer=final_answer(solution),
                      source_file=doc.source_file, source_line=doc.source_line,
                      extra={**doc.extra, "source": doc.source, "url": doc.url, "solution": solution})


def read_pool_items(path: str | Path) -> Iterator[EvalSample | Rejected]:
    """Read an unlabeled pool: one :class:`EvalSample` (question = problem) or :class:`Rejected` per record.

    Raises:
        InputFormatError: the file is missing or its format is unknown.
    """
    from slicelab.service.readers import read_documents, read_eval_samples

    first = next(iter(read_eval_samples(path, limit=1)), None)
    if isinstance(first, Rejected) and first.reason.startswith("missing question field"):
        for doc in read_documents(path):
            yield doc if isinstance(doc, Rejected) else _from_text(doc)
        return
    yield from read_eval_samples(path)


def is_labeled_table(path: Path) -> bool:
    """Whether a Parquet/JSONL file is a labeled table (it has every column of :data:`LABELED_COLUMNS`).

    Raises:
        InputFormatError: a Parquet file whose schema cannot be read.
    """
    if path.suffix.lower() in (".parquet", ".pq"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            names = set(pq.read_schema(path).names)
        except (OSError, pa.ArrowException) as e:
            raise InputFormatError(f"--pool {path}: not a readable Parquet file: {e}") from None
    else:
        with path.open("rb") as fh:
            line = next((raw for raw in fh if raw.strip()), b"{}")
        try:
            rec = json.loads(line.decode("utf-8-sig"))
        except ValueError:
            return False
        names = set(rec) if isinstance(rec, dict) else set()
    return set(LABELED_COLUMNS) <= names


def load_pool(path: str | Path, *, labeler: str = "knn", record: dict[str, Any] | None = None,
              extra_gold: tuple[str | Path, ...] = ()) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read a pool, labeling it in-process when it is not labeled yet.

    Args:
        path: the pool file (see the module docstring).
        labeler: ``knn`` or ``student`` for an unlabeled pool.
        record: a calibration record whose verdicts become the ``gate_<axis>`` columns of an
            in-process labeling (None: every axis ``ungated``).
        extra_gold: more gold sets for the in-process labeler's pool
            (:func:`service.pool_labels.make_labeler`).

    Returns:
        ``(DataFrame[id, question, status, <eval label axes>, primary_operation, gate_<axis>...,
        source, text, tokens], info)``: one row per record (rejected ones included);
        ``info`` holds ``labeled_by``, ``token_method`` and ``status_counts``.

    Raises:
        ConfigError: no such file, or a labeled table lacks ``id``.
        InputFormatError: the format is unknown, or a Parquet file is unreadable.
    """
    from slicelab.service.output import read_table
    from slicelab.service.pool_labels import label_items

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--pool {path}: no such file")
    if path.suffix.lower() in (".parquet", ".pq", ".jsonl", ".ndjson", ".json") and is_labeled_table(path):
        table, labeled_by = read_table(path), "labeled table (label-benchmark)"
        if "id" not in table:
            raise ConfigError(f"--pool {path}: a labeled table needs an 'id' column")
    else:
        table = label_items(list(read_pool_items(path)), kind="eval", labeler=labeler, record=record,
                            extra_gold=tuple(extra_gold))
        labeled_by = f"in-process {labeler} labeler (bundled gold pool" + \
            "".join(f" + {Path(g).name}" for g in extra_gold) + ")"
    table, token_method = _with_text_and_tokens(table)
    info = {"path": str(path), "labeled_by": labeled_by, "token_method": token_method,
            "status_counts": {str(k): int(v) for k, v in table["status"].value_counts().items()}}
    return table, info


def _extra(row: dict[str, Any]) -> dict[str, Any]:
    try:
        extra = json.loads(row.get("extra_json") or "{}")
    except (TypeError, ValueError):
        return {}
    return extra if isinstance(extra, dict) else {}


def _with_text_and_tokens(table: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    table = table.copy()
    rows = table.to_dict(orient="records")
    extras = [_extra(r) for r in rows]
    solution = [e.get("solution") if isinstance(e.get("solution"), str) else (r.get("model_output") or "")
                for r, e in zip(rows, extras)]
    table["text"] = [f"{r.get('question') or ''}\n\n{s}".strip() for r, s in zip(rows, solution)]
    if "source" not in table:
        table["source"] = [e.get("source") or r.get("benchmark") or "" for r, e in zip(rows, extras)]
    given = table["tokens"] if "tokens" in table else pd.Series([e.get("tokens") for e in extras], index=table.index)
    if given.notna().all() and len(given):
        table["tokens"] = given.astype(int)
        return table, "tokens field"
    table["tokens"] = table["text"].map(estimate_tokens)
    return table, f"estimate: whitespace words of problem and solution x {TOKENS_PER_WORD}"
