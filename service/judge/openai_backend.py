"""The ``openai`` judge: instructor + the openai client against any OpenAI-compatible server.

Works with ``vllm serve MODEL`` (structured outputs), OpenAI, or a llama.cpp
server. The label model's JSON schema is sent as ``response_format``
(instructor ``Mode.JSON_SCHEMA``), so a server with structured outputs can only
emit valid labels; the reply is validated with pydantic all the same.

Transport errors (5xx, connection, timeout) are retried by the openai client
with backoff; a 400 is never retried (a prompt longer than the context window
becomes ``input_too_long``). Each instructor call makes one request
(``max_retries=0``): retries on invalid output are done by the judge with the
same messages, so the prompt never grows with earlier bad outputs.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import instructor
from instructor.core import InstructorError
import openai
from pydantic import BaseModel

from service import defaults
from service.judge.base import Attempt, Judge
from service.samples import Status

#: Environment variable holding the judge server's API key (never logged or stored).
API_KEY_ENV = "SLICELAB_JUDGE_API_KEY"
# Every failed attempt is recorded on its row (status, error, raw text); instructor's
# own ERROR log lines for the same events would only repeat them in worker logs.
logging.getLogger("instructor").setLevel(logging.CRITICAL)

_CONTEXT_MARKERS = ("context length", "context_length", "maximum context", "too long", "context window")


class OpenAIJudge(Judge):
    """Judge against an OpenAI-compatible HTTP server.

    Args:
        base_url: e.g. ``http://127.0.0.1:8000/v1`` (vLLM).
        model: the served model name.
        api_key: default ``$SLICELAB_JUDGE_API_KEY``, else ``"EMPTY"`` (vLLM's convention).
        request_timeout_s: seconds per HTTP request.
        transport_retries: retries of 5xx/connection/timeout errors (openai client backoff).
        **kwargs: see :class:`service.judge.base.Judge`.
    """

    backend = "openai"

    def __init__(self, *, base_url: str, model: str, api_key: str | None = None,
                 request_timeout_s: float = defaults.REQUEST_TIMEOUT_S, transport_retries: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.base_url = base_url
        self.model = model
        self.request_timeout_s = request_timeout_s
        raw = openai.OpenAI(
            base_url=base_url,
            api_key=api_key or os.environ.get(API_KEY_ENV) or "EMPTY",
            timeout=request_timeout_s,
            max_retries=transport_retries,
        )
        self._client = instructor.from_openai(raw, mode=instructor.Mode.JSON_SCHEMA)
        self._last: list[Any] = []
        self._client.on("completion:response", self._last.append)

    def _send(self, messages: list[dict[str, str]], model_cls: type[BaseModel]) -> Attempt:
        self._last.clear()
        try:
            self._client.chat.completions.create(
                model=self.model,
                messages=messages,
                response_model=model_cls,
                max_retries=0,
                max_tokens=self.max_tokens,
                temperature=self.temperature,
            )
        except openai.BadRequestError as e:
            return self._bad_request(e)
        except (openai.APIConnectionError, openai.APITimeoutError, openai.APIStatusError) as e:
            return Attempt(error_status=Status.judge_error, error=_describe(e))
        except InstructorError as e:
            cause = _root_cause(e)
            if isinstance(cause, openai.BadRequestError):
                return self._bad_request(cause)
            if isinstance(cause, openai.OpenAIError):
                return Attempt(error_status=Status.judge_error, error=_describe(cause))
            if not self._last:
                return Attempt(error_status=Status.judge_error, error=f"judge: {type(e).__name__}: {e}")
            # a reply arrived but did not validate: the judge classifies it from the raw text
        return _attempt_from_completion(self._last[-1])

    def _bad_request(self, e: openai.BadRequestError) -> Attempt:
        msg = _message(e)
        status = Status.input_too_long if any(m in msg.lower() for m in _CONTEXT_MARKERS) else Status.judge_error
        return Attempt(error_status=status, error=f"judge server refused the request (400): {msg}")

    def config(self) -> dict[str, Any]:
        return super().config() | {"base_url": self.base_url}


def _attempt_from_completion(completion: Any) -> Attempt:
    choice = completion.choices[0]
    usage = getattr(completion, "usage", None)
    return Attempt(
        text=choice.message.content or "",
        finish_reason=choice.finish_reason,
        prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
        completion_tokens=getattr(usage, "completion_tokens", 0) or 0,
    )


def _root_cause(e: BaseException) -> BaseException:
    seen = set()
    while (e.__cause__ or e.__context__) is not None and id(e) not in seen:
        seen.add(id(e))
        nxt = e.__cause__ or e.__context__
        if isinstance(nxt, openai.OpenAIError):
            return nxt
        e = nxt
    return e


def _describe(e: Exception) -> str:
    code = getattr(e, "status_code", None)
    return f"judge server: {'HTTP ' + str(code) + ' ' if code else ''}{type(e).__name__}: {_message(e)}"


def _message(e: Exception) -> str:
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        if isinstance(body.get("message"), str):
            return body["message"]
    return str(e)
