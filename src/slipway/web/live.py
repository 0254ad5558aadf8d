"""What keeps the web UI's pages current: a run's server-sent events as HTML fragments (the htmx SSE
extension swaps them in), and the fragments that pages showing unfinished work poll for."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse

from slipway.api.auth import hub_of
from slipway.api.events import run_events
from slipway.api.routes import User, project_app
from slipway.model.access import Action
from slipway.services import report
from slipway.web import pages
from slipway.web.render import fragment, page_headers

router = APIRouter(include_in_schema=False)
#: Feed events shown as lines of the live output (the others change only the stage strip).
OUTPUT_EVENTS = frozenset({"output", "step_started", "step_finished", "stage_started", "stage_finished", "message"})


def sse_html(event: str, html: str) -> str:
    """One server-sent event whose data is an HTML fragment (one ``data:`` line per line of it)."""
    lines = html.splitlines() or [""]
    return f"event: {event}\n" + "".join(f"data: {line}\n" for line in lines) + "\n"


@router.get("/fragments/matrix", response_class=HTMLResponse)
def matrix(request: Request, user: User) -> HTMLResponse:
    """The home page's matrix, for its refresh every few seconds."""
    user.require(Action.VIEW)
    return HTMLResponse(fragment("_matrix.html", **pages.matrix(request)), headers=page_headers())


@router.get("/projects/{project}/runs/{run_id}/body", response_class=HTMLResponse)
def run_body(request: Request, project: str, run_id: int, user: User) -> HTMLResponse:
    """A run page's changing part, fetched again when its live stream ends."""
    user.require(Action.VIEW)
    context = pages.run_body(request, project, run_id, user)
    html = fragment("_run_body.html", csrf=getattr(request.state, "csrf", ""), **context)
    return HTMLResponse(html, headers=page_headers())


@router.get("/projects/{project}/runs/{run_id}/watch")
def watch(request: Request, project: str, run_id: int, user: User, state: str = "") -> Response:
    """For a page showing a run that waits: 204 while it still is in ``state``; once it is not (somebody
    decided, elsewhere), an ``HX-Refresh`` that makes htmx reload the page."""
    user.require(Action.VIEW)
    now = report.project_run(project_app(request, project, user), run_id).state.value
    if now == state:
        return Response(status_code=204)
    return Response(status_code=200, headers={"HX-Refresh": "true"})


@router.get("/projects/{project}/runs/{run_id}/stream")
async def stream(request: Request, project: str, run_id: int, user: User) -> StreamingResponse:
    """The run as it happens, as HTML fragments: ``run`` (the stage strip), ``output`` (lines of output,
    escaped like every template), ``end`` (a fragment that reloads the page's run part)."""
    user.require(Action.VIEW)
    hub = hub_of(request)
    report.project_run(hub.project(project), run_id)  # 404 before the stream starts

    async def events() -> AsyncIterator[str]:
        async for event, data in run_events(hub, project, run_id, disconnected=request.is_disconnected):
            html = render_event(project, run_id, event, data)
            if html is not None:
                yield sse_html("output" if event in OUTPUT_EVENTS else event, html)

    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}  # nginx: pass each event on at once
    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)


def render_event(project: str, run_id: int, event: str, data: dict[str, Any]) -> str | None:
    """The fragment of one event of api/events.py, or None for an event the page does not show."""
    if event == "run":
        return fragment("_strip.html", project=project, run=data)
    if event == "end":
        return fragment("_end.html", project=project, run_id=run_id)
    if event in OUTPUT_EVENTS:
        return fragment("_line.html", e=data)
    return None


@router.get("/projects/{project}/commits/{commit}/runs", response_class=HTMLResponse)
def commit_runs(request: Request, project: str, commit: str, user: User, page: int = 1, limit: int = 20) -> HTMLResponse:
    """A commit page's runs, for its refresh while one of them is unfinished."""
    user.require(Action.VIEW)
    limit = max(1, min(limit, 200))
    offset = (max(1, page) - 1) * limit
    found = pages.commit_runs(request, project, commit, user, limit=limit, offset=offset)
    return HTMLResponse(fragment("_commit_runs.html", page_number=page, limit=limit, **found), headers=page_headers())
