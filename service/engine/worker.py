"""The ``slicelab worker`` process: an RQ ``SimpleWorker`` with a heartbeat and a quiet stop."""

from __future__ import annotations

from redis import Redis
from rq import Queue, SimpleWorker
from rq.exceptions import StopRequested

from slicelab.service.engine.liveness import end_heartbeat, start_heartbeat


class SlicelabWorker(SimpleWorker):
    """Runs jobs in its own process (the judge, and llama.cpp's prefix cache, are built once per
    worker, not once per job)."""

    def subscribe(self) -> None:
        """RQ's command channel, polled every second: with RQ's 60 s poll, redis-py's
        ``PubSubWorkerThread.stop()`` keeps a stopping worker waiting up to a minute."""
        self.log.info("Worker %s: subscribing to channel %s", self.name, self.pubsub_channel_name)
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        self.pubsub_thread = self.pubsub.run_in_thread(sleep_time=1.0, daemon=True,
                                                       exception_handler=self._pubsub_exception_handler)


def run_worker(conn: Redis, queues: list[str], *, name: str | None = None, burst: bool = False) -> None:
    """Work on ``queues`` until stopped (or, with ``burst``, until they are empty).

    A heartbeat (:mod:`service.engine.liveness`) is sent every 5 s while the worker lives; SIGTERM
    or Ctrl-C lets the current job finish, then the worker ends without a traceback and removes
    its heartbeat.
    """
    from slicelab.service.judge.resilience import report_pauses_to_redis

    w = SlicelabWorker([Queue(q, connection=conn) for q in queues], connection=conn, name=name)
    report_pauses_to_redis(conn, w.name)  # the labeling command shows when this worker's judge is paused
    beating = start_heartbeat(conn, w.name, list(queues))
    try:
        w.work(burst=burst, with_scheduler=False)
    except StopRequested:  # a stop request that arrived outside RQ's own loop: a normal end
        pass
    finally:
        end_heartbeat(conn, w.name, beating)
