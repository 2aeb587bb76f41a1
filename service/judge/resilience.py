"""Surviving a judge server that is down, slow or failing.

Three pieces, shared by the synchronous and the asynchronous request paths:

- :func:`backoff_delays`: capped exponential backoff with full jitter, the
  schedule of "Exponential Backoff And Jitter" (Marc Brooker, AWS Architecture
  Blog, 2015): attempt ``n`` (0-based) sleeps ``uniform(0, min(cap, base * 2**n))``
  seconds, so clients that failed together do not retry together.
- :class:`CircuitBreaker`: after ``threshold`` consecutive transient failures
  (5xx, 408, 409, 429, connection refused, timeout) it opens; while open every
  request waits instead of failing, and at backoff intervals one caller at a
  time probes the server: with a health request when the backend gives one
  (the openai judge does: no schema, one output token), so an input the server
  always fails cannot keep it open. The first probe the server answers closes it.
  After ``max_pause_s`` open, requests stop waiting and fail fast (their samples
  get ``judge_error``, which a re-run retries) while probes go on.
- :class:`Resilience`: runs one request (:meth:`Resilience.call`, or
  :meth:`Resilience.acall` for a coroutine) through the breaker, retrying
  transient failures with backoff. A 400 (e.g. context length exceeded) or an
  invalid reply is an answer, never retried here.

One breaker is shared per judge server URL per process (:func:`breaker_for`),
so the requests of every thread or task of a worker count together. Its
settings come from the environment (see :func:`settings_from_env`). While a
breaker is open, :func:`set_pause_reporter` callbacks are told (the ``slicelab
worker`` command reports to Redis, where the labeling command's progress shows
it) and a warning is logged.

:func:`probe_judge` sends one tiny structured-output request before a run and
turns a refused schema or an unreachable server into a :class:`ConfigError`.
:func:`is_transient` and :func:`error_message` read the openai client's errors
(for the breaker, the probe and the ``openai`` judge alike).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from slicelab.service.errors import ConfigError, JudgeConfigError

log = logging.getLogger("slicelab.judge")

#: Environment variable holding the judge server's API key (never logged or stored).
API_KEY_ENV = "SLICELAB_JUDGE_API_KEY"

#: HTTP statuses worth retrying (the openai client's own choice: timeout, conflict, rate limit, server errors).
TRANSIENT_STATUS = frozenset({408, 409, 429})
#: Environment variables holding the settings, and their defaults (units in the names).
ENV_DEFAULTS: dict[str, float] = {
    "SLICELAB_JUDGE_BREAKER_THRESHOLD": 5,  # consecutive transient failures that open the breaker
    "SLICELAB_JUDGE_PROBE_S": 1.0,  # first wait before a probe, seconds; doubles per failed probe
    "SLICELAB_JUDGE_PROBE_CAP_S": 30.0,  # longest wait between probes, seconds
    "SLICELAB_JUDGE_MAX_PAUSE_S": 1800.0,  # seconds open before requests stop waiting
    "SLICELAB_JUDGE_BACKOFF_BASE_S": 0.5,  # first retry delay bound, seconds
    "SLICELAB_JUDGE_BACKOFF_CAP_S": 20.0,  # largest retry delay bound, seconds
}


def backoff_delays(base_s: float, cap_s: float, *, rng: random.Random | None = None) -> Iterator[float]:
    """Endless full-jitter backoff delays in seconds: ``uniform(0, min(cap_s, base_s * 2**n))`` for n = 0, 1, ...

    Source: Marc Brooker, "Exponential Backoff And Jitter", AWS Architecture
    Blog, 2015 ("Full Jitter").

    Raises:
        ValueError: ``base_s`` or ``cap_s`` is negative.
    """
    if base_s < 0 or cap_s < 0:
        raise ValueError(f"backoff base_s and cap_s must be >= 0, got {base_s}, {cap_s}")
    rng = rng or random.Random()
    n = 0
    while True:
        yield rng.uniform(0.0, min(cap_s, base_s * 2.0 ** min(n, 62)))
        n += 1


def is_transient(exc: BaseException) -> bool:
    """True for errors a retry may cure: connection refused/reset, timeouts, HTTP 408/409/429/5xx."""
    import openai

    if isinstance(exc, (openai.APIConnectionError, openai.APITimeoutError, ConnectionError, TimeoutError)):
        return True
    code = getattr(exc, "status_code", None)
    return isinstance(code, int) and (code >= 500 or code in TRANSIENT_STATUS)


def error_message(e: Exception) -> str:
    """The server's own message of an openai client error (``body.error.message`` or ``body.message``), else ``str(e)``."""
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        if isinstance(body.get("message"), str):
            return body["message"]
    return str(e)


