"""Webhooks from GitHub, GitLab, Gitea and Forgejo: ``POST /api/hooks/{project}/{forge}``.

No user signs in here: the delivery's signature (or GitLab's token) under the project's
``triggers.webhook_secret`` is its only credential (services/triggers.py checks it over the raw body). A
delivery that starts a run answers 202 and the server drives the run like one a person started.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from slipway.api.auth import current_user, hub_of
from slipway.errors import ConfigError
from slipway.model.access import Action
from slipway.model.triggers import Forge
from slipway.services import report, review, triggers
from slipway.services.accounts import Principal

router = APIRouter(prefix="/api")
#: The largest body accepted (GitHub caps its deliveries at 25 MB; a push's JSON is a few kB).
MAX_BODY = 25 * 1024 * 1024


@router.post(
    "/hooks/{project}/{forge}",
    summary="A forge's webhook delivery (push, merge request): starts runs; authenticated by its signature",
    responses={202: {"description": "a run started"}, 401: {"description": "bad or missing signature"}},
)
async def webhook(request: Request, project: str, forge: Forge) -> JSONResponse:
    hub = hub_of(request)
    app = hub.project(project)  # 404 for a project this server does not serve
    body = bytearray()
    async for chunk in request.stream():  # read up to the cap, whatever Content-Length claims
        body += chunk
        if len(body) > MAX_BODY:
            raise ConfigError(f"the delivery is larger than {MAX_BODY} bytes", hint="send push and merge-request events only")
    headers = {k.lower(): v for k, v in request.headers.items()}
    source = request.client.host if request.client else "unknown"
    received = await run_in_threadpool(triggers.receive, app, forge, headers, bytes(body), source=source)
    answer: dict[str, Any] = received.as_dict()
    if received.teardown is not None:
        hub.tear_down_review(project, received.teardown, actor=f"{forge.value} merge request {received.teardown}",
                             reason=received.message)
        return JSONResponse(answer, status_code=202)
    if received.run_id is None:
        return JSONResponse(answer, status_code=200)
    hub.drive_triggered(project, received.run_id)
    answer["run"] = report.run_view(app, received.run_id)
    return JSONResponse(answer, status_code=202)


@router.get("/projects/{project}/deliveries", summary="Authentic webhook deliveries and polls, newest first")
def deliveries(
    request: Request,
    project: str,
    user: Annotated[Principal, Depends(current_user)],
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[dict[str, Any]]:
    user.require(Action.VIEW)
    return triggers.deliveries(hub_of(request).project(project), limit=limit)


@router.get("/projects/{project}/reviews", summary="Review environments of merge requests, open and closed")
def reviews(request: Request, project: str, user: Annotated[Principal, Depends(current_user)]) -> list[dict[str, Any]]:
    user.require(Action.VIEW)
    return review.list_reviews(hub_of(request).project(project))
