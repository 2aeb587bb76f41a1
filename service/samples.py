"""The records slicelab labels: evaluation samples and pretraining documents.

Readers turn every input format into these; the judge, the queue and the
writers only ever see these.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


def id_text(value: Any) -> str:
    """An identifier as text, the same in every format: strings unchanged (``"001"`` stays ``"001"``),
    integral numbers without a fraction (``1`` and ``1.0``, as a Parquet column with nulls holds it, are ``"1"``)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return value if isinstance(value, str) else str(value)


class Status(StrEnum):
    """The one recorded outcome of every sample (exactly one per output row)."""

    labeled = "labeled"
    judge_error = "judge_error"  # server error, timeout, connection refused
    format_error = "format_error"  # reply not valid JSON / not in the taxonomy, after retries
    truncated = "truncated"  # reply stopped by max_tokens on every attempt
    input_too_long = "input_too_long"  # prompt does not fit the judge's context window
    rejected_input = "rejected_input"  # the input record itself was bad (see rejects file)
    duplicate = "duplicate"  # shard row whose normalized text an earlier row had (see duplicate_of)
    unlabeled = "unlabeled"  # shard row outside the judge sample with no axis the student may label


class EvalSample(BaseModel):
    """One evaluation sample: a question, its reference, optionally a model's output.

    Attributes:
        id: unique within a run (e.g. ``"date_understanding/12"``).
        benchmark: benchmark or harness family (``"bbh"``, ``"gsm8k"``...).
        task: task or subset within the benchmark.
        question: the text the model was asked (without few-shot prefix).
        reference_answer: the gold answer.
        model_output: the model's full generation, if scored.
        extracted_answer: the final answer parsed from ``model_output``, if known.
        correct: whether the output was scored correct; None if not scored.
        finish_reason: why the generation stopped (``"stop"``, ``"length"``), if known.
        model: the model that produced ``model_output``.
        source_file, source_line: where the record came from (1-based line).
        extra: every other source field, kept for the output table.
    """

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    benchmark: str = ""
    task: str = ""
    question: str = Field(min_length=1)
    reference_answer: str = ""
    model_output: str | None = None
    extracted_answer: str | None = None
    correct: bool | None = None
    finish_reason: str | None = None
    model: str | None = None
    source_file: str = ""
    source_line: int | None = None
    extra: dict[str, Any] = Field(default_factory=dict)

    @property
    def scored_wrong(self) -> bool:
        """True when a model output exists and was scored wrong (failure_mode applies)."""
        return self.model_output is not None and self.correct is False


class Document(BaseModel):
    """One pretraining document (raw corpus text, not an instruction pair)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    text: str = Field(min_length=1)
    source: str = ""
    url: str | None = None
    source_file: str = ""
    source_line: int | None = None
    extra: dict[str, Any] = Field(default_factory=dict)


class Rejected(BaseModel):
    """An input record that could not become a sample; it still gets an output row."""

    id: str
    source_file: str
    source_line: int | None
    reason: str
    raw: str = ""
