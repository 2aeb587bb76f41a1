"""The judge spec: what a run's manifest and every RQ job carry to build a judge or labeler.

A spec is stored and sent as plain JSON (never a client object); these pydantic models are
its schema. :func:`check_spec` validates a spec wherever one enters (built from options,
read from a manifest, received by a worker) and gives it back as the same JSON data, so run
keys and configuration hashes, which hash that data, do not change.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from slicelab.service.errors import ConfigError


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SelfConsistencySpec(_Spec):
    """k samples per item at ``temperature`` (seeds derived from ``seed``), majority vote per axis."""

    k: int = Field(ge=1)
    temperature: float = Field(ge=0)
    seed: int = 0


class ExemplarSpec(_Spec):
    """The ``k`` nearest exemplars from the pool split of the gold set at ``gold``."""

    gold: str
    k: int = Field(ge=1)
    seed: int = 0
    holdout_frac: float = Field(default=0.5, ge=0, lt=1)


class LLMJudgeSpec(_Spec):
    """An LLM judge: ``embedded`` (llama.cpp), ``openai`` (any OpenAI-compatible URL) or ``vllm`` (offline).

    Fields other than ``backend``, ``exemplars`` and ``self_consistency`` are keyword arguments
    of the backend's judge class (see :mod:`slicelab.service.judge.backends`).
    """

    backend: Literal["embedded", "openai", "vllm"]
    base_url: str | None = None
    model: str | None = None
    model_path: str | None = None
    request_timeout_s: float | None = Field(default=None, gt=0)
    transport_retries: int | None = Field(default=None, ge=0)
    concurrency: int | None = Field(default=None, ge=1)
    n_ctx: int | None = Field(default=None, ge=256)
    n_threads: int | None = Field(default=None, ge=1)
    output_form: Literal["json", "values"] | None = None
    values_max_items: int | None = Field(default=None, ge=1)
    engine: dict[str, Any] | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_attempts: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0)
    exemplars: ExemplarSpec | None = None
    self_consistency: SelfConsistencySpec | None = None


class PoolSpec(_Spec):
    """The gold items the pool labelers (k-NN, student) learn from: the pool split of ``gold``."""

    gold: str | list[str]
    seed: int = 0
    holdout_frac: float = Field(ge=0, lt=1)


class PerAxisSpec(_Spec):
    """Per axis, the labeler a calibration record selected (``selection``: axis → labeler name)."""

    backend: Literal["per_axis"]
    judge: LLMJudgeSpec
    selection: dict[str, str]
    pool: PoolSpec
    cascade_threshold: float | None = None
    calibration_id: str
    judge_sc: SelfConsistencySpec | None = None


JudgeSpec = Annotated[Union[LLMJudgeSpec, PerAxisSpec], Field(discriminator="backend")]
_ADAPTER: TypeAdapter = TypeAdapter(JudgeSpec)


def parse_spec(data: dict[str, Any], source: str = "judge spec") -> LLMJudgeSpec | PerAxisSpec:
    """The typed spec of ``data``.

    Raises:
        ConfigError: an unknown backend or field, or a value out of range (the field is named).
    """
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as e:
        first = e.errors()[0]
        loc = list(first["loc"])
        if loc and isinstance(data, dict) and loc[0] == data.get("backend"):
            loc = loc[1:]  # the union member's tag, not a field
        where = ".".join(str(p) for p in loc) or "backend"
        raise ConfigError(f"{source}: field {where}: {first['msg']}") from None


def check_spec(data: dict[str, Any], source: str = "judge spec") -> dict[str, Any]:
    """``data`` validated by :func:`parse_spec`, as JSON data with exactly the keys it was given.

    Raises:
        ConfigError: see :func:`parse_spec`.
    """
    return parse_spec(data, source).model_dump(mode="json", exclude_unset=True)
