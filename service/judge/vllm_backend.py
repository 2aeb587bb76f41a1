"""The ``vllm`` judge: offline batch inference with ``vllm.LLM`` on this machine's GPU, no HTTP server.

For shard-scale runs: :meth:`VLLMJudge.label_many` sends every item of a batch
to ``LLM.chat`` in one call (vLLM schedules them with continuous batching and
reuses the cached KV blocks of the shared static prompt prefix), then the
items whose reply did not validate go again together, up to ``max_attempts``,
with the same messages.

Structured outputs constrain the reply to the label model's JSON schema with
no free whitespace. vLLM renamed the API: ``StructuredOutputsParams`` with
``SamplingParams(structured_outputs=...)`` and the engine argument
``structured_outputs_config`` (0.11 and later; the only spelling from 0.12),
``GuidedDecodingParams`` with ``SamplingParams(guided_decoding=...)`` and
``guided_decoding_backend`` before. The installed one is detected.

``vllm`` is imported only when the first request is sent, so this module (and
its request building) works where vllm is not installed.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from slicelab.service.errors import ConfigError
from slicelab.service.judge.base import Attempt, Judge, JudgeResult, Request
from slicelab.service.samples import Document, EvalSample, Status

#: Structured-outputs backend asked of vLLM (supports compact JSON).
STRUCTURED_BACKEND = "xgrammar"
_TOO_LONG_MARKERS = ("maximum model length", "max_model_len", "longer than the maximum", "too long")


def sampling_kwargs(schema: dict[str, Any], *, max_tokens: int, temperature: float) -> dict[str, Any]:
    """The sampling settings of one label request, independent of the vLLM version.

    Returns:
        ``{"max_tokens", "temperature", "json_schema"}``; :func:`make_sampling_params`
        turns it into a ``vllm.SamplingParams``.
    """
    return {"max_tokens": max_tokens, "temperature": temperature, "json_schema": schema}


def make_sampling_params(sampling_module: Any, kwargs: dict[str, Any]) -> Any:
    """A ``SamplingParams`` for :func:`sampling_kwargs` output, with whichever structured-output API exists.

    The JSON is constrained to the schema with no whitespace between tokens
    (``disable_any_whitespace``), so a label costs few output tokens.

    Args:
        sampling_module: ``vllm.sampling_params`` (or an object with the same names).
        kwargs: from :func:`sampling_kwargs`.

    Raises:
        ConfigError: the module has neither ``StructuredOutputsParams`` nor ``GuidedDecodingParams``.
    """
    base = {"max_tokens": kwargs["max_tokens"], "temperature": kwargs["temperature"]}
    if hasattr(sampling_module, "StructuredOutputsParams"):
        constraint = sampling_module.StructuredOutputsParams(json=kwargs["json_schema"], disable_any_whitespace=True)
        return sampling_module.SamplingParams(**base, structured_outputs=constraint)
    if hasattr(sampling_module, "GuidedDecodingParams"):
        constraint = sampling_module.GuidedDecodingParams(json=kwargs["json_schema"], disable_any_whitespace=True)
        return sampling_module.SamplingParams(**base, guided_decoding=constraint)
    raise ConfigError("vllm judge: this vllm has neither StructuredOutputsParams nor GuidedDecodingParams "
                      "(structured outputs are required)")


def engine_kwargs(model: str, sampling_module: Any, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Arguments of ``vllm.LLM``: prefix caching on, compact structured JSON, then ``extra`` on top.

    Args:
        model: model name or path.
        sampling_module: ``vllm.sampling_params``; its names tell which engine argument exists.
        extra: any other ``vllm.LLM`` arguments (``max_model_len``, ``gpu_memory_utilization``...).
    """
    out: dict[str, Any] = {"model": model, "enable_prefix_caching": True}
    if hasattr(sampling_module, "StructuredOutputsParams"):
        out["structured_outputs_config"] = {"backend": STRUCTURED_BACKEND, "disable_any_whitespace": True}
    else:
        out["guided_decoding_backend"] = STRUCTURED_BACKEND
    return out | (extra or {})


