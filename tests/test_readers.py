"""Tests of service.readers on real fixtures (tests/data) and small files made in tmp_path."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from slicelab.service.errors import ConfigError, InputFormatError
from slicelab.service.readers import FieldMapping, detect_format, read_documents, read_eval_samples
from slicelab.service.samples import Document, EvalSample, Rejected

DATA = Path(__file__).parent / "data"
BBH_TASKS = DATA / "bbh_tasks_head.jsonl"
BBH_OUTPUTS = DATA / "bbh_model_outputs_head.jsonl"
GOLD = DATA / "eval_gold_head.jsonl"
DOCS = DATA / "docs_head.jsonl"
GSM8K_LOG = DATA / "lm_eval/gsm8k_tinyllama/samples_gsm8k_2025-04-30T18-24-41.082644.jsonl"
MATH_LOG = (
    DATA / "lm_eval/math_perturbed_qwen3-93m/samples_math_perturbed_full_2026-01-21T03-44-18.458309.jsonl"
)
INSPECT_LOG = DATA / "inspect_ai/arc_easy_claude-sonnet-4-0.json"
MISSING_Q = "missing question field; tried: question, problem, input, prompt"


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def split(items):
    items = list(items)
    return (
        [i for i in items if isinstance(i, (EvalSample, Document))],
        [i for i in items if isinstance(i, Rejected)],
        items,
    )


# --------------------------------------------------------------------------- format detection


def test_detect_format_by_name_and_content(tmp_path):
    assert detect_format(BBH_TASKS) == "jsonl"
    assert detect_format(GSM8K_LOG) == "lm_eval"
    assert detect_format(MATH_LOG) == "lm_eval"
    assert detect_format(INSPECT_LOG) == "inspect"
    renamed = tmp_path / "gsm8k_log.ndjson"  # no samples_ name: detected from the first record
    shutil.copy(GSM8K_LOG, renamed)
    assert detect_format(renamed) == "lm_eval"
    arr = tmp_path / "a.json"
    arr.write_text('[{"question": "q"}]')
    assert detect_format(arr) == "json"
    assert detect_format(tmp_path / "x.csv") == "csv"
    assert detect_format(tmp_path / "x.parquet") == "parquet"


def test_unknown_extension_and_bad_arguments(tmp_path):
    f = tmp_path / "samples.txt"
    f.write_text('{"question": "q"}\n')
    with pytest.raises(InputFormatError) as e:
        read_eval_samples(f)
    assert str(f) in str(e.value) and "jsonl" in str(e.value) and "parquet" in str(e.value)
    [s] = read_eval_samples(f, fmt="jsonl")  # fmt overrides detection
    assert s.question == "q" and s.id == "samples/1"
    with pytest.raises(InputFormatError, match="unknown format 'xml'"):
        read_eval_samples(f, fmt="xml")
    with pytest.raises(InputFormatError, match="no such file"):
        read_eval_samples(tmp_path / "nope.jsonl")
    with pytest.raises(ConfigError):
        read_eval_samples(f, fmt="jsonl", limit=-1)


# --------------------------------------------------------------------------- generic JSONL on real data


def test_bbh_tasks():
    samples, rejects, _ = split(read_eval_samples(BBH_TASKS, benchmark="bbh"))
    assert rejects == [] and len(samples) == 5
    s = samples[0]
    assert s.id == "boolean_expressions/0"
    assert s.question == "not ( True ) and ( True ) is"
    assert s.reference_answer == "False"
    assert (s.task, s.benchmark) == ("boolean_expressions", "bbh")
    assert s.model_output is None and s.correct is None
    assert s.extra == {"idx": 0}
    assert (s.source_file, s.source_line) == (str(BBH_TASKS), 1)
    assert [x.source_line for x in samples] == [1, 2, 3, 4, 5]
    assert samples[4].reference_answer == "True"
    # without a benchmark argument or field, the file stem is the benchmark
    assert next(iter(read_eval_samples(BBH_TASKS))).benchmark == "bbh_tasks_head"


def test_bbh_model_outputs_have_no_question_and_repeat_ids():
    """The real outputs file holds no question text, and one row per (id, prompt_style)."""
    items = list(read_eval_samples(BBH_OUTPUTS))
    assert all(isinstance(i, Rejected) for i in items) and len(items) == 6
    assert items[0].reason.startswith(MISSING_Q) and items[0].id == "boolean_expressions/0"
    assert items[0].source_line == 1 and items[5].source_line == 6


def test_model_outputs_with_correctness(tmp_path):
    questions = {json.loads(line)["id"]: json.loads(line)["input"] for line in BBH_TASKS.open()}
    rows = [json.loads(line) for line in BBH_OUTPUTS.open()]
    joined = write_jsonl(tmp_path / "outputs.jsonl", [{**r, "input": questions[r["id"]]} for r in rows])

    items = list(read_eval_samples(joined, benchmark="bbh"))
    s = items[0]
    assert isinstance(s, EvalSample)
    assert s.question == "not ( True ) and ( True ) is"
    assert s.model_output.endswith("So the answer is False.")
    assert (s.extracted_answer, s.reference_answer, s.correct) == ("False", "False", True)
    assert s.model == "code-davinci-002" and s.task == "boolean_expressions"
    assert s.extra == {"idx": 0, "prompt_style": "cot"}
    truncated = items[4]  # cot ran out of length: no extracted answer, scored wrong
    assert truncated.extracted_answer is None and truncated.correct is False and truncated.scored_wrong
    dup = items[5]  # same id, direct prompt style
    assert isinstance(dup, Rejected)
    assert dup.reason == "duplicate id 'boolean_expressions/0' (first at line 1)" and dup.source_line == 6

    # a composite id keeps both prompt styles
    items = list(read_eval_samples(joined, mapping=FieldMapping(id_field="id+prompt_style")))
    assert all(isinstance(i, EvalSample) for i in items)
    assert [items[0].id, items[5].id] == ["boolean_expressions/0/cot", "boolean_expressions/0/direct"]
    assert items[5].model_output == "False" and "prompt_style" not in items[5].extra


def test_gold_format():
    samples, rejects, items = split(read_eval_samples(GOLD))
    s = items[0]
    assert isinstance(s, EvalSample)
    assert s.id == "aime:2024-I-10" and s.benchmark == "aime"
    assert s.question.startswith("Let $ABC$ be a triangle inscribed in circle $\\omega$.")
    assert s.reference_answer == "113"
    assert s.model_output.startswith("To solve for \\(AP\\)")
    assert (s.extracted_answer, s.correct, s.model) == ("28", False, "Qwen/Qwen2.5-14B-Instruct")
    assert s.extra["annotator"] == "annotator_a" and s.extra["failure_mode"] == "wrong_reasoning"
    assert s.extra["solving_operations"] == ["geometry_measurement", "algebraic_manipulation"]
    assert "model_answer" not in s.extra and "question" not in s.extra
    # three rows (two annotators + gold) per item: later rows are duplicates
    assert [i.source_line for i in samples] == [1, 4]
    assert samples[1].model_output is None and samples[1].correct is None
    assert rejects[0].reason == "duplicate id 'aime:2024-I-10' (first at line 1)"
    assert rejects[2].reason == "duplicate id 'aime:2024-I-11' (first at line 4)"

    by_annotator = list(read_eval_samples(GOLD, mapping=FieldMapping(id_field="id+annotator")))
    assert [i.id for i in by_annotator][:3] == [
        "aime:2024-I-10/annotator_a",
        "aime:2024-I-10/annotator_b",
        "aime:2024-I-10/gold",
    ]
    assert all(isinstance(i, EvalSample) for i in by_annotator)
    assert by_annotator[2].extra.get("annotator") is None  # consumed by the id


# --------------------------------------------------------------------------- other generic formats


def test_json_array(tmp_path):
    f = tmp_path / "arr.json"
    f.write_text(
        json.dumps(
            [
                {"problem_id": "p1", "problem": "1+1?", "gt": 2, "pred": "2", "is_correct": 1},
                5,
                {"problem_id": "p3", "answer": "x"},
                {"sample_id": "s4", "prompt": "Say hi", "answer": ["hi", "hello"], "correct": "false"},
            ]
        )
    )
    items = list(read_eval_samples(f))
    a = items[0]
    assert (a.id, a.question, a.reference_answer, a.extracted_answer, a.correct) == (
        "p1", "1+1?", "2", "2", True,
    )
    assert a.source_line == 1
    assert isinstance(items[1], Rejected) and items[1].source_line == 2
    assert items[1].reason == "not a JSON object (got int)" and items[1].id == "arr/2"
    assert isinstance(items[2], Rejected) and items[2].reason.startswith(MISSING_Q) and items[2].id == "p3"
    assert items[2].source_line == 3
    d = items[3]
    assert d.reference_answer == "hi | hello" and d.correct is False and d.source_line == 4


def test_json_not_an_array(tmp_path):
    f = tmp_path / "obj.json"
    f.write_text('{"question": "q"}')
    with pytest.raises(InputFormatError, match="expected a JSON array"):
        read_eval_samples(f)


def test_csv_line_numbers_and_values(tmp_path):
    f = tmp_path / "evals.csv"
    f.write_bytes(
        b'id,question,target,output,correct,level\n'
        b'a,"two\nline question",4,four,1,3\n'  # lines 2-3
        b"\n"  # line 4: blank, skipped
        b"b,Plain?,yes,,false,\n"  # line 5
        b"c,Bad?,no,x,maybe,1\n"  # line 6
        b"d,Extra?,no,x,true,1,surplus\n"  # line 7
        b"e,Last?,ok,y,True,2\n"  # line 8
    )
    items = list(read_eval_samples(f, benchmark="csvbench"))
    a, b, c, d, e = items
    assert (a.id, a.question, a.reference_answer, a.model_output, a.correct) == (
        "a", "two\nline question", "4", "four", True,
    )
    assert a.source_line == 2 and a.extra == {"level": "3"} and a.benchmark == "csvbench"
    assert (b.source_line, b.model_output, b.correct, b.extra) == (5, None, False, {"level": None})
    assert isinstance(c, Rejected) and c.source_line == 6
    assert c.reason == "correct field 'correct' has value 'maybe'; allowed: true/false, 1/0"
    assert isinstance(d, Rejected) and d.source_line == 7 and "7 fields" in d.reason
    assert e.source_line == 8 and e.correct is True


def test_csv_bom_and_invalid_utf8(tmp_path):
    f = tmp_path / "bom.csv"
    f.write_bytes(b"\xef\xbb\xbfid,question\nx1,Caf\xc3\xa9?\nx2,Caf\xe9?\nx3,Ok?\n")
    items = list(read_eval_samples(f))
    assert items[0].id == "x1" and items[0].question == "Café?"
    assert isinstance(items[1], Rejected) and items[1].source_line == 3
    assert items[1].reason == "invalid UTF-8 in column 'question'"
    assert items[2].id == "x3" and items[2].source_line == 4


def test_parquet_with_list_column(tmp_path):
    pd = pytest.importorskip("pandas")
    f = tmp_path / "evals.parquet"
    pd.DataFrame(
        {
            "id": ["q1", "q2", "q3"],
            "question": ["What is 2+2?", "Name a prime.", None],
            "target": [["4", "four"], ["2", "3"], ["x"]],
            "correct": [True, False, True],
            "level": [1, 2, 3],
            "tags": [["arith"], [], ["a", "b"]],
            "score": [0.5, float("nan"), 1.0],
        }
    ).to_parquet(f)
    items = list(read_eval_samples(f, benchmark="pq"))
    a, b, c = items
    assert (a.id, a.question, a.reference_answer, a.correct, a.source_line) == (
        "q1", "What is 2+2?", "4 | four", True, 1,
    )
    assert a.extra == {"level": 1, "tags": ["arith"], "score": 0.5}
    assert type(a.extra["level"]) is int and type(a.extra["tags"]) is list
    json.dumps(a.extra)  # plain Python values only
    assert b.reference_answer == "2 | 3" and b.correct is False and b.source_line == 2
    assert isinstance(c, Rejected) and c.source_line == 3 and c.id == "q3"
    assert c.reason == "question field 'question' is null, not text"


# --------------------------------------------------------------------------- lm-evaluation-harness


def test_lm_eval_gsm8k_log():
    samples, rejects, _ = split(read_eval_samples(GSM8K_LOG))
    assert rejects == [] and len(samples) == 3
    s = samples[0]
    assert s.id == "gsm8k/0/strict-match"
    assert (s.benchmark, s.task) == ("lm_eval:gsm8k", "gsm8k")
    # doc["question"], not the 5-shot prompt
    assert s.question.startswith("Janet’s ducks lay 16 eggs per day.")
    assert s.reference_answer.endswith("#### 18")
    assert s.model_output.startswith("Warequrng chi edizaghi")  # the generation (resps)
    assert s.extracted_answer == "[invalid]"  # strict-match filter result (filtered_resps)
    assert s.correct is False
    assert s.model == "tinyllama"  # from the results_<timestamp>.json next to it
    assert s.extra["prompt"].startswith("Question: Jen and Tyler are gymnasts")
    assert s.extra["filter"] == "strict-match" and s.extra["exact_match"] == 0.0
    assert s.extra["doc_hash"] == "986c19252f3c7f6eaeff2229e9a5777f96a85c0ceea931a92d2289084dfd518c"
    assert [x.id for x in samples] == ["gsm8k/0/strict-match", "gsm8k/1/strict-match", "gsm8k/2/strict-match"]


def test_lm_eval_math_log_and_mapping():
    samples = list(read_eval_samples(MATH_LOG))
    assert len(samples) == 10 and all(isinstance(s, EvalSample) for s in samples)
    s = samples[0]
    assert s.id == "math_perturbed_full/0/none" and s.task == "math_perturbed_full"
    assert s.question == "How many vertical asymptotes does the graph of $y=\\frac{2}{x^3-x}$ have?"
    assert s.reference_answer == "3" and s.correct is False
    assert s.model_output.startswith(" 1. The graph of $y=1.")
    assert s.extracted_answer is None  # filter "none": nothing was extracted
    assert s.model == "RylanSchaeffer/mem_Qwen3-93M_minerva_math_rep_0_sbst_1.0000_epch_1_ot_1"
    assert s.extra["prompt"].startswith("Problem: How many vertical asymptotes")
    assert samples[2].reference_answer == "\\dfrac{13}{9}"

    [orig] = read_eval_samples(
        MATH_LOG, mapping=FieldMapping(question_field="doc.original_problem"), benchmark="math", limit=1
    )
    assert orig.question == "How many vertical asymptotes does the graph of $y=\\frac{2}{x^2+x-6}$ have?"
    assert orig.benchmark == "math"


def test_lm_eval_synthetic_variants(tmp_path):
    base = {"target": "7", "filter": "none", "metrics": ["acc", "exact_match"], "exact_match": 1.0}
    rows = [
        # older logs: arguments as a list, doc not a dict
        {**base, "doc_id": 0, "doc": "raw text doc", "arguments": [["Q: 3+4?\nA:", {"until": ["\n"]}]],
         "resps": [["7"]], "filtered_resps": ["7"]},
        {**base, "doc_id": 1, "doc": {"problem": "What is 10-3?"},
         "arguments": {"gen_args_0": {"arg_0": "Problem: What is 10-3?", "arg_1": {}}},
         "resps": [["6"]], "filtered_resps": [["6"]], "exact_match": 0},
        {**base, "doc_id": 2, "doc": {}, "arguments": {}, "resps": [], "filtered_resps": []},
        {**base, "doc_id": 0, "doc": {"question": "again"}, "arguments": [["p"]]},
    ]
    f = write_jsonl(tmp_path / "samples_my_task_2024-01-02T03-04-05.678.jsonl", rows)
    a, b, c, d = read_eval_samples(f)
    assert (a.id, a.question, a.model_output, a.correct) == ("my_task/0/none", "Q: 3+4?\nA:", "7", True)
    assert a.extra["prompt"] == "Q: 3+4?\nA:" and a.extra["doc"] == "raw text doc" and a.model is None
    assert (b.question, b.model_output, b.correct, b.extra["prompt"]) == (
        "What is 10-3?", "6", False, "Problem: What is 10-3?",
    )
    assert isinstance(c, Rejected) and c.id == "my_task/2/none" and c.source_line == 3
    assert c.reason.startswith("missing question field; tried: doc.question, doc.problem")
    assert isinstance(d, Rejected) and d.reason == "duplicate id 'my_task/0/none' (first at line 1)"


# --------------------------------------------------------------------------- Inspect AI


def test_inspect_log():
    samples = list(read_eval_samples(INSPECT_LOG))
    assert len(samples) == 5 and all(isinstance(s, EvalSample) for s in samples)
    s = samples[0]
    assert s.id == "inspect_evals/arc_easy/1/epoch1"
    assert (s.task, s.benchmark) == ("inspect_evals/arc_easy", "inspect:inspect_evals/arc_easy")
    assert s.question == (
        "Which statement best explains why photosynthesis is the foundation of most food webs?"
        "\n\nOptions:\n(A) Sunlight is the source of energy for nearly all ecosystems."
        "\n(B) Most ecosystems are found on land instead of in water."
        "\n(C) Carbon dioxide is more available than other gases."
        "\n(D) The producers in all ecosystems are plants."
    )
    assert s.reference_answer == "A" and s.extracted_answer == "A" and s.correct is True
    assert s.model_output.startswith("I need to think about what makes photosynthesis")
    assert s.model_output.endswith("ANSWER: A")
    assert (s.model, s.finish_reason, s.source_line) == ("claude-sonnet-4-20250514", "stop", 1)
    assert s.extra["scorer"] == "choice" and s.extra["score_value"] == "C"
    assert samples[1].model_output == "ANSWER: B" and samples[4].id == "inspect_evals/arc_easy/5/epoch1"


def test_inspect_scores_messages_and_stop_reasons(tmp_path):
    log = json.loads(INSPECT_LOG.read_text())
    s = log["samples"]
    s[1]["scores"]["choice"]["value"] = "I"
    s[2]["scores"]["choice"]["value"] = "P"
    s[3]["input"] = [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [{"type": "text", "text": "Fur texture?"}, {"type": "image", "image": "x"}],
        },
    ]
    s[3]["choices"] = []
    s[3]["target"] = ["D", "soft"]
    s[3]["output"]["choices"][0]["stop_reason"] = "max_tokens"
    s[3]["output"]["choices"][0]["message"]["content"] = "plain string reply"
    del s[4]["output"]["model"]
    f = tmp_path / "log.json"
    f.write_text(json.dumps(log))
    items = list(read_eval_samples(f))
    assert [i.correct for i in items] == [True, False, None, True, True]
    assert items[3].question == "Fur texture?" and items[3].reference_answer == "D | soft"
    assert items[3].finish_reason == "length" and items[3].model_output == "plain string reply"
    assert items[4].model == "anthropic/claude-sonnet-4-0"  # falls back to eval.model


# --------------------------------------------------------------------------- robustness


def test_bom_jsonl(tmp_path):
    f = tmp_path / "bom.jsonl"
    f.write_bytes(b'\xef\xbb\xbf{"id": "b1", "question": "Q1"}\n{"id": "b2", "question": "Q2"}\n')
    a, b = read_eval_samples(f)
    assert (a.id, a.question, b.id) == ("b1", "Q1", "b2")


def test_bad_json_line_in_the_middle(tmp_path):
    f = tmp_path / "mixed.jsonl"
    f.write_text(
        '{"id": "1", "question": "A?"}\n{"id": "2", "question": \n[1, 2]\n{"id": "4", "question": "D?"}\n'
    )
    a, b, c, d = read_eval_samples(f)
    assert a.id == "1" and d.id == "4" and d.source_line == 4
    assert isinstance(b, Rejected) and b.source_line == 2 and b.id == "mixed/2"
    assert b.reason.startswith("invalid JSON: Expecting value: line 1 column")
    assert b.raw == '{"id": "2", "question": '
    assert isinstance(c, Rejected) and c.source_line == 3 and c.reason == "not a JSON object (got list)"


def test_invalid_utf8_line(tmp_path):
    f = tmp_path / "enc.jsonl"
    f.write_bytes(b'{"question": "ok"}\n{"question": "caf\xe9"}\n{"question": "fine \xc3\xa9"}\n')
    a, b, c = read_eval_samples(f)
    assert a.question == "ok" and c.question == "fine é" and c.id == "enc/3"
    assert isinstance(b, Rejected) and b.source_line == 2
    assert b.reason == "invalid UTF-8 at byte 17: invalid continuation byte"


def test_missing_question_and_bad_values(tmp_path):
    f = write_jsonl(
        tmp_path / "bad.jsonl",
        [
            {"id": "m1", "target": "x"},
            {"id": "m2", "question": "   "},
            {"id": "m3", "question": {"text": "nested"}},
            {"id": "m4", "question": "ok", "is_correct": "yes"},
            {"id": "m5", "question": "ok", "correct": None, "finish_reason": "length"},
        ],
    )
    m1, m2, m3, m4, m5 = read_eval_samples(f)
    assert isinstance(m1, Rejected) and (m1.id, m1.source_line) == ("m1", 1) and m1.reason.startswith(MISSING_Q)
    assert m2.reason == "empty question field 'question'"
    assert m3.reason == "question field 'question' is not a string (got dict)"
    assert m4.reason == "correct field 'is_correct' has value 'yes'; allowed: true/false, 1/0"
    assert isinstance(m5, EvalSample) and m5.correct is None and m5.finish_reason == "length"


def test_field_mapping_dotted_paths(tmp_path):
    f = write_jsonl(
        tmp_path / "custom.jsonl",
        [
            {"uid": "u1", "doc": {"q": "Why?", "gold": ["a", "b"]}, "res": {"text": "a"}, "ok": "true",
             "meta": {"split": "test"}, "grp": "g1"},
            {"uid": "u2", "doc": {"question": "no q here"}},
        ],
    )
    mapping = FieldMapping(
        id_field="uid", question_field="doc.q", reference_field="doc.gold", output_field="res.text",
        correct_field="ok", task_field="meta.split", benchmark_field="grp",
    )
    a, b = read_eval_samples(f, mapping=mapping)
    assert (a.id, a.question, a.reference_answer, a.model_output, a.correct) == (
        "u1", "Why?", "a | b", "a", True,
    )
    assert (a.task, a.benchmark) == ("test", "g1")
    assert "uid" not in a.extra and "ok" not in a.extra and a.extra["doc"]["q"] == "Why?"
    assert isinstance(b, Rejected) and b.id == "u2" and b.reason.startswith("missing question field; tried: doc.q")
    # text_field is an alias of question_field for eval samples
    [c] = read_eval_samples(f, mapping=FieldMapping(text_field="doc.question"), limit=1)
    assert isinstance(c, Rejected)
    c = list(read_eval_samples(f, mapping=FieldMapping(text_field="doc.question")))[1]
    assert c.question == "no q here" and c.id == "custom/2"


def test_limit_counts_yielded_items(tmp_path):
    ids = [s.id for s in read_eval_samples(BBH_TASKS, limit=2)]
    assert ids == ["boolean_expressions/0", "boolean_expressions/1"]
    f = tmp_path / "l.jsonl"
    f.write_text('not json\n{"question": "a"}\n{"question": "b"}\n')
    items = list(read_eval_samples(f, limit=2))
    assert isinstance(items[0], Rejected) and items[1].question == "a" and len(items) == 2
    assert list(read_eval_samples(f, limit=0)) == []


def test_blank_lines_are_skipped(tmp_path):
    f = tmp_path / "blank.jsonl"
    f.write_text('\n{"question": "a"}\n   \n\r\n{"question": "b"}\n\n')
    a, b = read_eval_samples(f)
    assert (a.source_line, a.id, b.source_line, b.id) == (2, "blank/2", 5, "blank/5")


# --------------------------------------------------------------------------- documents


def test_documents_real():
    docs, rejects, _ = split(read_documents(DOCS))
    assert rejects == [] and len(docs) == 3
    d = docs[0]
    assert d.id == "c4-val2k-0000" and d.source == "c4_en_validation"
    assert d.text.startswith("We offer valet parking as well as street and private lot.")
    assert set(d.extra) == {"meta", "provenance", "license"} and d.source_line == 1


def test_documents_rejects_and_mapping(tmp_path):
    f = write_jsonl(
        tmp_path / "docs.jsonl",
        [
            {"id": "d1", "text": "Real text.", "url": "https://x.org", "lang": "en"},
            {"id": "d2", "text": ""},
            {"id": "d3", "text": " \n\t "},
            {"id": "d4", "text": 42},
            {"id": "d5", "body": "wrong field"},
            {"id": "d1", "text": "again"},
            {"text": "no id"},
        ],
    )
    d1, d2, d3, d4, d5, d6, d7 = read_documents(f)
    assert (d1.text, d1.url, d1.source, d1.extra) == ("Real text.", "https://x.org", "docs", {"lang": "en"})
    assert isinstance(d2, Rejected) and d2.reason == "empty text field 'text'" and d2.source_line == 2
    assert d3.reason == "empty text field 'text'"
    assert d4.reason == "text field 'text' is not a string (got int)"
    assert d5.reason == "missing text field; tried: text"
    assert d6.reason == "duplicate id 'd1' (first at line 1)"
    assert isinstance(d7, Document) and d7.id == "docs/7"

    csv_file = tmp_path / "docs.csv"
    csv_file.write_text("doc_key,body\nk1,Hello world\nk2,\n")
    k1, k2 = read_documents(csv_file, mapping=FieldMapping(id_field="doc_key", text_field="body"))
    assert (k1.id, k1.text, k1.source_line) == ("k1", "Hello world", 2)
    assert isinstance(k2, Rejected) and k2.id == "k2" and k2.reason == "missing text field; tried: body"
    with pytest.raises(InputFormatError):
        read_documents(INSPECT_LOG)


# --------------------------------------------------------------------------- bad input (issue: reliability)


def test_nan_and_infinity_become_null_or_reject_the_question(tmp_path):
    f = tmp_path / "nan.jsonl"
    f.write_text(
        '{"id": "n1", "question": "Q?", "score": NaN, "hi": Infinity, "lo": -Infinity, "correct": NaN}\n'
        '{"id": "n2", "question": NaN}\n'
        '{"id": "n3", "question": Infinity}\n'
        '{"id": "n4", "question": "after"}\n'
    )
    n1, n2, n3, n4 = read_eval_samples(f)
    assert isinstance(n1, EvalSample) and n1.correct is None
    assert n1.extra == {"score": None, "hi": None, "lo": None}
    json.dumps(n1.extra, allow_nan=False)  # strict JSON from here on
    assert isinstance(n2, Rejected) and n2.reason == "question field 'question' is NaN, not text" and n2.source_line == 2
    assert isinstance(n3, Rejected) and n3.reason == "question field 'question' is inf, not text"
    assert n4.question == "after"


def test_trailing_commas_reject_their_line_only(tmp_path):
    f = tmp_path / "commas.jsonl"
    f.write_text('{"id": "t1", "question": "Q1",}\n{"id": "t2", "question": "Q2"},\n{"id": "t3", "question": "Q3"}\n')
    t1, t2, t3 = read_eval_samples(f)
    assert isinstance(t1, Rejected) and t1.source_line == 1 and t1.reason.startswith("invalid JSON: ")
    assert isinstance(t2, Rejected) and t2.source_line == 2 and t2.reason.startswith("invalid JSON: Extra data")
    assert t3.question == "Q3"
    arr = tmp_path / "commas.json"  # a JSON array is one document: it is refused whole, with the position
    arr.write_text('[{"id": "a", "question": "q"},]')
    with pytest.raises(InputFormatError, match=r"commas.json: not valid JSON: .*line 1"):
        read_eval_samples(arr)


def test_json_array_saved_as_jsonl_is_read_as_an_array(tmp_path):
    f = tmp_path / "arr.jsonl"
    f.write_text(json.dumps([{"id": "a", "question": "q1"}, {"id": "b"}], indent=2))
    assert detect_format(f) == "json"
    a, b = read_eval_samples(f)
    assert a.id == "a" and isinstance(b, Rejected) and b.source_line == 2 and b.reason.startswith(MISSING_Q)


@pytest.mark.parametrize("first", ['[1,2]', '[{"id": "z", "question": "in an array"}]'])
def test_an_array_on_the_first_line_of_jsonl_is_one_rejected_record(tmp_path, first):
    f = tmp_path / "firstarr.jsonl"
    f.write_text(first + '\n{"id": "a", "question": "q1"}\n{"id": "b", "question": "q2"}\n')
    assert detect_format(f) == "jsonl"
    bad, a, b = read_eval_samples(f)
    assert isinstance(bad, Rejected) and bad.source_line == 1 and bad.reason == "not a JSON object (got list)"
    assert (a.id, a.source_line, b.id, b.source_line) == ("a", 2, "b", 3)


def test_a_one_line_array_in_jsonl_is_still_an_array_and_a_broken_one_falls_back_to_lines(tmp_path):
    one = tmp_path / "one.jsonl"
    one.write_text(json.dumps([{"id": "a", "question": "q1"}, {"id": "b", "question": "q2"}]) + "\n\n")
    assert detect_format(one) == "json" and [s.id for s in read_eval_samples(one)] == ["a", "b"]
    broken = tmp_path / "broken.jsonl"  # starts like a pretty-printed array, but is not one
    broken.write_text('[\n{"id": "a", "question": "q1"}\n')
    first, a = read_eval_samples(broken)
    assert isinstance(first, Rejected) and first.source_line == 1 and (a.id, a.source_line) == ("a", 2)


def test_null_nan_and_empty_questions_say_so(tmp_path):
    f = tmp_path / "nulls.jsonl"
    f.write_text('{"id": "a", "question": null}\n{"id": "b", "problem": NaN}\n{"id": "c", "prompt": ""}\n')
    a, b, c = read_eval_samples(f)
    assert a.reason == "question field 'question' is null, not text"
    assert b.reason == "question field 'problem' is NaN, not text"
    assert c.reason == "empty question field 'prompt'"
    [m] = read_eval_samples(f, mapping=FieldMapping(question_field="question"), limit=1)
    assert m.reason == "question field 'question' is null, not text"
    g = tmp_path / "cells.csv"
    g.write_text("id,question\nx,\ny,ok\n")
    x, y = read_eval_samples(g)
    assert isinstance(x, Rejected) and x.reason == "empty question field 'question'" and y.question == "ok"
    assert "the record has" not in a.reason + b.reason + x.reason


def test_extra_and_nested_fields_are_kept(tmp_path):
    rec = {"id": "x1", "question": "Q?", "meta": {"split": "test", "tags": ["a", {"deep": [1, 2]}]}, "n": 3,
           "choices": ["A", "B"]}
    [s] = read_eval_samples(write_jsonl(tmp_path / "nested.jsonl", [rec]))
    assert s.extra == {"meta": rec["meta"], "n": 3, "choices": ["A", "B"]}


def test_a_50_mb_line_is_rejected_in_bounded_memory(tmp_path):
    import tracemalloc

    from slicelab.service.readers import MAX_RECORD_BYTES

    f = tmp_path / "huge.jsonl"
    with open(f, "wb") as fh:
        fh.write(b'{"id": "ok1", "question": "first"}\n')
        fh.write(b'{"id": "huge", "question": "' + b"x" * (50 << 20) + b'"}\n')
        fh.write(b'{"id": "ok2", "question": "last"}\n')
    tracemalloc.start()
    try:
        a, b, c = read_eval_samples(f)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (a.id, c.id, c.source_line) == ("ok1", "ok2", 3)
    assert isinstance(b, Rejected) and b.source_line == 2 and b.id == "huge/2"
    assert b.reason == (f"line is {(50 << 20) + 31:,} bytes, over the limit of {MAX_RECORD_BYTES:,} bytes "
                        "(MAX_RECORD_BYTES); the record was skipped")
    assert b.raw.startswith('{"id": "huge", "question": "xxx') and len(b.raw) <= 2001
    assert peak < MAX_RECORD_BYTES + (8 << 20), f"peak {peak:,} bytes"  # never the whole 50 MB line
    docs = list(read_documents(f, mapping=FieldMapping(text_field="question")))
    assert [type(d).__name__ for d in docs] == ["Document", "Rejected", "Document"]


def test_cjk_emoji_rtl_and_control_characters_round_trip(tmp_path):
    from slicelab.service.output import read_table, write_table

    texts = ["日本語の質問：二足す二は？", "emoji 🙂👩‍👩‍👧 ok", "שאלה בעברית? ‏RTL‮override‬", "ctrl \x01\x1b[31m\x7f\u0085\u2028end",
             "nul \x00 inside"]
    f = tmp_path / "u.jsonl"
    f.write_text("".join(json.dumps({"id": f"u{i}", "question": t}, ensure_ascii=False) + "\n"
                         for i, t in enumerate(texts)), encoding="utf-8")
    items = list(read_eval_samples(f))
    assert [s.question for s in items] == texts
    import pandas as pd

    for name in ("u.parquet", "u.jsonl.out.jsonl"):
        out = tmp_path / name
        write_table(pd.DataFrame({"id": [s.id for s in items], "question": [s.question for s in items]}), out,
                    "parquet" if name.endswith("parquet") else "jsonl")
        assert list(read_table(out)["question"]) == texts


def test_lm_eval_one_record_per_filter_gives_one_sample_each(tmp_path):
    base = {"doc_id": 0, "doc": {"question": "2+2?"}, "target": "4", "arguments": [["Q: 2+2?"]],
            "resps": [["The answer is 4. So 4."]], "metrics": ["exact_match"]}
    rows = [base | {"filter": "strict-match", "filtered_resps": ["[invalid]"], "exact_match": 0.0},
            base | {"filter": "flexible-extract", "filtered_resps": ["4"], "exact_match": 1.0}]
    f = write_jsonl(tmp_path / "samples_gsm8k_2024-01-02T03-04-05.jsonl", rows)
    strict, flexible = read_eval_samples(f)
    assert (strict.id, flexible.id) == ("gsm8k/0/strict-match", "gsm8k/0/flexible-extract")
    assert (strict.correct, flexible.correct) == (False, True)
    assert (strict.extracted_answer, flexible.extracted_answer) == ("[invalid]", "4")
