"""Label one chunk of a run folder: read its items, label them, write its Parquet part and marker.

The core of the ``slicelab.workers.tasks.label_chunk`` RQ task, also run in-process by an
inline calibration. The labeler is the one the run's manifest describes (built once per
process, :func:`service.labeler_factory.make_judge`). Labeling a chunk is idempotent: a chunk already
marked done is skipped, and redoing a chunk rewrites the same single part.
"""

from __future__ import annotations

import inspect
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

from rq import get_current_job

from slicelab.service.job_deadline import is_job_timeout, job_deadline, timed_out_result
from slicelab.service.judge import Judge, JudgeResult
from slicelab.service.label_cache import LabelCache, cache_key, job_cache
from slicelab.service.labeler_factory import make_judge
from slicelab.service.output import labeled_row
from slicelab.service.samples import Document, EvalSample, Status
from slicelab.service.store import RunStore
from slicelab.service.taxonomy import load_taxonomy
from slicelab.service.throughput import shared_prefix_chars, write_chunk_stats


def label_chunk(run_dir: str, chunk: int) -> dict:
    """Label one chunk of a run and store its part.

    Items whose label is in the run's Redis label cache (see
    :mod:`service.label_cache`; off when the manifest's options hold
    ``"cache": false``) cost no judge call; the others go to the judge together
    (:meth:`Judge.label_many`, several requests in flight on the openai backend)
    and their ``labeled`` results are cached. The RQ job running this call, if any, gives
    the time limit (items left when it runs out get ``judge_error``) and the cache's Redis.

    Args:
        run_dir: the run folder (:class:`service.store.RunStore`).
        chunk: the chunk number.

    Returns:
        ``{"chunk", "rows", "skipped", "status_counts"}`` (also kept in the marker file).
    """
    store = RunStore(Path(run_dir))
    if store.is_done(chunk):
        return {"chunk": chunk, "skipped": True, **store.marker(chunk)}
    cpu0, wall0 = time.process_time(), time.perf_counter()
    manifest = store.manifest()
    judge = make_judge(manifest["judge"])
    taxonomy = load_taxonomy()
    provenance = {**taxonomy.provenance(), "code_version": manifest["code_version"], "run_key": manifest["run_key"]}
    items = store.read_chunk(chunk)
    cache = _cache_for(judge, manifest)
    job = get_current_job()
    timeout_s = float(job.timeout) if job is not None and job.timeout and job.timeout > 0 else None
    deadline = job_deadline(timeout_s, _job_started(job))
    results, stats = label_items(judge, items, cache, deadline=deadline, timeout_s=timeout_s)
    rows = [labeled_row(item, result, taxonomy, provenance) for item, result in zip(items, results)]
    stats |= {"cpu_s": time.process_time() - cpu0, "wall_s": time.perf_counter() - wall0}
    write_chunk_stats(store, chunk, stats)
    store.write_part(chunk, rows)
    return {"chunk": chunk, "skipped": False, **store.marker(chunk)}


def _job_started(job) -> float:
    """``time.monotonic()`` of the moment RQ started the job (its timeout counts from then), else now."""
    now = time.monotonic()
    started_at = getattr(job, "started_at", None)
    if started_at is None:
        return now
    if started_at.tzinfo is None:  # rq stores naive UTC
        started_at = started_at.replace(tzinfo=timezone.utc)
    return now - max(0.0, (datetime.now(timezone.utc) - started_at).total_seconds())


