"""Weakness-targeted sampling from an instruction pool: MATH-500 diagnosis, MATH/GSM8K train pool, leakage."""

from __future__ import annotations

import html
import json
import re
from functools import lru_cache
from pathlib import Path

import pandas as pd
import pytest

from slicelab.service.budget import Candidate, select_within_budget
from slicelab.service.comparison import compare
from slicelab.service.errors import ConfigError, InputFormatError
from slicelab.service.leakage import EvalNgramIndex, eval_index, find_leaks, words
from slicelab.service.mapping import diagnose
from slicelab.service.pool_items import final_answer, load_pool, read_pool_items
from slicelab.service.pool_labels import label_items
from slicelab.service.pool_report import headline, report_sections, write_pool_outputs
from slicelab.service.pool_sampling import build_pool_manifest, item_slice_ids, sample_pool, weak_slice_targets
from slicelab.service.slice_nesting import contains, item_groups, resolve_nesting
from slicelab.service.readers import read_eval_samples
from slicelab.service.results import load_results
from slicelab.service.samples import Rejected
from slicelab.service.slice_stats import slice_index
from tests.conftest import run_cli
from tests.loop_data import LOOP, MATH_OUTPUTS, STRONG, math_labels, passing_record

POOL = LOOP / "instruction_pool.jsonl"
PROBLEMS = LOOP / "math500_problems.jsonl"
#: The math-heavy second gold round (MATH-500 subjects, GSM8K, AIME 2025): with it in the k-NN pool,
#: subjects separate by operation (geometry_measurement, number_theory...), which the first round cannot do.
GOLD_V2 = LOOP / "eval_gold_v2.jsonl"
LOST = "Precalculus"
CANDIDATE = "candidate-lost-precalculus"


@lru_cache(maxsize=None)
def math_labels_v2() -> pd.DataFrame:
    """The MATH-500 subset labeled by the eval k-NN labeler with both gold rounds in its pool, every gate ``pass``."""
    items = list(read_eval_samples(PROBLEMS, benchmark="math500"))
    return label_items(items, kind="eval", record=passing_record("eval"), extra_gold=(GOLD_V2,))


def _subjects() -> dict[str, str]:
    rows = [json.loads(line) for line in POOL.read_text(encoding="utf-8").splitlines()]
    return {r["id"]: (r.get("meta") or {}).get("subject") or r["source"] for r in rows}


def write_lost_subject_results(path: Path, subject: str = LOST) -> Path:
    """The baseline's MATH-500 outputs again as run ``CANDIDATE``: every problem of ``subject`` the baseline
    solved now ends in a complete, wrong boxed answer; every other problem is unchanged."""
    problems = {json.loads(line)["id"]: json.loads(line) for line in PROBLEMS.read_text(encoding="utf-8").splitlines()}
    rows = [json.loads(line) for line in MATH_OUTPUTS.read_text(encoding="utf-8").splitlines() if line.strip()]
    with path.open("w", encoding="utf-8") as fh:
        for r in rows:
            if r["model"] != STRONG:
                continue
            fh.write(json.dumps(r) + "\n")
            cand = {**r, "model": CANDIDATE}
            if problems[r["problem_id"]]["subject"] == subject and r["correct"]:
                wrong = f"{r['extracted_answer']}+1"
                cand |= {"output": r["output"].rsplit("\\boxed", 1)[0] + f"\\boxed{{{wrong}}}",
                         "extracted_answer": wrong, "correct": False}
            fh.write(json.dumps(cand) + "\n")
    return path


@lru_cache(maxsize=None)
def lost_diagnosis(tmp: str, subject: str = LOST) -> dict:
    results = load_results([write_lost_subject_results(Path(tmp) / f"results-{subject}.jsonl", subject)])
    return diagnose(compare(math_labels_v2(), results, STRONG, CANDIDATE))


def _math_subjects() -> list[str]:
    return sorted({json.loads(line)["subject"] for line in PROBLEMS.read_text(encoding="utf-8").splitlines()})


