"""What the routes of one application share, kept on ``app.state.api`` and given to routes by :func:`api_state`."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from fastapi import Request
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from redis import Redis

from slicelab.calibration.records import home
from slicelab.service.api.job_folders import JobFolders
from slicelab.service.api.limits import judge_concurrency
from slicelab.service.api.settings import Settings
from slicelab.service.judge import Judge
from slicelab.service.labeler_factory import make_judge
from slicelab.service.taxonomy import Taxonomy, load_taxonomy


class Metrics:
    """The Prometheus metrics of one application, on their own registry (``GET /metrics``).

    Attributes:
        labels: ``slicelab_labels_total{status}``, items labeled by /v1/tag.
        latency: ``slicelab_judge_latency_seconds``, judge latency of /v1/tag (seconds).
        tokens: ``slicelab_judge_tokens_total{kind}``, prompt and completion tokens of /v1/tag.
        queue: ``slicelab_queue_depth``, RQ jobs waiting on the service's queue (read when scraped).
        workers: ``slicelab_workers``, RQ workers registered (read when scraped).
    """

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.labels = Counter("slicelab_labels_total", "Items labeled by /v1/tag, by status", ["status"], registry=r)
        self.latency = Histogram("slicelab_judge_latency_seconds", "Judge latency of /v1/tag", registry=r)
        self.tokens = Counter("slicelab_judge_tokens_total", "Judge tokens of /v1/tag", ["kind"], registry=r)
        self.queue = Gauge("slicelab_queue_depth", "Jobs waiting in the RQ queue", registry=r)
        self.workers = Gauge("slicelab_workers", "RQ workers registered", registry=r)


@dataclass
class ApiState:
    """Settings and shared resources of one application.

    Attributes:
        settings: the service configuration.
        taxonomy: the label vocabulary.
        jobs: the REST job folders (``$SLICELAB_HOME/jobs``).
        metrics: the Prometheus metrics.
        pool: the threads /v1/tag judge calls run on (as many as the judge's concurrency).
    """

    settings: Settings
    taxonomy: Taxonomy
    jobs: JobFolders
    metrics: Metrics
    pool: ThreadPoolExecutor

    @classmethod
    def create(cls, settings: Settings) -> "ApiState":
        """The state of a new application: bundled taxonomy, job folders under ``$SLICELAB_HOME``, fresh metrics."""
        return cls(settings=settings, taxonomy=load_taxonomy(), jobs=JobFolders(home() / "jobs"), metrics=Metrics(),
                   pool=ThreadPoolExecutor(max_workers=judge_concurrency(settings.judge),
                                           thread_name_prefix="slicelab-tag"))

    def redis(self) -> Redis:
        """A new connection to the workers' Redis (2 s to connect, 5 s per command); nothing is sent yet."""
        return Redis.from_url(self.settings.redis_url, socket_connect_timeout=2, socket_timeout=5)

    def answering_redis(self) -> Redis:
        """A connection once Redis answers a ping (call before anything is written or enqueued).

        Raises:
            redis.exceptions.ConnectionError / TimeoutError: Redis does not answer (the service says 503).
        """
        conn = self.redis()
        conn.ping()
        return conn

    def judge(self) -> Judge:
        """The configured judge (built once per process by :func:`service.labeler_factory.make_judge`).

        Raises:
            ConfigError: an unusable judge configuration.
        """
        return make_judge(self.settings.judge)


def api_state(request: Request) -> ApiState:
    """Route dependency: the state of the application serving ``request``."""
    return request.app.state.api
