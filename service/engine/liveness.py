"""Which RQ workers are alive: a heartbeat key per worker, refreshed by a thread of the worker.

``slicelab worker`` writes ``slicelab:alive:<worker name>`` (its queues, host and pid) every
:data:`HEARTBEAT_S` seconds with a time-to-live of :data:`dead_after_s` seconds, from a thread
that runs while the worker labels (RQ's ``SimpleWorker`` sends no heartbeat of its own during a
job). A worker killed by any means stops writing, its key expires, and whoever waits on its
job sees within ``dead_after_s`` seconds that the worker is dead, whichever machine or command
started it. The key comes back within one heartbeat after a Redis flush or restart.

A worker that never sent such a heartbeat (a plain ``rq worker``: no ``slicelab:seen:<name>``
key) counts as alive while RQ's own ``last_heartbeat`` of it is younger than
:data:`RQ_HEARTBEAT_GRACE_S` seconds (a forking RQ worker renews it every 30 s while busy).
"""

from __future__ import annotations

import json
import os
import socket
import threading
from datetime import datetime, timezone

import redis.exceptions
from redis import Redis

#: Seconds between two heartbeats of a worker.
HEARTBEAT_S = 5.0
#: Key prefix of the heartbeat keys.
PREFIX = "slicelab:alive:"
#: Key prefix of "this is a slicelab worker" keys (kept a day after the last heartbeat).
SEEN_PREFIX = "slicelab:seen:"
#: Age (seconds) under which RQ's own heartbeat of a non-slicelab worker counts as alive.
RQ_HEARTBEAT_GRACE_S = 90.0


def dead_after_s() -> float:
    """Seconds without a heartbeat after which a worker is dead (``SLICELAB_WORKER_DEAD_S``, default 30)."""
    return float(os.environ.get("SLICELAB_WORKER_DEAD_S") or 30)


def beat(conn: Redis, name: str, queues: list[str]) -> None:
    """Write one heartbeat of worker ``name`` (expires after :func:`dead_after_s` seconds)."""
    info = {"queues": queues, "host": socket.gethostname(), "pid": os.getpid()}
    with conn.pipeline() as pipe:
        pipe.set(PREFIX + name, json.dumps(info), ex=max(1, int(round(dead_after_s()))))
        pipe.set(SEEN_PREFIX + name, "1", ex=86400)
        pipe.execute()


def start_heartbeat(conn: Redis, name: str, queues: list[str]) -> threading.Event:
    """Beat now, then every :data:`HEARTBEAT_S` s from a daemon thread; set the returned event to stop.

    A Redis that does not answer skips beats (the worker's own loop deals with the outage).
    """
    stop = threading.Event()
    beat(conn, name, queues)

    def loop() -> None:
        while not stop.wait(HEARTBEAT_S):
            try:
                beat(conn, name, queues)
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError):
                pass

    threading.Thread(target=loop, name=f"heartbeat-{name}", daemon=True).start()
    return stop


def end_heartbeat(conn: Redis, name: str, stop: threading.Event) -> None:
    """Stop the heartbeat thread and remove the key (a worker that stops normally is gone at once)."""
    stop.set()
    try:
        conn.delete(PREFIX + name, SEEN_PREFIX + name)
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError):
        pass


def is_alive(conn: Redis, name: str | None) -> bool:
    """Whether worker ``name`` has sent a heartbeat within :func:`dead_after_s` seconds.

    Raises:
        redis.exceptions.ConnectionError: Redis does not answer.
    """
    if not name:
        return False
    if conn.exists(PREFIX + name):
        return True
    if conn.exists(SEEN_PREFIX + name):  # a slicelab worker whose heartbeat stopped
        return False
    return _rq_heartbeat_age_s(conn, name) < RQ_HEARTBEAT_GRACE_S


def _rq_heartbeat_age_s(conn: Redis, name: str) -> float:
    """Seconds since RQ's own ``last_heartbeat`` of worker ``name`` (infinite when there is none)."""
    from rq.utils import utcparse

    raw = conn.hget(f"rq:worker:{name}", "last_heartbeat")
    if not raw:
        return float("inf")
    try:
        last = utcparse(raw.decode() if isinstance(raw, bytes) else raw)
    except ValueError:
        return float("inf")
    if last.tzinfo is None:
        last = last.replace(tzinfo=timezone.utc)
    return (datetime.now(timezone.utc) - last).total_seconds()


def alive_workers(conn: Redis, queue: str) -> list[str]:
    """Names of the ``slicelab worker`` processes alive now that listen on ``queue``.

    Raises:
        redis.exceptions.ConnectionError: Redis does not answer.
    """
    names = []
    for key in conn.scan_iter(match=PREFIX + "*", count=500):
        raw = conn.get(key)
        if raw is None:
            continue
        try:
            queues = json.loads(raw).get("queues", [])
        except (ValueError, AttributeError):
            continue
        if queue in queues:
            names.append((key.decode() if isinstance(key, bytes) else key)[len(PREFIX):])
    return sorted(names)
