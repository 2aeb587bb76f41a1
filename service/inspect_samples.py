"""Evaluation samples from Inspect AI logs, ``.json`` or ``.eval`` (:func:`service.harness_logs.load_inspect_log`).

One sample per log sample and epoch (id ``"<task>/<id>/epoch<n>"``): the question from the
user messages of ``input`` (attachments resolved, ``choices`` listed as lettered options), the
output from the first output choice, ``correct`` and the extracted answer from the first
scorer (``C`` / 1 correct, ``I`` / 0 wrong), the finish reason from its stop reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from slicelab.service.errors import InputFormatError, RecordError
from slicelab.service.harness_logs import load_inspect_log
from slicelab.service.record_fields import (
    ReadContext,
    answer_text,
    apply_mapping,
    convert_records,
    is_null,
    make_record,
    opt_str,
)
from slicelab.service.record_files import RawRecord, jsonable
from slicelab.service.samples import EvalSample, Rejected

_FINISH = {"stop": "stop", "end_turn": "stop", "max_tokens": "length", "model_length": "length"}


def _resolve_attachment(text: str, sample: dict) -> str:
    if text.startswith("attachment://"):
        return str((sample.get("attachments") or {}).get(text[len("attachment://"):], text))
    return text


def _content_text(content: Any, sample: dict) -> str:
    """Text of a chat message content: a string, or the ``text`` parts of a list."""
    if isinstance(content, str):
        return _resolve_attachment(content, sample)
    if isinstance(content, list):
        parts = [p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        return "\n".join(_resolve_attachment(str(p), sample) for p in parts)
    return ""


def _inspect_question(sample: dict) -> str:
    inp = sample.get("input")
    if isinstance(inp, list):
        text = "\n\n".join(
            _content_text(msg.get("content"), sample)
            for msg in inp
            if isinstance(msg, dict) and msg.get("role") == "user"
        )
    else:
        text = _content_text(inp, sample)
    if not text.strip():
        raise RecordError("missing question field; tried: input", field="input")
    choices = sample.get("choices")
    if isinstance(choices, list) and choices:
        letters = [chr(65 + i) if i < 26 else str(i + 1) for i in range(len(choices))]
        text += "\n\nOptions:\n" + "\n".join(f"({letter}) {c}" for letter, c in zip(letters, choices))
    return text


def _inspect_score(value: Any) -> bool | None:
    if isinstance(value, (str, bool, int, float)):
        if value in ("C", 1):  # 1 == 1.0 == True
            return True
        if value in ("I", 0):
            return False
    return None


def inspect_samples(ctx: ReadContext) -> Iterator[EvalSample | Rejected]:
    """The samples of the Inspect log ``ctx.path``, in log order (position in ``samples`` as line).

    Raises:
        InputFormatError: on the call: the file is not an Inspect log with a ``samples`` list
            (or, for ``.eval``, not a readable archive).
    """
    log = load_inspect_log(ctx.path)
    if not isinstance(log, dict) or not isinstance(log.get("samples"), list):
        raise InputFormatError(
            f"{ctx.path}: not an Inspect JSON log (expected an object with a 'samples' list)"
        )
    ev = log.get("eval") or {}
    task = str(ev.get("task") or ctx.path.stem)

    def id_of(sample: dict) -> str | None:
        if is_null(sample.get("id")):
            return None
        return f"{task}/{sample['id']}/epoch{sample.get('epoch', 1)}"

    def build(sample: dict, line: int, ctx: ReadContext) -> EvalSample:
        if is_null(sample.get("id")):
            raise RecordError("missing id field", field="id")
        output = sample.get("output") or {}
        choice0 = (output.get("choices") or [None])[0] or {}
        message = choice0.get("message") or {}
        model_output = _content_text(message.get("content"), sample) if message else output.get("completion")
        stop = choice0.get("stop_reason")
        scores = sample.get("scores") or {}
        scorer, score = next(iter(scores.items()), (None, None))
        score = score if isinstance(score, dict) else {}
        values: dict[str, Any] = {
            "id": id_of(sample),
            "benchmark": ctx.benchmark or f"inspect:{task}",
            "task": task,
            "question": _inspect_question(sample),
            "reference_answer": answer_text(sample.get("target")),
            "model_output": model_output or None,
            "extracted_answer": opt_str(score.get("answer")),
            "correct": _inspect_score(score.get("value")),
            "finish_reason": _FINISH.get(stop, stop) if isinstance(stop, str) else None,
            "model": opt_str(output.get("model")) or opt_str(ev.get("model")),
        }
        apply_mapping(values, sample, ctx.mapping)
        extra = {
            "sample_id": sample.get("id"),
            "epoch": sample.get("epoch"),
            "choices": sample.get("choices"),
            "scorer": scorer,
            "score_value": score.get("value"),
            "scores": {k: v.get("value") for k, v in scores.items() if isinstance(v, dict)},
            "metadata": sample.get("metadata") or {},
            **({"error": sample["error"]} if sample.get("error") else {}),
        }
        return make_record(
            EvalSample, **values, source_file=str(ctx.path), source_line=line, extra=jsonable(extra)
        )

    raws = (
        RawRecord(i, s, None, "")
        if isinstance(s, dict)
        else RawRecord(i, None, f"sample is not an object (got {type(s).__name__})", "")
        for i, s in enumerate(log["samples"], start=1)
    )
    return convert_records(raws, ctx, build, id_of)
