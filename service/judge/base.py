"""The judge interface: ``Judge.label(item) -> JudgeResult``.

Building the request and parsing a reply are pure functions here; backends
(``openai_backend``, ``embedded``) only move one request over their transport
and report text, finish_reason and token usage. Every reply is validated with
the pydantic label model generated from the taxonomy, whatever the backend
promises, and the raw text of every attempt is kept.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import re
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Generator

from pydantic import BaseModel, ValidationError

from slicelab.service import defaults
from slicelab.service.checks import deterministic_failure_mode
from slicelab.service.lm_eval_log import LOGLIKELIHOOD, MC_NO_OUTPUT
from slicelab.service.prompts import DEFAULT_TEMPLATE, PromptTemplate, load_template, render_messages, request_hash
from slicelab.service.samples import Document, EvalSample, Status
from slicelab.service.taxonomy import Kind, Taxonomy, load_taxonomy

if TYPE_CHECKING:  # the exemplar index needs scikit-learn: imported only by judges that show exemplars
    from slicelab.service.exemplars import ExemplarIndex


@dataclass
class Attempt:
    """What one request to the judge returned.

    Attributes:
        text: the raw reply text ("" when there was none).
        finish_reason: ``"stop"``, ``"length"``... as reported by the backend, or None.
        prompt_tokens, completion_tokens: token usage of this request.
        error_status: set when the transport failed (``judge_error``) or the prompt
            did not fit (``input_too_long``); such attempts are not parsed.
        error: human-readable detail of that failure.
        transient: the failure may pass on retry (5xx, 408/409/429, connection refused,
            timeout); see :mod:`service.judge.resilience`.
        max_tokens: the output-token budget this request was sent with (None: not reported).
    """

    text: str = ""
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error_status: Status | None = None
    error: str | None = None
    transient: bool = False
    max_tokens: int | None = None


class Request(tuple):
    """What :meth:`Judge.label_steps` asks to send: ``(messages, label_model)``.

    Unpacks as that pair; ``options`` holds keyword arguments for ``_send``
    (``{"max_tokens": n}`` when an attempt needs another output budget than the judge's).
    """

    options: dict[str, Any]

    def __new__(cls, messages: list[dict[str, str]], model_cls: type[BaseModel], **options: Any) -> "Request":
        self = super().__new__(cls, (messages, model_cls))
        self.options = {k: v for k, v in options.items() if v is not None}
        return self


@dataclass
class JudgeResult:
    """The outcome of labeling one item (one output row's judge fields).

    Attributes:
        status: exactly one :class:`Status`.
        labels: the validated label dict (taxonomy ids), or None unless labeled.
        raw_texts: the raw reply of every attempt, in order.
        finish_reason: of the last attempt.
        prompt_tokens, completion_tokens: summed over attempts.
        attempts: number of requests sent.
        model, backend: which judge answered.
        error: why the status is not ``labeled`` (None when labeled).
        latency_s: wall-clock seconds over all attempts.
        request_hash: sha256 prefix of the messages + response format sent.
        prompt_ref: ``template_id@version``.
        failure_mode_source: ``"rule: <check>"`` or ``"judge"`` when a failure_mode was set.
        max_tokens: the output-token budget of the last attempt (twice the judge's after a
            truncated reply, see :meth:`Judge.label_steps`); None when not reported.
    """

    status: Status
    labels: dict[str, Any] | None
    raw_texts: list[str]
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    attempts: int
    model: str
    backend: str
    error: str | None
    latency_s: float
    request_hash: str
    prompt_ref: str
    failure_mode_source: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    max_tokens: int | None = None


@lru_cache(maxsize=64)
def response_format(model_cls: type[BaseModel]) -> dict[str, Any]:
    """The OpenAI ``response_format`` (json_schema) for a label model (computed once per model; do not mutate)."""
    return {
        "type": "json_schema",
        "json_schema": {"name": model_cls.__name__, "schema": model_cls.model_json_schema(), "strict": True},
    }


_FENCED = re.compile(r"\A\s*```[A-Za-z0-9_-]*[ \t]*\n(.*?)\n?[ \t]*```\s*\Z", re.S)


def parse_reply(text: str, finish_reason: str | None, model_cls: type[BaseModel]) -> tuple[dict | None, Status, str | None]:
    """Validate one reply against the label model.

    finish_reason is checked first: a reply stopped by the length limit is
    ``truncated`` and not parsed. The reply must be one JSON object and nothing
    else, optionally inside one Markdown code fence (```` ```json ... ``` ````):
    prose around an object ("One option could be {...} but maybe ...") is a hedge,
    not a label, and is ``format_error`` like anything else that is not a valid label.

    Returns:
        ``(labels, status, error)`` where labels is a plain dict when status is labeled.
    """
    if (finish_reason or "").lower() == "length":
        return None, Status.truncated, "reply stopped by the max_tokens limit before the JSON closed"
    if not text or not text.strip():
        return None, Status.format_error, "empty reply"
    fenced = _FENCED.match(text)
    body = fenced.group(1) if fenced else text
    try:
        data = json.loads(body)
    except json.JSONDecodeError as e:
        where = "text around the JSON object" if "{" in body and "}" in body else "not JSON"
        return None, Status.format_error, (f"reply is not JSON ({where}; the whole reply must be one JSON "
                                           f"object, optionally in a code fence): {e}")
    if not isinstance(data, dict):
        return None, Status.format_error, f"reply is JSON {type(data).__name__}, expected an object"
    return validate_labels(data, model_cls)


def validate_labels(data: dict[str, Any], model_cls: type[BaseModel], *, what: str = "reply",
                    field: str = "") -> tuple[dict | None, Status, str | None]:
    """Validate a parsed reply against the label model: ``(labels, labeled, None)`` or
    ``(None, format_error, "<what> does not match the taxonomy: <field><location>: <problem>; ...")``."""
    try:
        labels = model_cls.model_validate(data)
    except ValidationError as e:
        errs = "; ".join(f"{field}{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors()[:5])
        return None, Status.format_error, f"{what} does not match the taxonomy: {errs}"
    return labels.model_dump(), Status.labeled, None


def apply_failure_rules(item: EvalSample | Document, labels: dict | None,
                        source: str) -> tuple[dict | None, str | None]:
    """Let the deterministic failure-mode checks win over a labeler's failure_mode.

    Returns:
        ``(labels, failure_mode_source)``: ``"rule: <check>"`` when a check decided,
        ``source`` when the labeler did, :data:`service.lm_eval_log.MC_NO_OUTPUT` for a wrong
        multiple-choice sample (no generated text), None when no failure mode applies.
    """
    if not (isinstance(item, EvalSample) and item.scored_wrong):
        if isinstance(item, EvalSample) and item.correct is False and item.extra.get("response_type") == LOGLIKELIHOOD:
            return labels, MC_NO_OUTPUT  # wrong, but no generated text whose failure a judge could name
        return labels, None
    rule_mode, rule = deterministic_failure_mode(item)
    if rule_mode is not None:
        if labels is not None:
            labels = {**labels, "failure_mode": rule_mode}
        return labels, f"rule: {rule}"
    return labels, (source if labels is not None else None)


class Judge(ABC):
    """Labels one item at a time with a structured-output LLM.

    Subclasses implement :meth:`_send` (one request) and set ``backend`` and ``model``.

    Args:
        taxonomy: the label vocabulary (default: the bundled v1).
        templates: prompt template id (or path) per kind.
        max_attempts: requests per item when the reply is invalid or truncated.
            Every attempt sends the same messages (the prompt never grows).
        max_tokens: output tokens allowed per reply.
        temperature: sampling temperature.
        exemplars: an index of gold-labeled items; with ``k`` > 0 the ``k`` most
            similar are shown in the prompt (never the item itself).
        k: exemplars per prompt.
        exemplar_settings: what identifies the exemplar pool (gold file hash, split), for ``config()``.
    """

    backend: str = "abstract"
    model: str = ""

    def __init__(
        self,
        *,
        taxonomy: Taxonomy | None = None,
        templates: dict[str, str] | None = None,
        max_attempts: int = defaults.MAX_ATTEMPTS,
        max_tokens: int = defaults.MAX_TOKENS_LABEL,
        temperature: float = defaults.TEMPERATURE,
        exemplars: "ExemplarIndex | None" = None,
        k: int = 0,
        exemplar_settings: dict[str, Any] | None = None,
    ):
        self.taxonomy = taxonomy or load_taxonomy()
        names = DEFAULT_TEMPLATE | (templates or {})
        self.templates: dict[str, PromptTemplate] = {k: load_template(v) for k, v in names.items()}
        self.max_attempts = max(1, max_attempts)
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.exemplars = exemplars if k > 0 else None
        self.k = k if exemplars is not None else 0
        self.exemplar_settings = exemplar_settings or {}

    @abstractmethod
    def _send(self, messages: list[dict[str, str]], model_cls: type[BaseModel]) -> Attempt:
        """Send one request; never raise for server or transport errors (report them)."""

    def parse(self, text: str, finish_reason: str | None, model_cls: type[BaseModel]
              ) -> tuple[dict | None, Status, str | None]:
        """Validate one reply (a JSON object, see :func:`parse_reply`); backends with another output form override it."""
        return parse_reply(text, finish_reason, model_cls)

    def config(self) -> dict[str, Any]:
        """What identifies this judge's labels (hashed into the calibration lookup)."""
        return {
            "backend": self.backend,
            "model": self.model,
            "prompts": {kind: f"{t.ref}#{t.content_hash}" for kind, t in self.templates.items()},
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "exemplars": {"k": self.k, **self.exemplar_settings} if self.k else None,
            **self.taxonomy.provenance(),
        }

    def config_hash(self) -> str:
        """sha256 prefix of :meth:`config`: the key calibration records are looked up by."""
        return hashlib.sha256(json.dumps(self.config(), sort_keys=True).encode()).hexdigest()[:16]

    def build_request(self, item: EvalSample | Document) -> tuple[list[dict[str, str]], type[BaseModel], str, list[str]]:
        """Messages, label model, request hash and exemplar ids for one item (pure)."""
        kind: Kind = "eval" if isinstance(item, EvalSample) else "document"
        with_fm = isinstance(item, EvalSample) and item.scored_wrong
        model_cls = self.taxonomy.label_model(kind, with_failure_mode=with_fm)
        same_kind = self.exemplars is not None and isinstance(item, type(self.exemplars.items[0]))
        shown = self.exemplars.nearest(item, self.k) if same_kind else []
        if shown:
            from slicelab.service.exemplars import prompt_exemplars
        messages = render_messages(self.templates[kind], self.taxonomy, item, with_failure_mode=with_fm,
                                   exemplars=prompt_exemplars(shown, list(model_cls.model_fields)) if shown else [])
        return messages, model_cls, request_hash(messages, response_format(model_cls)), [e.id for e in shown]

    def label(self, item: EvalSample | Document) -> JudgeResult:
        """Label one item. Never raises for judge-side problems: they become a status."""
        steps = self.label_steps(item)
        try:
            request = next(steps)
            while True:
                request = steps.send(self.send_request(request))
        except StopIteration as done:
            return done.value

    def send_request(self, request: Request) -> Attempt:
        """Send one :class:`Request` with :meth:`_send`, with its ``options`` when ``_send`` takes them
        (a backend without a ``max_tokens`` parameter answers with its own budget, which its attempt reports)."""
        if request.options and "max_tokens" in inspect.signature(self._send).parameters:
            return self._send(*request, **request.options)
        return self._send(*request)

    def label_many(self, items: list[EvalSample | Document],
                   deadline: float | None = None) -> list[JudgeResult | None]:
        """Label several items; results in input order (one per item).

        The default labels them one after another; backends that keep several
        requests in flight override it. Never raises for judge-side problems.

        Args:
            deadline: ``time.monotonic()`` after which no item is started; an item
                not labeled by then gets None instead of a result.
        """
        return [None if deadline is not None and time.monotonic() >= deadline else self.label(item)
                for item in items]

    def label_steps(self, item: EvalSample | Document) -> Generator[Request, Attempt, JudgeResult]:
        """The attempt loop of one item, independent of how requests are sent.

        Yields a :class:`Request` ``(messages, label_model)`` for each request to
        send (the same messages every attempt, so the prompt never grows) and
        takes the :class:`Attempt` it got back; returns the :class:`JudgeResult`.
        Up to ``max_attempts`` requests; a reply cut by the length limit is asked
        for once more with twice the ``max_tokens`` budget (``options``), and a
        second cut ends the item as ``truncated``.
        """
        kind = "eval" if isinstance(item, EvalSample) else "document"
        messages, model_cls, rhash, exemplar_ids = self.build_request(item)
        t0 = time.perf_counter()
        raw: list[str] = []
        ptok = ctok = 0
        labels, status, error, finish, budget = None, Status.judge_error, "no attempt made", None, None
        doubled: int | None = None
        n = 0
        while True:
            n += 1
            a = yield Request(messages, model_cls, max_tokens=doubled)
            raw.append(a.text)
            ptok += a.prompt_tokens
            ctok += a.completion_tokens
            finish, budget = a.finish_reason, a.max_tokens
            if a.error_status is not None:
                status, error = a.error_status, a.error
                break  # transport retries live in the backend; a prompt that does not fit never will
            labels, status, error = self.parse(a.text, a.finish_reason, model_cls)
            if status == Status.labeled:
                break
            if status == Status.truncated:
                if doubled is not None:
                    error = f"reply stopped by the max_tokens limit again with twice the budget ({doubled} tokens)"
                    break
                doubled = 2 * self.max_tokens
                continue
            if n >= self.max_attempts:
                break
        labels, fm_source = apply_failure_rules(item, labels, "judge")
        return JudgeResult(
            status=status,
            labels=labels,
            raw_texts=raw,
            finish_reason=finish,
            prompt_tokens=ptok,
            completion_tokens=ctok,
            attempts=n,
            model=self.model,
            backend=self.backend,
            error=error,
            latency_s=time.perf_counter() - t0,
            request_hash=rhash,
            prompt_ref=self.templates[kind].ref,
            failure_mode_source=fm_source,
            extra={"exemplar_k": self.k, "exemplar_ids": exemplar_ids},
            max_tokens=budget,
        )
