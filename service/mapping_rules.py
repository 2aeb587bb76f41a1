"""Mapping-rule files: their schema, and loading with every name checked.

A rule file (``prompts/mapping-rules-v1.yaml``) holds ``version``, ``evidence`` settings and
``rules`` in order; each rule has an ``id``, a ``description``, ``when`` (conditions over the
predicates of :data:`service.mapping_predicates.PREDICATES`) and ``then``: a data intervention
(a document filter and an action) or a non-data verdict with the :data:`CHECKS` to run.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from slicelab.prompts import PROMPTS_DIR
from slicelab.service.checks import FAILURE_DETAILS
from slicelab.service.errors import ConfigError
from slicelab.service.mapping_predicates import PREDICATES, EvidenceSettings, FailureModeShareParams, WeakSlicesParams
from slicelab.service.taxonomy import Taxonomy, load_taxonomy

DEFAULT_RULES = PROMPTS_DIR / "mapping-rules-v1.yaml"
#: What a non-data verdict may tell the user to check, with what each means.
CHECKS = {
    "eos_loss_mask": "the end-of-sequence token is in the loss mask, so the model learns to stop",
    "stop_tokens": "the stop tokens / EOS id used at generation match the chat template",
    "chat_template": "the prompt is rendered with the model's own chat template",
    "answer_extraction": "the answer extractor finds the final answer in the output's format",
    "scoring": "the scorer compares extracted and reference answers correctly (normalisation, equivalence)",
    "generation_length": "the max-new-tokens limit leaves room for the full reasoning and the answer",
    "decoding_settings": "temperature, top-p and repetition penalty are what the evaluation intends",
}

class DocFilter(BaseModel):
    """Which labeled documents an intervention selects (every given field must match)."""

    model_config = ConfigDict(extra="forbid")
    domain: list[str] | None = None
    document_format: list[str] | None = None
    demonstrated_operations: list[str] | None = None
    reasoning_depth_min: str | None = None
    education_level: list[str] | None = None


class Upsample(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["upsample"]
    weight: float = Field(gt=0)


class TargetedSampling(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["targeted_sampling"]
    token_budget: int = Field(gt=0, description="tokens")


class DataThen(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["data"]
    filter: DocFilter
    action: Annotated[Upsample | TargetedSampling, Field(discriminator="type")]


class NonDataThen(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["non_data"]
    verdict: str = Field(min_length=1)
    checks: list[str] = Field(min_length=1)


class Condition(BaseModel):
    model_config = ConfigDict(extra="forbid")
    predicate: str
    params: Any


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    description: str = Field(min_length=1)
    when: list[Condition] = Field(min_length=1)
    then: Annotated[DataThen | NonDataThen, Field(discriminator="kind")]


@dataclass
class RuleSet:
    """A loaded rule file: ``version``, ``evidence`` settings, ``rules`` in order, and its provenance."""

    path: Path
    sha256: str
    version: str
    evidence: EvidenceSettings
    rules: list[Rule]

    def provenance(self) -> dict[str, str]:
        return {"path": str(self.path), "version": self.version, "sha256": self.sha256[:16]}


def load_rules(path: str | Path = DEFAULT_RULES, taxonomy: Taxonomy | None = None) -> RuleSet:
    """Load and validate a mapping-rule file.

    Raises:
        ConfigError: the file is unreadable or not YAML; a top-level key, rule field or predicate
            parameter is unknown or invalid; a predicate or check is not in the registry; a label id
            is not in the taxonomy; or rule ids repeat. The message names the file, the rule id and
            the allowed names.
    """
    path = Path(path)
    tax = taxonomy or load_taxonomy()
    try:
        raw_bytes = path.read_bytes()
        data = yaml.safe_load(raw_bytes)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read mapping rules: {e}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with version, evidence, rules")
    unknown = sorted(set(data) - {"version", "description", "evidence", "rules"})
    if unknown or not data.get("version") or not isinstance(data.get("rules"), list):
        raise ConfigError(f"{path}: top-level keys must be version (required), description, evidence, rules "
                          f"(a list, required); got {sorted(data)}")
    try:
        evidence = EvidenceSettings.model_validate(data.get("evidence") or {})
    except ValidationError as e:
        raise ConfigError(f"{path}: evidence: {_errors(e)}") from None
    rules, seen = [], set()
    for i, raw in enumerate(data["rules"], start=1):
        rid = raw.get("id") if isinstance(raw, dict) else None
        where = f"{path}: rule {rid!r}" if rid else f"{path}: rule #{i}"
        if isinstance(raw, dict) and isinstance(raw.get("when"), list):
            raw = {**raw, "when": [_condition(c, where) for c in raw["when"]]}
        try:
            rule = Rule.model_validate(raw)
        except ValidationError as e:
            raise ConfigError(f"{where}: {_errors(e)}") from None
        if rule.id in seen:
            raise ConfigError(f"{where}: repeats a rule id; ids must be unique")
        seen.add(rule.id)
        _check_labels(rule, tax, where)
        rules.append(rule)
    return RuleSet(path, hashlib.sha256(raw_bytes).hexdigest(), str(data["version"]), evidence, rules)


@lru_cache(maxsize=4)
def default_rules() -> RuleSet:
    """The bundled rule set (cached)."""
    return load_rules(DEFAULT_RULES)


def _condition(c: Any, where: str) -> dict[str, Any]:
    if not isinstance(c, dict) or "predicate" not in c:
        raise ConfigError(f"{where}: each 'when' item needs a 'predicate'; allowed: {', '.join(PREDICATES)}")
    name = c["predicate"]
    if name not in PREDICATES:
        raise ConfigError(f"{where}: unknown predicate {name!r}; allowed: {', '.join(PREDICATES)}")
    model = PREDICATES[name][0]
    try:
        params = model.model_validate({k: v for k, v in c.items() if k != "predicate"})
    except ValidationError as e:
        raise ConfigError(f"{where}: predicate {name}: {_errors(e)}; allowed parameters: "
                          f"{', '.join(model.model_fields)}") from None
    return {"predicate": name, "params": params}


def _errors(e: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, err['loc'])) or '(top)'}: {err['msg']}"
                     + (f" (got {err['input']!r})" if err["type"] in ("extra_forbidden", "literal_error") else "")
                     for err in e.errors())


def _check_labels(rule: Rule, tax: Taxonomy, where: str) -> None:
    def check(field: str, values: list[str] | None, allowed: list[str]) -> None:
        for v in values or []:
            if v not in allowed:
                raise ConfigError(f"{where}: {field}: unknown label {v!r}; allowed: {', '.join(allowed)}")

    ops = tax.axis("eval", "solving_operations").ids
    for c in rule.when:
        p = c.params
        if isinstance(p, FailureModeShareParams):
            check("failure_mode_share.modes", p.modes, tax.axis("eval", "failure_mode").ids)
            check("failure_mode_share.details", p.details, list(FAILURE_DETAILS))
        if isinstance(p, WeakSlicesParams):
            check("weak_slices.operations", p.ops, ops)
            for axis in ("background_condition", "task_type", "output_constraint"):
                check(f"weak_slices.{axis}", getattr(p, axis), tax.axis("eval", axis).ids)
            check("weak_slices.exclude_background_condition", p.exclude_background_condition,
                  tax.axis("eval", "background_condition").ids)
    t = rule.then
    if isinstance(t, NonDataThen):
        check("then.checks", t.checks, list(CHECKS))
        return
    f = t.filter
    for axis in ("domain", "document_format", "education_level"):
        check(f"then.filter.{axis}", getattr(f, axis), tax.axis("document", axis).ids)
    check("then.filter.demonstrated_operations", f.demonstrated_operations,
          tax.axis("document", "demonstrated_operations").ids)
    if f.reasoning_depth_min is not None:
        check("then.filter.reasoning_depth_min", [f.reasoning_depth_min], tax.axis("document", "reasoning_depth").ids)
