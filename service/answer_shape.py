"""Answer shape: ``task_type`` and ``output_constraint`` read from the form of a question and its reference answer.

Both axes are decided mostly by form, not by topic: listed options and a letter
reference make a multiple-choice item, a ``Yes``/``No`` reference a binary
judgment, a bare integer a numeric answer. These rules read that form
deterministically, so they give the same answer on a benchmark no gold item
came from. Every rule maps to taxonomy ids of ``prompts/taxonomy-v1.yaml``
(``eval`` axes ``task_type`` and ``output_constraint``); the first rule that
matches decides, in this order:

====================  ==============================================  ===================  ==================
rule                  when                                            task_type            output_constraint
====================  ==============================================  ===================  ==================
``code``              the question asks for a function/program, or    code_generation      code_tests
                      the reference is a code block
``option_letter``     the reference is an option letter (``(B)``,     multiple_choice      option_label
                      ``B``, ``\\text{(B)}``) and the question lists
                      lettered options (``(A) ...`` or ``A. ...``)
``verdict``           the reference is a two-way verdict word         binary_judgment      boolean_token
                      (yes/no, true/false, valid/invalid,
                      plausible/implausible)
``integer``           the reference is an integer once LaTeX          numeric_answer       integer
                      wrappers, thousands separators, units and
                      degree marks are removed (``864 \\mbox{ inches}^2``)
``number``            a number that is not an integer: a decimal,     numeric_answer       math_expression
                      fraction, radical, π, a complex number, or an
                      arithmetic expression of these (no variables)
``text_answer``       ``\\text{...}`` around words, e.g. a name       short_answer         exact_string
``bracket_sequence``  the reference is a sequence of bracket tokens   sequence_completion  token_sequence
``expression``        other LaTeX, or plain-text mathematics with     short_answer         math_expression
                      one- or two-letter variables: equations, sets,
                      intervals, matrices, polynomials, base-n numerals
``word_list``         two or more word tokens and the question      transformation       token_sequence
                      asks to sort, order or rearrange them
``prose``             a reference of more than 12 words               free_generation      free_text
``phrase``            anything else that is not empty                 short_answer         exact_string
====================  ==============================================  ===================  ==================

A GSM8K-style solution as the reference is read as the answer after ``####``.
An empty reference gives no shape (``None``): the form says nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Words that make a reference a two-way verdict (lower case).
VERDICTS = frozenset({"yes", "no", "true", "false", "valid", "invalid", "plausible", "implausible"})
#: Rule names in the order they are tried (see the module table).
RULES = ("code", "option_letter", "verdict", "integer", "number", "text_answer", "bracket_sequence",
         "expression", "word_list", "prose", "phrase")

_LETTER = re.compile(r"^\(?([A-Z])\)?\.?$")
_LISTED = re.compile(r"(?m)(?:^|\s)\(([A-Z])\)\s*\S|^\s*([A-Z])[.):]\s+\S")
_CODE_REF = re.compile(r"```|^\s*(def|class|function|public|#include|import)\b", re.M)
_CODE_ASK = re.compile(r"\bwrite (?:a|an|the)? ?(?:\w+ )?(?:function|program|script|method)\b|```|\bdef \w+\(",
                       re.I)
_BRACKETS = frozenset("()[]{}<>")
_SORT_ASK = re.compile(r"\b(sort|alphabetical(ly)?|reorder|rearrange|in (ascending|descending) order)\b", re.I)
#: LaTeX that wraps or decorates a value without changing it.
_WRAPPERS = [
    (re.compile(r"^\$+|\$+$"), ""),
    (re.compile(r"\\boxed\{(.*)\}$"), r"\1"),
    (re.compile(r"\\(?:mbox|text|textrm|mathrm)\{\s*(?:inches|inch|cm|m|km|units?|dollars?|cents?|feet|ft|"
                r"degrees?|square|sq|meters?|miles?|hours?|minutes?|seconds?|days?|years?|pounds?|kg|g)\b[^}]*\}"
                r"(\^\d)?"), ""),
    (re.compile(r"\^\s*\{?\\circ\}?|°"), ""),
    (re.compile(r"\\[,;!]|\\ "), ""),
    (re.compile(r"\\%|%"), ""),
    (re.compile(r"^\\\$|^\$"), ""),
]
_INTEGER = re.compile(r"^[-+]?\d{1,3}(,\d{3})+$|^[-+]?\d+$")
#: Tokens allowed in a number written in LaTeX (no variables except the imaginary unit).
_NUMBER_TOKENS = re.compile(r"\\(?:d?frac|t?frac|sqrt|pi|cdot|times|left|right|infty)|[0-9.+\-*/^(){}\[\] i]")
_FORMULA = re.compile(r"[A-Za-z0-9\s^_+\-*/=().,<>\[\]{}]+")


@dataclass(frozen=True)
class Shape:
    """The shape of one item: taxonomy ids for ``task_type`` and ``output_constraint`` and the rule that decided."""

    task_type: str
    output_constraint: str
    rule: str


def _strip(reference: str) -> str:
    ref = reference.strip()
    for pattern, repl in _WRAPPERS:
        ref = pattern.sub(repl, ref).strip()
    return ref


def _is_number(ref: str) -> bool:
    """A value with no variables: digits, decimals, fractions, radicals, π, i, arithmetic signs."""
    if not re.search(r"\d|\\pi", ref):
        return False
    rest = _NUMBER_TOKENS.sub("", ref)
    return rest.strip() == ""


def _is_formula(ref: str) -> bool:
    """Plain-text mathematics: digits, operators and one- or two-letter variables only (``15x - 80``, ``52_8``)."""
    if not _FORMULA.fullmatch(ref) or not re.search(r"\d|[+\-*/=^_]", ref):
        return False
    return all(len(w) <= 2 for w in re.findall(r"[A-Za-z]+", ref))


def _unwrap_text(ref: str) -> str:
    m = re.fullmatch(r"\\text(?:bf|rm)?\{(.*)\}", ref.strip())
    return m.group(1) if m else ref


def _listed_letters(question: str) -> set[str]:
    return {a or b for a, b in _LISTED.findall(question)}


def answer_shape(question: str, reference: str) -> Shape | None:
    """The shape of an evaluation item from its question and reference answer.

    Args:
        question: the question text as shown to the model.
        reference: the reference (gold) answer; ``" | "``-joined lists are read as their first value,
            a GSM8K solution (``... #### 72``) as its final answer.

    Returns:
        The :class:`Shape` of the first rule that matches (see the module table), or None for an
        empty reference.
    """
    ref = (reference or "").split(" | ")[0].strip()
    if "####" in ref:  # a GSM8K solution: the final answer follows "####"
        ref = ref.rsplit("####", 1)[1].strip()
    if not ref:
        return None
    if _CODE_REF.search(ref) or _CODE_ASK.search(question):
        return Shape("code_generation", "code_tests", "code")
    letter = _LETTER.match(ref) or _LETTER.match(_unwrap_text(ref))
    if letter and letter.group(1) in _listed_letters(question):
        return Shape("multiple_choice", "option_label", "option_letter")
    if ref.lower().strip(".") in VERDICTS:
        return Shape("binary_judgment", "boolean_token", "verdict")
    value = _strip(ref)
    if _INTEGER.match(value):
        return Shape("numeric_answer", "integer", "integer")
    if _is_number(value):
        return Shape("numeric_answer", "math_expression", "number")
    text = re.fullmatch(r"\\text(?:bf|rm)?\{([^{}]*)\}", value)
    if text and re.search(r"[A-Za-z]", text.group(1)):
        return Shape("short_answer", "exact_string", "text_answer")
    tokens = ref.split()
    if tokens and all(set(t) <= _BRACKETS for t in tokens):
        return Shape("sequence_completion", "token_sequence", "bracket_sequence")
    if "\\" in ref or _is_formula(ref):
        return Shape("short_answer", "math_expression", "expression")
    if len(tokens) >= 2 and all(re.fullmatch(r"[\w'&-]+", t) for t in tokens) and _SORT_ASK.search(question):
        return Shape("transformation", "token_sequence", "word_list")
    if len(tokens) > 12:
        return Shape("free_generation", "free_text", "prose")
    return Shape("short_answer", "exact_string", "phrase")


def shape_markers(question: str, reference: str) -> str:
    """Marker tokens of an item's shape for similarity and classifiers (``xttX xocY xruleZ``; empty when none)."""
    shape = answer_shape(question, reference)
    if shape is None:
        return "xshapenone"
    return " ".join(f"{p}{re.sub(r'[^a-z0-9]', '', v)}" for p, v in
                    (("xtt", shape.task_type), ("xoc", shape.output_constraint), ("xrule", shape.rule)))
