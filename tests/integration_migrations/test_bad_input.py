"""Every way a deployment's migrations must be refused or held, through the real CLI on SQLite.

Each case deploys the example (release 1) to dev and staging first, then a commit with a bad migration:
the refusal must name the file (and rule), leave the database as it was and switch no host.
"""

from __future__ import annotations

import json
import os

import pytest
from tests.integration_migrations.conftest import WebApp
from tests.support.ports import free_port

pytestmark = pytest.mark.timeout(300)
MIGRATIONS = "db/migrations"


def release_one(app: WebApp) -> dict[str, str]:
    """Deploy release 1 to dev and staging (the run waits at the gate); reject it; return dev's status."""
    waiting = app.json("run")
    assert waiting["state"] == "waiting", waiting
    app.slipway("reject", str(waiting["id"]), "--reason", "test")
    return app.status()["dev"]


def add_migration(app: WebApp, name: str, sql: str) -> None:
    (app.root / MIGRATIONS / name).write_text(sql)
    app.commit(f"add {name}")


def refused_run(app: WebApp) -> str:
    proc = app.slipway("run", check=False)
    assert proc.returncode == 7, proc.stdout + proc.stderr
    return proc.stderr


@pytest.mark.parametrize(
    ("sql", "evidence"),
    [
        ("UPDAT items SET name = 'x';\n", "SW000"),  # the linter cannot parse it: refused up front
        ("ALTER TABLE items ADD COLUMN;\n", "rolled back"),  # the parser lets it through, the database not
    ],
)
def test_syntax_error_is_refused_and_no_host_switches(sqlite_webapp: WebApp, sql: str, evidence: str) -> None:
    app = sqlite_webapp
    before = release_one(app)
    add_migration(app, "0002_expand_broken.sql", sql)
    err = refused_run(app)
    assert "0002_expand_broken.sql" in err and evidence in err
    assert app.status()["dev"]["release"] == before["release"]
    assert app.columns("dev") == {"id", "name"}
    # Not applied; status reads the release that failed to roll out too (issue 16), so a file the database
    # reached shows as pending, and one refused up front (by the linter, before any deployment) is unknown.
    assert app.applied("dev").get("broken", {"state": "pending"})["state"] == "pending"


def test_edited_applied_migration_is_refused_naming_it(sqlite_webapp: WebApp) -> None:
    app = sqlite_webapp
    before = release_one(app)
    path = app.root / MIGRATIONS / "0001_expand_create_items.sql"
    path.write_text(path.read_text() + "-- an innocent-looking edit\n")
    app.commit("edit an applied migration")
    err = refused_run(app)
    assert "0001_expand_create_items.sql" in err and "applied" in err and "tester" in err
    assert app.status()["dev"]["release"] == before["release"]


def test_unsafe_expand_is_refused_then_runs_with_a_recorded_override(sqlite_webapp: WebApp) -> None:
    app = sqlite_webapp
    before = release_one(app)
    app.execute("dev", "CREATE TABLE legacy_items (id INTEGER PRIMARY KEY)")
    add_migration(app, "0002_expand_drop_legacy.sql", "DROP TABLE IF EXISTS legacy_items;\n")
    err = refused_run(app)
    assert "0002_expand_drop_legacy.sql" in err and "SW002" in err and "slipway:allow SW002" in err
    assert "legacy_items" in app.tables("dev")  # the database is as it was
    assert app.status()["dev"]["release"] == before["release"]

    reason = "legacy_items was never used by any release"
    add_migration(
        app,
        "0002_expand_drop_legacy.sql",
        f'-- slipway:allow SW002 reason="{reason}"\nDROP TABLE IF EXISTS legacy_items;\n',
    )
    waiting = app.json("run")
    assert waiting["state"] == "waiting"
    assert "legacy_items" not in app.tables("dev")
    assert app.status()["dev"]["release"] != before["release"]
    [row] = [r for r in app.json("migrations", "status", "dev") if r["name"] == "drop_legacy"]
    assert row["overrides"] == [{"rule": "SW002", "reason": reason}] and row["applied_by"] == "tester"
    store = app.store()
    try:
        audit = [a for a in store.audit_log(limit=200) if a.action == "migration.override"]
    finally:
        store.close()
    assert {(a.subject, json.loads(a.detail)["rule"], json.loads(a.detail)["reason"]) for a in audit} >= {
        ("dev 0002_expand_drop_legacy.sql", "SW002", reason)
    }


