"""Mapping rules: from a run comparison to a data intervention, a non-data verdict, or neither.

Rules are versioned YAML data (``prompts/mapping-rules-v1.yaml``, taxonomy v1 §3). A rule
has an ``id``, a ``description``, ``when`` — a list of conditions that must all hold, each a
named predicate from :data:`PREDICATES` with its parameters — and ``then``:

- ``kind: data``: a filter over document labels (``domain``, ``document_format``,
  ``demonstrated_operations`` (any of), ``reasoning_depth_min`` (taxonomy order),
  ``education_level``) and an action (``upsample`` with ``weight``, or
  ``targeted_sampling`` with ``token_budget``, in tokens);
- ``kind: non_data``: a ``verdict`` and the ``checks`` to run instead (:data:`CHECKS`).

No code lives in the YAML. An unknown predicate, parameter or label id is refused with a
message naming the rule and the allowed names. :func:`diagnose` evaluates the rules in
order: a fired non-data rule makes the verdict ``non_data`` and suppresses every data
intervention; else fired data rules give ``data_intervention``; else, when the overall
change is a significant drop, ``broad_regression`` (no slice stands out) or
``unexplained_regression`` (slices stand out but no rule names them, or the axes that could
localise the drop are gated out); else ``insufficient_evidence``, with the minimum
detectable effect (:mod:`service.verdicts`). A slice under the minimum support, not
significant after Benjamini–Hochberg, whose loss rate is not significantly above the rest
(not *localised*, :mod:`service.localisation`), or whose Wilson interval overlaps the
baseline's, is never evidence for an intervention; it is listed as insufficient evidence.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from slicelab.prompts import PROMPTS_DIR
from slicelab.service.checks import FAILURE_DETAILS
from slicelab.service.comparison import Comparison, jsonable
from slicelab.service.errors import ConfigError
from slicelab.service.setup import apply_setup_check, compare_setups
from slicelab.service.slices import MIN_SUPPORT
from slicelab.service.taxonomy import Taxonomy, load_taxonomy
from slicelab.service.training_lint import attach_findings
from slicelab.service.verdicts import fallback_verdict, localisation_summary

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
_Frac = Annotated[float, Field(ge=0.0, le=1.0)]
_Key = Literal["capability", "combination", "marginal"]


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RegressionSpreadParams(_Params):
    """The regression touches most slices: share of tested slices with a significant drop."""

    key: Literal["capability", "combination", "marginal"] = "capability"
    min_share_slices: _Frac
    min_tested: int = Field(3, ge=1)
    max_gini: _Frac | None = None
    max_hhi_normalized: _Frac | None = None


class FailureModeShareParams(_Params):
    """Most newly failing samples have one of ``modes`` (and, with ``details``, one of those
    ``failure_mode_detail`` ids, :data:`service.checks.FAILURE_DETAILS`)."""

    modes: list[str] = Field(min_length=1)
    details: list[str] | None = None
    min_share: _Frac
    min_newly_failing: int = Field(10, ge=1)


class WeakSlicesParams(_Params):
    """At least ``min_slices`` slices matching the filters dropped, localised, with enough evidence.

    ``key`` is one slice key or a list of them (``[capability, marginal]``: the 4-axis capability
    slices and the single-axis slices, among them the primary-operation key
    ``marginal:primary_operation=<op>``). The axis filters apply to capability slices only
    (a marginal slice spans every value of the other axes); ``combination`` refuses them.
    """

    key: _Key | list[_Key] = "capability"
    primary_operation: str | None = None
    operations: list[str] | None = None
    background_condition: list[str] | None = None
    exclude_background_condition: list[str] | None = None
    task_type: list[str] | None = None
    output_constraint: list[str] | None = None
    min_slices: int = Field(1, ge=1)
    max_delta: float = Field(0.0, le=0.0)

    @model_validator(mode="after")
    def _one_operation_filter(self):
        if self.primary_operation and self.operations:
            raise ValueError("give primary_operation or operations, not both")
        axes = ("background_condition", "exclude_background_condition", "task_type", "output_constraint")
        if "combination" in self.keys and any(getattr(self, a) for a in axes):
            raise ValueError(f"key combination spans every background, task and output; drop {', '.join(axes)}")
        return self

    @property
    def keys(self) -> list[str]:
        return [self.key] if isinstance(self.key, str) else list(dict.fromkeys(self.key))

    @property
    def ops(self) -> list[str] | None:
        return [self.primary_operation] if self.primary_operation else self.operations


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


class EvidenceSettings(BaseModel):
    """When a slice counts as evidence (CLI options override ``min_support`` and ``alpha``)."""

    model_config = ConfigDict(extra="forbid")
    min_support: int = Field(MIN_SUPPORT, ge=1)
    alpha: float = Field(0.05, gt=0, lt=1)
    require_separated_intervals: bool = True


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


# --------------------------------------------------------------------------- predicates


@dataclass
class Outcome:
    """What a predicate found: whether it holds, the evidence, and slices too weak to count."""

    holds: bool
    evidence: dict[str, Any]
    insufficient: list[dict[str, Any]]


def _regression_spread(cmp: Comparison, p: RegressionSpreadParams, ev: EvidenceSettings) -> Outcome:
    s = cmp.spread.get(p.key)
    if not s or s["n_tested"] < p.min_tested:
        n = s["n_tested"] if s else 0
        return Outcome(False, {"n_tested": n, "reason": f"{n} {p.key} slices with support >= {ev.min_support}, "
                                                        f"need {p.min_tested}"}, [])
    holds = (s["share_slices_significant_drop"] or 0) >= p.min_share_slices
    if p.max_gini is not None:
        holds &= s["gini_net_loss_rate"] is not None and s["gini_net_loss_rate"] <= p.max_gini
    if p.max_hhi_normalized is not None:
        holds &= s["hhi_net_losses_normalized"] is not None and s["hhi_net_losses_normalized"] <= p.max_hhi_normalized
    drops = cmp.slices[(cmp.slices["key"] == p.key) & cmp.slices["significant_drop"].astype(bool)]
    return Outcome(bool(holds), {**s, "key": p.key, "significant_drop_slices": list(drops["slice_id"])}, [])


def _failure_mode_share(cmp: Comparison, p: FailureModeShareParams, ev: EvidenceSettings) -> Outcome:
    fm = cmp.failure_modes
    n = fm["n_newly_failing"]
    share = sum(fm["shares"].get(m, 0.0) for m in p.modes)
    evidence = {"n_newly_failing": n, "modes": p.modes, "share": share,
                "counts": {m: fm["counts"].get(m, 0) for m in p.modes}}
    if p.details:  # the share of those details (each belongs to one failure mode, service.checks)
        share = sum(fm.get("detail_shares", {}).get(d, 0.0) for d in p.details)
        evidence.update(details=p.details, share=share,
                        detail_counts={d: fm.get("detail_counts", {}).get(d, 0) for d in p.details},
                        examples=[e for d in p.details for e in fm.get("detail_examples", {}).get(d, [])])
    if n < p.min_newly_failing:
        return Outcome(False, {**evidence, "reason": f"{n} newly failing samples, need {p.min_newly_failing}"}, [])
    return Outcome(share >= p.min_share, evidence, [])


def _weak_slices(cmp: Comparison, p: WeakSlicesParams, ev: EvidenceSettings) -> Outcome:
    df = cmp.slices[cmp.slices["key"].isin(p.keys)]
    if p.ops:
        df = df[df["operations"].map(lambda ops: bool(set(ops or []) & set(p.ops)))]
    cap = df["key"] == "capability"
    for axis in ("background_condition", "task_type", "output_constraint"):
        if getattr(p, axis):
            df = df[~cap | df[axis].isin(getattr(p, axis))]
            cap = df["key"] == "capability"
    if p.exclude_background_condition:
        df = df[~cap | ~df["background_condition"].isin(p.exclude_background_condition)]
    dropped = df[df["delta"] < p.max_delta]
    weak, insufficient = [], []
    for r in dropped.itertuples(index=False):
        reasons = []
        if r.low_support:
            reasons.append(f"support {r.n} < {ev.min_support}")
        elif not r.significant_drop:
            reasons.append(f"not significant after Benjamini-Hochberg (q={r.q_value:.3g} >= {ev.alpha})")
        elif not r.localised:
            reasons.append(_not_localised(r, ev.alpha))
        if ev.require_separated_intervals and r.intervals_overlap:
            reasons.append("candidate and baseline 95% intervals overlap")
        (insufficient if reasons else weak).append(slice_evidence(r, reasons, cmp))
    return Outcome(len(weak) >= p.min_slices, {"key": p.key, "n_matching": int(len(df)), "weak_slices": weak}, insufficient)


def _not_localised(r: Any, alpha: float) -> str:
    rate = lambda x: "—" if x is None or x != x else f"{x:.2f}"  # noqa: E731 - NaN-safe
    q = "untested" if r.loss_q is None or r.loss_q != r.loss_q else f"q={r.loss_q:.3g} >= {alpha}"
    return (f"not localised: loss rate {rate(r.loss_rate)} among baseline-correct samples is not significantly "
            f"above the {rate(r.loss_rate_outside)} outside the slice (one-sided Fisher exact, {q})")


def slice_evidence(r: Any, reasons: list[str] | None = None, cmp: Comparison | None = None) -> dict[str, Any]:
    """The figures a diagnosis quotes for one slice (a row of ``Comparison.slices``), with example
    lost samples (ids and output tails) when ``cmp`` holds them."""
    out = {"slice_id": r.slice_id, "key": r.key, "label": r.label, "operations": list(r.operations or []),
           "n": int(r.n), "baseline_pass": r.baseline_pass, "candidate_pass": r.candidate_pass, "delta": r.delta,
           "delta_ci": [r.delta_ci_low, r.delta_ci_high], "losses": int(r.n10), "gains": int(r.n01),
           "kept": int(r.n11), "p_value": r.p_value, "q_value": r.q_value, "loss_rate": r.loss_rate,
           "loss_rate_outside": r.loss_rate_outside, "loss_q": r.loss_q, "localised": bool(r.localised)}
    if cmp is not None and not reasons:
        out["examples"] = cmp.evidence.get("slice_examples", {}).get(r.slice_id, [])
    if reasons:
        out["reasons"] = reasons
    return out


#: Predicate name → (parameter model, function). The only names a rule's ``when`` may use.
PREDICATES: dict[str, tuple[type[_Params], Callable[[Comparison, Any, EvidenceSettings], Outcome]]] = {
    "regression_spread": (RegressionSpreadParams, _regression_spread),
    "failure_mode_share": (FailureModeShareParams, _failure_mode_share),
    "weak_slices": (WeakSlicesParams, _weak_slices),
}


# --------------------------------------------------------------------------- loading


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


# --------------------------------------------------------------------------- diagnosis


def diagnose(cmp: Comparison, rules: RuleSet | None = None, *, ignore_setup: list[str] | tuple[str, ...] = (),
             training_findings: dict[str, Any] | None = None) -> dict[str, Any]:
    """Evaluate the rules in order against a comparison, after checking that both runs were evaluated alike.

    Args:
        cmp: from :func:`service.comparison.compare`, run with the rule set's ``min_support`` and ``alpha``
            (or the overrides recorded in ``cmp.meta``).
        rules: a rule set (default: the bundled one).
        ignore_setup: set-up fields not compared (:func:`service.setup.compare_setups`); recorded.
        training_findings: a training-config lint (:func:`service.training_lint.lint_training_config`),
            cited as evidence of a termination verdict (:func:`service.training_lint.attach_findings`).

    Returns:
        A JSON-serialisable dict: ``verdict`` (``non_data``, ``data_intervention``,
        ``broad_regression``, ``unexplained_regression`` or ``insufficient_evidence``), ``summary``
        (one sentence), ``explanation`` (for the last three: ``statement``, the overall test, and
        ``missing`` or ``mde``; see :mod:`service.verdicts`), ``localisation`` (tests, heterogeneity,
        slices that stand out), ``fired_rules`` (id, kind,
        description, per-condition evidence, ``then``), ``interventions`` (rule id, filter,
        action, target operations, the weak slices addressed), ``checks`` (non-data),
        ``suppressed_rules``, ``rules_evaluated`` (id, fired, why not), ``insufficient_evidence``
        (slices that dropped without enough evidence, with reasons), ``weak_slices`` per key (with
        example lost samples), ``overall``, ``spread``, ``failure_modes`` (with examples), ``evidence``
        (join, run profiles, calibration state), ``pass_at_k``, ``rules`` (provenance), ``meta``, ``setup``
        (the two runs' set-ups and the fields that differ, :func:`service.setup.compare_setups`; a difference
        makes the verdict ``non_data`` "evaluation set-up differs", :func:`service.setup.apply_setup_check`)
        and, with ``training_findings``, ``training_config``.
    """
    rules = rules or default_rules()
    ev = rules.evidence.model_copy(update={"min_support": cmp.meta.get("min_support", rules.evidence.min_support),
                                           "alpha": cmp.meta.get("alpha", rules.evidence.alpha)})
    fired, evaluated, insufficient = [], [], {}
    for rule in rules.rules:
        outcomes = [(c, PREDICATES[c.predicate][1](cmp, c.params, ev)) for c in rule.when]
        holds = all(o.holds for _, o in outcomes)
        for _, o in outcomes:
            for s in o.insufficient:
                insufficient.setdefault(s["slice_id"], s)
        conditions = [{"predicate": c.predicate, "params": c.params.model_dump(exclude_none=True), "holds": o.holds,
                       "evidence": o.evidence} for c, o in outcomes]
        evaluated.append({"id": rule.id, "kind": rule.then.kind, "fired": holds,
                          **({} if holds else {"failed": [c["predicate"] for c in conditions if not c["holds"]]})})
        if holds:
            fired.append({"id": rule.id, "kind": rule.then.kind, "description": rule.description,
                          "conditions": conditions, "then": rule.then.model_dump(exclude_none=True)})
    non_data = [f for f in fired if f["kind"] == "non_data"]
    data = [f for f in fired if f["kind"] == "data"]
    interventions, suppressed, checks, explanation = [], [], [], None
    localisation = localisation_summary(cmp, ev.alpha)
    if non_data:
        verdict = "non_data"
        suppressed = [{"id": f["id"], "reason": f"non-data verdict from rule {non_data[0]['id']!r}"} for f in data]
        fired = non_data
        checks = list(dict.fromkeys(c for f in non_data for c in f["then"]["checks"]))
    elif data:
        verdict = "data_intervention"
        interventions = [_intervention(f) for f in data]
    else:
        verdict, explanation = fallback_verdict(cmp, ev.alpha, localisation)
    weak = {k: [slice_evidence(r, None, cmp) for r in g.itertuples(index=False)]
            for k, g in cmp.slices[_is_weak(cmp.slices, ev)].groupby("key", sort=False)}
    out = {
        "verdict": verdict,
        "summary": _summary(verdict, non_data, interventions, explanation, cmp),
        "explanation": explanation, "localisation": localisation,
        "baseline": cmp.baseline, "candidate": cmp.candidate,
        "rules": rules.provenance(), "evidence_settings": ev.model_dump(),
        "fired_rules": fired, "interventions": interventions,
        "checks": [{"id": c, "what": CHECKS[c]} for c in checks],
        "suppressed_rules": suppressed, "rules_evaluated": evaluated,
        "insufficient_evidence": list(insufficient.values()), "weak_slices": weak,
        "overall": cmp.overall, "spread": cmp.spread, "failure_modes": cmp.failure_modes, "meta": cmp.meta,
        "evidence": {k: v for k, v in cmp.evidence.items() if k != "slice_examples"}, "pass_at_k": cmp.pass_at_k,
    }
    # the set-up check overrides every rule: runs evaluated differently are not comparable
    out = apply_setup_check(out, compare_setups(cmp.meta.get("setup") or {}, cmp.baseline, cmp.candidate,
                                                ignore_setup))
    if training_findings is not None:
        out = attach_findings(out, training_findings)
    return jsonable(out)


def _is_weak(slices: pd.DataFrame, ev: EvidenceSettings) -> pd.Series:
    weak = slices["significant_drop"].astype(bool) & slices["localised"].astype(bool)
    if ev.require_separated_intervals:
        weak &= ~slices["intervals_overlap"].astype(bool)
    return weak


def _intervention(f: dict[str, Any]) -> dict[str, Any]:
    weak = [s for c in f["conditions"] for s in c["evidence"].get("weak_slices", [])]
    ops = f["then"]["filter"].get("demonstrated_operations") or sorted({o for s in weak for o in s["operations"]})
    return {"rule_id": f["id"], "filter": f["then"]["filter"], "action": f["then"]["action"],
            "operations": ops, "weak_slices": [s["slice_id"] for s in weak], "n_weak_slices": len(weak),
            "samples_in_weak_slices": sum(s["n"] for s in weak)}


def _summary(verdict: str, non_data: list, interventions: list, explanation: dict | None, cmp: Comparison) -> str:
    o = cmp.overall
    head = (f"{cmp.candidate} vs {cmp.baseline}: pass rate {o['candidate_pass']:.3f} vs {o['baseline_pass']:.3f} "
            f"on {o['n']} shared samples")
    if cmp.meta.get("metric") == "pass@k":
        k = cmp.meta["metric_k"]
        pk = cmp.pass_at_k["by_k"][str(k)]["overall"]
        head += f", pass@{k} {pk['candidate']:.3f} vs {pk['baseline']:.3f} on {pk['n_items']} problems"
    if verdict == "non_data":
        return f"{head}; not a data problem ({non_data[0]['then']['verdict']}): rule {non_data[0]['id']}"
    if verdict == "data_intervention":
        ops = sorted({op for i in interventions for op in i["operations"]})
        return f"{head}; {len(interventions)} data interventions for operations {', '.join(ops)}"
    return f"{head}. {explanation['statement']}"
