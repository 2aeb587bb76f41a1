"""Deterministic failure-mode checks (taxonomy v1 §1.5) that win over the judge.

- empty output → ``refusal_or_empty``
- generation stopped by the length limit, or the last part of the output
  repeating, with no extractable final answer → ``non_termination``
"""

from __future__ import annotations

import re

from service.samples import EvalSample

#: Phrases after which a final answer is conventionally stated.
_ANSWER_PATTERNS = [
    re.compile(r"answer is\s*[:\-]?\s*\S", re.I),
    re.compile(r"\\boxed\{\s*[^}\s]"),
    re.compile(r"^####\s*\S", re.M),
    re.compile(r"final answer\s*[:\-]?\s*\S", re.I),
    re.compile(r"^\s*answer\s*:\s*\S", re.I | re.M),
]
#: A unit of 8-200 characters repeated 3+ times in a row, then at most a partial unit.
_REPEAT = re.compile(r"(.{8,200}?)\1{2,}(.{0,200})\Z", re.S)
#: Characters of the output's end inspected for repetition.
_TAIL_CHARS = 2000


def has_final_answer(sample: EvalSample) -> bool:
    """Whether a final answer can be extracted from the sample's model output.

    Uses ``extracted_answer`` when the source provided one, else looks for
    conventional answer markers ("answer is", ``\\boxed{}``, ``####``, "Answer:").
    """
    if sample.extracted_answer is not None:
        # lm-evaluation-harness writes "[invalid]" when its filter found no answer
        return bool(sample.extracted_answer.strip()) and sample.extracted_answer.strip() != "[invalid]"
    text = sample.model_output or ""
    return any(p.search(text) for p in _ANSWER_PATTERNS)


def repeats_at_end(text: str) -> bool:
    """True when the output's last part is one unit (8-200 chars) repeated 3+ times.

    A trailing partial copy of the unit (output cut mid-repeat) still counts.
    """
    tail = text[-_TAIL_CHARS:].rstrip()
    m = _REPEAT.search(tail)
    return bool(m) and m.group(1).startswith(m.group(2))


def deterministic_failure_mode(sample: EvalSample) -> tuple[str | None, str | None]:
    """Failure mode decided without a judge, for a sample scored wrong.

    Returns:
        ``(failure_mode, rule)``: e.g. ``("non_termination", "finish_reason=length, no final answer")``,
        or ``(None, None)`` when the judge must decide.
    """
    if not sample.scored_wrong:
        return None, None
    output = sample.model_output or ""
    if not output.strip():
        return "refusal_or_empty", "empty output"
    if has_final_answer(sample):
        return None, None
    if (sample.finish_reason or "").lower() == "length":
        return "non_termination", "finish_reason=length, no final answer"
    if repeats_at_end(output):
        return "non_termination", "output repeats at the end, no final answer"
    return None, None
