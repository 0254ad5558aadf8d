"""The web UI's pages (docs/server.md, "The web UI"): thin over the same services as the JSON API.

Every page needs a signed-in user who may view (a browser that is not signed in goes to /login); the
buttons that change something are shown only to users whose role allows it, and the handlers behind them
(actions.py) check again, through the API's own code.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from slipway.api.auth import hub_of
from slipway.api.routes import User, project_app, require_environment
from slipway.errors import NotFound, SlipwayError
from slipway.model.access import Action
from slipway.services import report
from slipway.web import actions, live, pages, render
from slipway.web.render import PAGE_SIZE, Pager, page

router = APIRouter(include_in_schema=False)
PageNumber = Annotated[int, Query(alias="page", ge=1, le=1_000_000, description="Which page, from 1.")]
PageSize = Annotated[int, Query(ge=1, le=render.MAX_PAGE_SIZE, description="Items per page.")]
COMMIT_RE = re.compile(r"^[0-9a-f]{4,64}$")


def install(app: FastAPI) -> None:
    """Add the web UI to the server: its pages, forms, live fragments, /static, and error pages."""
    app.mount("/static", StaticFiles(directory=Path(__file__).with_name("static")), name="static")
    app.include_router(router)
    app.include_router(actions.router)
    app.include_router(live.router)
    app.add_exception_handler(SlipwayError, render.slipway_error)
    app.add_exception_handler(RequestValidationError, render.invalid_request)
    app.add_exception_handler(StarletteHTTPException, render.http_error)


@router.get("/", response_class=HTMLResponse)
def home(request: Request, user: User) -> HTMLResponse:
    """The matrix of projects and environments: what runs where, since when, by whom, how healthy."""
    user.require(Action.VIEW)
    return page(request, "home.html", user, **pages.matrix(request))


@router.get("/approvals", response_class=HTMLResponse)
def approvals(request: Request, user: User, page_number: PageNumber = 1, limit: PageSize = PAGE_SIZE) -> HTMLResponse:
    """Runs waiting at a gate, in every project; approve and reject forms for users who may."""
    user.require(Action.VIEW)
    pager = Pager.of(request, page_number, limit)
    found = report.waiting_page(hub_of(request).projects, limit=pager.limit, offset=pager.offset)
    for item in found["items"]:
        item["may_decide"] = user.may_each(Action.APPROVE, item["environments"])
    return page(request, "approvals.html", user, items=found["items"], pager=pager.counted(found["total"]))


@router.get("/projects/{project}/runs", response_class=HTMLResponse)
def runs(
    request: Request,
    project: str,
    user: User,
    state: str | None = None,
    page_number: PageNumber = 1,
    limit: PageSize = PAGE_SIZE,
) -> HTMLResponse:
    """A project's runs, newest first, filtered by state."""
    user.require(Action.VIEW)
    wanted = pages.parse_state(state)
    pager = Pager.of(request, page_number, limit)
    found = report.runs_page(project_app(request, project, user), limit=pager.limit, offset=pager.offset, state=wanted)
    return page(
        request, "runs.html", user, project=project, runs=found["items"], state=state or "", pager=pager.counted(found["total"])
    )


@router.get("/projects/{project}/runs/{run_id}", response_class=HTMLResponse)
def run(request: Request, project: str, run_id: int, user: User) -> HTMLResponse:
    """One run: the stage strip, approve/reject, each step's output; streamed live while it runs."""
    user.require(Action.VIEW)
    return page(request, "run.html", user, **pages.run_body(request, project, run_id, user))


@router.get("/projects/{project}/commits/{commit}", response_class=HTMLResponse)
def commit(
    request: Request, project: str, commit: str, user: User, page_number: PageNumber = 1, limit: PageSize = PAGE_SIZE
) -> HTMLResponse:
    """A commit's value stream: every run of it and every stage, refreshed while one is unfinished."""
    user.require(Action.VIEW)
    if not COMMIT_RE.match(commit):
        raise NotFound(f"{commit!r} is not a commit hash", hint="use 4 to 64 lower-case hex digits")
    pager = Pager.of(request, page_number, limit)
    found = pages.commit_runs(request, project, commit, user, limit=pager.limit, offset=pager.offset)
    return page(request, "commit.html", user, pager=pager.counted(found["runs"]["total"]), **found)


@router.get("/projects/{project}/environments/{environment}", response_class=HTMLResponse)
def environment(
    request: Request,
    project: str,
    environment: str,
    user: User,
    page_number: PageNumber = 1,
    limit: PageSize = PAGE_SIZE,
) -> HTMLResponse:
    """An environment: what runs on each host, its deployments, and (for who may) a rollback button."""
    user.require(Action.VIEW)
    app = project_app(request, project, user)
    require_environment(app, environment)
    pager = Pager.of(request, page_number, limit)
    found = report.deployments_page(app, environment, limit=pager.limit, offset=pager.offset)
    env = next(e for e in report.status(app)["environments"] if e["name"] == environment)
    return page(
        request,
        "environment.html",
        user,
        project=project,
        env=env,
        deployments=found["items"],
        pager=pager.counted(found["total"]),
        may_rollback=user.may(Action.ROLLBACK, environment),
    )


@router.get("/projects/{project}/audit", response_class=HTMLResponse)
def audit(request: Request, project: str, user: User, page_number: PageNumber = 1, limit: PageSize = 50) -> HTMLResponse:
    """The audit log, newest first: who did what to what, when."""
    user.require(Action.VIEW)
    pager = Pager.of(request, page_number, limit)
    found = report.audit_page(project_app(request, project, user), limit=pager.limit, offset=pager.offset)
    return page(request, "audit.html", user, project=project, entries=found["items"], pager=pager.counted(found["total"]))
