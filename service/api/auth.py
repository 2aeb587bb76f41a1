"""Bearer API keys: each route names the scope its key must hold (401 without a known key, 403 without the scope)."""

from __future__ import annotations

import hmac

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException

#: The security scheme the OpenAPI document names (``HTTPBearer``); a missing header is left to :class:`RequireScope`.
bearer = HTTPBearer(auto_error=False)


def key_scopes(api_keys: dict[str, set[str]], token: str) -> set[str] | None:
    """The scopes of API key ``token``, or None for an unknown key.

    Every configured key is compared in constant time (:func:`hmac.compare_digest`), so the
    answer time does not tell how much of a key was right.
    """
    match = None
    for key, scopes in api_keys.items():
        if hmac.compare_digest(key.encode(), token.encode()):
            match = scopes
    return match


class RequireScope:
    """A route dependency: the request's bearer key is one of ``Settings.api_keys`` and holds ``scope``.

    Use as ``_: str = Depends(RequireScope("jobs"))``; the dependency returns the scope.

    Raises:
        HTTPException: 401 without a key or with an unknown one, 403 for a key without ``scope``.
    """

    def __init__(self, scope: str):
        self.scope = scope

    def __call__(self, request: Request, creds: HTTPAuthorizationCredentials | None = Depends(bearer)) -> str:
        if creds is None or not creds.credentials:
            raise HTTPException(401, "missing bearer API key")
        scopes = key_scopes(request.app.state.api.settings.api_keys, creds.credentials)
        if scopes is None:
            raise HTTPException(401, "unknown API key")
        if self.scope not in scopes:
            raise HTTPException(403, f"this API key lacks the {self.scope!r} scope")
        return self.scope
