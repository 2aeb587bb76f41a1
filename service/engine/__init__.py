"""One job engine for label runs, shard runs and REST jobs (see :mod:`service.engine.core`)."""

from slicelab.service.engine.core import MAX_REQUEUES, POLL_S, REDIS_DOWN, Engine, MarkerStore, Work, report_every_s, wait
from slicelab.service.engine.local import LocalWorkers, run_queue

__all__ = ["MAX_REQUEUES", "POLL_S", "REDIS_DOWN", "Engine", "LocalWorkers", "MarkerStore", "Work",
           "report_every_s", "run_queue", "wait"]
