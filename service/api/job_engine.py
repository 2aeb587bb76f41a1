"""REST bulk jobs (``POST /v1/jobs``) on the job engine: their state is derived, never stuck.

A REST job is a label run (:mod:`service.runner`) whose chunks go to the shared queue the
``slicelab worker`` processes listen on. Its ``job.json`` keeps the engine's saved state
(current RQ job per chunk, counted re-enqueues, what was re-enqueued and why). Each time its
state is read (``GET /v1/jobs/{id}`` or its results), the engine makes one pass
(:meth:`service.engine.Engine.step`, which reads the RQ jobs of all unfinished chunks in one
pipelined Redis round trip): a chunk whose job vanished (Redis flushed), failed, or
whose worker died (no heartbeat for 30 s) is enqueued again, so the job finishes once a worker
is available. After Redis did not answer, the next pass enqueues every unfinished chunk anew.
"""

from __future__ import annotations

from typing import Any, Callable

from redis import Redis

from slicelab.service.defaults import QUEUE_NAME
from slicelab.service.engine import REDIS_DOWN, Engine, liveness
from slicelab.service.errors import ConfigError
from slicelab.service.runner import chunk_work
from slicelab.service.store import RunStore


def start_engine(job: dict[str, Any], store: RunStore, conn: Redis) -> None:
    """Enqueue the job's pending chunks on ``job["queue"]``; keep the engine state in ``job``.

    Raises:
        redis.exceptions.ConnectionError: Redis does not answer.
    """
    engine = _engine(job, store, conn)
    engine.step()
    _save(job, engine)


def advance(job: dict[str, Any], store: RunStore, redis: Callable[[], Redis]) -> dict[str, Any]:
    """One engine pass over an unfinished job, then its state (``job`` is updated in place: save it).

    Returns:
        ``{"id", "state", "counts", "progress", "errors", "requeued", "workers_alive", "created_at"}``
        (plus ``"note"`` when no worker is alive or Redis does not answer); ``state`` is one of
        ``queued``, ``running``, ``finished``, ``canceled``, ``failed`` (a chunk was lost more than
        MAX_REQUEUES times: see ``errors``).
    """
    done = store.done_chunks()
    finished = len(done) == job["n_chunks"]
    engine, note, alive = None, None, None
    if not finished and not job.get("canceled") and not job.get("failed"):
        try:
            conn = redis()
            engine = _engine(job, store, conn)
            engine.step(reconcile=bool(job.get("redis_down")))
            job["redis_down"] = False
            alive = len(liveness.alive_workers(conn, engine.queue_name))
            if not alive and not engine.running:
                note = (f"no worker is alive on queue {job['queue']}; the job waits for one "
                        f"(`slicelab worker --queue {job['queue']}`)")
        except REDIS_DOWN as e:
            job["redis_down"] = True
            note = f"Redis does not answer ({type(e).__name__}); the job goes on when it does"
        except ConfigError as e:
            job["failed"] = str(e)
        if engine is not None:
            _save(job, engine)
        done = store.done_chunks()
        finished = len(done) == job["n_chunks"]
    return _describe(job, store, done, finished, engine, alive, note)


def _describe(job: dict[str, Any], store: RunStore, done: set[int], finished: bool, engine: Engine | None,
              alive: int | None, note: str | None) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for c in done:
        for status, n in store.marker(c)["status_counts"].items():
            counts[status] = counts.get(status, 0) + n
    if job["n_rejected"]:
        counts["rejected_input"] = counts.get("rejected_input", 0) + job["n_rejected"]
    events = job.get("engine", {}).get("events", [])
    errors = [{"job": e.get("job"), "chunk": int(e["unit"]), "error": e.get("detail") or e["reason"]}
              for e in events if e["reason"].startswith("its job failed")]
    if job.get("failed") and not finished:
        state = "failed"
        errors.append({"job": None, "chunk": None, "error": job["failed"]})
    elif job.get("canceled") and not finished:
        state = "canceled"
    elif finished:
        state = "finished"
    else:
        state = "running" if done or (engine is not None and engine.running) else "queued"
    out = {"id": job["id"], "state": state, "counts": counts,
           "progress": {"chunks_done": len(done), "chunks": job["n_chunks"],
                        "items_done": sum(store.marker(c)["rows"] for c in done), "items": job["n_items"]},
           "errors": errors, "requeued": events, "workers_alive": alive, "created_at": job["created_at"]}
    if note and state in ("queued", "running"):
        out["note"] = note
    return out


def cancel(job: dict[str, Any], redis: Callable[[], Redis]) -> int:
    """Mark the job canceled and cancel its current RQ jobs; return how many were canceled.

    A Redis that does not answer cancels nothing in Redis; the job is still marked canceled
    (its chunks are not enqueued again, and a worker that takes one writes a part no one reads).
    """
    from rq.job import Job

    canceled = 0
    try:
        conn = redis()
        for rq_id in job.get("rq_jobs", []):
            try:
                Job.fetch(rq_id, connection=conn).cancel()
                canceled += 1
            except REDIS_DOWN:
                raise
            except Exception:  # noqa: BLE001 - already finished or expired
                pass
    except REDIS_DOWN:
        pass
    job["canceled"] = True
    return canceled


def _engine(job: dict[str, Any], store: RunStore, conn: Redis) -> Engine:
    job.setdefault("queue", QUEUE_NAME)  # a job.json written before jobs named their queue
    saved = job.get("engine") or {"jobs": _legacy_jobs(job), "requeues": {}, "events": []}
    work = chunk_work(store, list(range(job["n_chunks"])))
    return Engine(work, conn, job["queue"], jobs=dict(saved["jobs"]), requeues=dict(saved["requeues"]),
                  events=list(saved["events"]))


def _legacy_jobs(job: dict[str, Any]) -> dict[str, str]:
    """Chunk → RQ job id from a ``job.json`` written before it kept the engine state
    (ids are ``slicelab-<run_key>-<chunk:05d>-<hex>``)."""
    out = {}
    for rq_id in job.get("rq_jobs", []):
        parts = rq_id.split("-")
        if len(parts) >= 4 and parts[-2].isdigit():
            out[str(int(parts[-2]))] = rq_id
    return out


def _save(job: dict[str, Any], engine: Engine) -> None:
    job["engine"] = engine.state()
    job["rq_jobs"] = [i for i in engine.jobs.values() if i]
