"""Errors as ``application/problem+json`` (RFC 9457): one body shape for every status the service answers.

A body is ``{"type": "about:blank", "title", "status", "detail", ...extra}``; a 401 also
carries ``WWW-Authenticate: Bearer``. Server paths in a detail text are shown relative to
the data root (:func:`service.api.paths.relative_paths`).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis import exceptions as redis_errors
from starlette.exceptions import HTTPException

from slicelab.service.api.paths import relative_paths
from slicelab.service.errors import SlicelabError

PROBLEM = "application/problem+json"
#: Title of a problem by status, for errors raised as a plain :class:`HTTPException`.
TITLES = {401: "Unauthorized", 403: "Forbidden", 404: "Not found", 405: "Method not allowed",
          409: "Conflict", 410: "Gone", 413: "Request body too large", 422: "Invalid request",
          503: "Service unavailable", 504: "Judge timeout"}


class Problem(Exception):
    """An error a route answers with its own title and extra members (e.g. ``limit``, ``errors``).

    Args:
        status: HTTP status code.
        title: short, fixed summary of the kind of problem.
        detail: what happened in this request (a text, or any JSON value).
        **extra: more members of the body.
    """

    def __init__(self, status: int, title: str, detail: Any, **extra: Any):
        super().__init__(detail)
        self.status, self.title, self.detail, self.extra = status, title, detail, extra


def field_errors(errors: list[dict[str, Any]], prefix: str = "") -> Problem:
    """A 422 problem from pydantic errors: ``errors`` lists ``{"field", "message"}``, ``detail`` joins the first five."""
    fields = [{"field": prefix + ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in errors]
    return Problem(422, "Invalid request", "; ".join(f"{e['field']}: {e['message']}" for e in fields[:5]),
                   errors=fields)


def problem_response(request: Request, problem: Problem) -> JSONResponse:
    """The problem+json response of ``problem`` (server paths in a text detail shown relative)."""
    detail = problem.detail
    if isinstance(detail, str):
        state = request.app.state.api
        detail = relative_paths(detail, state.settings.data_root, state.jobs.root)
    body = {"type": "about:blank", "title": problem.title, "status": problem.status, "detail": detail,
            **problem.extra}
    headers = {"WWW-Authenticate": "Bearer"} if problem.status == 401 else None
    return JSONResponse(body, status_code=problem.status, media_type=PROBLEM, headers=headers)


async def _problem(request: Request, exc: Problem) -> JSONResponse:
    return problem_response(request, exc)


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    return problem_response(request, Problem(exc.status_code, TITLES.get(exc.status_code, "Error"), exc.detail))


async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    return problem_response(request, field_errors(list(exc.errors())))


async def _slicelab_error(request: Request, exc: SlicelabError) -> JSONResponse:
    return problem_response(request, Problem(422, "Invalid request", str(exc)))


def redis_down_detail(exc: Exception) -> str:
    """What a 503 says when Redis does not answer (``exc``: the connection or timeout error)."""
    return f"Redis does not answer ({type(exc).__name__}); nothing was started, try again when it is back"


async def _redis_down(request: Request, exc: Exception) -> JSONResponse:
    return problem_response(request, Problem(503, "Service unavailable", redis_down_detail(exc)))


def add_problem_handlers(app: FastAPI) -> None:
    """Answer every error of ``app`` as problem+json: :class:`Problem`, HTTP errors, invalid requests
    (422 naming each field), :class:`SlicelabError` (422) and a Redis that does not answer (503)."""
    app.add_exception_handler(Problem, _problem)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(SlicelabError, _slicelab_error)
    app.add_exception_handler(redis_errors.ConnectionError, _redis_down)
    app.add_exception_handler(redis_errors.TimeoutError, _redis_down)
