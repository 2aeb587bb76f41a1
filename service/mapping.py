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

The predicates and their evidence settings are in :mod:`service.mapping_predicates`, the rule-file
schema and :func:`load_rules` in :mod:`service.mapping_rules`; both are importable from here.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from slicelab.service.comparison import Comparison, jsonable
from slicelab.service.mapping_predicates import PREDICATES, EvidenceSettings, slice_evidence
from slicelab.service.mapping_rules import (
    CHECKS,
    DEFAULT_RULES,
    DocFilter,
    NonDataThen,
    RuleSet,
    TargetedSampling,
    Upsample,
    default_rules,
    load_rules,
)
from slicelab.service.setup import apply_setup_check, compare_setups
from slicelab.service.training_lint import attach_findings
from slicelab.service.verdicts import fallback_verdict, localisation_summary

__all__ = [
    "CHECKS", "DEFAULT_RULES", "PREDICATES", "DocFilter", "NonDataThen", "RuleSet", "TargetedSampling", "Upsample",
    "diagnose", "load_rules",
]


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