def first_subject_where(tmp: str, has) -> tuple[str, dict]:
    """The first MATH-500 subject (alphabetical) whose lost-subject diagnosis satisfies ``has``, and that diagnosis.

    The slices a lost subject weakens depend on the labels, so tests that need a kind of weak
    slice find the subject that gives one instead of naming it.
    """
    for subject in _math_subjects():
        d = lost_diagnosis(tmp, subject)
        if d["verdict"] == "data_intervention" and has(d):
            return subject, d
    raise AssertionError("no lost subject gives the diagnosis this test needs")


@pytest.fixture(scope="module")
def diagnosis(tmp_path_factory):
    return lost_diagnosis(str(tmp_path_factory.mktemp("lost")))


@pytest.fixture(scope="module")
def pool():
    table, info = load_pool(POOL, record=passing_record("eval"), extra_gold=(GOLD_V2,))
    return table, info


# --------------------------------------------------------------------------- reading and labeling the pool


def test_pool_rows_become_problems_with_solutions_and_token_counts(pool):
    table, info = pool
    assert len(table) == 128 and info["status_counts"] == {"labeled": 128}
    assert info["labeled_by"].startswith("in-process knn") and info["token_method"].startswith("estimate")
    row = table.set_index("id").loc["mathdoc-mathtrain-algebra-757"]
    assert row["question"] == "What is the minimum value of $5x^2-20x+1357$?"
    assert row["reference_answer"] == "1337" and row["task"] == "Algebra"
    assert row["source"] == "math_train_problem_solution" and "complete the square" in row["text"]
    assert row["tokens"] == round(len(row["text"].split()) * 1.3)
    gsm = table[table["source"] == "gsm8k_train_problem_solution"]
    assert len(gsm) == 30 and gsm["reference_answer"].str.fullmatch(r"[-\d.,/]+").all()
    extra = json.loads(row["extra_json"])
    assert extra["provenance"].startswith("aiwaves-cn/agents@") and extra["license"].startswith("MIT")


def test_final_answer_takes_the_last_box_or_the_gsm8k_marker():
    assert final_answer(r"so $x=\boxed{2}$, hence \boxed{\frac{1}{2}}.") == r"\frac{1}{2}"
    assert final_answer("48/2 = 24\n#### 72") == "72"
    assert final_answer("no answer here") == "" and final_answer(r"\boxed{1") == ""


def test_bad_pool_records_are_rejected_by_line_and_the_rest_is_read(tmp_path):
    rows = [json.loads(line) for line in POOL.read_text(encoding="utf-8").splitlines()[:3]]
    rows[1] = {**rows[1], "text": "Just a paragraph about numbers."}
    path = tmp_path / "pool.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n{not json\n", encoding="utf-8")
    items = list(read_pool_items(path))
    assert [type(i).__name__ for i in items] == ["EvalSample", "Rejected", "EvalSample", "Rejected"]
    assert items[1].source_line == 2 and "Problem: ... Solution:" in items[1].reason
    assert items[3].source_line == 4
    table, info = load_pool(path)
    assert info["status_counts"] == {"labeled": 2, "rejected_input": 2} and len(table) == 4
    corrupt = tmp_path / "pool.parquet"
    corrupt.write_bytes(b"not parquet")
    with pytest.raises(InputFormatError, match="--pool .*pool.parquet: not a readable Parquet file"):
        load_pool(corrupt)


def test_problem_and_solution_fields_are_read_too(tmp_path):
    path = tmp_path / "pool.jsonl"
    path.write_text(json.dumps({"id": "p1", "problem": "How many ways can 3 people sit in a row?",
                                "solution": "There are $3! = \\boxed{6}$ ways.", "answer": "6",
                                "source": "mine"}) + "\n", encoding="utf-8")
    table, _ = load_pool(path)
    row = table.iloc[0]
    assert row["question"].startswith("How many ways") and row["reference_answer"] == "6"
    assert row["text"].endswith("ways.") and row["source"] == "mine" and row["status"] == "labeled"


def test_item_slices_are_the_slice_index_membership():
    labels = math_labels()
    index = slice_index(labels)
    expected = index.members.groupby("sample_id")["slice_id"].apply(set)
    axes = index.meta["axes_used"]
    for r in labels.to_dict(orient="records"):
        assert item_slice_ids(r, axes) == expected[r["id"]]


# --------------------------------------------------------------------------- the loop on real data


