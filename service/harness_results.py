"""Results rows and evaluation set-up from harness logs: lm-evaluation-harness and Inspect AI.

Rows come from :func:`service.readers.read_eval_samples` (one per task + doc + filter for
lm-eval, one per sample + epoch for Inspect); the set-up of each run from the log itself
(:mod:`service.setup`).

**lm-eval repeats.** With ``repeats: k`` in a task config, each sample's ``resps`` holds the k
generations and the logged metric scores the first (or a filter's single pick). When the filter
kept all k answers (``filtered_resps`` has k entries) and the metric is ``exact_match``, each
answer is scored again with the task's ``exact_match`` options (``regexes_to_ignore``,
``ignore_case``, ``ignore_punctuation``, as lm-evaluation-harness applies them), giving
``n_samples`` = k and ``n_correct`` = the matches, provided this scoring agrees with the logged
metric on the first answer; otherwise the row keeps n = 1 (the logged score).
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from slicelab.service.errors import InputFormatError, RecordError
from slicelab.service.setup import SetupCollector, generation_kwargs, inspect_setup, lm_eval_task_setup


def harness_rows(path: Path, adapter: str, setup: SetupCollector
                 ) -> Iterator[tuple[int | None, dict[str, Any], RecordError | None]]:
    """``(line, row, error)`` for every sample of an lm-eval samples file or an Inspect log; set-up into ``setup``."""
    from slicelab.service.readers import read_eval_samples
    from slicelab.service.samples import Rejected

    raw, run_setup, metric_opts = _context(path, adapter)
    for item in read_eval_samples(path, fmt=adapter):
        if isinstance(item, Rejected):
            yield item.source_line, {}, RecordError(f"{path}: {item.reason}", line=item.source_line)
            continue
        if item.correct is None:
            yield item.source_line, {}, RecordError(f"{path}: sample {item.id!r} has no scored metric",
                                                    line=item.source_line, field="metrics")
            continue
        run = item.model or path.stem
        rec = raw.get(item.source_line) or {}
        n, c = _repeats(rec, item.correct, metric_opts) if adapter == "lm_eval" else (1, int(item.correct))
        fields = dict(run_setup)
        if adapter == "lm_eval":
            fields.update(_sample_kwargs(rec))
            fields["extractor"] = item.extra.get("filter") or "none"
        setup.add(run, fields)
        output = item.model_output
        yield item.source_line, {
            "sample_id": item.id, "run": run, "correct": item.correct, "output": output,
            "extracted_answer": item.extracted_answer, "finish_reason": _finish(item.finish_reason),
            "n_samples": n, "n_correct": c, "source_file": str(path), "source_line": item.source_line,
            "output_chars": len(output) if output is not None else None,
            "output_tokens": _usage_tokens(rec), "_generation": None}, None


def _finish(v: str | None) -> str | None:
    from slicelab.service.result_values import finish_reason as norm

    return norm(v)


def _context(path: Path, adapter: str) -> tuple[dict[int, dict], dict[str, Any], dict[str, Any]]:
    """Raw records by line (lm-eval) or position (Inspect), the run-level set-up, exact_match options."""
    if adapter == "inspect":
        from slicelab.service.harness_logs import load_inspect_log

        try:
            log = load_inspect_log(path)
        except (OSError, InputFormatError):
            return {}, {}, {}
        samples = log.get("samples") if isinstance(log, dict) else None
        raw = {i: s for i, s in enumerate(samples or [], start=1) if isinstance(s, dict)}
        return raw, inspect_setup(log), {}
    from slicelab.service.readers import _LM_EVAL_NAME

    raw: dict[int, dict] = {}
    with path.open("rb") as fh:
        for line, data in enumerate(fh, start=1):
            try:
                rec = json.loads(data.decode("utf-8-sig"))
            except (UnicodeDecodeError, ValueError):
                continue
            if isinstance(rec, dict):
                raw[line] = {k: rec.get(k) for k in ("arguments", "resps", "filtered_resps", "target")}
    named = _LM_EVAL_NAME.match(path.name)
    if not named:
        return raw, {}, {}
    try:
        results = json.loads((path.parent / f"results_{named['ts']}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return raw, {}, {}
    task = named["task"]
    cfg = (results.get("configs") or {}).get(task) or {}
    opts = next((m for m in cfg.get("metric_list") or [] if isinstance(m, dict) and m.get("metric") == "exact_match"),
                {})
    return raw, lm_eval_task_setup(results, task), opts


def _sample_kwargs(rec: dict) -> dict[str, Any]:
    """Generation kwargs of one lm-eval sample: ``arguments["gen_args_0"]["arg_1"]`` (or ``arguments[0][1]``)."""
    args = rec.get("arguments")
    first = args.get("gen_args_0") if isinstance(args, dict) else (args[0] if isinstance(args, list) and args else None)
    kwargs = None
    if isinstance(first, dict):
        kwargs = first.get("arg_1")
    elif isinstance(first, list) and len(first) > 1:
        kwargs = first[1]
    return generation_kwargs(kwargs) if isinstance(kwargs, dict) else {}


def _usage_tokens(rec: dict) -> int | None:
    usage = (rec.get("output") or {}).get("usage") if isinstance(rec.get("output"), dict) else None
    v = (usage or {}).get("output_tokens")
    return int(v) if isinstance(v, int) and v >= 0 else None


def exact_match(prediction: str, reference: str, opts: dict[str, Any]) -> bool:
    """lm-evaluation-harness ``exact_match`` on one pair: each of ``regexes_to_ignore`` removed, then
    ``ignore_case`` (lower-case) and ``ignore_punctuation`` (``string.punctuation`` removed), then equality."""
    for pattern in opts.get("regexes_to_ignore") or []:
        prediction, reference = re.sub(pattern, "", prediction), re.sub(pattern, "", reference)
    if opts.get("ignore_case"):
        prediction, reference = prediction.lower(), reference.lower()
    if opts.get("ignore_punctuation"):
        table = str.maketrans("", "", string.punctuation)
        prediction, reference = prediction.translate(table), reference.translate(table)
    return prediction == reference


def _repeats(rec: dict, correct: bool, opts: dict[str, Any]) -> tuple[int, int]:
    resps, filtered = rec.get("resps"), rec.get("filtered_resps")
    k = len(resps[0]) if isinstance(resps, list) and resps and isinstance(resps[0], list) else 1
    target = rec.get("target")
    if (k < 2 or not opts or not isinstance(filtered, list) or len(filtered) != k
            or not all(isinstance(a, str) for a in filtered) or not isinstance(target, str)):
        return 1, int(correct)
    scores = [exact_match(a, target, opts) for a in filtered]
    if scores[0] != correct:
        return 1, int(correct)
    return k, sum(scores)
