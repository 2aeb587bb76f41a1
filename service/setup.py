"""Evaluation set-up of each run, and the check that two compared runs were evaluated alike.

Two runs are only comparable when they were evaluated the same way: the same prompt, the
same decoding, length limit, stop sequences and answer extractor. A chain-of-thought run
against a direct-answer run, or a run with a shorter ``max_tokens``, differs for reasons no
training data explains. :func:`service.results.load_results` reads the set-up of every run
into ``results.attrs["setup"]``::

    {run: {field: value}}      # value: a scalar, a list (stop sequences), or {"mixed": [values]}

with the fields of :data:`SETUP_FIELDS`, from:

| source | fields read |
|---|---|
| slicelab results (JSONL/Parquet) | columns named as :data:`SETUP_FIELDS` or an alias (``max_gen_toks``, ``max_new_tokens`` → ``max_tokens``; ``prompt_style``, ``prompt_type`` → ``prompt_template``; ``until``, ``stop_sequences`` → ``stop``; ``filter`` → ``extractor``) |
| BBH model outputs | ``prompt_style`` (``cot`` / ``direct``) → ``prompt_template`` |
| math model outputs | ``prompt_type`` → ``prompt_template``; ``sampling`` text → ``temperature``, ``n_samples``, ``max_tokens`` |
| lm-evaluation-harness | each sample's generation kwargs (``arguments``: ``until``, ``max_gen_toks``, ``temperature``, ``top_p``, ``do_sample``); the ``results_*.json`` beside it: the task config's prompt (``doc_to_text``, ``description``, delimiters, ``num_fewshot``, chat template and system instruction hashes, hashed into ``prompt_template``), ``repeats`` and ``generation_kwargs`` |
| Inspect AI log | the generate config (``eval.model_generate_config`` and ``plan.config``: ``max_tokens``, ``temperature``, ``top_p``, ``stop_seqs``, ``num_choices``), ``eval.config.epochs`` → ``n_samples``, the solver plan hashed into ``prompt_template``, the scorer → ``extractor`` |

A field several rows of one run give different values is recorded as ``{"mixed": [...]}``.
:func:`compare_setups` lists the fields whose values differ between two runs (a field known
for one run only is listed as unknown, not as a difference); :func:`apply_setup_check` turns
a difference into the ``non_data`` verdict "evaluation set-up differs" with no interventions.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from slicelab.service.errors import ConfigError

#: Set-up fields, with what each means.
SETUP_FIELDS = {
    "prompt_template": "the prompt format or template (a name such as cot/direct, or a hash of the template text)",
    "num_fewshot": "number of few-shot exemplars in the prompt",
    "max_tokens": "generation length limit, in tokens",
    "temperature": "sampling temperature",
    "top_p": "nucleus sampling threshold",
    "do_sample": "whether decoding samples (false: greedy)",
    "stop": "stop sequences",
    "n_samples": "generations per problem",
    "extractor": "answer extractor / filter / scorer name",
}
#: Source field names read as a set-up field.
ALIASES = {"max_gen_toks": "max_tokens", "max_new_tokens": "max_tokens", "max_tokens_per_call": "max_tokens",
           "prompt_style": "prompt_template", "prompt_type": "prompt_template", "prompt_hash": "prompt_template",
           "until": "stop", "stop_sequences": "stop", "stop_seqs": "stop", "filter": "extractor",
           "num_choices": "n_samples", "epochs": "n_samples", **{f: f for f in SETUP_FIELDS}}


def short_hash(value: Any) -> str:
    """``"sha256:<12 hex>"`` of the canonical JSON of ``value`` (keys sorted)."""
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def setup_from_fields(rec: dict[str, Any]) -> dict[str, Any]:
    """Set-up fields found in one flat record (names or :data:`ALIASES`); nulls skipped."""
    out: dict[str, Any] = {}
    for key, value in rec.items():
        field = ALIASES.get(key)
        if field is None or value is None or (isinstance(value, float) and value != value):
            continue
        out.setdefault(field, _plain(value))
    return out


def parse_sampling(text: str) -> dict[str, Any]:
    """Set-up fields from a sampling description such as
    ``"greedy (temperature 0.0), 1 sample, max_tokens_per_call 32768"``."""
    out: dict[str, Any] = {}
    if m := re.search(r"temperature\s*=?\s*([0-9.]+)", text):
        out["temperature"] = float(m.group(1))
    if m := re.search(r"(\d+)\s+samples?\b", text):
        out["n_samples"] = int(m.group(1))
    if m := re.search(r"max_(?:new_)?tokens(?:_per_call)?\s*=?\s*(\d+)", text):
        out["max_tokens"] = int(m.group(1))
    return out


def generation_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Set-up fields from lm-evaluation-harness ``generation_kwargs`` (``until``, ``max_gen_toks``...)."""
    out = setup_from_fields({k: v for k, v in kwargs.items() if k != "prompt_hash"})
    if out.get("do_sample") is False:
        out.pop("temperature", None)  # greedy: the temperature is not used
    return out


