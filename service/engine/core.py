"""The job engine: enqueue units of work on RQ, follow them, redo what is lost, until every unit is done.

One engine serves label runs (a unit is a chunk number), shard runs (a unit is a
:class:`service.shard_store.RangeJob`) and REST jobs. The run folder is the source of
truth: a unit is done iff its completion marker exists (:func:`service.store.commit_part`),
so whatever happens in Redis, pending work is "units without a marker".

A unit's job is lost, and the unit enqueued again, when:

============================================  =====================  =========================
what happened                                 noticed by             counts toward the limit
============================================  =====================  =========================
its job vanished (Redis flushed or restarted  job hash missing       no
without the job)
Redis did not answer for a while              connection error       no (every pending unit is
                                                                     enqueued anew once it
                                                                     answers)
its job failed, was stopped or canceled       job status             yes
its job finished but wrote no marker          job status + marker    yes
its worker died (SIGKILL, OOM, machine lost)  heartbeat expired      yes
                                              (:mod:`.liveness`) or
                                              local process exit
============================================  =====================  =========================

A unit lost :data:`MAX_REQUEUES` + 1 times (counted ones) stops the run with an error naming
the unit and the last failure. A unit done twice (its first job was alive after all) is
written once: tasks skip a unit whose marker exists and parts are replaced atomically.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis.exceptions
from redis import Redis
from rq import Queue
from rq.job import Job, JobStatus

from slicelab.service.engine import liveness
from slicelab.service.engine.local import LocalWorkers
from slicelab.service.errors import ConfigError

#: Times a unit is enqueued again after its job failed or its worker died.
MAX_REQUEUES = 3
#: Seconds between two checks of the pending units.
POLL_S = 0.5
#: Redis errors that mean "Redis does not answer now" (wait and reconcile), not a bug.
REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


def report_every_s() -> float:
    """Seconds between two "workers alive / waiting" lines of a waiting command
    (``SLICELAB_REPORT_S``, default 30)."""
    return float(os.environ.get("SLICELAB_REPORT_S") or 30)


class MarkerStore(Protocol):
    """A run folder that knows which units are done (both run stores implement it)."""

    def is_done(self, unit: Any) -> bool: ...

    def marker(self, unit: Any) -> dict[str, Any]: ...


@dataclass
class Work:
    """What to run: the units, their store, and how to enqueue one.

    Attributes:
        store: the run folder (``is_done``/``marker`` per unit).
        units: every unit of the run (done ones included).
        enqueue: ``enqueue(queue, unit) -> rq.job.Job``.
        label: how a unit is named in messages, e.g. ``"chunk 3"``.
        key: a unit's JSON-safe key (for saved state, e.g. a REST job's ``job.json``).
        where: the run folder, named in errors.
    """

    store: MarkerStore
    units: list[Hashable]
    enqueue: Callable[[Queue, Any], Job]
    label: Callable[[Any], str]
    key: Callable[[Any], str] = str
    where: str = ""


@dataclass
class Engine:
    """Follows one run's units on one RQ queue.

    Args:
        work: the run's units and store.
        connection: Redis.
        queue_name: the queue units are enqueued on (a run queue when ``workers`` are local).
        workers: this command's local workers (replaced when they die), or None.
        jobs: unit key → RQ job id of its current job (saved state; None: nothing enqueued yet).
        requeues: unit key → counted re-enqueues so far (saved state).
        events: what was re-enqueued and why (saved state), newest last.
    """

    work: Work
    connection: Redis
    queue_name: str
    workers: LocalWorkers | None = None
    jobs: dict[str, str | None] = field(default_factory=dict)
    requeues: dict[str, int] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    #: Units whose job runs on a live worker, as of the last :meth:`step`.
    running: int = field(default=0, init=False)
    _dead: set[str] = field(default_factory=set, init=False, repr=False)

    def __post_init__(self) -> None:
        self.queue = Queue(self.queue_name, connection=self.connection)

    def pending(self) -> list[Any]:
        """Units without a completion marker."""
        return [u for u in self.work.units if not self.work.store.is_done(u)]

    def step(self, *, reconcile: bool = False) -> list[Any]:
        """One pass: enqueue pending units that have no live job; top up local workers.

        Args:
            reconcile: enqueue every pending unit anew (after Redis was unreachable: the queue
                may have lost jobs).

        Returns:
            The units still pending before this pass.

        Raises:
            ConfigError: a unit was lost more than MAX_REQUEUES times, or local workers keep dying.
            redis.exceptions.ConnectionError, redis.exceptions.TimeoutError: Redis does not answer.
        """
        pending = self.pending()
        if self.workers:
            self._dead |= self.workers.reap()
            if self.workers.deaths > 4 * max(1, self.workers.n) + MAX_REQUEUES:
                raise ConfigError(f"local workers keep dying; see {self.workers.log_path}")
        if reconcile:
            for u in pending:
                if self.jobs.get(self.work.key(u)):
                    self._event(u, "Redis was unreachable: enqueued again", job_id=self.jobs[self.work.key(u)])
                self.jobs[self.work.key(u)] = None
        self.running = 0
        current = self._fetch_jobs(pending)
        for u in pending:
            self._check(u, current.get(self.work.key(u)))
        if self.workers and pending and self.queue.count:
            self.workers.start()
        return pending

    def _fetch_jobs(self, units: list[Any]) -> dict[str, Job | None]:
        """Unit key → its current RQ job (None: vanished from Redis), for the units that have one,
        read in one pipelined round trip.

        Raises:
            redis.exceptions.ConnectionError, redis.exceptions.TimeoutError: Redis does not answer.
        """
        keys = [self.work.key(u) for u in units]
        ids = {key: self.jobs[key] for key in keys if self.jobs.get(key) is not None}
        with self.connection.pipeline(transaction=False) as pipe:
            for job_id in ids.values():
                pipe.hgetall(Job.key_for(job_id))
            hashes = pipe.execute()
        jobs: dict[str, Job | None] = {}
        for (key, job_id), data in zip(ids.items(), hashes):
            jobs[key] = None
            if data:
                try:
                    job = Job(job_id, connection=self.connection)
                    job.restore(data)
                    jobs[key] = job
                except Exception:  # noqa: BLE001 - a hash that no longer reads as a job
                    pass
        return jobs

    def _check(self, unit: Any, job: Job | None) -> None:
        key = self.work.key(unit)
        job_id = self.jobs.get(key)
        if job_id is not None:
            reason, counted, detail = self._lost(unit, job)
            if reason is None:
                return
            if counted:
                self.requeues[key] = self.requeues.get(key, 0) + 1
                if self.requeues[key] > MAX_REQUEUES:
                    raise ConfigError(f"{self.work.label(unit)} of run {self.work.where} was lost "
                                      f"{MAX_REQUEUES + 1} times; last: {reason}" + (f": {detail}" if detail else ""))
            self._event(unit, reason, detail, job_id)
        self.jobs[key] = self.work.enqueue(self.queue, unit).id

    def _lost(self, unit: Any, job: Job | None) -> tuple[str | None, bool, str | None]:
        """``(reason, counted, detail)`` when the unit's job (None: vanished) is lost, ``(None, False, None)`` otherwise."""
        if job is None:
            return "its job vanished from Redis", False, None
        status = job.get_status(refresh=False)
        if status in (JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED):
            result = job.latest_result() if status == JobStatus.FAILED else None
            return f"its job {status.value}", True, ((getattr(result, "exc_string", None) or "")[-500:] or None)
        if status == JobStatus.FINISHED and not self.work.store.is_done(unit):
            return "its job finished without writing a completion marker", True, None
        if status == JobStatus.STARTED:
            worker = job.worker_name
            if worker and (worker in self._dead or not liveness.is_alive(self.connection, worker)):
                return f"its worker {worker} died", True, None
            self.running += 1
        return None, False, None

    def _event(self, unit: Any, reason: str, detail: str | None = None, job_id: str | None = None) -> None:
        self.events.append({"unit": self.work.key(unit), "what": self.work.label(unit), "reason": reason, "job": job_id,
                            **({"detail": detail} if detail else {}),
                            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        del self.events[:-100]  # the newest hundred are enough to explain a run

    def describe(self, noun: str = "chunk") -> str:
        """One line: workers alive on the queue and what is waiting (or that no worker is alive).

        Raises:
            redis.exceptions.ConnectionError: Redis does not answer.
        """
        alive = liveness.alive_workers(self.connection, self.queue_name)
        done = len(self.work.units) - len(self.pending())
        counts = (f"{self.queue.count} {noun}(s) queued, {self.running} running, "
                  f"{done}/{len(self.work.units)} done")
        if not alive and not self.running:
            return (f"no worker is alive on queue {self.queue_name}: start `slicelab worker --queue "
                    f"{self.queue_name}` with REDIS_URL set to this Redis; still waiting ({counts})")
        return f"{len(alive)} worker(s) alive on queue {self.queue_name}; {counts}"

    def close(self) -> None:
        """Forget a finished run's own queue (``slicelab:run:...``) in Redis; a shared queue is left alone."""
        if not self.queue_name.startswith("slicelab:run:"):
            return
        try:
            self.queue.delete(delete_jobs=True)  # only duplicates of finished units can be left in it
        except REDIS_DOWN:
            pass

    def state(self) -> dict[str, Any]:
        """The saved state (``jobs``, ``requeues``, ``events``): give it back to a later Engine."""
        return {"jobs": dict(self.jobs), "requeues": dict(self.requeues), "events": list(self.events)}


def wait(engine: Engine, *, on_progress: Callable[[int], None] | None = None,
         on_status: Callable[[str], None] | None = None, on_report: Callable[[str], None] | None = None,
         noun: str = "chunk") -> None:
    """Run :meth:`Engine.step` until every unit has its marker.

    While Redis does not answer, the wait goes on; when it answers again, every pending
    unit is enqueued anew (:meth:`Engine.step` with ``reconcile``). The run's own queue is
    forgotten at the end (:meth:`Engine.close`).

    Args:
        on_progress: called with the rows (markers' ``rows``) of units finished since the last call.
        on_status: called with a short line when the state changes: Redis unreachable, judge
            paused by open circuit breakers, or ``""`` when normal.
        on_report: called every :func:`report_every_s` seconds (first after at most 10 s) with
            :meth:`Engine.describe`: workers alive and what is waiting, or that no worker is alive.
        noun: what a unit is called in the report line.

    Raises:
        ConfigError: see :meth:`Engine.step`.
    """
    from slicelab.service.judge.resilience import paused_workers

    store = engine.work.store
    seen = {engine.work.key(u) for u in engine.work.units if store.is_done(u)}
    status, redis_down = "", False
    next_report = time.monotonic() + min(10.0, report_every_s())
    while True:
        new = [u for u in engine.work.units if engine.work.key(u) not in seen and store.is_done(u)]
        seen |= {engine.work.key(u) for u in new}
        if on_progress and new:
            on_progress(sum(store.marker(u)["rows"] for u in new))
        if len(seen) == len(engine.work.units):
            engine.close()
            return
        try:
            engine.step(reconcile=redis_down)
            paused = paused_workers(engine.connection)
            new_status = (f"judge paused: circuit open on {len(paused)} worker(s), waiting for "
                          f"{paused[0].get('judge')} to answer" if paused else "")
            redis_down = False
            if on_report and time.monotonic() >= next_report:
                on_report(engine.describe(noun))
                next_report = time.monotonic() + report_every_s()
        except REDIS_DOWN as e:
            new_status, redis_down = f"Redis does not answer ({type(e).__name__}); waiting for it", True
        if on_status and new_status != status:
            on_status(new_status)
        status = new_status
        time.sleep(POLL_S)
