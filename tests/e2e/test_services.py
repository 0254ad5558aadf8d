"""The service layer called directly, as an HTTP API will: plain values in, records out, a real SQLite store.

Every function here is what one CLI command calls (docs/services.md); none prints or returns Rich objects.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from slipway.errors import ConfigError, GateError, MigrationError, SlipwayError, StateError
from slipway.model.records import RunRecord
from slipway.model.states import StageKind, State
from slipway.services import pipeline, recovery, report
from slipway.services.app import App, open_app
from slipway.services.migration_lint import lint
from slipway.services.plan import RunPlan, plan_run
from slipway.services.queries import get_run, run_logs
from slipway.services.starter import init_project
from slipway.services.validate import validate
from tests.e2e.conftest import Project

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def app(project: Project) -> Iterator[App]:
    app = open_app(cwd=project.root, environ=project.env)
    try:
        yield app
    finally:
        app.close()


def test_plan_and_validate_return_records_and_touch_nothing(project: Project, app: App) -> None:
    plan = plan_run(app)
    assert isinstance(plan, RunPlan) and plan.project == "webapp" and len(plan.commit) == 40
    assert [s.name for s in plan.stages] == [s.name for s in app.config.project.pipeline]
    deploy = next(s for s in plan.stages if s.name == "deploy-production")
    assert deploy.kind is StageKind.DEPLOY and deploy.environment == "production"
    assert any("switch-current" in a for a in deploy.actions) and any("restart.sh" in a for a in deploy.actions)
    gate = next(s for s in plan.stages if s.kind is StageKind.APPROVAL)
    assert gate.actions == ("wait for: slipway approve RUN --reason TEXT",)
    checked = validate(app)
    assert checked.path == project.root / "slipway.yml" and checked.warning is None
    assert checked.summary.startswith("3 environment(s), 9 stage(s), 3 target(s)")
    assert not (project.root / ".slipway").exists(), "a plan or a validation opened the store"


def test_a_run_is_created_without_being_driven_then_driven(project: Project, app: App) -> None:
    created = pipeline.create_run(app)
    assert isinstance(created, RunRecord) and created.state is State.PENDING and created.artifact_digest is None
    assert {s.state for s in created.stages} == {State.PENDING}
    assert get_run(app, created.id) == created
    assert [r["id"] for r in report.history(app)] == [created.id]
    assert not (project.root / ".slipway/targets/dev").exists(), "creating the run deployed something"
    assert run_logs(app, created.id).steps == ()

    outcome = asyncio.run(pipeline.continue_run(app, created.id))
    assert outcome.run_id == created.id and outcome.state is State.WAITING and outcome.artifact_digest
    logs = run_logs(app, created.id, stage="deploy-dev")
    assert logs.run.state is State.WAITING and logs.steps and {s.stage for s in logs.steps} == {"deploy-dev"}
    assert all(s.step.state is State.SUCCEEDED for s in logs.steps)
    dev = next(e for e in report.status(app)["environments"] if e["name"] == "dev")
    assert dev["artifact_digest"] == outcome.artifact_digest and dev["run_id"] == created.id

    with pytest.raises(GateError, match="reason is required"):
        asyncio.run(pipeline.approve(app, created.id, reason=" "))
    done = asyncio.run(pipeline.approve(app, created.id, reason="looks good"))
    assert done.state is State.SUCCEEDED
    with pytest.raises(StateError, match="not waiting"):
        asyncio.run(pipeline.reject(app, created.id, reason="too late"))


def test_unknown_names_and_finished_runs_are_refused(project: Project, app: App) -> None:
    created = pipeline.create_run(app)
    with pytest.raises(ConfigError, match="environment 'nowhere' is not defined") as info:
        asyncio.run(pipeline.promote(app, "sha256:" + "0" * 64, environment="nowhere"))
    assert info.value.hint == "defined: dev, production, staging"
    assert recovery.unlock(app, "dev", force=False) is False
    with pytest.raises(StateError, match="there is no run 999"):
        run_logs(app, 999)
    project.edit("slipway.yml", 'run: "python3 -m unittest discover -s tests/unit -t ."', 'run: "false"')
    project.commit("a failing unit test stage")
    edited = open_app(cwd=project.root, environ=project.env)  # an App holds the slipway.yml it was opened with
    try:
        failing = pipeline.create_run(edited)
        with pytest.raises(SlipwayError):
            asyncio.run(pipeline.continue_run(edited, failing.id))
        assert get_run(edited, failing.id).state is State.FAILED
        with pytest.raises(StateError, match="only a pending or resumed run can be driven"):
            asyncio.run(pipeline.continue_run(edited, failing.id))
        assert get_run(edited, created.id).state is State.PENDING, "another run's failure touched the pending one"
    finally:
        edited.close()


def test_migration_lint_finds_the_directory_from_slipway_yml(project: Project) -> None:
    report = lint(None, dialect="postgres", config_path=project.root / "slipway.yml")
    assert report.directory == project.root / "db/migrations" and report.findings == ()
    starter = init_project(project.root.parent / "new").config  # a project without migrations
    assert starter == project.root.parent / "new/slipway.yml"
    with pytest.raises(MigrationError, match="no 'migrations' section"):
        lint(None, dialect="postgres", cwd=starter.parent)
    with pytest.raises(ConfigError, match="already exists"):
        init_project(starter.parent)