@dataclass(frozen=True)
class Settings:
    """Breaker and retry settings (see :data:`ENV_DEFAULTS` for units and defaults)."""

    threshold: int = 5
    probe_s: float = 1.0
    probe_cap_s: float = 30.0
    max_pause_s: float = 1800.0
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 20.0


def settings_from_env(env: dict[str, str] | None = None) -> Settings:
    """Settings from ``SLICELAB_JUDGE_*`` environment variables (:data:`ENV_DEFAULTS`).

    Raises:
        ConfigError: a variable is not a number, or is negative (the threshold must be >= 1).
    """
    env = os.environ if env is None else env
    values: list[float] = []
    for name, default in ENV_DEFAULTS.items():
        raw = env.get(name)
        try:
            value = float(raw) if raw not in (None, "") else float(default)
        except ValueError:
            raise ConfigError(f"{name}={raw!r} is not a number") from None
        if value < 0 or (name.endswith("THRESHOLD") and value < 1):
            raise ConfigError(f"{name}={raw!r} must be {'>= 1' if name.endswith('THRESHOLD') else '>= 0'}")
        values.append(value)
    return Settings(int(values[0]), *values[1:])


class CircuitBreaker:
    """Consecutive-failure circuit breaker with probing (thread-safe, never blocks).

    States: ``closed`` (requests pass), ``open`` (requests wait; when the next
    probe is due, one request is admitted as the probe: ``half_open``).

    Args:
        name: what is protected (the judge URL), for logs and reports.
        settings: threshold, probe interval bounds, max pause (:class:`Settings`).
        clock: monotonic seconds (tests pass a fake).
        rng: random source of the probe interval jitter.
    """

    def __init__(self, name: str, settings: Settings | None = None, *, clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None):
        self.name = name
        self.settings = settings or Settings()
        self._clock = clock
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self.state = "closed"
        self.consecutive_failures = 0
        self.opened_at: float | None = None
        self._next_probe_at = 0.0
        self._probe_delays: Iterator[float] = iter(())
        self.times_opened = 0

    def admit(self) -> tuple[bool, float]:
        """May a request go now? ``(True, 0.0)``, or ``(False, seconds to wait before asking again)``."""
        with self._lock:
            if self.state == "closed":
                return True, 0.0
            now = self._clock()
            if self.state == "open" and now >= self._next_probe_at:
                self.state = "half_open"  # this caller's request is the probe
                return True, 0.0
            wait = self._next_probe_at - now if self.state == "open" else self.settings.probe_s
            return False, max(0.01, min(wait, self.settings.probe_s))

    def record_success(self) -> None:
        """The server answered (any reply that is not a transient failure)."""
        with self._lock:
            was_open = self.state != "closed"
            paused = self._clock() - self.opened_at if self.opened_at is not None else 0.0
            self.state, self.consecutive_failures, self.opened_at = "closed", 0, None
        if was_open:
            log.warning("judge %s answers again after %.1f s: circuit closed, labeling resumes", self.name, paused)
            _report(self, None)

    def record_failure(self, error: str = "") -> None:
        """One transient failure; opens the breaker at the threshold, re-opens it after a failed probe."""
        with self._lock:
            self.consecutive_failures += 1
            now = self._clock()
            if self.state == "half_open":
                self.state = "open"
                self._next_probe_at = now + next(self._probe_delays)
                return
            if self.state == "open" or self.consecutive_failures < self.settings.threshold:
                return
            self.state, self.opened_at = "open", now
            self.times_opened += 1
            s = self.settings
            self._probe_delays = (s.probe_s / 2 + d / 2 for d in backoff_delays(s.probe_s, s.probe_cap_s, rng=self._rng))
            self._next_probe_at = now + next(self._probe_delays)
            info = {"judge": self.name, "since": time.time(), "consecutive_failures": self.consecutive_failures,
                    "error": error[:300]}
        log.warning("judge %s failed %d times in a row (%s): circuit open, requests wait and probe",
                    self.name, info["consecutive_failures"], info["error"])
        _report(self, info)

    def paused_s(self) -> float:
        """Seconds the breaker has been open (0 when closed)."""
        with self._lock:
            return self._clock() - self.opened_at if self.opened_at is not None else 0.0

    def exhausted(self) -> bool:
        """True when open for longer than ``max_pause_s``: requests stop waiting."""
        return self.state != "closed" and self.paused_s() > self.settings.max_pause_s


_BREAKERS: dict[str, CircuitBreaker] = {}
_BREAKERS_LOCK = threading.Lock()
_REPORTERS: list[Callable[[CircuitBreaker, dict | None], None]] = []


def breaker_for(name: str) -> CircuitBreaker:
    """The process-wide breaker of one judge server (created with :func:`settings_from_env`)."""
    with _BREAKERS_LOCK:
        if name not in _BREAKERS:
            _BREAKERS[name] = CircuitBreaker(name, settings_from_env())
        return _BREAKERS[name]