def test_diagnosis_of_the_lost_subject_has_weak_slices(diagnosis):
    assert diagnosis["verdict"] == "data_intervention"
    targets = weak_slice_targets(diagnosis)
    assert targets and all(t["deficit"] == t["losses"] - t["gains"] > 0 for t in targets)
    assert [t["deficit"] for t in targets] == sorted((t["deficit"] for t in targets), reverse=True)
    assert all(t["rule_id"] for t in targets)


def test_pool_sampling_selects_the_lost_subject_within_the_budget(diagnosis, pool):
    table, _ = pool
    budget = 2_000
    manifest, spec = build_pool_manifest(table, diagnosis, budget)
    subjects = _subjects()
    picked = manifest["item_id"].map(subjects)
    assert len(manifest) >= 3 and (picked == LOST).mean() > 0.5
    tokens_lost = manifest.loc[picked == LOST, "tokens"].sum()
    assert tokens_lost > manifest["tokens"].sum() / 2
    assert spec["tokens_selected"] == manifest["tokens"].sum() <= budget
    assert manifest["item_id"].is_unique and (manifest["copies"] == 1).all()
    targets = {t["slice_id"]: t for t in spec["slices"]}
    axes = spec["axes_used"]
    by_id = table.set_index("id")
    for row in manifest.itertuples():
        assert row.slice_id in item_slice_ids(by_id.loc[row.item_id].to_dict(), axes)
        assert row.weight == targets[row.weak_slices[0]]["deficit"] and row.slice_id in row.weak_slices
        assert row.rule_id == targets[row.slice_id]["rule_id"] and row.slice_key == targets[row.slice_id]["key"]
    # a marginal that contains a target slice is kept only for a residual that stands out on its own
    axes_all = ["background_condition", "task_type", "primary_operation", "output_constraint"]
    for t in spec["slices"]:
        inner = [u["slice_id"] for u in spec["slices"] if u is not t and contains(t["slice_id"], u["slice_id"], axes_all)]
        assert not inner or t["residual"]["q_value"] < 0.05, t["slice_id"]
    assert spec["matched_by_key"] == {"capability": len(manifest)}
    for t in spec["slices"]:
        assert t["selected_tokens"] <= t["quota_tokens"] == int(budget * t["deficit"] // sum(
            x["deficit"] for x in spec["slices"]))
    assert abs(sum(spec["slice_weights"].values()) - 1) < 1e-9
    lost_ops = {t["operations"][0] for t in spec["slices"] if t["key"] == "capability"}
    before = sum(spec["before"]["primary_operation"].get(o, 0) for o in lost_ops)
    after = sum(spec["after"]["primary_operation"].get(o, 0) for o in lost_ops)
    assert after > before
    assert set(spec["after"]["source"]) <= {"math_train_problem_solution", "gsm8k_train_problem_solution"}


def test_a_budget_larger_than_the_pool_reports_what_is_missing_and_never_pads(diagnosis, pool):
    table, _ = pool
    manifest, spec = build_pool_manifest(table, diagnosis, 1_000_000)
    matching = spec["n_matching"]
    assert len(manifest) == matching < len(table) and manifest["item_id"].is_unique
    assert spec["tokens_selected"] < 1_000_000
    unfilled = {u["slice_id"]: u for u in spec["unfilled"]}
    for t in spec["slices"]:
        assert t["selected_items"] <= t["pool_items"]
        assert t["unfilled_tokens"] == t["quota_tokens"] - t["selected_tokens"] > 0
        assert unfilled[t["slice_id"]]["pool_items"] == t["pool_items"] and t["pool_exhausted"]
    spec["pool"] = {"n_labeled": len(table), "n_matching": matching, "token_method": "estimate"}
    head = headline(spec)
    assert f"of {len(table)} labeled pool items ({matching} in a target slice)" in head
    assert "could not fill" in head and "nothing was padded; no item repeated" in head
    _, sections = report_sections(spec)
    gaps = next(paras for heading, paras, _, _ in sections if heading == "What the pool could not fill")
    assert all("every usable one selected" in g for g in gaps)
    repeated, spec2 = build_pool_manifest(table, diagnosis, 20_000, allow_repeats=True)
    assert (repeated["copies"] > 1).any() and repeated["item_id"].is_unique
    assert spec2["tokens_selected"] == (repeated["tokens"] * repeated["copies"]).sum() <= 20_000
    assert spec2["copies_selected"] > spec2["n_selected"]