def lm_eval_task_setup(results: dict[str, Any], task: str) -> dict[str, Any]:
    """Set-up fields of one task from an lm-evaluation-harness ``results_*.json``."""
    cfg = (results.get("configs") or {}).get(task) or {}
    prompt = {k: cfg.get(k) for k in ("doc_to_text", "description", "fewshot_delimiter", "target_delimiter",
                                      "num_fewshot", "doc_to_choice")}
    prompt.update({k: results.get(k) for k in ("chat_template_sha", "system_instruction_sha", "fewshot_as_multiturn")})
    out: dict[str, Any] = {"prompt_template": short_hash(prompt)}
    if cfg.get("num_fewshot") is not None:
        out["num_fewshot"] = cfg["num_fewshot"]
    if isinstance(cfg.get("generation_kwargs"), dict):
        out.update(generation_kwargs(cfg["generation_kwargs"]))
    if isinstance(cfg.get("repeats"), int) and cfg["repeats"] > 1:
        out["n_samples"] = cfg["repeats"]
    return out


def inspect_setup(log: dict[str, Any]) -> dict[str, Any]:
    """Set-up fields of an Inspect AI eval log (generate config, epochs, solver plan, scorer)."""
    ev, plan = log.get("eval") or {}, log.get("plan") or {}
    gen = {**(ev.get("model_generate_config") or {}), **(plan.get("config") or {})}
    out = setup_from_fields(gen)
    steps = [{"solver": s.get("solver"), "params": s.get("params")} for s in plan.get("steps") or []
             if isinstance(s, dict)]
    out["prompt_template"] = short_hash(steps)
    epochs = (ev.get("config") or {}).get("epochs")
    if isinstance(epochs, int):
        out["n_samples"] = epochs
    scorers = [s.get("name") for s in ev.get("scorers") or [] if isinstance(s, dict)]
    if scorers:
        out["extractor"] = ",".join(map(str, scorers))
    return out


class SetupCollector:
    """Accumulates per-run set-up values while results are read."""

    def __init__(self) -> None:
        self._values: dict[str, dict[str, dict[str, None]]] = {}  # run -> field -> values seen (JSON text)

    def add(self, run: str, fields: dict[str, Any]) -> None:
        by_field = self._values.setdefault(run, {})
        for field, value in fields.items():
            by_field.setdefault(field, {})[json.dumps(value, sort_keys=True, default=str)] = None

    def table(self) -> dict[str, dict[str, Any]]:
        """``{run: {field: value}}``; a field with several values in one run is ``{"mixed": [...]}``, or
        ``{"mixed_count": n, "values_hash": "sha256:..."}`` beyond :data:`MAX_MIXED` values (e.g. per-item hashes)."""
        out: dict[str, dict[str, Any]] = {}
        for run, fields in self._values.items():
            out[run] = {f: _summarise(sorted(v)) for f, v in sorted(fields.items())}
        return out


