"""The web UI's forms: sign in and out, approve, reject, roll back. Each POST carries the session's CSRF
token (checked by api/auth.py before the handler runs), calls the JSON API's own handler (the same checks
of the user's role, the same services) and redirects back to a page (303: the browser then GETs it)."""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from slipway.api import routes
from slipway.api.auth import SESSION_COOKIE, check_origin, current_user, hub_of, set_session_cookie
from slipway.api.routes import User, project_app, require_environment
from slipway.errors import AccessDenied, ConfigError, NotAuthenticated
from slipway.model.access import Action
from slipway.services import accounts
from slipway.web.render import page

router = APIRouter(include_in_schema=False)
#: The sign-in form's own CSRF token (there is no session yet): a cookie the form must echo.
LOGIN_COOKIE = "slipway_login"
ReasonField = Annotated[str, Form(max_length=2000)]
NextField = Annotated[str, Form(max_length=2000)]


def safe_next(target: str | None, default: str = "/") -> str:
    """Where to go after a form: a path on this server only (never ``//host`` or a full URL elsewhere)."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return default


def required_reason(reason: str) -> str:
    """The reason of a decision or rollback: kept in the audit log, so it may not be blank."""
    if not reason.strip():
        raise ConfigError("a reason is required", hint="say why: it is kept in the audit log with your name")
    return reason.strip()


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/") -> HTMLResponse:
    """The sign-in form."""
    return _login_page(request, safe_next(next), error=None)


def _login_page(request: Request, target: str, *, error: str | None, status: int = 200) -> HTMLResponse:
    token = secrets.token_urlsafe(32)
    response = page(request, "login.html", None, status_code=status, next=target, login_token=token, error=error)
    response.set_cookie(
        LOGIN_COOKIE, token, max_age=3600, httponly=True, samesite="strict", secure=request.url.scheme == "https", path="/login"
    )
    return response


@router.post("/login", response_class=HTMLResponse, response_model=None)
def login(
    request: Request,
    user: Annotated[str, Form(max_length=100)],
    password: Annotated[str, Form(max_length=1000)],
    login_token: Annotated[str, Form(max_length=200)] = "",
    next: NextField = "/",
) -> HTMLResponse | RedirectResponse:
    """Check the password; on success open a session (its cookie) and go where the user was going."""
    check_origin(request)
    expected = request.cookies.get(LOGIN_COOKIE, "")
    if not expected or not hmac.compare_digest(login_token, expected):
        raise AccessDenied("the sign-in form has expired or came from elsewhere", hint="open /login again and sign in")
    store = hub_of(request).accounts.store
    try:
        principal = accounts.sign_in(store, user, password)
    except NotAuthenticated as exc:
        return _login_page(request, safe_next(next), error=exc.message, status=401)
    session_id, _csrf = accounts.open_session(store, principal.name)
    response = RedirectResponse(safe_next(next), status_code=303)
    set_session_cookie(request, response, session_id)
    response.delete_cookie(LOGIN_COOKIE, path="/login")
    return response


@router.post("/logout")
async def logout(request: Request) -> RedirectResponse:
    """Sign out: the session ends on the server and its cookie is removed."""
    await current_user(request)  # the CSRF token: no other site may sign a user out
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        hub_of(request).accounts.store.end_session(accounts.digest(cookie))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.post("/projects/{project}/runs/{run_id}/approve")
def approve(
    request: Request, project: str, run_id: int, user: User, reason: ReasonField = "", next: NextField = "",
    override_freeze: ReasonField = "",
) -> RedirectResponse:
    """Approve the gate the run waits at (the API's handler: the role check, the record, the run driven on);
    a non-empty ``override_freeze`` lets its deploys start inside a freeze (an admin's, audited)."""
    decision = routes.Decide(reason=required_reason(reason), override_freeze=override_freeze or None)
    routes.approve(request, project, run_id, decision, user)
    return RedirectResponse(safe_next(next, f"/projects/{project}/runs/{run_id}"), status_code=303)


@router.post("/projects/{project}/runs/{run_id}/reject")
def reject(request: Request, project: str, run_id: int, user: User, reason: ReasonField = "", next: NextField = "") -> RedirectResponse:
    """Reject the gate the run waits at (the API's handler)."""
    routes.reject(request, project, run_id, routes.Decide(reason=required_reason(reason)), user)
    return RedirectResponse(safe_next(next, f"/projects/{project}/runs/{run_id}"), status_code=303)


@router.get("/projects/{project}/environments/{environment}/rollback", response_class=HTMLResponse)
def rollback_form(request: Request, project: str, environment: str, user: User, release: str = "") -> HTMLResponse:
    """The rollback's confirmation: which release, and why (only for users who may roll back there)."""
    require_environment(project_app(request, project, user), environment)
    user.require(Action.ROLLBACK, environment)
    return page(request, "rollback.html", user, project=project, environment=environment, release=release)


@router.post("/projects/{project}/environments/{environment}/rollback")
async def rollback(
    request: Request,
    project: str,
    environment: str,
    user: User,
    reason: ReasonField = "",
    release: Annotated[str, Form(max_length=200)] = "",
) -> RedirectResponse:
    """Roll the environment back (the API's handler); the browser goes to the rollback's run page."""
    body = routes.Rollback(reason=required_reason(reason), to_release=release.strip() or None)
    run = await routes.rollback(request, project, environment, body, user)
    return RedirectResponse(f"/projects/{project}/runs/{run['id']}", status_code=303)
