"""Mapping rules as data, diagnosis on real outputs, and weakness-targeted sampling."""

from __future__ import annotations

import copy
import json

import pytest
import yaml

from slicelab.service.comparison import compare
from slicelab.service.errors import ConfigError
from slicelab.service.mapping import CHECKS, DEFAULT_RULES, PREDICATES, NonDataThen, diagnose, load_rules
from slicelab.service.results import load_results
from slicelab.service.sampling import build_manifest, load_documents, matches
from slicelab.service.taxonomy import load_taxonomy
from tests.loop_data import LOOP, MATH_OUTPUTS, STRONG, WEAK, doc_labels, math_labels
from tests.verdict_data import math_subject_candidate

#: A MATH-500 subject whose lost problems fill a 4-axis capability slice large enough to carry the drop.
CAPABILITY_SUBJECT = "Counting & Probability"
AXES = ["background_condition", "task_type", "primary_operation", "output_constraint"]


def problem_subjects() -> dict[str, str]:
    return {json.loads(x)["id"]: json.loads(x)["subject"] for x in (LOOP / "math500_problems.jsonl").read_text().splitlines()}


def split_subject() -> str:
    """The subject whose most frequent primary operation has the smallest largest 4-axis capability slice
    (ties: alphabetical): losing it spreads the drop over capability slices that are each small."""
    labels = math_labels()
    size = labels.groupby(AXES).size()
    subject = labels["id"].map(problem_subjects())

    def largest_cap(s: str) -> int:
        op = labels.loc[subject == s, "primary_operation"].value_counts().index[0]
        return int(size.xs(op, level="primary_operation").max())
    return min(sorted(set(subject)), key=largest_cap)


def subject_comparison(tmp, subject: str):
    """Qwen2.5-14B vs the same outputs with every solved answer of ``subject`` made wrong."""
    path = math_subject_candidate(tmp / "subject.jsonl", {subject}, run="one-subject")
    return compare(math_labels(), load_results([path]), STRONG, "one-subject")


@pytest.fixture(scope="module")
def math_cmp():
    return compare(math_labels(), load_results([MATH_OUTPUTS]), STRONG, WEAK)


@pytest.fixture(scope="module")
def subject_cmp(tmp_path_factory):
    """Qwen2.5-14B vs the same outputs with every solved answer of :func:`split_subject` made wrong."""
    return subject_comparison(tmp_path_factory.mktemp("subj"), split_subject())


@pytest.fixture(scope="module")
def algebra_cmp(tmp_path_factory):
    """Qwen2.5-14B vs the same outputs with every solved Algebra answer made wrong."""
    path = math_subject_candidate(tmp_path_factory.mktemp("alg") / "algebra.jsonl", {"Algebra"}, run="algebra")
    return compare(math_labels(), load_results([path]), STRONG, "algebra")


@pytest.fixture(scope="module")
def docs(tmp_path_factory):
    path = tmp_path_factory.mktemp("docs") / "docs.parquet"
    doc_labels().to_parquet(path)
    return load_documents(path)


# --------------------------------------------------------------------------- the rule file


def test_default_rules_cover_the_spec_and_every_operation():
    rules = load_rules()
    tax = load_taxonomy()
    assert rules.version == "v1" and rules.evidence.min_support == 10
    kinds = [r.then.kind for r in rules.rules]
    assert kinds == sorted(kinds, key=lambda k: k != "non_data"), "non-data rules come first"
    by_id = {r.id: r for r in rules.rules}
    # taxonomy v1 §3, example 2: spread regression + non_termination/format_violation -> non-data verdict
    spec2 = by_id["training-decoding-issue"]
    assert [c.predicate for c in spec2.when] == ["regression_spread", "failure_mode_share"]
    assert set(spec2.when[1].params.modes) == {"non_termination", "format_violation"}
    assert isinstance(spec2.then, NonDataThen)
    assert set(spec2.then.checks) >= {"eos_loss_mask", "stop_tokens", "chat_template", "answer_extraction"}
    # taxonomy v1 §3, example 1
    spec1 = by_id["counting-combinatorics-pure-math"]
    assert spec1.when[0].params.ops == ["counting_combinatorics"]
    assert spec1.when[0].params.background_condition == ["pure_math"]
    f = spec1.then.filter
    assert f.domain == ["mathematics"] and f.demonstrated_operations == ["counting_combinatorics"]
    assert f.reasoning_depth_min == "multi_step"
    assert set(f.document_format) == {"problem_solution", "textbook_lecture", "qa_forum"}
    # one data rule per operation, mapping weak slices with that primary operation to documents showing it
    per_op = {}
    for r in rules.rules:
        if r.then.kind == "data" and r.id.startswith("op-"):
            (cond,) = r.when
            assert cond.predicate == "weak_slices" and cond.params.keys == ["capability", "marginal"]
            (op,) = cond.params.ops
            assert r.then.filter.demonstrated_operations == [op]
            per_op[op] = r
    assert list(per_op) == tax.axis("eval", "solving_operations").ids


