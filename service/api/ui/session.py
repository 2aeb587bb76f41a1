"""Review-page sessions: a signed cookie naming the API key (by hash), the reviewer and a CSRF token.

The cookie value is ``<payload>.<mac>``: ``payload`` the base64url JSON ``{"k": HMAC-SHA256 of
the API key under the signing secret (hex), "r": reviewer, "c": CSRF token, "e": expiry (Unix seconds)}``, ``mac`` the
base64url HMAC-SHA256 of ``payload`` under the signing secret (``SLICELAB_UI_SECRET``, else a
random key drawn once per process). The API key itself is never stored: a session is valid
while its signature checks, it has not expired and the hashed key is still configured with
the ``calibrations`` scope (so removing a key ends its sessions).

Cookie flags: ``Secure``, ``HttpOnly``, ``SameSite=Strict``, ``Path=/ui``. Every POST carries
the session's CSRF token (form field ``csrf`` or header ``X-CSRF-Token``) and, where the
browser sends ``Origin`` or ``Referer``, must come from the host it was sent to.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.responses import Response

from slicelab.calibration.review_store import check_reviewer
from slicelab.service.errors import ConfigError

#: Name of the session cookie; it is sent only to pages under ``COOKIE_PATH``.
COOKIE = "slicelab_ui"
COOKIE_PATH = "/ui"
#: Seconds a session lasts after login.
SESSION_S = 8 * 3600
#: The API-key scope the review pages need.
SCOPE = "calibrations"
#: The signing key when ``SLICELAB_UI_SECRET`` is not set: sessions end when the process does.
PROCESS_SECRET = secrets.token_bytes(32)


class Refusal(Exception):
    """A review-page request that is refused: ``status`` (401 not logged in, 403 forbidden) and a message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(frozen=True)
class Session:
    """One logged-in reviewer.

    Attributes:
        key_id: :func:`key_id` of the API key logged in with.
        reviewer: the reviewer's name (decisions and exports are attributed to it).
        csrf: the token every POST of this session must carry.
        expires: Unix seconds after which the cookie is refused.
    """

    key_id: str
    reviewer: str
    csrf: str
    expires: int


def key_id(secret: bytes, key: str) -> str:
    """Hex HMAC-SHA256 of an API key under the signing secret (what a session stores instead of the key;
    keyed, so a copied cookie does not allow guessing the key offline)."""
    return hmac.new(secret, key.encode(), hashlib.sha256).hexdigest()


def signing_secret(configured: str | None) -> bytes:
    """The cookie signing key: ``configured`` (``Settings.ui_secret``) as UTF-8, else :data:`PROCESS_SECRET`."""
    return configured.encode() if configured else PROCESS_SECRET


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(secret: bytes, session: Session) -> str:
    """The cookie value of ``session``: base64url JSON payload, ``.``, base64url HMAC-SHA256 (RFC 2104) of it."""
    payload = _b64(json.dumps({"k": session.key_id, "r": session.reviewer, "c": session.csrf,
                               "e": session.expires}, separators=(",", ":")).encode())
    return f"{payload}.{_b64(hmac.new(secret, payload.encode(), hashlib.sha256).digest())}"


def unsign(secret: bytes, value: str, now: float | None = None) -> Session | None:
    """The session of a cookie value, or None when its signature is wrong, it is malformed or it has expired."""
    payload, _, mac = value.partition(".")
    try:
        expected = hmac.new(secret, payload.encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, _unb64(mac)):
            return None
        data = json.loads(_unb64(payload))
        session = Session(key_id=str(data["k"]), reviewer=str(data["r"]), csrf=str(data["c"]), expires=int(data["e"]))
    except (ValueError, KeyError, TypeError):
        return None
    return session if session.expires > (time.time() if now is None else now) else None


def scopes_of_key_id(secret: bytes, api_keys: dict[str, set[str]], kid: str) -> set[str] | None:
    """The scopes of the configured key whose hash is ``kid`` (None: no such key); every key is compared,
    each in constant time."""
    match = None
    for key, scopes in api_keys.items():
        if hmac.compare_digest(key_id(secret, key), kid):
            match = scopes
    return match


def new_session(secret: bytes, key: str, reviewer: str) -> Session:
    """A session of ``reviewer`` logged in with API ``key``, with a fresh CSRF token, lasting :data:`SESSION_S`."""
    return Session(key_id=key_id(secret, key), reviewer=reviewer, csrf=secrets.token_urlsafe(32),
                   expires=int(time.time()) + SESSION_S)


def set_cookie(response: Response, secret: bytes, session: Session) -> None:
    """Put the signed session on ``response`` (Secure, HttpOnly, SameSite=Strict, Path=/ui)."""
    response.set_cookie(COOKIE, sign(secret, session), max_age=SESSION_S, path=COOKIE_PATH, secure=True,
                        httponly=True, samesite="strict")


def clear_cookie(response: Response) -> None:
    """Remove the session cookie (same flags, so the browser matches it)."""
    response.delete_cookie(COOKIE, path=COOKIE_PATH, secure=True, httponly=True, samesite="strict")


def read_session(request: Request) -> Session | None:
    """The valid session of ``request``'s cookie, or None (no cookie, bad signature, expired, key gone or
    without the ``calibrations`` scope)."""
    value = request.cookies.get(COOKIE)
    if not value:
        return None
    settings = request.app.state.api.settings
    secret = signing_secret(settings.ui_secret)
    session = unsign(secret, value)
    if session is None or not valid_reviewer(session.reviewer):
        return None
    scopes = scopes_of_key_id(secret, settings.api_keys, session.key_id)
    return session if scopes is not None and SCOPE in scopes else None


def valid_reviewer(name: str) -> bool:
    """Whether ``name`` passes the reviewer rule of the CLI and the Python functions
    (:func:`calibration.review_store.check_reviewer`)."""
    try:
        check_reviewer(name)
    except ConfigError:
        return False
    return True


def same_origin(request: Request) -> bool:
    """Whether ``Origin`` (else ``Referer``), where the browser sent one, names the host the request went to.

    Only host and port are compared (``Host`` header), so a TLS-terminating proxy in front does
    not break it. ``Origin: null`` (sandboxed or privacy-redirected requests) is refused.
    """
    host = (request.headers.get("host") or "").lower()
    origin = request.headers.get("origin")
    if origin is not None:
        return origin != "null" and urlsplit(origin).netloc.lower() == host
    referer = request.headers.get("referer")
    return referer is None or urlsplit(referer).netloc.lower() == host


def page_session(request: Request) -> Session:
    """Route dependency of review pages (GET): the session.

    Raises:
        Refusal: 401 without a valid session (a GET is answered with a redirect to the login page).
    """
    session = read_session(request)
    if session is None:
        raise Refusal(401, "log in first: your session is missing, expired or its API key is no longer valid")
    return session


async def post_session(request: Request) -> Session:
    """Route dependency of review-page POSTs: same origin, a valid session and its CSRF token.

    Raises:
        Refusal: 403 for a foreign ``Origin``/``Referer`` or a missing or wrong CSRF token, 401 without a session.
    """
    if not same_origin(request):
        raise Refusal(403, "refused: this form was sent from another site (Origin/Referer does not match)")
    session = page_session(request)
    form = await request.form()
    token = form.get("csrf") or request.headers.get("x-csrf-token") or ""
    if not isinstance(token, str) or not hmac.compare_digest(token.encode(), session.csrf.encode()):
        raise Refusal(403, "refused: the form's CSRF token is missing or wrong; reload the page and try again")
    return session