def test_contract_is_held_while_an_old_release_runs(sqlite_webapp: WebApp) -> None:
    app = sqlite_webapp
    config = app.root / "slipway.yml"
    config.write_text(config.read_text().replace("  contract: auto\n", "  contract: manual\n"))
    app.commit("contract: manual")
    release_one(app)
    app.overlay(2)
    release_one(app)
    release_two = app.status()["dev"]["release"]
    app.overlay(3)
    release_one(app)
    release_three = app.status()["dev"]["release"]
    # Manual: the contract waits for the command, even though dev runs release 3 everywhere.
    [held] = [r for r in app.json("migrations", "status", "dev") if r["name"] == "drop_name"]
    assert held["state"] == "held" and "manual" in held["held_because"]
    assert "name" in app.columns("dev")

    # Back on release 2 (whose artifact lacks the contract): the command holds it, naming the host.
    app.slipway("rollback", "dev", "--to", release_two)
    out = app.slipway("migrations", "contract", "dev")
    assert "no contract migration of dev was due" in out.stdout
    assert "dev-1 runs release" in out.stdout + out.stderr
    [held] = [r for r in app.json("migrations", "status", "dev") if r["name"] == "drop_name"]
    assert held["state"] == "held" and "does not contain it" in held["held_because"]
    assert "name" in app.columns("dev")

    # Forward to release 3 again: now it runs, and going back to release 2 is refused.
    app.slipway("rollback", "dev", "--to", release_three)
    out = app.slipway("migrations", "contract", "dev")
    assert "0005_contract_drop_name.sql" in out.stdout
    assert "name" not in app.columns("dev")
    refused = app.slipway("rollback", "dev", "--to", release_two, check=False)
    assert refused.returncode == 7 and "drop_name" in refused.stderr


def test_unreachable_database_is_a_clear_error_and_no_host_switches(sqlite_webapp: WebApp) -> None:
    app = sqlite_webapp
    port = free_port()  # nothing listens there
    config = app.root / "slipway.yml"
    text = config.read_text().replace(
        '    database: {url: "sqlite:///.slipway/targets/dev/shared/data/app.db"}\n',
        "    secrets: {DATABASE_URL: {env: DEV_DB}}\n    database: {secret: DATABASE_URL}\n",
    )
    config.write_text(text.replace("  contract: auto\n", "  contract: auto\n  connect_timeout: 2\n"))
    app.commit("dev on PostgreSQL")
    app.env["DEV_DB"] = f"postgresql+psycopg://app:s3cretpassw0rd@127.0.0.1:{port}/app"
    err = refused_run(app)
    assert f"127.0.0.1:{port}" in err and "s3cretpassw0rd" not in err
    assert app.status()["dev"]["release"] is None
    assert not os.path.lexists(app.root / ".slipway/targets/dev/current")
    assert b"s3cretpassw0rd" not in (app.root / ".slipway/state.db").read_bytes()


def test_lint_command_reports_rule_file_line_and_fix(sqlite_webapp: WebApp) -> None:
    app = sqlite_webapp
    (app.root / MIGRATIONS / "0002_expand_rename.sql").write_text(
        "-- a rename breaks the running release\nALTER TABLE items RENAME COLUMN name TO title;\n"
    )
    proc = app.slipway("migrations", "lint", check=False)
    assert proc.returncode == 7
    assert "0002_expand_rename.sql:2" in proc.stdout and "SW003" in proc.stdout and "fix:" in proc.stdout
    [finding] = json.loads(app.slipway("migrations", "lint", "--json", check=False).stdout)
    assert (finding["rule"], finding["line"]) == ("SW003", 2)
    ok = app.slipway("migrations", "lint", str(app.root / "parallel-change/release-2/db/migrations"))
    assert "no findings" in ok.stdout
