"""The ``openai`` judge: instructor + the openai client against any OpenAI-compatible server.

Works with ``vllm serve MODEL`` (structured outputs), OpenAI, or a llama.cpp
server. The label model's JSON schema is sent as ``response_format``
(instructor ``Mode.JSON_SCHEMA``), so a server with structured outputs can only
emit valid labels; the reply is validated with pydantic all the same.

Transport errors (5xx, connection, timeout) are retried with full-jitter
backoff behind a circuit breaker shared per server URL, on the sync and the
async path alike (:mod:`service.judge.resilience`); a 400 is never retried (a
prompt longer than the context window becomes ``input_too_long``). Each
instructor call makes one request (``max_retries=0``): retries on invalid
output are done by the judge with the same messages, so the prompt never grows
with earlier bad outputs.

:meth:`OpenAIJudge.label_many` keeps up to ``concurrency`` requests in flight
(``openai.AsyncOpenAI``, one event loop per judge), so a few workers fill a
vLLM server's continuous batching. It sends the request body instructor sends
(same messages, ``response_format`` and settings) without instructor's
per-call overhead; replies are validated by the judge either way. The attempt loop, statuses and retry rules
are those of :meth:`~service.judge.base.Judge.label`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import threading
import time
from typing import Any

import instructor
from instructor.core import InstructorError
import openai
from openai.types.chat import ChatCompletion
from pydantic import BaseModel

from slicelab.service import defaults
from slicelab.service.errors import ConfigError
from slicelab.service.judge.base import Attempt, Judge, JudgeResult
from slicelab.service.judge.resilience import API_KEY_ENV, Resilience, breaker_for, error_message, is_transient
from slicelab.service.samples import Document, EvalSample, Status

# Every failed attempt is recorded on its row (status, error, raw text); instructor's
# own ERROR log lines for the same events would only repeat them in worker logs.
logging.getLogger("instructor").setLevel(logging.CRITICAL)

#: The circuit breaker's health probe: a request any server can answer, whatever the failing inputs.
_HEALTH_MESSAGES = [{"role": "user", "content": "slicelab health probe: reply OK"}]
#: Words of a "prompt does not fit the context window" error: vLLM/OpenAI ("maximum context length"),
#: llama.cpp's server (400 "exceeds the available context size", type ``exceed_context_size_error``),
#: llama-cpp-python's server (500 "Requested tokens (N) exceed context window of M").
_CONTEXT_MARKERS = ("context length", "context_length", "maximum context", "too long", "context window",
                    "context size", "exceed_context_size")


class OpenAIJudge(Judge):
    """Judge against an OpenAI-compatible HTTP server.

    Args:
        base_url: e.g. ``http://127.0.0.1:8000/v1`` (vLLM).
        model: the served model name.
        api_key: default ``$SLICELAB_JUDGE_API_KEY``, else ``"EMPTY"`` (vLLM's convention).
        request_timeout_s: seconds per HTTP request.
        transport_retries: retries of 5xx/connection/timeout errors while the server's
            circuit breaker is closed (:mod:`service.judge.resilience`).
        concurrency: requests :meth:`label_many` keeps in flight (>= 1). It does not
            change labels, so it is not part of :meth:`config`.
        **kwargs: see :class:`service.judge.base.Judge`.

    Raises:
        ConfigError: concurrency below 1.
    """

    backend = "openai"

    def __init__(self, *, base_url: str, model: str, api_key: str | None = None,
                 request_timeout_s: float = defaults.REQUEST_TIMEOUT_S, transport_retries: int = 2,
                 concurrency: int = defaults.JUDGE_CONCURRENCY, **kwargs):
        super().__init__(**kwargs)
        if concurrency < 1:
            raise ConfigError(f"concurrency: must be at least 1, got {concurrency}")
        self.base_url = base_url
        self.model = model
        self.request_timeout_s = request_timeout_s
        self.concurrency = concurrency
        self._client_kwargs = {"base_url": base_url, "api_key": api_key or os.environ.get(API_KEY_ENV) or "EMPTY",
                               "timeout": request_timeout_s, "max_retries": 0}
        self._resilience = Resilience(breaker_for(base_url), transport_retries)
        raw = self._raw = openai.OpenAI(**self._client_kwargs)
        self._client = instructor.from_openai(raw, mode=instructor.Mode.JSON_SCHEMA)
        self._last: list[Any] = []
        self._client.on("completion:response", self._last.append)
        self._aio: tuple[int, asyncio.AbstractEventLoop, Any] | None = None  # (pid, loop, async instructor client)
        self._aio_lock = threading.Lock()

    #: :meth:`_send` takes a per-request ``seed`` (OpenAI's and vLLM's ``seed`` parameter;
    #: used by self-consistency sampling so a rerun draws the same samples).
    takes_seed = True

    def _request(self, messages: list[dict[str, str]], model_cls: type[BaseModel],
                 seed: int | None = None, max_tokens: int | None = None) -> dict[str, Any]:
        request = {"model": self.model, "messages": messages, "response_model": model_cls, "max_retries": 0,
                   "max_tokens": max_tokens or self.max_tokens, "temperature": self.temperature}
        return request | ({"seed": seed} if seed is not None else {})

    def _send(self, messages: list[dict[str, str]], model_cls: type[BaseModel], seed: int | None = None,
              max_tokens: int | None = None) -> Attempt:
        budget = max_tokens or self.max_tokens
        attempt = self._resilience.call(lambda: self._send_once(messages, model_cls, seed, budget), _is_transient,
                                        _gave_up, probe=self._healthy)
        attempt.max_tokens = budget
        return attempt

    async def _asend(self, client: Any, messages: list[dict[str, str]], model_cls: type[BaseModel],
                     max_tokens: int | None = None) -> Attempt:
        budget = max_tokens or self.max_tokens
        attempt = await self._resilience.acall(lambda: self._asend_once(client, messages, model_cls, budget),
                                               _is_transient, _gave_up, probe=lambda: self._ahealthy(client))
        attempt.max_tokens = budget
        return attempt

    def _healthy(self) -> bool:
        """One tiny request (no schema, 1 output token): does the server answer? (the breaker's probe)"""
        try:
            self._raw.chat.completions.create(model=self.model, messages=_HEALTH_MESSAGES, max_tokens=1)
        except Exception as e:  # noqa: BLE001 - any answer that is not a transient failure means "up"
            return not is_transient(e)
        return True

    async def _ahealthy(self, client: Any) -> bool:
        """:meth:`_healthy` on the async client."""
        try:
            await client.post("/chat/completions", cast_to=ChatCompletion,
                              body={"model": self.model, "messages": _HEALTH_MESSAGES, "max_tokens": 1})
        except Exception as e:  # noqa: BLE001
            return not is_transient(e)
        return True

    def _send_once(self, messages: list[dict[str, str]], model_cls: type[BaseModel], seed: int | None = None,
                   max_tokens: int | None = None) -> Attempt:
        self._last.clear()
        try:
            self._client.chat.completions.create(**self._request(messages, model_cls, seed, max_tokens))
        except Exception as e:
            return self._failed(e, self._last)
        return _attempt_from_completion(self._last[-1])

    async def _asend_once(self, client: Any, messages: list[dict[str, str]], model_cls: type[BaseModel],
                          max_tokens: int) -> Attempt:
        # The body instructor's JSON_SCHEMA mode sends (response_format built once per label
        # model), posted as is: instructor's per-call model preparation and the openai client's
        # parameter transform cost more CPU than the rest of a label together. The judge
        # validates every reply itself (parse_reply), as on the sync path.
        body = {"model": self.model, "messages": messages, "max_tokens": max_tokens,
                "temperature": self.temperature, "response_format": _wire_response_format(model_cls)}
        try:
            completion = await client.post("/chat/completions", cast_to=ChatCompletion, body=body)
        except Exception as e:
            return self._failed(e, [])
        return _attempt_from_completion(completion)

    def _failed(self, e: Exception, replies: list[Any]) -> Attempt:
        """The attempt of a request that raised (re-raises what is not a judge-side problem).

        Raises:
            JobTimeoutException: RQ's job timeout fired during the request (the openai
                client wraps it in a connection error; it is re-raised, never retried).
        """
        reraise_deadline(e)
        if isinstance(e, openai.BadRequestError):
            return self._bad_request(e)
        if isinstance(e, openai.APIStatusError) and _context_overflow(e):
            return self._bad_request(e)  # llama-cpp-python's server answers an overflow with a 500
        if isinstance(e, (openai.APIConnectionError, openai.APITimeoutError, openai.APIStatusError)):
            return Attempt(error_status=Status.judge_error, error=_describe(e), transient=is_transient(e))
        if not isinstance(e, InstructorError):
            if replies:  # a 200 reply that is no chat completion (HTML page, no choices): judged from its body
                return _attempt_from_completion(replies[-1])
            raise e
        cause = _root_cause(e)
        if isinstance(cause, openai.BadRequestError) or (
                isinstance(cause, openai.APIStatusError) and _context_overflow(cause)):
            return self._bad_request(cause)
        if isinstance(cause, openai.OpenAIError):
            return Attempt(error_status=Status.judge_error, error=_describe(cause), transient=is_transient(cause))
        if not replies:
            return Attempt(error_status=Status.judge_error, error=f"judge: {type(e).__name__}: {e}")
        # a reply arrived but did not validate: the judge classifies it from the raw text
        return _attempt_from_completion(replies[-1])

    def label_many(self, items: list[EvalSample | Document],
                   deadline: float | None = None) -> list[JudgeResult | None]:
        """Label items with up to ``concurrency`` requests in flight; results in input order.

        Each item runs the same attempt loop as :meth:`label` (one request per
        attempt, same messages every attempt). Safe to call from several threads
        (calls are serialized); not from inside a running event loop.

        Args:
            deadline: ``time.monotonic()`` at which unfinished items are given up (their
                requests cancelled); such an item gets None instead of a result.

        Raises:
            Exception: what an item's labeling raised that is not a judge-side problem
                (a bug), after every other item has finished.
        """
        if len(items) <= 1 or self.concurrency == 1:
            return super().label_many(items, deadline)
        with self._aio_lock:
            loop, client = self._event_loop()
            return loop.run_until_complete(self._label_all(client, items, deadline))

    def _event_loop(self) -> tuple[asyncio.AbstractEventLoop, Any]:
        """This process's event loop and async client (rebuilt after a fork)."""
        if self._aio is None or self._aio[0] != os.getpid():
            self._aio = (os.getpid(), asyncio.new_event_loop(), openai.AsyncOpenAI(**self._client_kwargs))
        return self._aio[1], self._aio[2]

    def close(self) -> None:
        """Close the async client's connections and its event loop (a later :meth:`label_many` reopens them)."""
        with self._aio_lock:
            if self._aio is not None and self._aio[0] == os.getpid():
                _, loop, client = self._aio
                loop.run_until_complete(client.close())
                loop.close()
            self._aio = None

    async def _label_all(self, client: Any, items: list[EvalSample | Document],
                         deadline: float | None = None) -> list[JudgeResult | None]:
        gate = asyncio.Semaphore(self.concurrency)

        async def one(item: EvalSample | Document) -> JudgeResult:
            async with gate:
                steps = self.label_steps(item)
                try:
                    request = next(steps)
                    while True:
                        request = steps.send(await self._asend(client, *request, **request.options))
                except StopIteration as done:
                    return done.value

        tasks = [asyncio.ensure_future(one(item)) for item in items]
        if deadline is not None:
            await asyncio.wait(tasks, timeout=max(0.0, deadline - time.monotonic()))
            for t in tasks:
                t.cancel()  # no-op for the finished ones
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for r in results:  # every request has ended: raising leaves nothing running on the loop
            if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError):
                raise r
        return [None if isinstance(r, asyncio.CancelledError) else r for r in results]

    def _bad_request(self, e: openai.APIStatusError) -> Attempt:
        msg = error_message(e)
        status = Status.input_too_long if _context_overflow(e) else Status.judge_error
        return Attempt(error_status=status, error=f"judge server refused the request ({e.status_code}): {msg}")

    def config(self) -> dict[str, Any]:
        return super().config() | {"base_url": self.base_url}


@functools.lru_cache(maxsize=64)
def _wire_response_format(model_cls: type[BaseModel]) -> dict[str, Any]:
    """``response_format`` as instructor's JSON_SCHEMA mode sends it: ``{"type", "json_schema": {name, schema}}``."""
    return {"type": "json_schema", "json_schema": {"name": model_cls.__name__, "schema": model_cls.model_json_schema()}}


def _is_transient(attempt: Attempt) -> bool:
    return attempt.transient


def _gave_up(message: str) -> Attempt:
    return Attempt(error_status=Status.judge_error, error=message, transient=True)


def _attempt_from_completion(completion: Any) -> Attempt:
    """The attempt of one reply. Content only in a reasoning field (vLLM reasoning parsers:
    ``reasoning_content``/``reasoning``) is ``format_error``, its text kept as the raw reply.
    A 200 reply that is no chat completion (an HTML page, no ``choices``) is ``judge_error``
    naming what is wrong, its body kept as the raw reply."""
    malformed = _malformed(completion)
    if malformed:
        return Attempt(text=_body_text(completion), error_status=Status.judge_error,
                       error=f"judge server: HTTP 200 reply is not a chat completion ({malformed})")
    choice = completion.choices[0]
    usage = getattr(completion, "usage", None)
    text = choice.message.content or ""
    reasoning = getattr(choice.message, "reasoning_content", None) or getattr(choice.message, "reasoning", None)
    only_reasoning = not text.strip() and isinstance(reasoning, str) and reasoning.strip()
    return Attempt(
        text=reasoning if only_reasoning else text,
        finish_reason=choice.finish_reason,
        prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
        completion_tokens=getattr(usage, "completion_tokens", 0) or 0,
        error_status=Status.format_error if only_reasoning else None,
        error="content only in the reasoning field (the server's reasoning parser kept the reply there); "
              "raw text is the reasoning" if only_reasoning else None,
    )


#: Characters of a malformed reply body kept as its raw text.
_RAW_BODY_CHARS = 4000


def _malformed(completion: Any) -> str | None:
    """What makes a 200 reply unusable, or None for a chat completion with a message."""
    if isinstance(completion, (str, bytes)):
        return "the body is not JSON" + (" (an HTML page)" if "<html" in str(completion)[:500].lower() else "")
    choices = getattr(completion, "choices", None)
    if not isinstance(choices, list):
        return "no 'choices' list"
    if not choices:
        return "'choices' is empty"
    if getattr(choices[0], "message", None) is None:
        return "the first choice has no 'message'"
    return None


def _body_text(completion: Any) -> str:
    if isinstance(completion, bytes):
        completion = completion.decode("utf-8", "replace")
    if not isinstance(completion, str):
        dump = getattr(completion, "model_dump_json", None)
        completion = dump() if dump else repr(completion)
    return completion[:_RAW_BODY_CHARS]


def _context_overflow(e: Exception) -> bool:
    """Whether a 4xx/5xx error says the prompt does not fit the judge's context window."""
    msg = f"{error_message(e)} {getattr(e, 'body', '')}".lower()
    return any(m in msg for m in _CONTEXT_MARKERS)


def reraise_deadline(e: BaseException) -> None:
    """Re-raise RQ's ``JobTimeoutException`` when it caused ``e`` (the openai client turns any
    exception during a request, the job timeout's too, into a connection error)."""
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        if type(cur).__name__ == "JobTimeoutException":
            raise cur
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__


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
    return f"judge server: {'HTTP ' + str(code) + ' ' if code else ''}{type(e).__name__}: {error_message(e)}"
