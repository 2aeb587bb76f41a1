"""How long one chunk job may run, and what happens to its items when that time is near.

The RQ job timeout of a chunk is sized from the work it can need: every item may
take every attempt (``max_attempts`` plus one retry with a doubled output budget),
each attempt up to the request timeout once per transport try, with the backoff
between tries; items go ``concurrency`` at a time; an open circuit breaker may
pause them for up to ``SLICELAB_JUDGE_MAX_PAUSE_S``. ``SLICELAB_JOB_TIMEOUT_S``
sets it outright.

Inside the job the labeling stops at a deadline a little before RQ's timeout
(:func:`job_deadline`): items finished by then keep their labels, the others get
``judge_error`` saying the job's time ran out (:func:`timed_out_result`), and the
chunk's part is written as usual, so a re-run redoes only that chunk (its labeled
items come from the label cache).
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

from slicelab.service import defaults
from slicelab.service.errors import ConfigError

#: Environment variable: the chunk job timeout in seconds, instead of the sized one.
JOB_TIMEOUT_ENV = "SLICELAB_JOB_TIMEOUT_S"
#: Seconds added to a sized timeout for start-up and writing the part.
JOB_OVERHEAD_S = 60.0


def chunk_job_timeout(judge: dict[str, Any], n_items: int, env: dict[str, str] | None = None) -> int:
    """RQ ``job_timeout`` of a chunk of ``n_items`` items for this judge spec (seconds).

    Openai judge: ``ceil(n_items / concurrency) x attempts x (request_timeout x tries +
    backoff_cap x (tries - 1)) + max_pause + overhead`` with attempts = ``max_attempts + 1``
    and tries = ``transport_retries + 1``. Other backends (no request timeout): at least
    :data:`service.defaults.JOB_TIMEOUT_S`.

    Raises:
        ConfigError: ``SLICELAB_JOB_TIMEOUT_S`` is not a positive number.
    """
    env = os.environ if env is None else env
    if env.get(JOB_TIMEOUT_ENV):
        try:
            value = float(env[JOB_TIMEOUT_ENV])
        except ValueError:
            value = -1.0
        if not value > 0:
            raise ConfigError(f"{JOB_TIMEOUT_ENV}={env[JOB_TIMEOUT_ENV]!r}: expected a positive number of seconds")
        return max(1, math.ceil(value))
    if judge.get("backend") != "openai":
        return defaults.JOB_TIMEOUT_S
    from slicelab.service.judge.resilience import settings_from_env

    breaker = settings_from_env(env)
    tries = int(judge.get("transport_retries", 2)) + 1
    per_attempt = float(judge.get("request_timeout_s", defaults.REQUEST_TIMEOUT_S)) * tries \
        + breaker.backoff_cap_s * (tries - 1)
    attempts = int(judge.get("max_attempts", defaults.MAX_ATTEMPTS)) + 1
    rounds = math.ceil(max(1, n_items) / max(1, int(judge.get("concurrency", defaults.JUDGE_CONCURRENCY))))
    return math.ceil(rounds * attempts * per_attempt + breaker.max_pause_s + JOB_OVERHEAD_S)


def job_deadline(timeout_s: float | None, started: float | None = None) -> float | None:
    """``time.monotonic()`` by which labeling stops: the job timeout less a margin for writing the
    part (10 %, between 1 s and 60 s); None without a timeout."""
    if not timeout_s or timeout_s <= 0:
        return None
    margin = min(60.0, max(1.0, 0.1 * timeout_s))
    return (time.monotonic() if started is None else started) + max(0.5, timeout_s - margin)


def timed_out_error(timeout_s: float | None) -> str:
    """The error of an item the job had no time left for."""
    return (f"not labeled: the chunk job's time ran out (job timeout {timeout_s:g} s, see "
            f"{JOB_TIMEOUT_ENV}); a re-run labels it")


def timed_out_result(judge: Any, timeout_s: float | None):
    """A ``judge_error`` :class:`~service.judge.base.JudgeResult` for an item cut off by the job deadline."""
    from slicelab.service.judge.base import JudgeResult
    from slicelab.service.samples import Status

    return JudgeResult(status=Status.judge_error, labels=None, raw_texts=[], finish_reason=None, prompt_tokens=0,
                       completion_tokens=0, attempts=0, model=getattr(judge, "model", ""),
                       backend=getattr(judge, "backend", ""), error=timed_out_error(timeout_s), latency_s=0.0,
                       request_hash="", prompt_ref="", extra={"timed_out": True})


def is_job_timeout(e: BaseException) -> bool:
    """Whether ``e`` is RQ's job timeout (``rq.timeouts.JobTimeoutException``)."""
    return type(e).__name__ == "JobTimeoutException"
