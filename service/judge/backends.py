"""Build an LLM judge of one backend from its spec: ``embedded``, ``openai`` or ``vllm``.

A spec is a plain, JSON-serialisable dict (:func:`service.judge.judge_spec`). This module
reads no gold file and builds no labeler: an exemplar index, self-consistency and the
per-axis labelers are built around the judge by :mod:`service.labeler_factory`.
"""

from __future__ import annotations

from typing import Any

from slicelab.service.errors import ConfigError
from slicelab.service.judge.base import Judge

#: LLM judge backends, by the name a spec's ``backend`` gives.
BACKENDS = ("embedded", "openai", "vllm")


def build_judge(spec: dict[str, Any], **prepared: Any) -> Judge:
    """The LLM judge a backend spec describes (not cached; each call builds a new one).

    Args:
        spec: ``{"backend": "embedded" | "openai" | "vllm", ...}``; the other keys are the
            keyword arguments of :class:`~service.judge.embedded.EmbeddedJudge`,
            :class:`~service.judge.openai_backend.OpenAIJudge` or
            :class:`~service.judge.vllm_backend.VLLMJudge` (``max_tokens``, ``temperature``,
            ``base_url``, ``model``, ...).
        prepared: keyword arguments built by the caller and not part of a spec (the exemplar
            index: ``exemplars``, ``k``, ``exemplar_settings``).

    Raises:
        ConfigError: unknown backend (the message lists :data:`BACKENDS`) or unusable
            configuration.
    """
    kwargs = dict(spec)
    backend = kwargs.pop("backend")
    kwargs |= prepared
    if backend == "openai":
        from slicelab.service.judge.openai_backend import OpenAIJudge

        return OpenAIJudge(**kwargs)
    if backend == "vllm":
        from slicelab.service.judge.vllm_backend import VLLMJudge

        return VLLMJudge(**kwargs)
    if backend == "embedded":
        from slicelab.service.judge.embedded import EmbeddedJudge

        return EmbeddedJudge(**kwargs)
    raise ConfigError(f"unknown judge backend {backend!r}; allowed: {', '.join(BACKENDS)}")
