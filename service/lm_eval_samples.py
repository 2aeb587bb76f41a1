"""Evaluation samples from lm-evaluation-harness ``--log_samples`` files (``samples_<task>_<timestamp>.jsonl``).

One sample per record (task + ``doc_id`` + filter): the question from ``doc.question`` /
``doc.problem`` or the prompt (the first request argument), the reference from ``target``, the
output from ``resps`` and the extraction from ``filtered_resps`` (a filter other than ``none``),
``correct`` from the record's first logged metric (:mod:`service.lm_eval_log`), the model from
the ``results_<timestamp>.json`` beside the file. A multiple-choice record answers with its
highest log-likelihood option and has no output text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from slicelab.service.errors import RecordError
from slicelab.service.format_detection import LM_EVAL_NAME
from slicelab.service.lm_eval_log import LOGLIKELIHOOD, chosen_option, metric_correct, option_loglikelihoods
from slicelab.service.record_fields import ReadContext, answer_text, apply_mapping, is_null, make_record, opt_str, pick
from slicelab.service.record_files import jsonable
from slicelab.service.samples import EvalSample


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
    return None if is_null(first) or isinstance(first, (dict, list)) else str(first)


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


def lm_eval_builder(path: Path) -> tuple[Callable[..., EvalSample], Callable[[dict], str | None]]:
    """``(build, id_of)`` for the records of one lm-eval samples file.

    ``build(record, line, ctx)`` gives the :class:`EvalSample` of one record (raising
    :class:`RecordError` for a record without ``doc_id`` or question); ``id_of(record)`` its id,
    ``"<task>/<doc_id>/<filter>"`` (None without a ``doc_id``). The task (and timestamp) come
    from the file name, else the file stem.
    """
    named = LM_EVAL_NAME.match(path.name)
    if named:
        task, ts = named["task"], named["ts"]
    elif path.name.startswith("samples_") and "_" in path.stem[len("samples_"):]:
        task, ts = path.stem[len("samples_"):].rsplit("_", 1)[0], None
    else:
        task, ts = path.stem, None
    model = _lm_eval_model(path, ts)

    def id_of(rec: dict) -> str | None:
        if is_null(rec.get("doc_id")):
            return None
        return f"{task}/{rec['doc_id']}/{opt_str(rec.get('filter')) or 'none'}"

    def build(rec: dict, line: int, ctx: ReadContext) -> EvalSample:
        if is_null(rec.get("doc_id")):
            raise RecordError("missing doc_id field", field="doc_id")
        filt = opt_str(rec.get("filter")) or "none"
        prompt = _first_argument(rec.get("arguments"))
        doc = rec.get("doc")
        _, question = pick(doc, ("question", "problem")) if isinstance(doc, dict) else (None, None)
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
            "reference_answer": answer_text(rec.get("target")),
            # resps holds the full generation; filtered_resps the filter's extraction
            # (e.g. "[invalid]" for gsm8k strict-match), identical when the filter is "none".
            "model_output": opt_str(resps if resps is not None else filtered),
            "extracted_answer": opt_str(filtered) if filt != "none" else None,
            "correct": correct,
            "model": model,
        }
        if choice:  # multiple choice: the argmax option is the answer; there is no generated text
            values |= {"model_output": None, "extracted_answer": choice.pop("extracted_answer")}
        apply_mapping(values, rec, ctx.mapping)
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
        return make_record(
            EvalSample, **values, source_file=str(ctx.path), source_line=line, extra=jsonable(extra)
        )

    return build, id_of
