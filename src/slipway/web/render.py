"""Rendering the web UI: one Jinja2 environment (autoescape on: run output, commit messages, user names
and reasons are untrusted), the filters the templates use, pagination, and error pages for browsers."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

from fastapi import Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, PackageLoader, StrictUndefined
from starlette.exceptions import HTTPException as StarletteHTTPException

from slipway import errors as e
from slipway.api import errors as api_errors
from slipway.api.auth import hub_of
from slipway.model.states import State
from slipway.services import report
from slipway.services.accounts import Principal

#: Pages allow scripts and styles from this server only: even a fragment that escaping missed could not
#: run a script (htmx is told not to evaluate any either: templates/base.html).
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
)
PAGE_SIZE = 20
MAX_PAGE_SIZE = 200


def short(value: str | None, n: int = 10) -> str:
    """A commit's or digest's first ``n`` hex digits (a digest loses its ``sha256:``)."""
    if not value:
        return ""
    return value.partition(":")[2][:n] if ":" in value else value[:n]


def when(ts: float | None) -> str:
    """A timestamp in UTC, to the second."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if ts else ""


def ago(ts: float | None, now: float | None = None) -> str:
    """How long ago, roughly: ``42 s ago``, ``5 min ago``, ``3 h ago``, ``2 d ago``."""
    if not ts:
        return ""
    seconds = max(0.0, (now if now is not None else time.time()) - ts)
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return f"{int(seconds)} s ago"


def duration(seconds: float | None) -> str:
    """A duration: ``0.4 s``, ``12 s``, ``3 min 5 s``."""
    if seconds is None:
        return ""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{int(seconds)} s"
    return f"{int(seconds // 60)} min {int(seconds % 60)} s"


def by_stage(approvals: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """A run's decisions by stage name (for the stage strip)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for approval in approvals:
        out.setdefault(approval["stage"], []).append(approval)
    return out


ENV = Environment(
    loader=PackageLoader("slipway.web", "templates"),
    autoescape=True,  # every template, whatever its name: all output is HTML
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
ENV.filters.update(short=short, when=when, ago=ago, duration=duration, by_stage=by_stage)
ENV.globals.update(states=[s.value for s in State])


def fragment(name: str, **context: Any) -> str:
    """A template rendered to a string (a page, or a fragment for htmx and server-sent events)."""
    return ENV.get_template(name).render(**context)


def page(request: Request, name: str, user: Principal | None, status_code: int = 200, **context: Any) -> HTMLResponse:
    """A whole page: the template with the signed-in user, the CSRF token its forms carry, and the nav."""
    csrf = getattr(request.state, "csrf", "") if user else ""
    waiting = context.pop("waiting", None)
    if waiting is None:
        waiting = waiting_count(request) if user else 0
    projects = sorted(hub_of(request).projects)
    html = fragment(name, request=request, user=user, csrf=csrf, projects=projects, waiting=waiting, **context)
    return HTMLResponse(html, status_code=status_code, headers=page_headers())


def waiting_count(request: Request) -> int:
    """How many runs wait at a gate, in every project (the nav's and the home page's count)."""
    total: int = report.waiting_page(hub_of(request).projects, limit=0)["total"]
    return total


def page_headers() -> dict[str, str]:
    """Headers of every HTML answer: the CSP, no framing, no sniffing, no caching of signed-in pages."""
    return {
        "Content-Security-Policy": CSP,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "Cache-Control": "no-store",
    }


@dataclass(frozen=True)
class Pager:
    """Where a page of a longer list starts, and the links to the pages around it."""

    request: Request
    limit: int
    offset: int
    total: int = 0

    @classmethod
    def of(cls, request: Request, page_number: int, limit: int) -> Pager:
        """The pager of ``?page=N&limit=L`` (1-based pages; the limit capped at MAX_PAGE_SIZE)."""
        limit = max(1, min(limit, MAX_PAGE_SIZE))
        return cls(request, limit, (max(1, page_number) - 1) * limit)

    def counted(self, total: int) -> Pager:
        """The same page, knowing how many items there are in all."""
        return Pager(self.request, self.limit, self.offset, total)

    @property
    def number(self) -> int:
        """This page's number, from 1."""
        return self.offset // self.limit + 1

    @property
    def pages(self) -> int:
        """How many pages there are (at least 1)."""
        return max(1, -(-self.total // self.limit))

    def url(self, number: int) -> str:
        """The link to page ``number``, keeping the other query parameters (a state filter)."""
        query = {**self.request.query_params, "page": str(number)}
        return f"{self.request.url.path}?{urlencode(query)}"

    @property
    def prev_url(self) -> str | None:
        """The previous page's link, if there is one."""
        return self.url(self.number - 1) if self.number > 1 else None

    @property
    def next_url(self) -> str | None:
        """The next page's link, if there is one."""
        return self.url(self.number + 1) if self.offset + self.limit < self.total else None


async def slipway_error(request: Request, exc: Exception) -> Response:
    """A SlipwayError: a readable page for a browser's page request, the API's JSON for anything else."""
    assert isinstance(exc, e.SlipwayError)
    status = api_errors.status_of(exc)
    if status == 401 and request.headers.get("hx-request") and not request.url.path.startswith("/api/"):
        return signed_out(request)
    if status == 401 or not api_errors.wants_html(request):
        return await api_errors.slipway_error(request, exc)
    return error_page(request, status, type(exc).__name__, exc.message, exc.hint)


def signed_out(request: Request) -> Response:
    """htmx's own request (a page refreshing itself) whose session ended: the page goes to the sign-in
    page and back to itself afterwards, instead of going stale without a word."""
    current = urlsplit(request.headers.get("hx-current-url", ""))
    back = current.path + (f"?{current.query}" if current.query else "") if current.path.startswith("/") else "/"
    return Response(status_code=401, headers={"HX-Redirect": f"/login?{urlencode({'next': back})}"})


async def invalid_request(request: Request, exc: Exception) -> Response:
    """A query or form that does not fit: a page naming the fields for a browser, JSON for the API."""
    if not api_errors.wants_html(request):
        return await api_errors.invalid_request(request, exc)
    assert isinstance(exc, RequestValidationError)
    problems = "; ".join(
        f"{'.'.join(str(p) for p in err.get('loc', ()) if p not in ('body', 'query'))}: {err.get('msg', 'invalid')}"
        for err in exc.errors()
    )
    return error_page(request, 422, "RequestError", problems, "go back and correct the form or the link")


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own errors (no such page, a method a path does not take): a page for a browser."""
    assert isinstance(exc, StarletteHTTPException)
    if not api_errors.wants_html(request):
        return await http_exception_handler(request, exc)
    message = "there is no such page" if exc.status_code == 404 else str(exc.detail)
    return error_page(request, exc.status_code, "HTTPError", message, "start again from the home page")


def error_page(request: Request, status: int, kind: str, message: str, hint: str) -> HTMLResponse:
    """The error page (the user may not be known: a refused CSRF token fails before it is)."""
    html = fragment(
        "error.html", request=request, user=None, csrf="", projects=[], waiting=0, status=status, kind=kind, message=message, hint=hint
    )
    return HTMLResponse(html, status_code=status, headers=page_headers())