def set_pause_reporter(fn: Callable[[CircuitBreaker, dict | None], None]) -> None:
    """Call ``fn(breaker, info)`` when a breaker opens (info: judge, since, consecutive_failures,
    error) and while requests wait on it; ``fn(breaker, None)`` when it closes. Errors in ``fn`` are ignored."""
    _REPORTERS.append(fn)


def _report(breaker: CircuitBreaker, info: dict | None) -> None:
    for fn in list(_REPORTERS):
        try:
            fn(breaker, info)
        except Exception:  # noqa: BLE001 - reporting must never break labeling (e.g. Redis down)
            pass


#: Redis hash of pause reports: field = worker name, value = JSON with ``expires_at`` (unix seconds).
PAUSE_KEY = "slicelab:judge-paused"


def report_pauses_to_redis(connection: Any, worker_name: str, ttl_s: int = 30) -> None:
    """Report this process's open breakers as field ``worker_name`` of the ``slicelab:judge-paused`` hash.

    A report is JSON (the breaker's info, ``paused_s``, ``expires_at``); it counts
    for ``ttl_s`` seconds unless refreshed, so a killed worker's report lapses.
    One hash, not a key per worker, so reading the reports never scans the database.
    """

    def report(breaker: CircuitBreaker, info: dict | None) -> None:
        if info is None:
            connection.hdel(PAUSE_KEY, worker_name)
        else:
            body = info | {"paused_s": round(breaker.paused_s(), 1), "expires_at": time.time() + ttl_s}
            connection.hset(PAUSE_KEY, worker_name, json.dumps(body))

    set_pause_reporter(report)


def paused_workers(connection: Any) -> list[dict]:
    """The current pause reports of every worker whose judge breaker is open (see :func:`report_pauses_to_redis`).

    Lapsed reports (past ``expires_at``) are dropped from the hash.
    """
    out, now = [], time.time()
    for worker, raw in (connection.hgetall(PAUSE_KEY) or {}).items():
        info = json.loads(raw)
        if info.get("expires_at", 0) < now:
            connection.hdel(PAUSE_KEY, worker)
        else:
            out.append(info)
    return out


class Resilience:
    """Retries with backoff and a shared circuit breaker around one request.

    Args:
        breaker: the shared breaker of the judge server.
        retries: extra attempts of a transiently failed request while the breaker is closed.
        sleep: blocking sleep used by :meth:`call` (tests pass a fake).

    A request is a callable returning an outcome; ``transient(outcome)`` says
    whether it failed in a way worth retrying. The outcome of the last attempt
    is returned; when requests stop waiting (open longer than ``max_pause_s``)
    and nothing was sent, ``give_up(message)`` builds the outcome.
    """

    def __init__(self, breaker: CircuitBreaker, retries: int = 2, *, sleep: Callable[[float], None] = time.sleep):
        self.breaker = breaker
        self.retries = max(0, retries)
        self._sleep = sleep

    def call(self, send: Callable[[], Any], transient: Callable[[Any], bool], give_up: Callable[[str], Any],
             probe: Callable[[], bool] | None = None) -> Any:
        """Run ``send`` until it succeeds, fails for good, or the pause budget is spent (blocking).

        ``probe()`` (optional) is a cheap health request returning True when the
        server answers; while the breaker is open it is sent instead of ``send``,
        so one request the server always fails (say a 500 for one input) cannot
        keep the breaker open. Without it the caller's own request is the probe.
        """
        steps = self._steps(transient, give_up, probe is not None)
        action = next(steps)
        while True:
            kind, value = action
            if kind == "done":
                return value
            if kind == "sleep":
                self._sleep(value)
                action = steps.send(None)
            elif kind == "probe":
                action = steps.send(probe())
            else:
                action = steps.send(send())

    async def acall(self, send: Callable[[], Awaitable[Any]], transient: Callable[[Any], bool],
                    give_up: Callable[[str], Any], probe: Callable[[], Awaitable[bool]] | None = None) -> Any:
        """:meth:`call` for a coroutine request (and probe); waits with ``asyncio.sleep`` (never blocks the loop)."""
        steps = self._steps(transient, give_up, probe is not None)
        action = next(steps)
        while True:
            kind, value = action
            if kind == "done":
                return value
            if kind == "sleep":
                await asyncio.sleep(value)
                action = steps.send(None)
            elif kind == "probe":
                action = steps.send(await probe())
            else:
                action = steps.send(await send())

    def _steps(self, transient: Callable[[Any], bool], give_up: Callable[[str], Any], has_probe: bool = False):
        """The retry policy as a generator of actions ("send", "probe", "sleep" s, "done" outcome), shared by call/acall."""
        b = self.breaker
        s = b.settings
        delays = backoff_delays(s.backoff_base_s, s.backoff_cap_s)
        failures, last, last_report = 0, None, 0.0
        while True:
            ok, wait = b.admit()
            if not ok:
                if b.exhausted():
                    yield "done", last if last is not None else give_up(
                        f"judge {b.name} unavailable: circuit open for {b.paused_s():.0f} s "
                        f"(more than SLICELAB_JUDGE_MAX_PAUSE_S={s.max_pause_s:g}); re-run to retry")
                    return
                if time.monotonic() - last_report > 5:  # keep the pause report alive while waiting
                    last_report = time.monotonic()
                    _report(b, {"judge": b.name, "consecutive_failures": b.consecutive_failures,
                                "since": time.time() - b.paused_s(), "error": ""})
                yield "sleep", wait
                continue
            if has_probe and b.state == "half_open":  # this caller probes the server's health, not its own request
                if (yield "probe", None):
                    b.record_success()
                else:
                    b.record_failure("health probe failed")
                continue
            outcome = yield "send", None
            last = outcome
            if not transient(outcome):
                b.record_success()
                yield "done", outcome
                return
            b.record_failure(str(getattr(outcome, "error", "") or ""))
            failures += 1
            if b.state == "closed":
                if failures > self.retries:
                    yield "done", outcome  # an isolated failure: the sample records it
                    return
                yield "sleep", next(delays)
            elif b.exhausted():
                yield "done", outcome
                return