def test_non_data_verdicts_ungated_axes_and_unknown_keys_are_refused(diagnosis, pool):
    table, _ = pool
    with pytest.raises(ConfigError, match="not 'data_intervention'.*nothing to sample for.*eos_loss_mask"):
        build_pool_manifest(table, {"verdict": "non_data", "checks": [{"id": "eos_loss_mask"}]}, 1000)
    with pytest.raises(ConfigError, match="localise anything"):
        build_pool_manifest(table, {**diagnosis, "interventions": []}, 1000)
    with pytest.raises(ConfigError, match="unknown key.*allowed: capability, combination, marginal"):
        build_pool_manifest(table, diagnosis, 1000, slice_keys=["subject"])
    ungated = table.drop(columns=[c for c in table.columns if c.startswith("gate_")])
    with pytest.raises(ConfigError, match="did not pass calibration: .*primary_operation \\(ungated\\).*--allow-ungated"):
        build_pool_manifest(ungated, diagnosis, 1000)
    manifest, spec = build_pool_manifest(ungated, diagnosis, 1000, allow_ungated=True)
    assert spec["allow_ungated"] and set(spec["gate"].values()) == {"ungated"} and len(manifest)
    with pytest.raises(ConfigError, match="--token-budget must be >= 1"):
        build_pool_manifest(table, diagnosis, 0)


def test_a_containing_marginal_is_explained_by_the_slice_inside_it(pool, tmp_path_factory):
    """A lost subject whose primary-operation marginal and one of its capability slices are both weak: the
    marginal loses nothing beyond that capability slice, so it is reported as explained by it, not sampled for."""
    table, _ = pool
    axes = ["background_condition", "task_type", "primary_operation", "output_constraint"]

    def nested(d):
        ids = [t["slice_id"] for t in weak_slice_targets(d)]
        return any(contains(m, c, axes) for m in ids if m.startswith("marginal:") for c in ids if c != m)

    _, diagnosis = first_subject_where(str(tmp_path_factory.mktemp("nested")), nested)
    ids = [t["slice_id"] for t in weak_slice_targets(diagnosis)]
    outer = next(m for m in ids if m.startswith("marginal:") and any(contains(m, c, axes) for c in ids if c != m))
    manifest, spec = build_pool_manifest(table, diagnosis, 2_000)
    explained = {e["slice_id"]: e for e in spec["explained"]}
    assert outer in explained and outer not in {t["slice_id"] for t in spec["slices"]}
    inner = explained[outer]["explained_by"]
    assert inner and all(contains(outer, c, axes) for c in inner)
    residual = explained[outer]["residual"]
    assert residual["q_value"] >= 0.05 and residual["loss_rate"] < 2 * residual["loss_rate_outside"]
    assert set(manifest["slice_id"]) <= {t["slice_id"] for t in spec["slices"]} and len(manifest)


def test_combination_slices_can_be_targeted(pool, tmp_path_factory):
    """Targeting the combination key samples items by their exact set of solving operations; the lost subject
    is the first whose diagnosis has a weak combination slice with net losses."""
    table, _ = pool
    _, diagnosis = first_subject_where(str(tmp_path_factory.mktemp("comb")), lambda d: any(
        s["losses"] > s["gains"] for s in d["weak_slices"].get("combination", [])))
    manifest, spec = build_pool_manifest(table, diagnosis, 2_000, slice_keys=["combination"])
    assert {t["key"] for t in spec["slices"]} == {"combination"} and len(manifest)
    for row in manifest.itertuples():
        ops = "+".join(sorted(set(row.solving_operations))) or "none"
        assert row.slice_id == f"combination:{ops}"


