"""Who a request acts as: an API token (``Authorization: Bearer slw_...``) or a browser session cookie.

A request authenticated by its cookie that changes anything must carry the session's CSRF token (header
``X-CSRF-Token``, or the form field ``csrf_token``) and, when the browser sends one, an ``Origin`` of this
server; a token-authenticated request needs neither (no browser sends it on its own).
"""

from __future__ import annotations

import hmac

from fastapi import Request, Response

from slipway.errors import AccessDenied, NotAuthenticated
from slipway.services import accounts
from slipway.services.accounts import Principal
from slipway.services.hub import Hub

SESSION_COOKIE = "slipway_session"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def hub_of(request: Request) -> Hub:
    """The server's Hub."""
    hub: Hub = request.app.state.hub
    return hub


async def current_user(request: Request) -> Principal:
    """The authenticated user of this request (NotAuthenticated: 401)."""
    store = hub_of(request).accounts.store
    header = request.headers.get("authorization")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise NotAuthenticated("the Authorization header must be 'Bearer TOKEN'")
        return accounts.authenticate_token(store, token.strip())
    cookie = request.cookies.get(SESSION_COOKIE)
    found = accounts.session_user(store, cookie) if cookie else None
    if found is None:
        raise NotAuthenticated(
            "sign in first",
            hint="send 'Authorization: Bearer TOKEN' (make one with 'slipway users token NAME') or sign in at /login",
        )
    user, csrf = found
    request.state.csrf = csrf
    if request.method not in SAFE_METHODS:
        await _check_csrf(request, csrf)
    return user


def check_origin(request: Request) -> None:
    """AccessDenied for a request a browser sent from another site's page (its Origin is not this server)."""
    origin = request.headers.get("origin")
    if origin and origin != f"{request.url.scheme}://{request.url.netloc}":
        raise AccessDenied(f"a request from {origin} may not act on this server (cross-site)")


async def _check_csrf(request: Request, expected: str) -> None:
    check_origin(request)
    sent = request.headers.get("x-csrf-token")
    if sent is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        field = (await request.form()).get("csrf_token")
        sent = field if isinstance(field, str) else None
    if not sent or not hmac.compare_digest(sent, expected):
        raise AccessDenied("the form's CSRF token is missing or does not match", hint="reload the page and try again")


def set_session_cookie(request: Request, response: Response, session_id: str) -> None:
    """The session cookie: HttpOnly, SameSite=Lax, Secure whenever the server is reached over HTTPS
    (directly, or behind a proxy that says so with X-Forwarded-Proto: see docs/server.md)."""
    response.set_cookie(
        SESSION_COOKIE,
        session_id,
        max_age=int(accounts.SESSION_TTL),
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/",
    )
