"""Deterministic failure-mode checks (taxonomy v1 §1.5) that win over the judge.

A sample scored wrong gets a failure mode without a judge when its output shows one of
these; each also has a finer :data:`FAILURE_DETAILS` id (``failure_mode_detail``):

| failure mode | detail | when |
|---|---|---|
| ``refusal_or_empty`` | ``empty`` | the output is empty or whitespace |
| ``non_termination`` | ``answer_then_runon`` | a final answer, then a new turn (``Q:``, ``Question:``, ``A:``, ``User:``, ``### Instruction``, chat-role or end-of-sequence markers such as ``<|im_start|>``, ``<|im_end|>``, ``</s>``); or, stopped by the length cap, a long tail after the answer sentence |
| ``non_termination`` | ``repetition_loop`` | the output's end repeats one unit of any length 3+ times, or its last 2,000 characters compress like a loop (zlib ratio under 0.15) |
| ``non_termination`` | ``cut_before_answer`` | stopped by the length cap with no final answer |
| ``non_termination`` | ``capped_with_answer`` | stopped by the length cap with an extracted answer and no visible run-on (often a fallback extractor's last number of a cut-off output) |
| ``format_violation`` | ``no_final_answer`` | (:func:`classify_output` only) stopped normally with no extractable final answer |

"Stopped by the length cap" is ``finish_reason`` ``length``, or ``at_cap=True`` from the
caller (a cap inferred for the run, :mod:`service.termination`). A length stop is
``non_termination`` whether or not an answer was extracted: the model did not end its turn.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

from slicelab.service.samples import EvalSample

#: Phrases after which a final answer is conventionally stated.
_ANSWER_PATTERNS = [
    re.compile(r"answer is\s*[:\-]?\s*\S", re.I),
    re.compile(r"\\boxed\{\s*[^}\s]"),
    re.compile(r"^####\s*\S", re.M),
    re.compile(r"final answer\s*[:\-]?\s*\S", re.I),
    re.compile(r"^\s*answer\s*:\s*\S", re.I | re.M),
]
#: The start of a new turn: few-shot labels at a line start, chat-role and end-of-sequence markers.
_NEW_TURN = re.compile(
    r"^[ \t]*(?:Q|A|Question|Problem|Human|User|Input|Instruction)[ \t]*:"
    r"|^[ \t]*#{2,}[ \t]*(?:Instruction|Input|Question|Response|Human|User)\b"
    r"|<\|im_start\|>|<\|im_end\|>|<\|start_header_id\|>|<\|eot_id\|>|<\|endoftext\|>|<\|user\|>"
    r"|<start_of_turn>|<end_of_turn>|\[INST\]|</s>", re.M)
#: End-of-turn / end-of-sequence tokens: a new turn only when text follows them.
_END_TOKENS = {"<|im_end|>", "<|eot_id|>", "<|endoftext|>", "<end_of_turn>", "</s>"}
#: What each failure_mode_detail means (the ids :func:`failure_check` returns).
FAILURE_DETAILS = {
    "empty": "the output is empty or whitespace only",
    "answer_then_runon": "a final answer, then the output runs on: an invented next turn (Q:, Question:, User:, "
                         "### Instruction, chat-role or end-of-sequence markers) or, stopped by the length cap, a long "
                         "tail after the answer sentence",
    "repetition_loop": "the output's end repeats one unit (any length) 3+ times, or its tail compresses like a loop",
    "cut_before_answer": "stopped by the length cap before any final answer",
    "capped_with_answer": "stopped by the length cap with an extracted answer but no visible run-on (often a "
                          "fallback extraction from a cut-off output)",
    "no_final_answer": "stopped normally without an extractable final answer (failure mode format_violation)",
}
#: Characters of the output's end inspected for repetition.
_TAIL_CHARS = 4000
#: Fewest characters a repeated suffix must cover (3+ copies of its unit, and at least this many).
_MIN_REPEAT_CHARS = 24
#: zlib: a tail of at least _ZLIB_MIN_CHARS whose compressed size is under this share of it is a loop.
_ZLIB_RATIO, _ZLIB_MIN_CHARS, _ZLIB_TAIL = 0.15, 1000, 2000
#: Stopped by length: text after the answer sentence longer than this (characters and share) is a run-on.
_RUNON_MIN_CHARS, _RUNON_MIN_SHARE = 200, 0.2


@dataclass(frozen=True)
class FailureCheck:
    """What a deterministic check decided for one output.

    Attributes:
        mode: the taxonomy failure mode (``non_termination``, ``refusal_or_empty``) or None.
        detail: a :data:`FAILURE_DETAILS` id, or None.
        rule: the check in words, with its evidence (e.g. ``"final answer, then a new turn 'Q:' at char 412"``).
    """

    mode: str | None = None
    detail: str | None = None
    rule: str | None = None


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


def answer_end(text: str) -> int | None:
    """Offset just after the first answer statement's line (or sentence), or None without one."""
    starts = [m.start() for p in _ANSWER_PATTERNS for m in [p.search(text)] if m]
    if not starts:
        return None
    start = min(starts)
    line_end = text.find("\n", start)
    line_end = len(text) if line_end < 0 else line_end
    sentence = re.search(r"[.!?](?=\s|<|\Z)", text[start:line_end])
    return start + sentence.end() if sentence else line_end


