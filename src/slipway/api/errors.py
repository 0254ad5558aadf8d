"""Slipway's errors as HTTP answers: one JSON shape, a status per class (docs/server.md).

``{"error": {"type": "GateError", "message": "...", "hint": "...", "exit_code": 9}}``: the same message and
hint the CLI prints, and the exit code the CLI would exit with.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response

from slipway import errors as e

#: Most specific first: the first class an error is an instance of gives its status.
STATUS: tuple[tuple[type[e.SlipwayError], int], ...] = (
    (e.NotAuthenticated, 401),
    (e.AccessDenied, 403),
    (e.NotFound, 404),
    (e.ArtifactNotFound, 404),
    (e.LockHeld, 409),
    (e.StateError, 409),
    (e.GateError, 409),
    (e.MigrationError, 409),
    (e.ConfigError, 422),
    (e.ArtifactError, 422),
    (e.StoreError, 503),
)


def status_of(exc: e.SlipwayError) -> int:
    """The HTTP status of a Slipway error (400 for one no row names)."""
    return next((code for cls, code in STATUS if isinstance(exc, cls)), 400)


def error_body(kind: str, message: str, hint: str = "", exit_code: int | None = None) -> dict[str, object]:
    """The one JSON shape of every error answer."""
    return {"error": {"type": kind, "message": message, "hint": hint, "exit_code": exit_code}}


def wants_html(request: Request) -> bool:
    """A browser's page request (not the API, not htmx's fragment requests)."""
    return not request.url.path.startswith("/api/") and "text/html" in request.headers.get("accept", "")


async def slipway_error(request: Request, exc: Exception) -> Response:
    """A SlipwayError as JSON (a browser that is not signed in goes to the sign-in page instead)."""
    assert isinstance(exc, e.SlipwayError)
    status = status_of(exc)
    if status == 401 and wants_html(request):
        return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    body = error_body(type(exc).__name__, exc.message, exc.hint, exc.exit_code)
    return JSONResponse(body, status_code=status, headers=headers)


async def invalid_request(_request: Request, exc: Exception) -> Response:
    """A request body or query that does not fit: 422, naming each field and what is wrong with it."""
    assert isinstance(exc, RequestValidationError)
    problems = [
        f"{'.'.join(str(p) for p in err.get('loc', ()) if p != 'body')}: {err.get('msg', 'invalid')}"
        for err in exc.errors()
    ]
    body = error_body("RequestError", "; ".join(problems), "see /api/docs for what this endpoint takes", 2)
    body["error"]["fields"] = jsonable_encoder(exc.errors())  # type: ignore[index]
    return JSONResponse(body, status_code=422)
