"""The FastAPI application of ``slipway serve``: assembles the JSON API (slipway.api), the web UI
(slipway.web), sign-in and /metrics over one Hub (services/hub.py)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from slipway import __version__
from slipway.api import errors
from slipway.api.auth import SESSION_COOKIE, current_user, hub_of, set_session_cookie
from slipway.api.events import run_events, sse
from slipway.api.hooks import router as hooks_router
from slipway.api.metrics import registry_for
from slipway.api.routes import router
from slipway.errors import SlipwayError
from slipway.model.access import Action
from slipway.services import accounts, report
from slipway.services.accounts import Principal
from slipway.services.hub import Hub


class SignIn(BaseModel):
    """A user name and password."""

    user: str = Field(min_length=1, max_length=100)
    password: str = Field(min_length=1, max_length=1000)


def create_app(hub: Hub, *, open_metrics: bool = False) -> FastAPI:
    """The server for ``hub``'s projects. ``open_metrics``: /metrics answers without a token."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        hub.start_poller()
        yield
        hub.close()  # SIGTERM or SIGINT: every run this server drives is cancelled, reverted, recorded

    app = FastAPI(
        title="Slipway",
        version=__version__,
        summary="Build once, deploy the same way everywhere.",
        docs_url="/api/docs",
        redoc_url=None,
        openapi_url="/api/openapi.json",
        lifespan=lifespan,
    )
    app.state.hub = hub

    @app.middleware("http")
    async def server_timing(request: Request, call_next: Any) -> Response:
        """How long the server spent on the request (Server-Timing: app;dur=MS), for users and benchmarks."""
        started = time.perf_counter()
        response: Response = await call_next(request)
        response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.2f}"
        return response

    app.add_exception_handler(SlipwayError, errors.slipway_error)
    app.add_exception_handler(RequestValidationError, errors.invalid_request)
    app.include_router(router)
    app.include_router(hooks_router)
    _sessions(app)
    _streams(app)
    _metrics(app, open_metrics=open_metrics)
    from slipway.web.views import install as install_web

    install_web(app)  # its pages, /static, and error pages for browsers

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, Any]:
        return {"ok": True, "version": __version__, "projects": sorted(hub.projects)}

    return app


def _sessions(app: FastAPI) -> None:
    @app.post("/api/session", summary="Sign in: sets the session cookie; returns the CSRF token for forms")
    def sign_in(request: Request, body: SignIn) -> JSONResponse:
        store = hub_of(request).accounts.store
        user = accounts.sign_in(store, body.user, body.password)
        session_id, csrf = accounts.open_session(store, user.name)
        response = JSONResponse({"name": user.name, "csrf_token": csrf})
        set_session_cookie(request, response, session_id)
        return response

    @app.delete("/api/session", summary="Sign out")
    def sign_out(request: Request, _user: Annotated[Principal, Depends(current_user)]) -> JSONResponse:
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            hub_of(request).accounts.store.end_session(accounts.digest(cookie))
        response = JSONResponse({"signed_out": True})
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response


def _streams(app: FastAPI) -> None:
    @app.get("/api/projects/{project}/runs/{run_id}/events", summary="Server-sent events of a run, live")
    async def events(
        request: Request, project: str, run_id: int, user: Annotated[Principal, Depends(current_user)]
    ) -> StreamingResponse:
        user.require(Action.VIEW)
        hub = hub_of(request)
        report.project_run(hub.project(project), run_id)  # 404 before the stream starts

        async def stream() -> AsyncIterator[str]:
            async for event, data in run_events(hub, project, run_id, disconnected=request.is_disconnected):
                yield sse(event, data)

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})


def _metrics(app: FastAPI, *, open_metrics: bool) -> None:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    registry = registry_for(app.state.hub)

    async def viewer(request: Request) -> None:
        if not open_metrics:
            (await current_user(request)).require(Action.VIEW)

    @app.get("/metrics", include_in_schema=False, dependencies=[Depends(viewer)])
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