def probe_judge(spec: dict[str, Any], *, timeout_s: float = 30.0) -> None:
    """Check before a run that the judge a spec describes can serve structured outputs.

    For the ``openai`` backend (also inside a ``per_axis`` spec) one tiny request
    is sent with the label model's JSON schema as ``response_format`` and
    ``max_tokens=1``. For the ``vllm`` backend the package must be importable.
    Other backends need no probe. A 5xx or timeout only logs
    a warning: the breaker pauses the run until the server answers.

    Raises:
        JudgeConfigError: the server refused the schema (400 naming
            response_format / json_schema / guided decoding), the key, or the model.
        ConfigError: the server does not answer (connection refused, bad URL).
    """
    if spec.get("backend") == "per_axis":
        spec = spec["judge"]
    if spec.get("backend") == "vllm":
        import importlib.util

        if importlib.util.find_spec("vllm") is None:
            raise ConfigError("judge backend vllm: the vllm package is not installed here "
                              "(pip install 'slicelab[vllm]' on a GPU machine, or serve the model with "
                              "`vllm serve` and pass --judge-url)")
        return
    if spec.get("backend") != "openai":
        return
    import openai

    from slicelab.service.judge.base import response_format
    from slicelab.service.taxonomy import load_taxonomy

    url, model = spec["base_url"], spec["model"]
    client = openai.OpenAI(base_url=url, api_key=os.environ.get(API_KEY_ENV) or "EMPTY", timeout=timeout_s,
                           max_retries=0)
    schema = response_format(load_taxonomy().label_model("eval", with_failure_mode=True))
    try:
        client.chat.completions.create(
            model=model, max_tokens=1, temperature=0.0, response_format=schema,
            messages=[{"role": "user", "content": "slicelab start-up probe: reply with one label object."}])
    except openai.APIConnectionError as e:  # includes timeouts
        if isinstance(e, openai.APITimeoutError):
            log.warning("judge %s did not answer the start-up probe within %.0f s; starting anyway", url, timeout_s)
            return
        raise ConfigError(f"judge backend openai at {url} does not answer ({type(e).__name__}: {e}); "
                          "start the server or fix --judge-url") from None
    except openai.APIStatusError as e:
        msg = error_message(e)
        where = f"judge backend openai at {url} (model {model!r})"
        if e.status_code in (401, 403):
            raise JudgeConfigError(f"{where} refused the API key (HTTP {e.status_code}); set {API_KEY_ENV}") from None
        if e.status_code == 404:
            raise JudgeConfigError(f"{where}: HTTP 404 {msg}; check --judge-url (ends in /v1) and --judge-model") from None
        if e.status_code in (400, 422) and any(w in msg.lower() for w in _SCHEMA_WORDS):
            raise JudgeConfigError(f"{where} does not support structured outputs (response_format json_schema): "
                                   f"HTTP {e.status_code} {msg}") from None
        if is_transient(e):
            log.warning("%s answered the start-up probe with HTTP %s; starting anyway", where, e.status_code)
            return
        raise JudgeConfigError(f"{where} refused a structured-output request: HTTP {e.status_code} {msg}") from None


_SCHEMA_WORDS = ("response_format", "json_schema", "guided", "schema", "structured", "grammar")
