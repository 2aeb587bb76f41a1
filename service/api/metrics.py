"""``GET /metrics``: Prometheus metrics (needs the ``metrics`` scope; names in :class:`service.api.state.Metrics`)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from rq import Queue, Worker

from slicelab.service.api.auth import RequireScope
from slicelab.service.api.state import ApiState, api_state

router = APIRouter(tags=["health"])


@router.get("/metrics", response_class=Response)
def metrics(_: str = Depends(RequireScope("metrics")), state: ApiState = Depends(api_state)):
    """Prometheus metrics: labels by status, judge latency, tokens, queue depth, workers.

    Needs a key with the ``metrics`` scope (Prometheus: ``authorization: {credentials: KEY}``).
    """
    try:
        conn = state.redis()
        state.metrics.queue.set(Queue(state.settings.queue, connection=conn).count)
        state.metrics.workers.set(Worker.count(connection=conn))
    except Exception:  # noqa: BLE001 - metrics stay available when Redis is not
        pass
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