def runon_after_answer(text: str) -> tuple[int, str] | None:
    """The first new-turn marker after the first answer statement: ``(offset, marker)``, or None."""
    end = answer_end(text)
    if end is None:
        return None
    for m in _NEW_TURN.finditer(text, end):
        # an end-of-turn token that ends the output is a proper stop, kept in the text by some harnesses
        if m.group(0) in _END_TOKENS and not text[m.end():].strip():
            continue
        return m.start(), m.group(0).strip()
    return None


def repeated_suffix(text: str) -> tuple[int, int] | None:
    """The longest-running periodic end of ``text``: ``(unit length, characters covered)``.

    A suffix with period ``p`` covering ``L`` characters (``L >= 3p``: the unit 3+ times, a
    trailing partial copy allowed) is found from the Z-array of the reversed tail
    (Gusfield 1997, "Algorithms on Strings, Trees and Sequences", §1.3): ``L = z[p] + p``.
    Units of any length up to a third of the inspected tail are considered.

    Returns:
        ``(p, L)`` for the unit that covers most characters (the shortest such unit on ties),
        or None when no unit repeats 3+ times over at least 24 characters.
    """
    r = text[-_TAIL_CHARS:].rstrip()[::-1]
    n = len(r)
    z, left, right, best = [0] * n, 0, 0, None
    for i in range(1, n):
        if i < right:
            z[i] = min(right - i, z[i - left])
        while i + z[i] < n and r[z[i]] == r[i + z[i]]:
            z[i] += 1
        if i + z[i] > right:
            left, right = i, i + z[i]
        covered = z[i] + i
        if covered >= 3 * i and covered >= _MIN_REPEAT_CHARS and (best is None or covered > best[1]):
            best = (i, covered)
    return best


def tail_compression_ratio(text: str) -> float | None:
    """zlib-compressed size / size of the last 2,000 characters (UTF-8), or None under 1,000 characters.

    Natural prose and worked solutions compress to about 0.3-0.5; a generation stuck in a
    loop, even one whose numbers change, to under 0.15.
    """
    tail = text[-_ZLIB_TAIL:].encode("utf-8")
    if len(tail) < _ZLIB_MIN_CHARS:
        return None
    return len(zlib.compress(tail, 9)) / len(tail)


def repeats_at_end(text: str) -> bool:
    """True when the output's end is one unit (any length) repeated 3+ times, or compresses like a loop.

    A trailing partial copy of the unit (output cut mid-repeat) still counts.
    """
    if repeated_suffix(text) is not None:
        return True
    ratio = tail_compression_ratio(text)
    return ratio is not None and ratio < _ZLIB_RATIO