def test_a_containing_marginal_keeps_only_a_residual_that_stands_out():
    cap = "capability:pure_math/short_answer/algebraic_manipulation/math_expression"
    marg, other = "marginal:primary_operation=algebraic_manipulation", "marginal:task_type=numeric_answer"
    axes = ["background_condition", "task_type", "primary_operation", "output_constraint"]
    assert contains(marg, cap, axes) and not contains(other, cap, axes) and not contains(cap, marg, axes)
    targets = [{"slice_id": marg, "key": "marginal", "losses": 40, "gains": 0, "kept": 60, "deficit": 40},
               {"slice_id": cap, "key": "capability", "losses": 12, "gains": 0, "kept": 10, "deficit": 12}]
    overall = {"n10": 45, "n11": 200}
    kept, explained = resolve_nesting([dict(t) for t in targets], overall, axes, 0.05)
    assert not explained and {t["slice_id"]: t["deficit"] for t in kept} == {marg: 28, cap: 12}
    assert kept[0]["slice_deficit"] == 40 and kept[0]["contains"] == [cap] and kept[0]["residual"]["q_value"] < 0.05
    assert item_groups({marg, cap}, kept) == [cap] and item_groups({marg}, kept) == [marg]
    targets[0] |= {"losses": 16, "kept": 80, "deficit": 16}  # residual: 4 of 74 baseline-correct lost; 41 of 171 elsewhere
    kept, explained = resolve_nesting([dict(t) for t in targets], overall, axes, 0.05)
    assert [t["slice_id"] for t in kept] == [cap] and explained[0]["explained_by"] == [cap]


# --------------------------------------------------------------------------- leakage


