"""The values-only output form of a label: ids in a fixed axis order, keys written by slicelab.

A JSON label spends most of a small model's output tokens on spelling keys,
quotes and braces. In the values form the model writes only the label ids,
one line per axis in the label model's field order (taxonomy order), the ids
of an operation axis separated by commas::

    everyday_world
    multiple_choice
    logical_deduction,case_analysis
    option_label

:func:`values_grammar` builds a llama.cpp GBNF grammar that admits exactly
these replies: per line only the ids of that axis from the taxonomy, operation
lists of ``min_items`` to ``max_items`` ids with no id repeated, no whitespace
anywhere else. :func:`parse_values` turns such a reply back into the label
model's dict, so label rows look the same whichever form the judge used.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from pydantic import BaseModel

from slicelab.service.judge.base import validate_labels
from slicelab.service.samples import Status
from slicelab.service.taxonomy import AxisDef, Taxonomy

#: Separates the axes of a values reply.
AXIS_SEP = "\n"
#: Separates the ids of an operation axis.
ITEM_SEP = ","
#: The two output forms of the embedded judge: a JSON object, or the values form of this module.
OUTPUT_FORMS = ("json", "values")


def label_axes(taxonomy: Taxonomy, model_cls: type[BaseModel]) -> list[AxisDef]:
    """The axes a label model of ``taxonomy`` holds, in its field order (the order of a values reply).

    Raises:
        ValueError: ``model_cls`` is not one of the taxonomy's label models.
    """
    for kind in ("eval", "document"):
        for with_fm in (False, True):
            if taxonomy.label_model(kind, with_failure_mode=with_fm) is model_cls:
                by_name = {axis.name: axis for axis in taxonomy.axes(kind)}
                return [by_name[name] for name in model_cls.model_fields]
    raise ValueError(f"{model_cls.__name__} is not a label model of taxonomy {taxonomy.name} {taxonomy.version}")


def operation_cap(axis: AxisDef, max_items: int | None) -> int:
    """The most ids an operation list may hold: ``max_items`` within the axis's bounds (None: its ``max_items``)."""
    return max(axis.min_items, min(axis.max_items, max_items or axis.max_items))


#: Turns a text into the model's token ids (``Llama.tokenize`` without BOS), for token-literal grammars.
Encoder = Callable[[str], list[int]]


def _literal(text: str, encode: Encoder | None = None) -> str:
    """A GBNF literal: the quoted text, or with ``encode`` its token ids (``<[id]> ...``)."""
    if encode is not None:
        return " ".join(f"<[{t}]>" for t in encode(text))
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _operation_rules(name: str, ids: list[str], min_items: int, max_items: int, encode: Encoder | None) -> list[str]:
    """GBNF rules for an operation list: ``min_items``..``max_items`` distinct ids, comma-separated.

    One rule per prefix of already chosen ids (``name-<i>-<j>...``), each offering
    only the ids not chosen yet, so no id can repeat and a list ends after
    ``max_items`` ids.
    """
    rules: list[str] = []
    sep = _literal(ITEM_SEP, encode)

    def rule(prefix: tuple[int, ...]) -> str:
        if len(prefix) == max_items:
            return ""
        rule_name = name + "".join(f"-{i}" for i in prefix)
        body = " | ".join(f"{_literal(ids[i], encode)} {rule(prefix + (i,))}".rstrip()
                          for i in range(len(ids)) if i not in prefix)
        if not prefix:
            rules.append(f"{rule_name} ::= {body}")
        else:
            rules.append(f"{rule_name} ::= {sep} ( {body} )" + (' | ""' if len(prefix) >= min_items else ""))
        return rule_name

    rule(())
    return rules


def values_grammar(axes: list[AxisDef], *, max_items: int | None = None, encode: Encoder | None = None) -> str:
    """The GBNF text of a values reply over ``axes`` (in that order).

    Args:
        axes: the label model's axes (:func:`label_axes`).
        max_items: cap on the ids of an operation list (default: the axis's ``max_items``;
            never above it nor below its ``min_items``).
        encode: with a tokenizer, every id and separator is written as the token ids of its
            text (llama.cpp's ``<[id]>`` literals), so the model writes each id in its canonical,
            shortest tokens instead of spelling it in small pieces; without, as quoted text.

    Only taxonomy ids appear as terminals; no whitespace but the newline between axes.

    Raises:
        ValueError: an empty axis list.
    """
    if not axes:
        raise ValueError("a values grammar needs at least one axis")
    rules: list[str] = []
    for n, axis in enumerate(axes):
        name = f"ax{n}"
        if axis.kind == "single":
            rules.append(f"{name} ::= " + " | ".join(_literal(i, encode) for i in axis.ids))
        else:
            rules.extend(_operation_rules(name, axis.ids, axis.min_items, operation_cap(axis, max_items), encode))
    root = f" {_literal(AXIS_SEP, encode)} ".join(f"ax{n}" for n in range(len(axes)))
    return "\n".join([f"root ::= {root}", *rules]) + "\n"


def grammar_hash(grammar: str) -> str:
    """sha256 prefix (16 hex digits) of a grammar's text, recorded in the request hash."""
    return hashlib.sha256(grammar.encode("utf-8")).hexdigest()[:16]


def format_instructions(axes: list[AxisDef], max_items: int | None = None) -> str:
    """The static prompt text that tells the judge the values form (after the label definitions).

    ``max_items`` caps operation lists as in :func:`values_grammar`.
    """
    lines = []
    for axis in axes:
        if axis.kind == "single":
            what = "one id"
        else:
            what = f"{axis.min_items} to {operation_cap(axis, max_items)} ids separated by commas, most important first"
        when = " (only when the model output was scored wrong)" if axis.only_when else ""
        lines.append(f"- {axis.name}: {what}{when}")
    return ("Reply format: not JSON. Write only the label ids, one line per axis, in this order:\n"
            + "\n".join(lines) + "\nNo keys, no other text.\n")


def parse_values(text: str, finish_reason: str | None, axes: list[AxisDef],
                 model_cls: type[BaseModel]) -> tuple[dict | None, Status, str | None]:
    """Validate one values reply and map it to the label model.

    A reply stopped by the length limit is ``truncated``. Otherwise the reply must
    hold one line per axis in ``axes`` order, each a taxonomy id of that axis
    (operation axes: comma-separated ids within the axis's item bounds; a repeated
    id is dropped, as in the JSON form).

    Returns:
        ``(labels, status, error)`` as :func:`service.judge.base.parse_reply`: the label
        model's dict and ``labeled``, or None, ``format_error`` and an error naming the
        axis and the bad value.
    """
    if (finish_reason or "").lower() == "length":
        return None, Status.truncated, "reply stopped by the max_tokens limit before the last axis"
    if not text or not text.strip():
        return None, Status.format_error, "empty reply"
    lines = text.strip().split(AXIS_SEP)
    if len(lines) != len(axes):
        names = ", ".join(a.name for a in axes)
        return None, Status.format_error, (f"values reply has {len(lines)} lines, expected {len(axes)} "
                                           f"(one per axis: {names})")
    data: dict[str, object] = {}
    for axis, line in zip(axes, lines):
        values = [v.strip() for v in line.split(ITEM_SEP)] if axis.kind == "operations" else [line.strip()]
        bad = [v for v in values if v not in axis.ids]
        if bad:
            return None, Status.format_error, (f"values reply: axis {axis.name}: {bad[0]!r} is not one of its "
                                               f"label ids ({', '.join(axis.ids)})")
        data[axis.name] = values if axis.kind == "operations" else values[0]
    return validate_labels(data, model_cls, what="values reply", field="axis ")