#: Most distinct values of one field listed for a run; more are summarised by their count and hash.
MAX_MIXED = 10


def _summarise(values: list[str]) -> Any:
    if len(values) == 1:
        return json.loads(values[0])
    if len(values) <= MAX_MIXED:
        return {"mixed": [json.loads(x) for x in values]}
    return {"mixed_count": len(values), "values_hash": short_hash(values)}


def compare_setups(setup: dict[str, dict[str, Any]], baseline: str, candidate: str,
                   ignore: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """Which set-up fields differ between two runs.

    Args:
        setup: ``{run: {field: value}}`` (``results.attrs["setup"]``).
        baseline, candidate: run names.
        ignore: fields not to compare (recorded in the output).

    Returns:
        ``{"baseline": {...}, "candidate": {...}, "differs": [{"field", "baseline", "candidate"}],
        "unknown": [fields known for one run only], "ignored": [...]}``.

    Raises:
        ConfigError: an ``ignore`` entry is not a set-up field (the message lists the allowed ones).
    """
    bad = sorted(set(ignore) - set(SETUP_FIELDS))
    if bad:
        raise ConfigError(f"--ignore-setup: unknown field(s) {', '.join(bad)}; allowed: {', '.join(SETUP_FIELDS)}")
    b, c = setup.get(baseline) or {}, setup.get(candidate) or {}
    differs, unknown = [], []
    for field in SETUP_FIELDS:
        if field in ignore or (field not in b and field not in c):
            continue
        if field not in b or field not in c:
            unknown.append(field)
        elif _canon(b[field]) != _canon(c[field]):
            differs.append({"field": field, "baseline": b[field], "candidate": c[field]})
    return {"baseline": b, "candidate": c, "differs": differs, "unknown": unknown, "ignored": sorted(set(ignore))}


#: What a set-up verdict tells the user to check.
SETUP_CHECK = {"id": "evaluation_setup",
               "what": "evaluate both runs with the same prompt template, decoding settings, length limit, stop "
                       "sequences and answer extractor (or pass --ignore-setup FIELD for a difference you intend)"}


def apply_setup_check(result: dict[str, Any], check: dict[str, Any]) -> dict[str, Any]:
    """Record the set-up comparison in a diagnosis; a difference makes it ``non_data`` with no interventions.

    The rules' outcomes stay in ``rules_evaluated``; fired data rules move to
    ``suppressed_rules`` with the reason, and the summary starts "evaluation set-up differs: FIELDS".
    """
    result = {**result, "setup": check}
    if not check["differs"]:
        return result
    fields = [d["field"] for d in check["differs"]]
    values = "; ".join(f"{d['field']} {_show(d['baseline'])} (baseline) vs {_show(d['candidate'])} (candidate)"
                       for d in check["differs"])
    reason = f"evaluation set-up differs: {', '.join(fields)}"
    rule = {"id": "evaluation-setup-differs", "kind": "non_data",
            "description": "The two runs were evaluated differently; a score change between them says nothing "
                           "about the training data.",
            "conditions": [{"predicate": "setup_differs", "holds": True, "evidence": {**check, "reason": values}}],
            "then": {"kind": "non_data", "verdict": reason, "checks": [SETUP_CHECK["id"]]}}
    suppressed = list(result.get("suppressed_rules") or []) + [
        {"id": f["id"], "reason": reason} for f in result.get("fired_rules") or [] if f.get("kind") == "data"]
    return {**result, "verdict": "non_data", "explanation": None,
            "summary": f"{reason} ({values}); not comparable: {result['candidate']} vs {result['baseline']}",
            "fired_rules": [rule], "interventions": [], "checks": [SETUP_CHECK], "suppressed_rules": suppressed}


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy arrays and scalars from Parquet
        value = value.tolist()
    if isinstance(value, tuple):
        value = list(value)
    return value


def _canon(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = float(value)
    return json.dumps(value, sort_keys=True, default=str)


def _show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)