def _planted_pool(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """The pool plus a verbatim copy of a MATH-500 problem and a lightly edited copy of another, both
    of the lost subject and from its weak capability slice."""
    labels = math_labels_v2().set_index("id")
    weak = "pure_math/short_answer/algebraic_manipulation/math_expression".split("/")
    in_slice = labels[(labels[["background_condition", "task_type", "primary_operation", "output_constraint"]]
                       == weak).all(axis=1)].index
    problems = [json.loads(line) for line in PROBLEMS.read_text(encoding="utf-8").splitlines()]
    lost = [p for p in problems if p["subject"] == LOST and p["id"] in in_slice and len(words(p["problem"])) >= 30]
    copy, edited = lost[0], lost[1]
    text = re.sub(r"\d+", lambda m: str(int(m.group()) + 1), edited["problem"], count=1)
    text = f"Exercise 7. {text} Give the exact answer."
    rows = POOL.read_text(encoding="utf-8")
    meta = {"subject": LOST}
    planted = [{"id": "planted-copy", "source": "web_scrape", "meta": meta, "text": f"Problem:\n{copy['problem']}\n\nSolution:\n"
                f"The answer is $\\boxed{{{copy['answer']}}}$."},
               {"id": "planted-edit", "source": "web_scrape", "meta": meta, "text": f"Problem:\n{text}\n\nSolution:\n"
                f"Working through it gives $\\boxed{{{edited['answer']}}}$."}]
    path = tmp_path / "pool_planted.jsonl"
    path.write_text(rows + "".join(json.dumps(p) + "\n" for p in planted), encoding="utf-8")
    return path, {"planted-copy": copy["id"], "planted-edit": edited["id"]}


def _pool_texts(path: Path) -> list[tuple[str, str]]:
    return [(i.id, f"{i.question}\n\n{i.extra.get('solution', '')}") for i in read_pool_items(path)
            if not isinstance(i, Rejected)]


def test_leakage_check_finds_a_planted_copy_and_a_lightly_edited_one(tmp_path):
    path, expected = _planted_pool(tmp_path)
    index = eval_index(PROBLEMS)
    assert index.n_items == 300 and index.n == 13 and index.min_share == 0.25
    leaks = find_leaks(_pool_texts(path), index)
    assert {lk.item_id: lk.eval_id for lk in leaks} == expected  # no real train problem is flagged
    found = {lk.item_id: lk for lk in leaks}
    assert found["planted-copy"].share == 1.0
    assert 0.25 <= found["planted-edit"].share < 0.9 and found["planted-edit"].shared_ngrams >= 5
    assert len(found["planted-edit"].excerpt.split()) == 13


def test_any_overlap_flags_stock_phrases_which_the_share_threshold_drops():
    """GPT-3's any-shared-13-gram rule flags real train problems that copy no test problem."""
    loose = find_leaks(_pool_texts(POOL), eval_index(PROBLEMS, min_share=0.0))
    assert len(loose) == 3 and max(lk.share for lk in loose) < 0.1
    assert {lk.item_id for lk in loose} == {"mathdoc-mathtrain-geometry-6083", "mathdoc-mathtrain-geometry-6111",
                                            "mathdoc-mathtrain-precalculus-622"}
    assert any("relatively prime positive integers" in lk.excerpt for lk in loose)


def test_short_evaluation_items_match_whole():
    index = EvalNgramIndex([("e1", "How many positive whole-number divisors does 196 have?")])
    assert index.find("x", "Warm-up. How many positive whole-number divisors does 196 have? Then ...").eval_id == "e1"
    assert index.find("y", "How many positive whole-number divisors does 225 have?") is None


def test_leaked_items_are_dropped_from_the_manifest(tmp_path, diagnosis):
    path, expected = _planted_pool(tmp_path)
    kwargs = {"record": passing_record("eval"), "extra_gold": (GOLD_V2,)}
    open_manifest, _ = sample_pool(path, diagnosis, 1_000_000, **kwargs)
    assert set(expected) & set(open_manifest["item_id"]), "the planted items fall in the weak slices"
    manifest, spec = sample_pool(path, diagnosis, 1_000_000, dedupe_against=PROBLEMS, **kwargs)
    assert not set(expected) & set(manifest["item_id"])
    leak = spec["leakage"]
    assert leak["n_flagged"] == 2 and leak["ngram"] == 13 and "13-grams" in leak["method"]
    assert {x["item_id"] for x in leak["flagged"]} == set(expected)
    assert sum(t["pool_items_leaked"] for t in spec["slices"]) >= 1


def test_pool_report_escapes_item_ids_labels_and_excerpts(diagnosis, pool, tmp_path):
    """Item ids, slice labels and leaked excerpts that hold markup come out escaped in the HTML report."""
    table, _ = pool
    manifest, spec = build_pool_manifest(table, diagnosis, 2_000)
    evil = '<script>alert("x")</script> & <b>bold</b>'
    spec["slices"][0]["label"] = evil
    spec["leakage"] = {"method": "13-gram overlap", "eval_file": "eval.jsonl", "n_eval_items": 1, "n_flagged": 1,
                       "flagged": [{"item_id": evil, "eval_id": "e1", "shared_ngrams": 3, "share": 0.5,
                                    "excerpt": f"… {evil}"}]}
    page = write_pool_outputs(manifest, spec, tmp_path / "m.jsonl")["report_html"].read_text(encoding="utf-8")
    assert "<script" not in page and "<b>" not in page
    assert page.count(f"<td>{html.escape(evil)}</td>") == 2 and f"<td>… {html.escape(evil)}</td>" in page


# --------------------------------------------------------------------------- shared budget code


def test_budget_selection_respects_caps_order_and_repeats():
    cands = [Candidate("a", 3, 40, ["g1"]), Candidate("b", 3, 30, ["g1", "g2"]), Candidate("c", 1, 50, ["g2"]),
             Candidate("d", 1, 10, ["g2"])]
    picks = select_within_budget(cands, 100, {"g1": 60, "g2": 70})
    assert [(p.candidate.id, p.group, p.copies) for p in picks] == [("b", "g1", 1), ("d", "g2", 1), ("c", "g2", 1)]
    picks = select_within_budget(cands, 100, {"g1": 60, "g2": 70}, allow_repeats=True)
    assert sum(p.tokens_total for p in picks) <= 100
    assert {p.candidate.id: p.copies for p in picks} == {"b": 1, "d": 2, "c": 1}  # 10 tokens left: one more d


# --------------------------------------------------------------------------- the command


def test_sample_pool_command_writes_manifest_mixture_and_report(tmp_path):
    labels = tmp_path / "labels.parquet"
    math_labels_v2().to_parquet(labels)
    results = write_lost_subject_results(tmp_path / "results.jsonl")
    diag = tmp_path / "diagnosis.json"
    done = run_cli("diagnose", "--labels", str(labels), "--results", str(results), "--baseline", STRONG,
                   "--candidate", CANDIDATE, "-o", str(diag))
    assert done.returncode == 0, done.stderr
    out = tmp_path / "out" / "pool_manifest.jsonl"
    args = ("sample", "--pool", str(POOL), "--diagnosis", str(diag), "--token-budget", "3000", "-o", str(out),
            "--gold", str(GOLD_V2), "--dedupe-against", str(PROBLEMS))
    refused = run_cli(*args)
    assert refused.returncode == 2 and "did not pass calibration" in refused.stderr + refused.stdout
    assert "Traceback" not in refused.stderr and not out.exists()
    done = run_cli(*args, "--allow-ungated")
    assert done.returncode == 0, done.stderr
    assert "--allow-ungated: pool label axes used without a passing calibration" in done.stdout
    assert "leakage: 0 pool items contain >= 25% of the 13-grams" in done.stdout
    manifest = pd.read_json(out, lines=True)
    assert len(manifest) and manifest["tokens"].sum() <= 3000
    assert set(manifest.columns) >= {"item_id", "weight", "slice_id", "rule_id", "tokens", "copies"}
    spec = json.loads(out.with_suffix(".mixture.json").read_text())
    assert spec["pool"]["n_rows"] == 128 and spec["leakage"]["n_flagged"] == 0
    assert set(spec["before"]) >= {"operation", "background_condition", "source"}
    md = (tmp_path / "out" / "pool_manifest.report.md").read_text()
    assert "What the pool could not fill" in md and "Token share by source" in md
    assert "<table>" in (tmp_path / "out" / "pool_manifest.report.html").read_text()
    both = run_cli("sample", "--docs", str(labels), "--pool", str(POOL), "--diagnosis", str(diag),
                   "--token-budget", "10", "-o", str(tmp_path / "x.jsonl"))
    assert both.returncode == 2 and "exactly one of --docs" in both.stderr + both.stdout


def test_a_pool_labeled_by_label_benchmark_on_rq_workers_is_used_as_labeled(tmp_path, redis_url, judge_server):
    """The queue path: problem/solution records labeled by the configured judge through RQ workers."""
    items = [i for i in read_pool_items(POOL) if not isinstance(i, Rejected)][:6]
    inp = tmp_path / "pool.jsonl"
    inp.write_text("".join(json.dumps({"id": i.id, "problem": i.question, "solution": i.extra["solution"],
                                       "answer": i.reference_answer, "source": i.benchmark}) + "\n" for i in items),
                   encoding="utf-8")
    labeled = tmp_path / "pool_labels.parquet"
    env = {"SLICELAB_HOME": str(tmp_path / "home"), "REDIS_URL": redis_url}
    done = run_cli("label-benchmark", str(inp), "-o", str(labeled), "--workers", "1", "--judge-url",
                   judge_server.base_url, "--judge-model", "test-judge", env=env)
    assert done.returncode == 0, done.stderr
    table, info = load_pool(labeled)
    assert info["labeled_by"] == "labeled table (label-benchmark)" and info["status_counts"] == {"labeled": 6}
    first = table.set_index("id").loc[items[0].id]
    assert first["text"] == f"{items[0].question}\n\n{items[0].extra['solution']}"
    assert first["source"] == "math_train_problem_solution"
    assert (table["tokens"] == table["text"].map(lambda t: round(len(t.split()) * 1.3))).all()
    # the test judge labels every item formal_symbolic / binary_judgment / algorithm_execution / boolean_token
    sid = "capability:formal_symbolic/binary_judgment/algorithm_execution/boolean_token"
    diag = {"verdict": "data_intervention", "baseline": "a", "candidate": "b",
            "meta": {"axes_used": ["background_condition", "task_type", "primary_operation", "output_constraint"]},
            "interventions": [{"rule_id": "op-algorithm-execution", "operations": ["algorithm_execution"],
                               "weak_slices": [sid]}],
            "weak_slices": {"capability": [{"slice_id": sid, "label": sid, "operations": ["algorithm_execution"],
                                            "n": 20, "losses": 9, "gains": 1, "delta": -0.4}]}}
    manifest, spec = build_pool_manifest(table, diag, 10_000, allow_ungated=True)
    assert set(manifest["item_id"]) == {i.id for i in items} and spec["slices"][0]["deficit"] == 8
    assert spec["gate"] == {a: "ungated" for a in diag["meta"]["axes_used"]}



def test_sample_docs_drops_documents_that_copy_an_evaluation_item(tmp_path):
    """A localised drop (every solved Algebra answer made wrong) proposes documents; a planted copy of a
    MATH-500 problem is selected without the leakage check and dropped with it."""
    from tests.loop_data import doc_labels
    from tests.verdict_data import math_subject_candidate

    diag = tmp_path / "diagnosis.json"
    results = math_subject_candidate(tmp_path / "algebra.jsonl", {"Algebra"}, run="algebra")
    result = diagnose(compare(math_labels(), load_results([results]), STRONG, "algebra"))
    assert result["verdict"] == "data_intervention"
    diag.write_text(json.dumps(result))
    docs = doc_labels()
    args = ("sample", "--diagnosis", str(diag), "--budget-tokens", "100000", "--allow-ungated")
    plain = run_cli(*args, "--docs", str(_write(docs, tmp_path / "docs.parquet")), "-o", str(tmp_path / "a.jsonl"))
    assert plain.returncode == 0, plain.stderr
    chosen = pd.read_json(tmp_path / "a.jsonl", lines=True)["doc_id"].iloc[0]
    problem = json.loads(PROBLEMS.read_text(encoding="utf-8").splitlines()[5])
    planted = docs[docs["id"] == chosen].assign(id="planted-doc", text=f"Exercise.\n{problem['problem']}\nSolution: ...")
    path = _write(pd.concat([docs, planted], ignore_index=True), tmp_path / "planted.parquet")
    leaky = run_cli(*args, "--docs", str(path), "-o", str(tmp_path / "b.jsonl"))
    assert "planted-doc" in set(pd.read_json(tmp_path / "b.jsonl", lines=True)["doc_id"])
    done = run_cli(*args, "--docs", str(path), "-o", str(tmp_path / "c.jsonl"), "--dedupe-against", str(PROBLEMS))
    assert leaky.returncode == done.returncode == 0, done.stderr
    assert "planted-doc" not in set(pd.read_json(tmp_path / "c.jsonl", lines=True)["doc_id"])
    summary = json.loads((tmp_path / "c.summary.json").read_text())
    assert summary["leakage"]["n_flagged"] == 1 and summary["leakage"]["flagged"][0]["eval_id"] == problem["id"]
    assert "leakage: 1 documents near-duplicate" in done.stdout
    assert "planted-doc" in (tmp_path / "c.summary.md").read_text()


def _write(df: pd.DataFrame, path: Path) -> Path:
    df.to_parquet(path)
    return path


@pytest.mark.parametrize("sampler", ["--docs", "--pool"])
def test_a_broad_regression_is_refused_saying_why(tmp_path, sampler):
    """Gemma-2-27B against Qwen2.5-14B on MATH-500 loses about equally everywhere: no targeted data to sample."""
    from tests.loop_data import WEAK, doc_labels

    diag = tmp_path / "diagnosis.json"
    diag.write_text(json.dumps(diagnose(compare(math_labels(), load_results([MATH_OUTPUTS]), STRONG, WEAK))))
    source = _write(doc_labels(), tmp_path / "docs.parquet") if sampler == "--docs" else POOL
    done = run_cli("sample", sampler, str(source), "--diagnosis", str(diag), "--token-budget", "1000",
                   "-o", str(tmp_path / "m.jsonl"))
    text = " ".join((done.stderr + done.stdout).split())
    assert done.returncode == 2 and "Traceback" not in done.stderr and not (tmp_path / "m.jsonl").exists()
    assert "verdict is 'broad_regression'" in text and "weaker across the board" in text
    assert "no targeted data to sample" in text and "checks named" not in text


def test_an_unexplained_regression_is_refused_saying_why(diagnosis, pool):
    table, _ = pool
    unexplained = {"verdict": "unexplained_regression", "checks": [],
                   "explanation": {"statement": "Unexplained regression: no rule explains it."}}
    with pytest.raises(ConfigError, match="'unexplained_regression'.*nothing explained it.*no targeted data to sample"
                                          ".*Diagnosis: Unexplained regression"):
        build_pool_manifest(table, unexplained, 1000)
