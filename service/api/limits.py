"""Limits of the REST service that hold whatever the client sends: body size and the tag deadline.

:class:`BodyLimit` counts the bytes of a request body as they arrive (ASGI
``http.request`` messages), so a body without ``Content-Length``
(``Transfer-Encoding: chunked``) is held to the same limit as one that
declares its size. :func:`label_within` runs one judge call on the judge's own
thread pool and answers when the deadline passes, whatever the queue.
"""

from __future__ import annotations

import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from starlette.exceptions import HTTPException

from slicelab.service import defaults
from slicelab.service.api.problems import PROBLEM

#: Bytes of an over-limit body read (and dropped) before the 413 goes out, so the client reads it.
DRAIN_BYTES = 64 * 1024 * 1024


class BodyTooLarge(HTTPException):
    """Raised into the application when the body passes the limit (a 413 the app's handlers answer)."""

    def __init__(self, limit: int):
        super().__init__(413, f"limit is {limit} bytes")


class BodyLimit:
    """ASGI middleware: 413 problem+json for a request body over ``limit`` bytes, declared or streamed.

    Args:
        app: the ASGI application.
        limit: most bytes of one request body.
    """

    def __init__(self, app: Any, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            await self._too_large(send)
            return
        seen = 0
        started = False

        async def counted() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    if message.get("more_body", False):
                        await _drain(receive)
                    raise BodyTooLarge(self.limit)
            return message

        async def watched(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except BodyTooLarge:  # not answered by the application's own handlers
            if started:
                raise
            await self._too_large(send)

    async def _too_large(self, send: Callable) -> None:
        body = json.dumps({"type": "about:blank", "title": "Request body too large", "status": 413,
                           "detail": f"limit is {self.limit} bytes", "limit": self.limit}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", PROBLEM.encode()), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


async def _drain(receive: Callable) -> None:
    """Read and drop the rest of the body (up to :data:`DRAIN_BYTES`), so the client gets to read the 413."""
    dropped = 0
    while dropped < DRAIN_BYTES:
        message = await receive()
        if message["type"] != "http.request":
            return
        dropped += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


def judge_concurrency(spec: dict[str, Any]) -> int:
    """Judge calls the service runs at once: the openai judge's ``concurrency`` (requests in
    flight, default :data:`service.defaults.JUDGE_CONCURRENCY`); 1 for an in-process model."""
    if spec.get("backend") == "openai":
        return max(1, int(spec.get("concurrency") or defaults.JUDGE_CONCURRENCY))
    return 1


async def label_within(pool: ThreadPoolExecutor, call: Callable[[], Any], deadline: float) -> Any:
    """Run ``call`` on ``pool`` and return its result, or raise ``TimeoutError`` at ``deadline``
    (``time.monotonic()`` seconds). A call still waiting for a thread at the deadline is dropped."""
    future = pool.submit(call)
    try:
        return await asyncio.wait_for(asyncio.wrap_future(future), timeout=max(0.0, deadline - time.monotonic()))
    except asyncio.TimeoutError:
        future.cancel()  # not started yet: it never runs
        raise TimeoutError from None