def _rule(d: dict, rule_id: str) -> dict:
    return next(r for r in d["rules"] if r["id"] == rule_id)


@pytest.mark.parametrize("mutate,expected", [
    (lambda d: _rule(d, "training-decoding-issue")["when"].__setitem__(0, {"predicate": "eval_python", "code": "1"}),
     r"rule 'training-decoding-issue': unknown predicate 'eval_python'; allowed: regression_spread, failure_mode_share, weak_slices"),
    (lambda d: _rule(d, "training-decoding-issue")["when"][0].__setitem__("min_share", 0.5),
     r"rule 'training-decoding-issue': predicate regression_spread: .*min_share.*allowed parameters: key, min_share_slices"),
    (lambda d: _rule(d, "training-decoding-issue")["when"][1].__setitem__("modes", ["non_termination", "timeout"]),
     r"rule 'training-decoding-issue': failure_mode_share.modes: unknown label 'timeout'; allowed: wrong_reasoning"),
    (lambda d: _rule(d, "counting-combinatorics-pure-math")["then"]["filter"].__setitem__("domain", ["maths"]),
     r"rule 'counting-combinatorics-pure-math': then.filter.domain: unknown label 'maths'; allowed: mathematics"),
    (lambda d: _rule(d, "counting-combinatorics-pure-math")["then"]["filter"].__setitem__("reasoning_depth_min", "deep"),
     r"reasoning_depth_min: unknown label 'deep'; allowed: none, descriptive"),
    (lambda d: _rule(d, "counting-combinatorics-pure-math")["when"][0].__setitem__("primary_operation", "counting"),
     r"weak_slices.operations: unknown label 'counting'"),
    (lambda d: _rule(d, "training-decoding-issue")["then"].__setitem__("checks", ["vibes"]),
     r"then.checks: unknown label 'vibes'; allowed: eos_loss_mask"),
    (lambda d: _rule(d, "counting-combinatorics-pure-math")["then"].__setitem__("action", {"type": "upsample", "weight": 2, "budget": 1}),
     r"rule 'counting-combinatorics-pure-math': .*budget"),
    (lambda d: d["rules"].append(copy.deepcopy(d["rules"][0])), r"repeats a rule id"),
    (lambda d: d.pop("version"), r"version \(required\)"),
    (lambda d: _rule(d, "op-arithmetic")["when"][0].update({"key": "combination", "background_condition": ["pure_math"]}),
     r"rule 'op-arithmetic': predicate weak_slices: .*key combination spans"),
])
def test_bad_rules_are_refused_naming_the_rule_and_the_allowed_names(tmp_path, mutate, expected):
    data = yaml.safe_load(DEFAULT_RULES.read_text())
    mutate(data)
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(ConfigError, match=expected):
        load_rules(path)


