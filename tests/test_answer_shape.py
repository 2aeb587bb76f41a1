"""Answer-shape rules and rule labelers on real items of every bundled benchmark; pools never hold the item labeled."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slicelab.calibration.gold import BUNDLED_ALL, GOLD, load_gold
from slicelab.service.answer_shape import RULES, answer_shape
from slicelab.service.readers import read_eval_samples
from slicelab.service.samples import EvalSample
from slicelab.service.shape_labeler import CueLabeler, ShapeLabeler
from slicelab.service.taxonomy import load_taxonomy

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).resolve().parent.parent

#: BBH task → the shape its items have (one real item per task in tests/data/bbh_one_per_task.jsonl).
BBH_RULE = {
    "boolean_expressions": "verdict", "causal_judgement": "verdict", "formal_fallacies": "verdict",
    "navigate": "verdict", "sports_understanding": "verdict", "web_of_lies": "verdict",
    "dyck_languages": "bracket_sequence", "word_sorting": "word_list",
    "multistep_arithmetic_two": "integer", "object_counting": "integer",
}


@pytest.fixture(scope="module")
def gold():
    return load_gold(BUNDLED_ALL["eval"])


def test_every_bundled_gold_item_gets_its_gold_task_type_and_output_constraint(gold):
    # real BBH, MATH-500 (all seven subjects), GSM8K and AIME 2024/2025 items, labeled by two annotators
    assert {gold.sources[i] for i in gold.items} == {"bbh", "math500", "gsm8k", "aime", "aime2025"}
    wrong = []
    for i, item in gold.items.items():
        shape = answer_shape(item.question, item.reference_answer)
        g = gold.labels[GOLD][i]
        if (shape.task_type, shape.output_constraint) != (g["task_type"], g["output_constraint"]):
            wrong.append((i, item.reference_answer, shape))
    assert wrong == [] and len(gold.items) == 170


def test_one_real_item_of_every_bbh_task():
    rows = [json.loads(line) for line in (DATA / "bbh_one_per_task.jsonl").read_text().splitlines()]
    assert len({r["task"] for r in rows}) == 27
    for r in rows:
        shape = answer_shape(r["input"], r["target"])
        assert shape.rule == BBH_RULE.get(r["task"], "option_letter"), (r["task"], r["target"], shape)


@pytest.mark.parametrize("answer, rule, task_type, constraint", [
    ("p - q", "expression", "short_answer", "math_expression"),
    ("x^5 - x^4 + x^3 - x^2 + x - 1", "expression", "short_answer", "math_expression"),
    ("(3,4]", "expression", "short_answer", "math_expression"),
    ("4210_{5}", "expression", "short_answer", "math_expression"),  # a base-5 numeral
    ("6 - 5i", "number", "numeric_answer", "math_expression"),
    ("\\frac{1}{2}", "number", "numeric_answer", "math_expression"),
    ("30^\\circ", "integer", "numeric_answer", "integer"),
    ("\\text{east}", "text_answer", "short_answer", "exact_string"),
    ("\\text{(C)}", "option_letter", "multiple_choice", "option_label"),  # lists (A)...(F) in the problem
])
def test_math500_answers_of_every_form(answer, rule, task_type, constraint):
    rows = {r["answer"]: r for r in map(json.loads, (DATA / "math500_answer_shapes.jsonl").read_text().splitlines())}
    shape = answer_shape(rows[answer]["problem"], answer)
    assert (shape.rule, shape.task_type, shape.output_constraint) == (rule, task_type, constraint)


def test_real_logs_gsm8k_lm_eval_and_arc_inspect():
    gsm = [s for s in read_eval_samples(next((DATA / "lm_eval" / "gsm8k_tinyllama").glob("samples_*.jsonl")))
           if isinstance(s, EvalSample)]
    assert gsm and all(answer_shape(s.question, s.reference_answer).rule == "integer" for s in gsm)
    arc = [s for s in read_eval_samples(DATA / "inspect_ai" / "arc_easy_claude-sonnet-4-0.json")
           if isinstance(s, EvalSample)]
    assert arc and all(answer_shape(s.question, s.reference_answer).rule == "option_letter" for s in arc)


def test_every_rule_maps_to_taxonomy_ids_and_an_empty_reference_has_no_shape():
    tax = load_taxonomy()
    ids = {a.name: set(a.ids) for a in tax.axes("eval")}
    examples = {
        "code": ("Write a Python function that returns the sum.", "def f(x):\n    return x"),
        "option_letter": ("Which? Options: (A) one (B) two", "(B)"),
        "verdict": ("Is it plausible?", "no"),
        "integer": ("How many?", "1,024"),
        "number": ("Compute.", "\\frac{\\sqrt{3}}{2}"),
        "text_answer": ("Who won?", "\\text{Navin}"),
        "bracket_sequence": ("Complete: [ (", ") ]"),
        "expression": ("Solve for y.", "y = 2x + 3"),
        "word_list": ("Sort the following words alphabetically: List: b a", "a b"),
        "prose": ("Explain.", "Because the moon is smaller than the earth it orbits around, it is held by its gravity."),
        "phrase": ("Which city?", "Paris"),
    }
    assert set(examples) == set(RULES)
    for rule, (q, ref) in examples.items():
        shape = answer_shape(q, ref)
        assert shape.rule == rule
        assert shape.task_type in ids["task_type"] and shape.output_constraint in ids["output_constraint"]
    assert answer_shape("What?", "  ") is None


def test_rule_labelers_label_only_their_axes(gold):
    item = gold.items["math500:test/counting_and_probability/1009.json"]
    labels, conf = ShapeLabeler().predict(item)
    assert labels == {"task_type": "numeric_answer", "output_constraint": "integer"} and set(conf.values()) == {1.0}
    ops, _ = CueLabeler().predict(item)
    assert ops == {"solving_operations": ["counting_combinatorics", "probability_statistics"]} or \
        ops["solving_operations"][0] == "counting_combinatorics"


def test_the_bundled_sample_holds_no_gold_item():
    sample = [json.loads(line) for line in (ROOT / "service" / "data" / "bbh_sample.jsonl").read_text().splitlines()]
    gold_questions = set()
    for path in BUNDLED_ALL["eval"]:
        gold_questions |= {json.loads(line)["question"].strip() for line in path.read_text().splitlines() if line}
    assert len(sample) == 54 and not [r["id"] for r in sample if r["input"].strip() in gold_questions]


def test_no_item_is_labeled_by_a_labeler_whose_pool_holds_it(gold, monkeypatch):
    """Held-out split and leave-one-benchmark-out: every prediction comes from a pool without the item."""
    import slicelab.calibration.offline as offline
    import slicelab.calibration.run as run
    seen: list[tuple[set, str]] = []
    real = run.cheap_labelers

    def spying(kind):
        makers = {}
        for name, make in real(kind).items():
            def wrapped(items, labels, taxonomy, make=make):
                lab = make(items, labels, taxonomy)
                pool = {i.id for i in items}
                predict = lab.predict

                def checked(item):
                    seen.append((pool, item.id))
                    return predict(item)
                lab.predict = checked
                return lab
            makers[name] = wrapped
        return makers

    monkeypatch.setattr(run, "cheap_labelers", spying)
    monkeypatch.setattr(offline, "cheap_labelers", spying)
    record = offline.calibrate_offline(BUNDLED_ALL["eval"], n_boot=20, lobo=True)
    assert record["split"]["n_heldout"] + record["split"]["n_pool"] == 170
    assert len(seen) >= 170 * 4 and all(item not in pool for pool, item in seen)


def test_worked_problems_get_their_operations_and_a_manifest_filter_selects_them():
    """Real MATH/GSM8K train solutions in the bundled document gold: the cue labeler gives the operation
    they carry out, and the sampling filter selects documents by it."""
    import pandas as pd

    from slicelab.service.sampling import matches

    docs = load_gold(BUNDLED_ALL["document"])
    lab = CueLabeler()
    worked = {i: d for i, d in docs.items.items() if docs.sources[i].endswith("_problem_solution")}
    ops = {i: lab.predict(d)[0]["demonstrated_operations"] for i, d in worked.items()}
    assert ops["mathdoc-mathtrain-counting_and_probability-733"] == ["probability_statistics",
                                                                     "counting_combinatorics"]
    gsm = [i for i in worked if docs.sources[i].startswith("gsm8k")]
    assert sum(ops[i][0] == "arithmetic" for i in gsm) >= len(gsm) - 1
    assert {o[0] for o in ops.values()} >= {"probability_statistics", "arithmetic", "number_theory",
                                           "algebraic_manipulation", "geometry_measurement"}
    gold_primary = {i: (docs.labels[GOLD][i]["demonstrated_operations"] or ["-"])[0] for i in worked}
    agree = sum(ops[i][0] == gold_primary[i] for i in worked) / len(worked)
    assert agree >= 0.6  # measured 17 of 24 (0.71)
    table = pd.DataFrame({"id": list(ops), "demonstrated_operations": list(ops.values()),
                          "domain": "mathematics", "document_format": "problem_solution",
                          "reasoning_depth": "multi_step", "education_level": "secondary"})
    picked = table[matches(table, {"demonstrated_operations": ["counting_combinatorics"]})]["id"]
    assert "mathdoc-mathtrain-counting_and_probability-733" in set(picked)
    assert not set(picked) & set(gsm)
    # documents that carry out no solution get no operation
    web = [d for i, d in docs.items.items() if docs.sources[i].startswith("c4_en")]
    assert sum(bool(lab.predict(d)[0]["demonstrated_operations"]) for d in web) <= len(web) // 4
