"""Reading lm-evaluation-harness ``--log_samples`` records as the harness means them.

Two kinds of record occur (lm_eval 0.4, ``EvaluationTracker.save_results_samples``):

- ``generate_until`` tasks: ``resps = [[generation]]``, ``filtered_resps = [extraction]``.
- ``multiple_choice`` (``loglikelihood``) tasks: one request per answer option;
  ``resps = [[[ll, is_greedy]], ...]`` and ``filtered_resps = [[ll, is_greedy], ...]``,
  both values stringified by the harness (``["-1.25", "False"]``). The model's
  choice is the option with the largest log-likelihood (the ``acc`` metric of
  ``lm_eval.api.task.ConfigurableTask.process_results``); there is no free-text output.

Metric values are numbers, or booleans saved as ``"True"``/``"False"`` by some tasks.
"""

from __future__ import annotations

import math
from typing import Any

from slicelab.service.errors import RecordError

#: ``failure_mode_source`` of a wrong multiple-choice sample: the harness scored option
#: log-likelihoods, so there is no generated text whose failure mode a judge could name.
MC_NO_OUTPUT = "not judged: multiple-choice log-likelihoods, no free-text output"
#: ``extra["response_type"]`` of a multiple-choice (log-likelihood) sample.
LOGLIKELIHOOD = "loglikelihood"


def metric_correct(rec: dict, metric: str | None) -> bool | None:
    """Whether the sample got full credit on ``metric`` (value >= 1, or ``true``); None without a metric.

    Raises:
        RecordError: the metric value is neither a number nor ``true``/``false`` (names the metric and value).
    """
    if metric is None:
        return None
    value = rec[metric]
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number):
        raise RecordError(f"metric {metric!r} has value {value!r}; expected a number (1.0 = correct) or "
                          "true/false", field=metric)
    return number >= 1.0


def _number(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) or x == -math.inf else None


def _is_pair(v: Any) -> bool:
    """``[ll, is_greedy]``: a number (maybe as text) and a boolean (maybe as text)."""
    return (isinstance(v, (list, tuple)) and len(v) == 2 and _number(v[0]) is not None
            and (isinstance(v[1], bool) or str(v[1]) in ("True", "False")))


def option_loglikelihoods(rec: dict) -> list[float] | None:
    """The log-likelihood of every answer option of a multiple-choice record, or None for a generation record."""
    filtered = rec.get("filtered_resps")
    if isinstance(filtered, list) and len(filtered) > 1 and all(_is_pair(p) for p in filtered):
        return [_number(p[0]) for p in filtered]  # type: ignore[misc]
    resps = rec.get("resps")
    if isinstance(resps, list) and len(resps) > 1 and all(
            isinstance(r, list) and len(r) == 1 and _is_pair(r[0]) for r in resps):
        return [_number(r[0][0]) for r in resps]  # type: ignore[misc]
    return None


def _continuation(arguments: Any, i: int) -> str | None:
    """Option ``i``'s continuation text: ``arguments["gen_args_<i>"]["arg_1"]`` (or ``arguments[i][1]``)."""
    arg = None
    if isinstance(arguments, dict):
        arg = arguments.get(f"gen_args_{i}")
        arg = arg.get("arg_1") if isinstance(arg, dict) else None
    elif isinstance(arguments, list) and i < len(arguments) and isinstance(arguments[i], (list, tuple)):
        arg = arguments[i][1] if len(arguments[i]) > 1 else None
    return arg.strip() if isinstance(arg, str) else None


def chosen_option(rec: dict, lls: list[float]) -> dict[str, Any]:
    """The model's choice in a multiple-choice record: the argmax of the option log-likelihoods.

    Returns:
        ``{"extracted_answer", "chosen_index", "chosen_option", "option_loglikelihoods"}``;
        ``extracted_answer`` is the index (as text) when the target is an index, else the option text.
    """
    index = max(range(len(lls)), key=lambda i: lls[i])  # first of equal maxima, as numpy.argmax
    text = _continuation(rec.get("arguments"), index)
    target = rec.get("target")
    by_index = isinstance(target, int) or (isinstance(target, str) and target.strip().isdigit()) or text is None
    return {"extracted_answer": str(index) if by_index else text, "chosen_index": index, "chosen_option": text,
            "option_loglikelihoods": lls}
