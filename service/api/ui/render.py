"""HTML answers of the review pages: templates under ``service/templates/ui/``, security headers, error pages.

Every page is rendered by :func:`page` with a fresh nonce: the Content-Security-Policy allows
only the page's own inline style and script (by that nonce), requests to the same origin,
forms posting to the same origin, and no framing. Errors of a review page are HTML pages too
(:class:`UiRoute`), never problem+json: a GET without a session is redirected to the login page.
"""

from __future__ import annotations

import secrets
from typing import Any, Callable
from urllib.parse import quote

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from slicelab.service.api.paths import relative_paths
from slicelab.service.api.problems import redis_down_detail
from slicelab.service.api.ui.session import Refusal
from slicelab.service.engine import REDIS_DOWN
from slicelab.service.errors import SlicelabError
from slicelab.service.report_templates import render


def security_headers(nonce: str) -> dict[str, str]:
    """Headers of every review page: CSP (nonce-bound inline style/script), no framing, no caching."""
    csp = (f"default-src 'none'; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; connect-src 'self'; "
           "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
    return {"Content-Security-Policy": csp, "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "same-origin", "Cache-Control": "no-store"}


def page(template: str, status: int = 200, **context: Any) -> HTMLResponse:
    """Render ``service/templates/ui/<template>.html.j2`` (autoescaped) with ``context`` and a fresh CSP nonce.

    Raises:
        jinja2.UndefinedError: the template uses a name the context lacks.
    """
    nonce = secrets.token_urlsafe(16)
    context.setdefault("session", None)
    html = render(f"ui/{template}.html.j2", nonce=nonce, **context)
    return HTMLResponse(html, status_code=status, headers=security_headers(nonce))


def error_page(status: int, message: Any, session: Any = None) -> HTMLResponse:
    """An error page: the status and what went wrong, with a link back to the review list."""
    return page("error", status=status, status_code=status, message=str(message), session=session)


def see_other(url: str) -> RedirectResponse:
    """303 See Other to ``url`` (after a POST, the browser GETs it)."""
    return RedirectResponse(url, status_code=303)


def login_redirect(request: Request) -> RedirectResponse:
    """303 to the login page, which returns to the page asked for after login."""
    return see_other(f"/ui/login?next={quote(request.url.path, safe='/')}")


class UiRoute(APIRoute):
    """A route answering its errors as HTML pages: a refused GET without a session becomes a redirect to
    the login page, other refusals (401/403), HTTP errors, invalid forms and slicelab errors (422) and a Redis
    that does not answer (503) error pages."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def ui_handler(request: Request) -> Response:
            state = request.app.state.api
            try:
                return await handler(request)
            except Refusal as e:
                if e.status == 401 and request.method == "GET":
                    return login_redirect(request)
                status, message = e.status, e.message
            except HTTPException as e:
                status, message = e.status_code, str(e.detail)
            except RequestValidationError as e:
                fields = "; ".join(f"{'.'.join(str(p) for p in err['loc'][1:])}: {err['msg']}" for err in e.errors())
                status, message = 422, f"invalid form: {fields}"
            except SlicelabError as e:
                status, message = 422, str(e)
            except REDIS_DOWN as e:
                status, message = 503, redis_down_detail(e)
            return error_page(status, relative_paths(message, state.settings.data_root, state.jobs.root))

        return ui_handler
