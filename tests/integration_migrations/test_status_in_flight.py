"""``slipway migrations status`` while a change is in flight, and ``slipway migrations abandon``, on a real
PostgreSQL through the CLI.

Status reads the newest release installed or rolling out: during a parked canary the files the canary's
deployment applied are applied (not missing) and its contract is held, naming the host on the old
release; after a failed deployment its applied files are applied; a backfill that stopped half-way shows
as in progress with its progress row, also once its file is no longer in the release. Abandon forgets a
broken backfill (refused without a reason; recorded), after which the fixed file runs from the start; a
file edited while its backfill is in progress is refused before any host is touched.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.integration_migrations.conftest import WebApp, make_webapp
from tests.support.ports import free_port
from tests.support.postgres import PostgresServer

pytestmark = [pytest.mark.timeout(420), pytest.mark.postgres]
MIGRATIONS = "db/migrations"
ADD_COLUMN = "-- a column for the backfill below\nALTER TABLE items ADD COLUMN upper_name TEXT;\n"
# Row 150 divides by zero: the first batch (ids 1-100) commits with its progress row, the second fails.
BROKEN_BACKFILL = """-- slipway:batch table=items key=id size=100
UPDATE items SET upper_name = CASE WHEN id = 150 THEN (1 / (id - 150))::text ELSE upper(name) END
WHERE id BETWEEN :batch_start AND :batch_end;
"""
FIXED_BACKFILL = """-- slipway:batch table=items key=id size=100
UPDATE items SET upper_name = upper(name) WHERE id BETWEEN :batch_start AND :batch_end;
"""


@pytest.fixture
def pg_webapp(tmp_path: Path, repo_root: Path, postgres_server: PostgresServer) -> Iterator[WebApp]:
    """The example on PostgreSQL, its pipeline reduced to build and deploy ``dev`` (one local target)."""
    app = make_webapp(tmp_path, repo_root, "postgres", postgres_server)
    config = yaml.safe_load((app.root / "slipway.yml").read_text())
    config["environments"] = {"dev": config["environments"]["dev"]}
    config.pop("review", None)
    config["pipeline"] = [
        {"name": "build", "kind": "build"},
        {"name": "deploy-dev", "kind": "deploy", "environment": "dev"},
    ]
    (app.root / "slipway.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    app.commit("build and deploy dev only")
    try:
        yield app
    finally:
        app.stop_apps()


def status_of(app: WebApp, environment: str) -> dict[int, dict[str, Any]]:
    return {int(r["version"]): r for r in app.json("migrations", "status", environment)}


def deployments(app: WebApp, environment: str) -> list[dict[str, Any]]:
    return app.json("deployments", environment)  # type: ignore[no-any-return]


def write(app: WebApp, name: str, text: str | None, message: str) -> None:
    path = app.root / MIGRATIONS / name
    if text is None:
        path.unlink()
    else:
        path.write_text(text)
    app.commit(message)


def half_done_backfill(app: WebApp) -> None:
    """Release 1 with 300 rows, then a release whose backfill fails after its first batch committed."""
    assert app.json("run")["state"] == "succeeded"
    app.execute("dev", "INSERT INTO items (id, name) SELECT g, 'item ' || g FROM generate_series(1, 300) AS g")
    (app.root / MIGRATIONS / "0002_expand_add_upper.sql").write_text(ADD_COLUMN)
    write(app, "0003_migrate_fill_upper.sql", BROKEN_BACKFILL, "a backfill that fails at row 150")
    failed = app.slipway("run", check=False)
    assert failed.returncode == 7 and "division by zero" in failed.stderr, failed.stderr


def test_a_failed_deployment_shows_its_applied_files_and_its_backfill_in_progress(pg_webapp: WebApp) -> None:
    app = pg_webapp
    half_done_backfill(app)
    status = status_of(app, "dev")
    # 0002 was applied by the failed deployment, whose release no host runs: applied, never "missing".
    assert status[2]["state"] == "applied" and status[2]["file"] == f"{MIGRATIONS}/0002_expand_add_upper.sql"
    backfill = status[3]
    assert backfill["state"] == "in-progress", backfill
    assert backfill["progress"]["batches"] == 1 and backfill["progress"]["rows"] == 100
    assert backfill["progress"]["last_key"] == 100 and backfill["progress"]["updated_at"]
    table = app.slipway("migrations", "status", "dev").stdout
    assert "in-progress" in table and "1 batches, 100 rows" in table


def test_an_orphaned_backfill_still_shows_as_in_progress(pg_webapp: WebApp) -> None:
    app = pg_webapp
    half_done_backfill(app)
    write(app, "0003_migrate_fill_upper.sql", None, "ship without the broken backfill")
    assert app.json("run")["state"] == "succeeded"
    backfill = status_of(app, "dev")[3]
    assert backfill["state"] == "in-progress" and backfill["file"] is None, backfill
    assert (backfill["progress"]["batches"], backfill["progress"]["rows"]) == (1, 100)
    assert "no release installed or rolling out" in backfill["note"]
    assert "slipway migrations abandon dev 3" in backfill["note"]


def test_an_edited_backfill_is_refused_before_any_host_then_abandoned_and_fixed(pg_webapp: WebApp) -> None:
    app = pg_webapp
    half_done_backfill(app)
    before = deployments(app, "dev")
    releases = sorted(p.name for p in (app.root / ".slipway/targets/dev/releases").iterdir())
    write(app, "0003_migrate_fill_upper.sql", FIXED_BACKFILL, "fix the backfill in place")
    refused = app.slipway("run", check=False)
    assert refused.returncode == 7, refused.stderr
    # Refused before any host was touched: no deployment started, no release installed.
    assert sorted(p.name for p in (app.root / ".slipway/targets/dev/releases").iterdir()) == releases
    assert deployments(app, "dev") == before
    assert "edited while its backfill was in progress" in refused.stderr and "migrations abandon dev 3" in refused.stderr

    no_reason = app.slipway("migrations", "abandon", "dev", "3", check=False)
    assert no_reason.returncode == 2 and "--reason" in no_reason.stderr
    blank = app.slipway("migrations", "abandon", "dev", "3", "--reason", " ", check=False)
    assert blank.returncode == 7 and "reason" in blank.stderr
    assert status_of(app, "dev")[3]["state"] == "in-progress"
    not_in_progress = app.slipway("migrations", "abandon", "dev", "2", "--reason", "x", check=False)
    assert not_in_progress.returncode == 7 and "only a backfill in progress" in not_in_progress.stderr

    done = app.slipway("migrations", "abandon", "dev", "3", "--reason", "division by zero at row 150")
    assert "1 batches" in done.stdout and "100 rows" in done.stdout
    store = app.store()
    try:
        [entry] = [a for a in store.audit_log(limit=50) if a.action == "migration.abandon"]
    finally:
        store.close()
    detail = json.loads(entry.detail)
    assert (entry.actor, entry.subject) == ("tester", "dev 3")
    assert (detail["reason"], detail["batches"], detail["rows"], detail["last_key"]) == (
        "division by zero at row 150", 1, 100, 100
    )
    assert status_of(app, "dev")[3]["state"] == "pending"

    assert app.json("run")["state"] == "succeeded"  # the fixed file runs from the first key
    fixed = status_of(app, "dev")[3]
    assert fixed["state"] == "applied" and fixed["progress"] is None
    engine_rows = app.json("migrations", "status", "dev")
    assert all(r["state"] == "applied" for r in engine_rows), engine_rows
    app.execute("dev", "DO $$ BEGIN IF EXISTS (SELECT 1 FROM items WHERE upper_name IS DISTINCT FROM upper(name)) "
                "THEN RAISE EXCEPTION 'not backfilled'; END IF; END $$")


HOSTS = ("web-1", "web-2")


def test_a_parked_canary_shows_its_migrations_applied_and_its_contract_held(
    tmp_path: Path, repo_root: Path, postgres_server: PostgresServer
) -> None:
    app = make_webapp(tmp_path, repo_root, "postgres", postgres_server)
    try:
        config = yaml.safe_load((app.root / "slipway.yml").read_text())
        production = config["environments"]["production"]
        production["targets"] = [
            {"kind": "local", "name": h, "path": f".slipway/targets/{h}", "vars": {"port": free_port()}}
            for h in HOSTS
        ]
        production["strategy"] = {
            "kind": "canary", "canary_hosts": 1, "bake_time": 0.3, "check_interval": 0.1, "on_success": "pause",
        }
        config["environments"] = {"production": production}
        config.pop("review", None)
        config["pipeline"] = [
            {"name": "build", "kind": "build"},
            {"name": "deploy", "kind": "deploy", "environment": "production"},
        ]
        (app.root / "slipway.yml").write_text(yaml.safe_dump(config, sort_keys=False))
        app.commit("production: two hosts behind a canary that waits")
        for release in (1, 2):
            if release > 1:
                app.overlay(release)
            parked = app.json("run")
            assert parked["state"] == "waiting", parked
            app.slipway("approve", str(parked["id"]), "--reason", f"release {release}")
        app.overlay(3)
        parked = app.json("run")
        assert parked["state"] == "waiting", parked
        status = {r["name"]: r for r in app.json("migrations", "status", "production")}
        # The canary's deployment applied 0004 before web-1 switched: applied, not missing.
        assert status["fill_split_name_rest"]["state"] == "applied", status
        contract = status["drop_name"]
        assert contract["state"] == "held", contract
        assert "parked after its canary" in contract["held_because"] and f"approve {parked['id']}" in contract["held_because"]
        assert "web-2 runs release" in contract["held_because"], contract
        assert "name" in app.columns("production")

        app.slipway("approve", str(parked["id"]), "--reason", "release 3")
        status = {r["name"]: r for r in app.json("migrations", "status", "production")}
        assert status["drop_name"]["state"] == "applied", status
        assert "name" not in app.columns("production")
    finally:
        app.stop_apps()
