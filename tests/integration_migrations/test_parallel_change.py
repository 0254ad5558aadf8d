"""The example's three-release parallel change through dev, staging and production, on SQLite and PostgreSQL.

Release 1 creates ``items (id, name)``; release 2 expands (first_name, last_name) and backfills; release 3
backfills the rest and contracts (drops ``name``). Continuous load runs on every environment while it is
deployed; no request may fail while its migrations run (expand/migrate before the switch, contract after),
nor while the app is restarted on the new release (the example's restart hands its socket over).
"""

from __future__ import annotations

import pytest
from tests.integration_migrations.conftest import ENVIRONMENTS, Load, WebApp

from slipway.model.states import State

pytestmark = pytest.mark.timeout(600)


def deploy_everywhere(app: WebApp, loads: dict[str, Load]) -> int:
    """Run the pipeline (dev, staging, gate) and approve production; return the run id."""
    waiting = app.json("run")
    assert waiting["state"] == "waiting", waiting
    app.slipway("approve", str(waiting["id"]), "--reason", "staging is fine")
    return int(waiting["id"])


def migration_windows(app: WebApp, run_id: int, environment: str) -> dict[str, tuple[float, float]]:
    """When each phase of the run's deployment of ``environment`` ran, from the store's step records."""
    store = app.store()
    try:
        run = store.get_run(run_id)
        [stage] = [s for s in run.stages if s.environment == environment and s.kind.value == "deploy"]
        steps = [step for name, step in store.steps(run_id) if name == stage.name]
    finally:
        store.close()
    windows: dict[str, tuple[float, float]] = {}
    for step in steps:
        if step.host == "slipway" and step.name.startswith("migrate: "):
            assert step.state is State.SUCCEEDED and step.started_at and step.finished_at, step
            phase = step.name.split()[1]
            start, end = windows.get(phase, (step.started_at, step.finished_at))
            windows[phase] = (min(start, step.started_at), max(end, step.finished_at))
    switches = [s.started_at for s in steps if s.name == "activate: switch-current" and s.started_at]
    installs = [s.finished_at for s in steps if s.name == "install: install-release" and s.finished_at]
    verifies = [s.finished_at for s in steps if s.name.startswith("verify:") and s.finished_at]
    # The whole stretch before the switch (install done -> first switch), the switch and restart (first
    # switch -> last verify), and after the last verify.
    windows["before-switch"] = (max(installs), min(switches))
    windows["switch"] = (min(switches), max(verifies))
    if "contract" in windows:
        windows["after-verify"] = (max(verifies), windows["contract"][1])
    return windows


def assert_no_failures(
    app: WebApp, env: str, load: Load, windows: dict[str, tuple[float, float]], phases: tuple[str, ...]
) -> int:
    seen = 0
    log = app.root / f".slipway/targets/{env}/shared/log/app.log"
    for phase in phases:
        start, end = windows[phase]
        during = load.within(start, end)
        failed = [r for r in during if not r[1]]
        tail = log.read_text()[-3000:] if failed and log.exists() else ""
        assert not failed, f"{len(failed)} requests failed in {env} during {phase}: {failed[:3]}\n{tail}"
        seen += len(during)
    return seen


