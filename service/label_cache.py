"""Label cache in Redis: a repeated sample, a re-run or another benchmark sharing items costs no judge call.

A label is keyed by ``(normalized content hash of the item, request hash, judge
configuration hash)``:

- the content hash covers every item field that can change a label (question,
  reference, model output, correctness, finish reason, benchmark, task), after
  Unicode NFC, line-ending and surrounding-space normalization; ids and source
  positions are left out, so the same sample under another id or file is a hit;
  it also covers fields the prompt does not show (a model output scored right,
  the extracted answer), which the deterministic failure-mode rules read;
- the request hash is the sha256 prefix of the exact messages and response
  format sent (prompt template, exemplars, schema, the item's text as
  rendered), so two items share a label only when the judge would see the
  same request;
- the configuration hash is :meth:`Judge.config_hash` (backend, model, server
  URL, prompt templates, taxonomy, max_tokens, temperature, exemplar pool).
  Settings that do not change labels (concurrency) are not part of it.

Only results with status ``labeled`` are stored: a failure is retried the next
time. Only greedy judges (temperature 0) are cached: sampled labels must differ
per request. The value is the judge result itself (labels, raw replies, token
counts, latency of the call that produced it), so a row built from a hit is
identical to the row of the original call except ``cache_hit``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import unicodedata
from typing import Any, Iterable

from redis import Redis

from slicelab.service import defaults
from slicelab.service.judge.base import Judge, JudgeResult
from slicelab.service.samples import Document, EvalSample, Status

#: Prefix of every cache key in Redis.
KEY_PREFIX = "slicelab:label:"
_CONTENT_FIELDS = {
    "eval": ("benchmark", "task", "question", "reference_answer", "model_output", "extracted_answer", "correct",
             "finish_reason"),
    "document": ("text", "source", "url"),
}


def _normalize(value: Any) -> Any:
    if isinstance(value, str):
        return unicodedata.normalize("NFC", value.replace("\r\n", "\n").replace("\r", "\n")).strip()
    return value


def content_hash(item: EvalSample | Document) -> str:
    """sha256 prefix (16 hex digits) of the item's normalized label-relevant fields (not its id)."""
    kind = "eval" if isinstance(item, EvalSample) else "document"
    data = {name: _normalize(getattr(item, name)) for name in _CONTENT_FIELDS[kind]}
    blob = json.dumps({"kind": kind, **data}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def cache_key(item: EvalSample | Document, request_hash: str, config_hash: str) -> str:
    """The Redis key of one item's label under one judge configuration."""
    return f"{KEY_PREFIX}{config_hash}:{request_hash}:{content_hash(item)}"


def cacheable(judge: Any) -> bool:
    """True for LLM judges whose labels are reproducible (temperature 0)."""
    return isinstance(judge, Judge) and judge.temperature == 0


def encode(result: JudgeResult) -> str:
    """JSON text of a judge result (every field)."""
    return json.dumps(dataclasses.asdict(result) | {"status": str(result.status)}, ensure_ascii=False)


def decode(text: str | bytes) -> JudgeResult:
    """The judge result :func:`encode` wrote.

    Raises:
        ValueError: the text is not an encoded judge result (names the missing field).
    """
    data = json.loads(text)
    names = {f.name for f in dataclasses.fields(JudgeResult)}
    missing = sorted(n for n in names if n not in data and n not in ("failure_mode_source", "extra"))
    if missing:
        raise ValueError(f"label cache: stored value lacks field {missing[0]!r}")
    data["status"] = Status(data["status"])
    return JudgeResult(**{k: v for k, v in data.items() if k in names})


class LabelCache:
    """Judge results in Redis under :func:`cache_key` keys.

    Args:
        connection: the run's Redis.
        ttl_s: seconds an entry lives; reading it does not extend it.
    """

    def __init__(self, connection: Redis, ttl_s: int = defaults.LABEL_CACHE_TTL_S):
        self.connection = connection
        self.ttl_s = ttl_s

    def get_many(self, keys: list[str]) -> list[JudgeResult | None]:
        """One MGET; None where there is no entry (or an unreadable one)."""
        if not keys:
            return []
        out: list[JudgeResult | None] = []
        for raw in self.connection.mget(keys):
            try:
                out.append(decode(raw) if raw is not None else None)
            except (ValueError, TypeError):
                out.append(None)
        return out

    def put_many(self, entries: Iterable[tuple[str, JudgeResult]]) -> int:
        """Store the ``labeled`` results (one pipeline); return how many were stored."""
        pipe = self.connection.pipeline(transaction=False)
        n = 0
        for key, result in entries:
            if result.status == Status.labeled:
                pipe.set(key, encode(result), ex=self.ttl_s)
                n += 1
        if n:
            pipe.execute()
        return n


def job_cache(judge: Any, enabled: bool = True) -> LabelCache | None:
    """The label cache on the Redis of the RQ job running now.

    None when ``enabled`` is False (``--no-cache``), the judge is not :func:`cacheable`, or no RQ
    job is running (labeling in-process).
    """
    if not enabled or not cacheable(judge):
        return None
    from rq import get_current_job

    job = get_current_job()
    return LabelCache(job.connection) if job is not None else None


class CachedJudge:
    """A judge whose :meth:`label` answers from a :class:`LabelCache` first and stores what it labels.

    A result from the cache has ``extra["cache_hit"] = True``; every other attribute is the judge's.
    """

    def __init__(self, judge: Judge, cache: LabelCache):
        self.judge = judge
        self.cache = cache

    def __getattr__(self, name: str) -> Any:
        return getattr(self.judge, name)

    def label(self, item: EvalSample | Document) -> JudgeResult:
        """The cached label of ``item``, else the judge's (stored when ``labeled``)."""
        try:
            _, _, request_hash, _ = self.judge.build_request(item)
        except Exception:  # the judge reports it as this item's error
            return self.judge.label(item)
        key = cache_key(item, request_hash, self.judge.config_hash())
        hit = self.cache.get_many([key])[0]
        if hit is not None:
            hit.extra = {**hit.extra, "cache_hit": True}
            return hit
        result = self.judge.label(item)
        self.cache.put_many([(key, result)])
        return result
