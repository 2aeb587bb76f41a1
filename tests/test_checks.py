"""Deterministic failure-mode checks (taxonomy v1 §1.5)."""

from __future__ import annotations

import pytest

from slicelab.service.checks import deterministic_failure_mode, has_final_answer, repeats_at_end
from slicelab.service.samples import EvalSample


def wrong(output, **kw):
    return EvalSample(id="x", question="q", model_output=output, correct=False, **kw)


@pytest.mark.parametrize("sample,expected", [
    (wrong(""), "refusal_or_empty"),
    (wrong("   \n"), "refusal_or_empty"),
    (wrong("step 1, step 2, step", finish_reason="length"), "non_termination"),
    (wrong(" 1. The graph of $y=1. The graph of $y=1. The graph of $y=1. The graph of $y=1. The"), "non_termination"),
    # a length stop is non_termination whether or not an answer was extracted: the model did not end its turn
    (wrong("So the answer is (B).", finish_reason="length"), "non_termination"),
    (wrong("long reasoning", extracted_answer="42", finish_reason="length"), "non_termination"),
    (wrong("So the answer is (B).\n\nQ: Today is Christmas Eve of 1937.\nA: Let's think step by step."),
     "non_termination"),
    (wrong("So the answer is (B)."), None),  # stopped after its answer: the judge decides
    (wrong("I reasoned badly."), None),
    (EvalSample(id="x", question="q", model_output="", correct=True), None),  # not scored wrong
    (EvalSample(id="x", question="q"), None),
])
def test_deterministic_failure_mode(sample, expected):
    assert deterministic_failure_mode(sample)[0] == expected


def test_answer_markers_and_repetition():
    assert has_final_answer(wrong("... so \\boxed{12}"))
    assert has_final_answer(wrong("#### 18"))
    assert not has_final_answer(wrong("no answer here", extracted_answer=""))
    assert repeats_at_end("abc " + "= not False and True " * 4 + "= not")
    assert not repeats_at_end("A normal sentence that ends. So the answer is 5.")
