"""``/ui/login`` and ``/ui/logout``: an API key with the ``calibrations`` scope and a reviewer name open a session."""

from __future__ import annotations

import re

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response

from slicelab.calibration.review_rows import bundled_annotators
from slicelab.calibration.review_store import check_reviewer
from slicelab.service.api.auth import key_scopes
from slicelab.service.api.ui.render import UiRoute, page, see_other
from slicelab.service.api.ui.session import (SCOPE, Refusal, Session, clear_cookie, new_session,
                                             post_session, read_session, same_origin, set_cookie, signing_secret)
from slicelab.service.errors import ConfigError

router = APIRouter(route_class=UiRoute, include_in_schema=False)
#: Where a login may return to: a review page path, nothing else (no open redirect).
NEXT = re.compile(r"^/ui/[A-Za-z0-9/_-]*$")
HOME = "/ui/reviews"


def next_page(value: str | None) -> str:
    """The page to go to after login: ``value`` when it is a review-page path, else the review list."""
    return value if value and NEXT.match(value) and value != "/ui/login" else HOME


@router.get("/ui")
@router.get("/ui/")
def ui_home() -> Response:
    """The review pages start at the review list."""
    return see_other(HOME)


@router.get("/ui/login")
def login_form(request: Request, next: str | None = None) -> Response:
    """The login form (a valid session goes straight on)."""
    if read_session(request) is not None:
        return see_other(next_page(next))
    return page("login", next=next_page(next), reviewer="", message=None)


@router.post("/ui/login")
def login(request: Request, key: str = Form(""), reviewer: str = Form(""), next: str = Form(HOME)) -> Response:
    """Check the API key and reviewer name; on success set the session cookie and go on.

    Refusals re-show the form: 401 for an unknown key, 403 for a key without the
    ``calibrations`` scope or a form from another site, 422 for a bad reviewer name (the rule of
    :func:`calibration.review_store.check_reviewer`, which also refuses the bundled gold sets' annotators).
    """
    if not same_origin(request):
        raise Refusal(403, "refused: this form was sent from another site (Origin/Referer does not match)")
    settings = request.app.state.api.settings
    reviewer = reviewer.strip()
    status, message = 0, None
    try:
        check_reviewer(reviewer, bundled_annotators())
    except ConfigError as e:
        status, message = 422, f"reviewer: {e} (the name becomes the annotator of exported gold rows)"
    else:
        scopes = key_scopes(settings.api_keys, key) if key else None
        if scopes is None:
            status, message = 401, "unknown API key"
        elif SCOPE not in scopes:
            status, message = 403, f"this API key lacks the {SCOPE!r} scope, which the review pages need"
    if message:
        return page("login", status=status, next=next_page(next), reviewer=reviewer, message=message)
    secret = signing_secret(settings.ui_secret)
    response = see_other(next_page(next))
    set_cookie(response, secret, new_session(secret, key, reviewer))
    return response


@router.post("/ui/logout")
def logout(session: Session = Depends(post_session)) -> Response:
    """End the session (the cookie is removed) and show the login form."""
    response = see_other("/ui/login")
    clear_cookie(response)
    return response