def test_three_releases_through_every_environment(webapp: WebApp) -> None:
    app = webapp
    # Release 1: the schema comes from 0001, applied once per environment by Slipway (not by the app).
    deploy_everywhere(app, {})
    for env in ENVIRONMENTS:
        [row] = app.applied(env).values()
        assert (row["name"], row["phase"], row["state"], row["applied_by"]) == (
            "create_items",
            "expand",
            "applied",
            "tester",
        )
        assert app.columns(env) == {"id", "name"}
        for i in range(300):  # enough rows for several backfill batches of 100
            assert app.call(env, "POST", "/items", {"name": f"Ada Lovelace{i}"})[0] == 201
    release_one = app.status()["production"]["release"]

    # Release 2: expand + backfill before the switch, under load.
    app.overlay(2)
    loads = {env: Load(app.ports[env]) for env in ENVIRONMENTS}
    for load in loads.values():
        load.__enter__()
    try:
        run_two = deploy_everywhere(app, loads)
    finally:
        for load in loads.values():
            load.__exit__()
    for env in ENVIRONMENTS:
        windows = migration_windows(app, run_two, env)
        assert {"expand", "migrate"} <= set(windows)
        assert assert_no_failures(app, env, loads[env], windows, ("expand", "migrate", "before-switch", "switch")) > 0
        assert app.columns(env) == {"id", "name", "first_name", "last_name"}
        status = app.applied(env)
        assert status["fill_split_name"]["state"] == "applied" and status["split_name"]["phase"] == "expand"
        _, listing = app.call(env, "GET", "/items")
        [first] = [i for i in listing["items"] if i["name"] == "Ada Lovelace0"]
        assert (first["first_name"], first["last_name"]) == ("Ada", "Lovelace0")  # backfilled
    release_two = app.status()["production"]["release"]
    digest_two = app.status()["production"]["artifact_digest"]

    # Rolling back after an expand is safe by construction: release 1 ignores the new columns.
    app.slipway("rollback", "production", "--reason", "try release 1 on the expanded schema")
    assert app.status()["production"]["release"] == release_one
    status, item = app.call("production", "POST", "/items", {"name": "Written ByReleaseOne"})
    assert status == 201 and "first_name" not in item
    app.slipway("promote", digest_two, "--to", "production")
    assert app.status()["production"]["artifact_digest"] == digest_two
    _, listing = app.call("production", "GET", "/items")
    written = [i for i in listing["items"] if i["name"] == "Written ByReleaseOne"]
    assert written and written[0]["last_name"] == "ByReleaseOne"  # release 2's fallback to name

    # Release 3: the contract is held in production while production still runs release 2 ...
    app.overlay(3)
    loads = {env: Load(app.ports[env]) for env in ENVIRONMENTS}
    for load in loads.values():
        load.__enter__()
    try:
        waiting = app.json("run")
        assert waiting["state"] == "waiting", waiting
        held = app.applied("production")
        assert "drop_name" not in held  # production's database never saw release 3's files yet
        assert "name" not in app.columns("staging") and "name" in app.columns("production")
        app.slipway("approve", str(waiting["id"]), "--reason", "release 3")
    finally:
        for load in loads.values():
            load.__exit__()
    run_three = int(waiting["id"])
    for env in ENVIRONMENTS:
        windows = migration_windows(app, run_three, env)
        assert "contract" in windows, windows
        assert (
            assert_no_failures(app, env, loads[env], windows, ("migrate", "before-switch", "switch", "contract", "after-verify"))
            > 0
        )
        assert app.columns(env) == {"id", "first_name", "last_name"}
        status = app.applied(env)
        assert status["drop_name"]["state"] == "applied" and status["drop_name"]["applied_by"] == "tester"
        _, listing = app.call(env, "GET", "/items")
        assert all(i["first_name"] for i in listing["items"]), "every row was backfilled before the drop"
        assert any(i["last_name"] == "Lovelace0" for i in listing["items"])
    _, listing = app.call("production", "GET", "/items")
    assert [i["last_name"] for i in listing["items"] if i["first_name"] == "Written"] == ["ByReleaseOne"]

    # ... and rolling back past the applied contract is refused, naming it; production keeps release 3.
    release_three = app.status()["production"]["release"]
    refused = app.slipway("rollback", "production", "--to", release_two, check=False)
    assert refused.returncode == 7, refused.stderr
    assert "drop_name" in refused.stderr and "contract migration" in refused.stderr
    assert app.status()["production"]["release"] == release_three
    assert app.call("production", "GET", "/health")[0] == 200