def test_yaml_cannot_carry_code(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text("version: v1\nrules:\n  - !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_rules(path)
    assert set(PREDICATES) == {"regression_spread", "failure_mode_share", "weak_slices"} and "scoring" in CHECKS


# --------------------------------------------------------------------------- diagnosis on real outputs


def test_weaker_math_model_is_a_broad_regression(math_cmp):
    """gemma-2-27b-it vs Qwen2.5-14B-Instruct on MATH-500: a large drop spread over every slice.

    The largest slices reach significance first, but none loses significantly more of its
    baseline-correct samples than the rest: no operation-targeted intervention. Loss rates do vary
    by subject (harder subjects lose more), and the families that follow the subjects show it in
    their homogeneity test, which the statement quotes.
    """
    result = diagnose(math_cmp)
    assert result["verdict"] == "broad_regression" and result["interventions"] == []
    assert not any(f["kind"] == "data" for f in result["fired_rules"])
    loc = result["localisation"]
    assert not loc["localised"] and loc["standing_out"] == [] and loc["n_tests"] == math_cmp.meta["n_tests"] > 10
    het = {h["family"]: h for h in loc["heterogeneity"]}
    assert {"capability", "combination", "marginal:primary_operation"} <= set(het)
    assert all(h["p_value"] > 0.05 for f, h in het.items() if f in ("marginal:task_type", "marginal:output_constraint"))
    text = result["explanation"]["statement"]
    assert "weaker across the board" in text and "No operation-targeted" in text
    assert all(f"{f}: chi2={h['chi2']:.1f}" in text for f, h in het.items() if h["p_value"] is not None)
    # every slice that dropped significantly would have fired an operation rule, but is not localised
    slices = math_cmp.slices.set_index("slice_id")
    dropped = {s["slice_id"]: s for s in result["insufficient_evidence"]}
    sig = slices.index[slices["significant_drop"].astype(bool)]
    ops = [sid for sid in sig if sid.startswith(("capability:", "marginal:primary_operation="))]
    assert len(ops) >= 4
    for sid in ops:
        assert any(r.startswith("not localised") for r in dropped[sid]["reasons"])


def _check_subject_interventions(result: dict, subject: str, cmp) -> None:
    """Interventions name only operations of ``subject``; their evidence is localised, supported and lost there."""
    labels, subjects = math_labels(), problem_subjects()
    assert result["verdict"] == "data_intervention"
    subject_ops = set(labels.loc[labels["id"].map(subjects) == subject, "primary_operation"])
    ops = {op for i in result["interventions"] for op in i["operations"]}
    assert ops and ops <= subject_ops
    slices = cmp.slices.set_index("slice_id")
    for i in result["interventions"]:
        for sid in i["weak_slices"]:
            s = slices.loc[sid]
            assert s["n"] >= 10 and s["significant_drop"] and s["localised"] and not s["intervals_overlap"]
            assert set(s["operations"]) & set(i["operations"])
    weak = [s for ss in result["weak_slices"].values() for s in ss]
    for s in weak:
        assert all(x["baseline_correct"] and not x["candidate_correct"] for x in s["examples"])
        assert all(subjects[x["sample_id"]] == subject for x in s["examples"])
    evidence = result["fired_rules"][0]["conditions"][0]["evidence"]["weak_slices"][0]
    assert {"slice_id", "n", "delta", "delta_ci", "p_value", "q_value", "loss_rate", "loss_q"} <= set(evidence)


def test_one_subject_drop_is_localised_to_its_operations(subject_cmp):
    """Only one subject's problems are lost (complete, wrong answers), and its operation's 4-axis capability
    slices are each small: the primary-operation slice of those problems is localised all the same."""
    result = diagnose(subject_cmp)
    _check_subject_interventions(result, split_subject(), subject_cmp)
    weak = [s for ss in result["weak_slices"].values() for s in ss]
    prim = [s for s in weak if s["slice_id"].startswith("marginal:primary_operation=")]
    assert prim and all(s["localised"] and s["loss_rate"] > s["loss_rate_outside"] for s in prim)
    slices = subject_cmp.slices.set_index("slice_id")
    weak_cap = {s["slice_id"] for s in result["weak_slices"].get("capability", [])}
    for s in prim:
        (op,) = s["operations"]
        cap = slices[(slices["key"] == "capability") & (slices["primary_operation"] == op)]
        # no 4-axis slice of the operation carries the drop on its own: too small or not significant
        assert len(cap) >= 2 and not set(cap.index) & weak_cap
        assert (cap["low_support"] | ~cap["significant_drop"].astype(bool)).all()
        assert s["examples"]


def test_one_subject_drop_can_be_carried_by_a_capability_slice(tmp_path):
    """When the lost subject's problems fill a 4-axis capability slice, that slice is localised and is evidence."""
    cmp = subject_comparison(tmp_path, CAPABILITY_SUBJECT)
    result = diagnose(cmp)
    _check_subject_interventions(result, CAPABILITY_SUBJECT, cmp)
    cap = [s for s in result["weak_slices"].get("capability", []) if s["localised"]]
    assert cap and any(s["slice_id"] in i["weak_slices"] for s in cap for i in result["interventions"])


def test_localised_drop_rules_the_data_in(algebra_cmp, docs):
    """Only Algebra problems are lost: algebraic manipulation is localised, documents showing it are selected."""
    result = diagnose(algebra_cmp)
    assert result["verdict"] == "data_intervention"
    assert [i["rule_id"] for i in result["interventions"]] == ["op-algebraic-manipulation"]
    ops = {op for i in result["interventions"] for op in i["operations"]}
    table, source = docs
    manifest, summary = build_manifest(table, result, 5_000, token_source=source)
    assert len(manifest) > 0 and manifest["tokens"].sum() <= 5_000
    doc_ops = table.set_index("id")["demonstrated_operations"]
    for row in manifest.itertuples():
        assert row.matched_operations and set(row.matched_operations) <= set(doc_ops[row.doc_id]) & ops
        assert row.weight == len(row.weak_slices) >= 1
    targeted = sum(summary["mixture"]["after"]["operation"].get(o, 0) for o in ops)
    assert targeted > sum(summary["mixture"]["before"]["operation"].get(o, 0) for o in ops)
    assert summary["n_selected"] == len(manifest) and summary["gate"]["domain"] == "pass"


def test_low_support_slice_is_insufficient_evidence(math_cmp):
    """A clearly dropping slice with 8 shared samples (under the minimum of 10) proposes nothing.

    The slice is the capability slice with the most baseline-correct samples lost among those
    that drop significantly; 8 of its lost samples are compared on their own.
    """
    labels, res = math_labels(), load_results([MATH_OUTPUTS])
    slices = math_cmp.slices
    dropping = slices[(slices["key"] == "capability") & slices["significant_drop"].astype(bool)]
    weak = dropping.sort_values(["n10", "slice_id"], ascending=[False, True]).iloc[0]
    sid = weak["slice_id"]
    wide = res.pivot(index="sample_id", columns="run", values="correct")
    members = labels[(labels[AXES] == weak[AXES].tolist()).all(axis=1)]["id"]
    lost = [i for i in members if wide.at[i, STRONG] and not wide.at[i, WEAK]][:8]
    small = compare(labels[labels["id"].isin(lost)], res[res["sample_id"].isin(lost)], STRONG, WEAK)
    row = small.slices.set_index("slice_id").loc[sid]
    assert row["n"] == 8 and row["delta"] == -1.0 and row["low_support"]
    result = diagnose(small)
    assert result["verdict"] == "insufficient_evidence" and result["interventions"] == []
    found = {s["slice_id"]: s["reasons"] for s in result["insufficient_evidence"]}
    assert "support 8 < 10" in found[sid]


def test_overlapping_intervals_are_insufficient_evidence(math_cmp):
    ev = {s["slice_id"]: s for s in diagnose(math_cmp)["insufficient_evidence"]}
    overlapping = math_cmp.slices[math_cmp.slices["tested"] & math_cmp.slices["intervals_overlap"]
                                  & (math_cmp.slices["delta"] < 0) & (math_cmp.slices["key"] == "capability")]
    assert len(overlapping)
    for sid in overlapping["slice_id"]:
        assert any("intervals overlap" in r for r in ev[sid]["reasons"])


# --------------------------------------------------------------------------- sampling


def test_sampling_refuses_non_data_verdicts_and_ungated_axes(subject_cmp, docs):
    table, _ = docs
    with pytest.raises(ConfigError, match="non_data.*eos_loss_mask"):
        build_manifest(table, {"verdict": "non_data", "checks": [{"id": "eos_loss_mask"}]}, 1000)
    result = diagnose(subject_cmp)
    ungated = table.drop(columns=[c for c in table.columns if c.startswith("gate_")])
    with pytest.raises(ConfigError, match="did not pass calibration: .*domain \\(ungated\\).*--allow-ungated"):
        build_manifest(ungated, result, 1000)
    manifest, summary = build_manifest(ungated, result, 1000, allow_ungated=True)
    assert summary["allow_ungated"] and set(summary["gate"].values()) == {"ungated"}
    assert manifest["tokens"].sum() <= 1000


def test_filters_follow_the_taxonomy_order_and_budgets(docs):
    table, _ = docs
    deep = matches(table, {"reasoning_depth_min": "multi_step"})
    assert set(table.loc[deep, "reasoning_depth"]) <= {"multi_step", "rigorous"}
    assert set(table.loc[~deep, "reasoning_depth"]) <= {"none", "descriptive", "single_step"}
    two = {"verdict": "data_intervention", "baseline": "a", "candidate": "b", "interventions": [
        {"rule_id": "r1", "filter": {"demonstrated_operations": ["logical_deduction"]},
         "action": {"type": "targeted_sampling", "token_budget": 600}, "operations": ["logical_deduction"],
         "weak_slices": ["s1", "s2"]},
        {"rule_id": "r2", "filter": {"domain": ["mathematics"]}, "action": {"type": "upsample", "weight": 3.0},
         "operations": ["algebraic_manipulation"], "weak_slices": ["s3"]}]}
    manifest, summary = build_manifest(table, two, 4_000)
    assert manifest.loc[manifest["rule_id"] == "r1", "tokens"].sum() <= 600
    assert manifest["tokens"].sum() <= 4_000
    both = manifest[manifest["rule_ids"].map(len) == 2]
    assert (both["weight"] == 9.0).all()  # three weak slices x upsample weight 3
    assert list(manifest["weight"]) == sorted(manifest["weight"], reverse=True)
