"""Deploy freezes on the example project: the service layer with an injected clock for the right minute,
the real CLI for the exit code, the message, the override and its audit entry."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest

from slipway.errors import GateError
from slipway.model.states import State
from slipway.services import pipeline, report
from slipway.services.app import App, open_app
from slipway.testing import FakeClock
from tests.e2e.conftest import Project

pytestmark = pytest.mark.timeout(300)

#: Every day at 14:30 in Berlin for one hour; on 2026-12-04 (CET, UTC+1) that is 13:30 to 14:30 UTC.
DAILY = """    freezes:
      - {name: release-train, cron: "30 14 * * *", duration: 1h, timezone: Europe/Berlin}
"""


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def freeze_staging(project: Project, freezes: str, *, on_freeze: str = "fail") -> None:
    anchor = "      - {kind: local, name: staging-1, path: .slipway/targets/staging}\n"
    project.edit("slipway.yml", anchor, anchor + f"    on_freeze: {on_freeze}\n" + freezes)
    project.commit("freeze staging")


def app_at(project: Project, clock: FakeClock) -> App:
    app = open_app(cwd=project.root, environ=project.env)
    app.clock = clock
    return app


def staging_release(app: App) -> str | None:
    return {e["name"]: e["release"] for e in report.status(app)["environments"]}["staging"]


def test_a_freeze_blocks_the_deploy_stage_from_its_first_minute_and_an_override_goes_through(
    project: Project,
) -> None:
    freeze_staging(project, DAILY)
    app = app_at(project, FakeClock(start=at("2026-12-04T13:29:59")))  # one second before it starts
    try:
        before = asyncio.run(pipeline.start_run(app))
        assert before.state is State.WAITING  # deployed dev and staging, waits for production's approval
        released = staging_release(app)
        assert released is not None and report.status(app)["environments"][1]["freeze"] is None

        app.clock = FakeClock(start=at("2026-12-04T13:30:00"))  # the freeze's first second
        with pytest.raises(GateError) as err:
            asyncio.run(pipeline.start_run(app))
        text = str(err.value)
        assert "staging is frozen by freeze release-train until 2026-12-04 15:30 Europe/Berlin" in text, text
        assert "--override-freeze REASON" in (err.value.hint or "")
        run = app.store.list_runs(limit=1)[0]
        stages = {s.name: s for s in run.stages}
        assert run.state is State.FAILED and stages["deploy-staging"].state is State.FAILED
        assert stages["deploy-dev"].state is State.SUCCEEDED  # dev has no freeze
        assert "release-train" in (stages["deploy-staging"].error or "")
        assert staging_release(app) == released, "a frozen stage deployed"
        freeze = {e["name"]: e["freeze"] for e in report.status(app)["environments"]}["staging"]
        assert freeze["name"] == "release-train" and freeze["until"] == "2026-12-04T14:30:00+00:00"

        after = asyncio.run(pipeline.start_run(app, override_freeze="hotfix for INC-42"))
        assert after.state is State.WAITING
        assert staging_release(app) != released
        entry = next(e for e in app.store.audit_log() if e.action == "freeze.override")
        assert entry.actor == "tester" and entry.subject == "environment staging"
        detail = json.loads(entry.detail)
        assert detail["freeze"] == "release-train" and detail["reason"] == "hotfix for INC-42"
        assert detail["run"] == after.run_id

        back = asyncio.run(pipeline.rollback(app, "staging", reason="bad release"))  # the way out: never frozen
        assert back.state is State.SUCCEEDED and staging_release(app) == released

        app.clock = FakeClock(start=at("2026-12-04T14:30:00"))  # the first second after it
        assert asyncio.run(pipeline.start_run(app)).state is State.WAITING
    finally:
        app.close()


def test_on_freeze_wait_deploys_when_the_freeze_ends_and_fails_when_that_is_past_the_timeout(
    project: Project,
) -> None:
    freeze_staging(project, DAILY, on_freeze="wait")
    clock = FakeClock(start=at("2026-12-04T14:20:00"))  # ten minutes before the end
    app = app_at(project, clock)
    try:
        outcome = asyncio.run(pipeline.start_run(app))
        assert outcome.state is State.WAITING and staging_release(app) is not None
        assert sum(clock.sleeps) == pytest.approx(600)  # slept on the App's clock to 14:30:00, not longer
        assert clock.now() >= at("2026-12-04T14:30:00")

        app.clock = FakeClock(start=at("2026-12-04T13:30:00"))  # an hour left; the stage timeout is 30 min
        with pytest.raises(GateError, match="ends after the stage's timeout of 1800 s"):
            asyncio.run(pipeline.start_run(app))
        assert app.clock.sleeps == []  # type: ignore[attr-defined]
    finally:
        app.close()


def test_cli_run_inside_a_date_freeze_exits_9_and_the_override_is_audited(project: Project) -> None:
    now = datetime.now(UTC)
    start, end = (now - timedelta(days=1)).strftime("%Y-%m-%d"), (now + timedelta(days=2)).strftime("%Y-%m-%d")
    freeze_staging(project, f'    freezes:\n      - {{name: year-end, start: "{start}", end: "{end}"}}\n')

    refused = project.slipway("run", check=False)
    assert refused.returncode == 9, refused.stderr
    assert f"staging is frozen by freeze year-end until {end} 00:00 UTC" in refused.stderr, refused.stderr
    assert "--override-freeze REASON" in refused.stderr
    assert project.status()["staging"]["release"] is None, "the frozen stage deployed"
    assert project.status()["staging"]["freeze"]["name"] == "year-end"
    assert "staging is frozen by year-end" in project.slipway("status").stdout

    done = project.slipway("run", "--override-freeze", "security fix", "--json")
    assert '"state": "waiting"' in done.stdout
    assert project.status()["staging"]["release"] is not None
    app = open_app(cwd=project.root, environ=project.env)
    try:
        entries = [e for e in app.store.audit_log() if e.action == "freeze.override"]
    finally:
        app.close()
    assert len(entries) == 1 and entries[0].actor == "tester"
    detail = json.loads(entries[0].detail)
    assert detail["freeze"] == "year-end" and detail["reason"] == "security fix"

    runs = len(project.json("history"))
    empty = project.slipway("run", "--override-freeze", " ", check=False)
    assert empty.returncode == 9 and "reason is required to override a freeze" in empty.stderr
    assert len(project.json("history")) == runs, "a blank override reason created a run"