def failure_check(sample: EvalSample, *, at_cap: bool | None = None) -> FailureCheck:
    """Failure mode and detail decided without a judge, for a sample scored wrong.

    Args:
        sample: the sample with its ``model_output``, ``extracted_answer`` and ``finish_reason``.
        at_cap: whether the output stopped at the run's length cap when ``finish_reason`` is
            missing (inferred by :func:`service.termination.length_capped`); None: unknown.

    Returns:
        A :class:`FailureCheck`; empty (all None) when the judge must decide or the sample
        was not scored wrong.
    """
    if not sample.scored_wrong:
        return FailureCheck()
    output = sample.model_output or ""
    if not output.strip():
        return FailureCheck("refusal_or_empty", "empty", "empty output")
    finish = (sample.finish_reason or "").lower()
    capped = finish == "length" or (not finish and at_cap is True)
    cap_text = "finish_reason=length" if finish == "length" else "at the run's length cap (inferred)"
    runon = runon_after_answer(output)
    if runon is not None:
        where = f", up to the length cap ({cap_text})" if capped else ""
        return FailureCheck("non_termination", "answer_then_runon",
                            f"final answer, then a new turn {runon[1]!r} at char {runon[0]}{where}")
    answered = has_final_answer(sample)
    if capped and not answered:
        return FailureCheck("non_termination", "cut_before_answer", f"{cap_text}, no final answer")
    if repeats_at_end(output):
        return FailureCheck("non_termination", "repetition_loop", _repeat_rule(output))
    if not capped:
        return FailureCheck()
    end = answer_end(output)
    tail = len(output) - end if end is not None else 0
    if end is not None and tail >= _RUNON_MIN_CHARS and tail >= _RUNON_MIN_SHARE * len(output):
        return FailureCheck("non_termination", "answer_then_runon",
                            f"{cap_text}, {tail} characters after the final answer")
    return FailureCheck("non_termination", "capped_with_answer", f"{cap_text}, answer extracted from a cut-off output")


def failure_excerpt(output: str | None, detail: str | None, width: int = 240) -> str | None:
    """A short excerpt that shows the failure: around the run-on point (``answer_then_runon``), else the output's end.

    Returns:
        At most about ``2 * width`` characters, ``…`` marking cut ends; None for an empty output.
    """
    if not isinstance(output, str) or not output.strip():
        return None
    cut = None
    if detail == "answer_then_runon":
        runon = runon_after_answer(output)
        cut = runon[0] if runon else answer_end(output)
    if cut is None:
        return ("…" if len(output) > width else "") + output[-width:]
    start, end = max(0, cut - width // 2), min(len(output), cut + width)
    return ("…" if start else "") + output[start:end] + ("…" if end < len(output) else "")


def _repeat_rule(output: str) -> str:
    found = repeated_suffix(output)
    if found is not None:
        return f"output repeats at the end (a {found[0]}-character unit over {found[1]} characters)"
    return f"output repeats at the end (zlib ratio {tail_compression_ratio(output):.2f} of the last 2,000 characters)"


def deterministic_failure_mode(sample: EvalSample, *, at_cap: bool | None = None) -> tuple[str | None, str | None]:
    """Failure mode decided without a judge, for a sample scored wrong (:func:`failure_check`).

    Returns:
        ``(failure_mode, rule)``: e.g. ``("non_termination", "finish_reason=length, no final answer")``,
        or ``(None, None)`` when the judge must decide.
    """
    check = failure_check(sample, at_cap=at_cap)
    return check.mode, check.rule


#: Failure mode of a newly failing sample that no check and no label decided.
UNCLASSIFIED = "unclassified"


def classify_output(output: str | None, finish_reason: str | None, extracted_answer: str | None = None,
                    label_failure_mode: str | None = None, *, at_cap: bool | None = None) -> FailureCheck:
    """Failure mode and detail of an output scored wrong, deterministic checks first (taxonomy v1 §1.5).

    Order: :func:`failure_check` (empty, run-on, repetition, length cap); no extractable final
    answer otherwise → ``format_violation`` (detail ``no_final_answer``); else the label's
    ``failure_mode`` when given (rule ``labels``), else :data:`UNCLASSIFIED` (rule ``none``).
    ``output``, ``finish_reason`` and ``extracted_answer`` may be NaN (pandas' missing value).
    """
    text = lambda v: v if isinstance(v, str) else None  # noqa: E731 - pandas gives NaN for missing values
    sample = EvalSample(id="-", question="-", model_output=text(output) or "", extracted_answer=text(extracted_answer),
                        correct=False, finish_reason=text(finish_reason))
    check = failure_check(sample, at_cap=bool(at_cap) if at_cap in (True, False) else None)  # numpy bools too
    if check.mode is not None:
        return check
    if not has_final_answer(sample):
        return FailureCheck("format_violation", "no_final_answer", "no final answer")
    if label_failure_mode:
        return FailureCheck(label_failure_mode, None, "labels")
    return FailureCheck(UNCLASSIFIED, None, "none")