def label_items(judge, items: list[EvalSample | Document], cache: LabelCache | None = None, *,
                deadline: float | None = None,
                timeout_s: float | None = None) -> tuple[list[JudgeResult], dict[str, int]]:
    """Label items in order, taking what the cache holds and sending the rest to the judge.

    Never raises for an item: an exception in the judge becomes that item's
    ``judge_error``. A result taken from the cache has ``extra["cache_hit"] = True``.
    Items not labeled by ``deadline`` (``time.monotonic()``; the RQ job's timeout
    ``timeout_s`` less a margin) get ``judge_error`` saying the job's time ran out
    (:mod:`service.job_deadline`); they are not cached.

    Returns:
        ``(results, counters)``: one result per item; counters ``items``,
        ``cache_hits``, ``judge_items`` (items whose request reached the judge:
        not those an open circuit breaker refused, see :func:`never_sent`),
        ``prompt_chars`` and ``shared_prefix_chars`` (of the items sent to the
        judge, see :mod:`service.throughput`).
    """
    keys: list[str | None] = [None] * len(items)
    prompts: list[list[dict[str, str]] | None] = [None] * len(items)
    prompt_chars = shared_chars = 0
    if isinstance(judge, Judge):
        config = judge.config_hash()
        for i, item in enumerate(items):
            try:
                messages, _, rhash, _ = judge.build_request(item)
            except Exception:  # the judge reports it as this item's error below
                continue
            keys[i], prompts[i] = cache_key(item, rhash, config), messages
    hits = cache.get_many([k for k in keys if k]) if cache else []
    results: list[JudgeResult | None] = [None] * len(items)
    found = iter(hits)
    for i, key in enumerate(keys):
        if cache and key:
            hit = next(found)
            if hit is not None:
                hit.extra = {**hit.extra, "cache_hit": True}
                results[i] = hit
    todo = [i for i, r in enumerate(results) if r is None]
    for i, result in zip(todo, _judge_all(judge, [items[i] for i in todo], deadline, timeout_s)):
        results[i] = result
    if cache:
        cache.put_many((keys[i], results[i]) for i in todo if keys[i] and not results[i].extra.get("timed_out"))
    sent = [i for i in todo if not never_sent(results[i])]
    for i in sent:
        if prompts[i] is not None:
            shared, total = shared_prefix_chars(judge, items[i], prompts[i])
            shared_chars += shared
            prompt_chars += total
    counters = {"items": len(items), "cache_hits": len(items) - len(todo), "judge_items": len(sent),
                "prompt_chars": prompt_chars, "shared_prefix_chars": shared_chars}
    return results, counters


def never_sent(result: JudgeResult) -> bool:
    """Whether an item's request never reached the judge: its only attempt was refused by an open
    circuit breaker (``judge_error`` "... circuit open ... re-run to retry")."""
    error = result.error or ""
    if result.extra.get("timed_out"):
        return True  # the job's time ran out before its request went out (or it was cancelled)
    return result.status == Status.judge_error and result.attempts <= 1 and "circuit open" in error


def _judge_all(judge, items: list[EvalSample | Document], deadline: float | None = None,
               timeout_s: float | None = None) -> list[JudgeResult]:
    """``judge.label_many`` when it exists, item by item when it raises (a bug must not lose a sample).

    RQ's job timeout is never swallowed (re-raised); items left when ``deadline`` passes get
    :func:`~service.job_deadline.timed_out_result`.
    """
    if not items:
        return []
    if hasattr(judge, "label_many"):
        try:
            takes = "deadline" in inspect.signature(judge.label_many).parameters
            results = judge.label_many(items, deadline=deadline) if takes else judge.label_many(items)
            return [r if r is not None else timed_out_result(judge, timeout_s) for r in results]
        except Exception as e:
            if is_job_timeout(e):
                raise
    return [timed_out_result(judge, timeout_s) if deadline is not None and time.monotonic() >= deadline
            else _label_one(judge, item) for item in items]


def _label_one(judge, item: EvalSample | Document) -> JudgeResult:
    try:
        return judge.label(item)
    except Exception as e:  # recorded as a judge error on the item's row
        if is_job_timeout(e):
            raise
        return JudgeResult(
            status=Status.judge_error, labels=None, raw_texts=[], finish_reason=None,
            prompt_tokens=0, completion_tokens=0, attempts=0, model=judge.model, backend=judge.backend,
            error=f"{type(e).__name__}: {e} | {traceback.format_exc(limit=3)}", latency_s=0.0,
            request_hash="", prompt_ref="",
        )


def _cache_for(judge, manifest: dict) -> LabelCache | None:
    """The run's label cache: Redis of the RQ job running this task; None when off or not cacheable."""
    return job_cache(judge, manifest.get("options", {}).get("cache", True))
