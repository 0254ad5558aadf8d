"""What the web UI's pages and fragments show, gathered from the services (the same calls the JSON API
makes); views.py and live.py render it whole or in parts."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from slipway.api.auth import hub_of
from slipway.api.routes import project_app
from slipway.errors import ConfigError
from slipway.model.access import Action
from slipway.model.states import State
from slipway.services import accounts, report
from slipway.services import freeze as freezes
from slipway.services.accounts import Principal
from slipway.services.queries import run_logs
from slipway.web.render import waiting_count

#: Run states whose page streams live output (the run moves on its own; a queued one when its turn comes).
LIVE = frozenset({"pending", "running", "queued"})
#: Run states that may still change (a page showing them refreshes itself).
UNFINISHED = frozenset({"pending", "running", "queued", "waiting"})


def parse_state(value: str | None) -> State | None:
    """``?state=`` as a State (empty: any state); a ConfigError (422) naming the states otherwise."""
    if not value:
        return None
    try:
        return State(value)
    except ValueError:
        raise ConfigError(f"no run state {value!r}", hint="states: " + ", ".join(s.value for s in State)) from None


def matrix(request: Request) -> dict[str, Any]:
    """The home page's matrix: a row per project, a column per environment (of any project)."""
    rows, columns = [], []
    hub = hub_of(request)
    for name in sorted(hub.projects):
        cells = {row["name"]: row for row in report.dashboard(hub.project(name))}
        columns += [env for env in cells if env not in columns]
        rows.append({"project": name, "cells": cells})
    return {"columns": columns, "rows": rows, "waiting": waiting_count(request)}


def run_body(request: Request, project: str, run_id: int, user: Principal) -> dict[str, Any]:
    """A run page's changing part: the run, its stages with who approved them, each step's output, and
    whether this user may approve or reject it now."""
    app = project_app(request, project, user)
    run = report.run_view(app, run_id)
    ahead = accounts.run_environments_ahead(report.project_run(app, run_id))
    may_decide = run["state"] == "waiting" and user.may_each(Action.APPROVE, ahead)
    active = freezes.active_freezes(app, app.config.project) if may_decide else {}
    frozen = [{"environment": env, "name": active[env].name, "until": active[env].until_text()}
              for env in ahead if env in active]
    steps: dict[str, list[dict[str, Any]]] = {}
    for found in run_logs(app, run_id).steps:
        steps.setdefault(found.stage, []).append(report.step_dict(found.stage, found.step))
    return {
        "project": project, "run": run, "steps": steps, "may_decide": may_decide, "live": run["state"] in LIVE,
        # the freezes that would stop it going on, and whether this user may override them (an admin)
        "frozen": frozen, "may_override": bool(frozen) and user.may_each(Action.ADMIN, ahead),
    }


def commit_runs(request: Request, project: str, commit: str, user: Principal, *, limit: int, offset: int) -> dict[str, Any]:
    """A page of a commit's runs; ``live`` while one of them may still change."""
    found = report.commit_runs_page(project_app(request, project, user), commit, limit=limit, offset=offset)
    live = any(run["state"] in UNFINISHED for run in found["items"])
    return {"project": project, "commit": commit, "runs": found, "live": live}