def attempt_from_output(output: Any) -> Attempt:
    """The :class:`Attempt` of one ``vllm.RequestOutput`` (first completion)."""
    completion = output.outputs[0]
    return Attempt(
        text=completion.text or "",
        finish_reason=completion.finish_reason,
        prompt_tokens=len(output.prompt_token_ids or []),
        completion_tokens=len(completion.token_ids or []),
    )


class VLLMJudge(Judge):
    """Judge running ``vllm.LLM`` in this process.

    Args:
        model: model name or path vLLM can load.
        engine: extra ``vllm.LLM`` arguments (see :func:`engine_kwargs`); not part of
            :meth:`config` unless they change labels (they do not: sampling is set here).
        **kwargs: see :class:`service.judge.base.Judge`.

    Raises:
        ConfigError: vllm is not installed, or has no structured outputs (at first use).
    """

    backend = "vllm"

    def __init__(self, *, model: str, engine: dict[str, Any] | None = None, **kwargs):
        super().__init__(**kwargs)
        self.model = model
        self.engine = dict(engine or {})
        self._llm: Any = None
        self._sampling: Any = None

    def _load(self) -> tuple[Any, Any]:
        if self._llm is None:
            try:
                import vllm
                from vllm import sampling_params
            except ImportError as e:
                raise ConfigError("vllm judge: vllm is not installed (pip install 'slicelab[vllm]' on a GPU "
                                  "machine), or use --judge-url with `vllm serve`") from e
            self._sampling = sampling_params
            self._llm = vllm.LLM(**engine_kwargs(self.model, sampling_params, self.engine))
        return self._llm, self._sampling

    def _send(self, messages: list[dict[str, str]], model_cls: type[BaseModel],
              max_tokens: int | None = None) -> Attempt:
        return self._generate([Request(messages, model_cls, max_tokens=max_tokens)])[0]

    def _generate(self, requests: list[tuple[list[dict[str, str]], type[BaseModel]]]) -> list[Attempt]:
        """One ``LLM.chat`` call for all requests; one attempt each, in order."""
        llm, sampling = self._load()
        budgets = [getattr(r, "options", {}).get("max_tokens") or self.max_tokens for r in requests]
        params = [make_sampling_params(sampling, sampling_kwargs(cls.model_json_schema(), max_tokens=budget,
                                                                 temperature=self.temperature))
                  for (_, cls), budget in zip(requests, budgets)]
        try:
            outputs = llm.chat([m for m, _ in requests], sampling_params=params, use_tqdm=False)
        except (ValueError, RuntimeError) as e:
            if len(requests) == 1:
                too_long = isinstance(e, ValueError) and any(m in str(e).lower() for m in _TOO_LONG_MARKERS)
                status = Status.input_too_long if too_long else Status.judge_error
                return [Attempt(error_status=status, error=f"vllm judge: {e}")]
            return [self._generate([r])[0] for r in requests]  # find the request that failed
        attempts = [attempt_from_output(o) for o in outputs]
        for attempt, budget in zip(attempts, budgets):
            attempt.max_tokens = budget
        return attempts

    def label_many(self, items: list[EvalSample | Document], deadline: float | None = None) -> list[JudgeResult]:
        """Label items in batches: every item's next attempt goes in one ``LLM.chat`` call.

        Same attempt loop as :meth:`label` per item; results in input order. ``deadline``
        is not used: one batch cannot be cut short.
        """
        steps = [self.label_steps(item) for item in items]
        results: list[JudgeResult | None] = [None] * len(items)
        pending = {i: next(s) for i, s in enumerate(steps)}
        while pending:
            order = list(pending)
            attempts = self._generate([pending[i] for i in order])
            following = {}
            for i, attempt in zip(order, attempts):
                try:
                    following[i] = steps[i].send(attempt)
                except StopIteration as done:
                    results[i] = done.value
            pending = following
        return results  # type: ignore[return-value]

    def config(self) -> dict[str, Any]:
        return super().config() | {"structured_outputs": STRUCTURED_BACKEND}


__all__ = ["VLLMJudge", "attempt_from_output", "engine_kwargs", "make_sampling_params", "sampling_kwargs"]
