"""``migrations: {tool: alembic}``: examples/alembic-app through the CLI on a real PostgreSQL.

Release 1 creates ``items (id, name)``; release 2 adds ``title`` (expand) and backfills it (migrate);
release 3 drops ``name`` (contract). Production has two hosts behind a canary that parks after the first,
so release 3's contract is held while production-2 still runs release 2, and runs once it is approved.
A rollback past the applied contract revision, and a promote or deploy of a release that lacks the
database's head, are refused before any host changes, naming the revision and the release that applied it.
The SQL an Alembic revision would execute (offline mode) is linted like a ``.sql`` file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool
from tests.e2e.conftest import GIT_ENV
from tests.integration_migrations.conftest import WebApp
from tests.integration_migrations.test_parallel_change import migration_windows
from tests.support.postgres import PostgresServer

from slipway.store.repository import Store

pytestmark = [pytest.mark.timeout(600), pytest.mark.postgres]
VERSIONS = "migrations/versions"


@dataclass
class AlembicApp(WebApp):
    """examples/alembic-app in its own git repository, one PostgreSQL database per environment."""

    label: ClassVar[str] = "alembic-app"

    def head(self, environment: str) -> str:
        engine = sa.create_engine(self.db_urls[environment], poolclass=NullPool)
        try:
            with engine.connect() as conn:
                return str(conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar_one())
        finally:
            engine.dispose()

    def revisions(self, environment: str) -> dict[str, dict[str, Any]]:
        return {r["version"]: r for r in self.json("migrations", "status", environment)}

    def run_and_approve(self) -> int:
        """Run the pipeline; approve production's parked canary; return the run id."""
        parked = self.json("run")
        assert parked["state"] == "waiting", parked
        self.slipway("approve", str(parked["id"]), "--reason", "the canary is fine")
        return int(parked["id"])

    def store(self) -> Store:
        return Store(f"sqlite:///{self.root / '.slipway/state.db'}")

    def hosts(self) -> dict[str, str]:
        """The release each host of every environment runs (its ``current`` link)."""
        targets = self.root / ".slipway/targets"
        return {p.name: os.readlink(p / "current") for p in sorted(targets.iterdir()) if (p / "current").is_symlink()}


@pytest.fixture
def alembic_app(tmp_path: Path, repo_root: Path, postgres_server: PostgresServer) -> Iterator[AlembicApp]:
    root = tmp_path / "alembic-app"
    shutil.copytree(repo_root / "examples/alembic-app", root)
    env = {**os.environ, **GIT_ENV, "SLIPWAY_USER": "tester"}
    app = AlembicApp(root=root, env=env)
    for name in ("dev", "production"):
        url = postgres_server.create_database(f"alembic_{name}_{tmp_path.name[-12:].lower().replace('-', '_')}")
        env[f"ALEMBIC_APP_{name.upper()}_DATABASE_URL"] = app.db_urls[name] = url
    subprocess.run(["git", "init", "-q"], cwd=root, check=True, env=env)
    app.commit("alembic-app: release 1")
    yield app


def release_of(app: AlembicApp, environment: str) -> str:
    return str(app.status()[environment]["release"])


def three_releases(app: AlembicApp) -> dict[int, dict[str, str]]:
    """Deploy releases 1, 2 and 3 everywhere; {release: {release id, digest}} (checks along the way)."""
    releases: dict[int, dict[str, str]] = {}
    for number in (1, 2, 3):
        if number > 1:
            app.overlay(number)
        parked = app.json("run")
        assert parked["state"] == "waiting", parked
        if number == 3:  # production-1 runs release 3, production-2 still release 2: the contract waits
            status = app.revisions("production")
            assert status["0004"]["state"] == "held", status["0004"]
            assert "production-2 runs release" in status["0004"]["held_because"], status["0004"]
            assert "name" in app.columns("production") and app.head("production") == "0003"
            assert "name" not in app.columns("dev")  # dev has one host: its contract ran after verify
            held = app.slipway("migrations", "contract", "production")
            assert "no contract migration of production was due" in held.stdout, held.stdout + held.stderr
            assert app.head("production") == "0003"
        app.slipway("approve", str(parked["id"]), "--reason", f"release {number}")
        production = app.status()["production"]
        releases[number] = {"id": production["release"], "digest": production["artifact_digest"], "run": str(parked["id"])}
    return releases


def test_three_releases_parallel_change_and_no_rollback_past_the_contract(alembic_app: AlembicApp) -> None:
    app = alembic_app
    releases = three_releases(app)
    for env in ("dev", "production"):
        assert app.columns(env) == {"id", "title"} and app.head(env) == "0004"
        status = app.revisions(env)
        assert list(status) == ["0001", "0002", "0003", "0004"]
        assert [status[r]["phase"] for r in status] == ["expand", "expand", "migrate", "contract"]
        assert all(row["state"] == "applied" and row["applied_by"] == "tester" for row in status.values())
        if env == "production":  # release ids carry the time of the environment's deployment
            assert [status[r]["release"] for r in status] == [releases[n]["id"] for n in (1, 2, 2, 3)]
        assert status["0004"]["file"] == f"{VERSIONS}/0004_drop_name.py"

    table = app.slipway("migrations", "status", "production").stdout
    assert "0004" in table and "contract" in table and releases[3]["id"] in table
    # Expand and migrate ran before any host switched, contract after the last verify.
    for number, phases in ((2, {"expand", "migrate"}), (3, {"contract"})):
        for env in ("dev", "production"):
            windows = migration_windows(app, int(releases[number]["run"]), env)  # type: ignore[arg-type]
            assert phases <= set(windows), windows
            for phase in phases - {"contract"}:
                assert windows[phase][1] <= windows["before-switch"][1], (env, phase, windows)
            if "contract" in phases:
                assert windows["contract"][0] >= windows["switch"][1], (env, windows)

    # Rolling production back past the applied contract revision is refused before any host changes.
    before, deployments = app.hosts(), app.json("deployments", "production")
    refused = app.slipway("rollback", "production", "--to", releases[2]["id"], "--reason", "back", check=False)
    assert refused.returncode == 7, refused.stdout + refused.stderr
    assert "contract revision 0004" in refused.stderr and "drop items.name" in refused.stderr, refused.stderr
    assert f"with release {releases[3]['id']}" in refused.stderr, refused.stderr
    assert app.hosts() == before and app.json("deployments", "production") == deployments
    assert app.head("production") == "0004"


def test_promote_of_a_release_without_the_database_head_is_refused_and_rollback_behind_expand_is_not(alembic_app: AlembicApp) -> None:
    app = alembic_app
    app.run_and_approve()
    digest_one, release_one = app.status()["production"]["artifact_digest"], release_of(app, "production")
    app.overlay(2)
    app.run_and_approve()
    release_two = release_of(app, "production")
    before, deployments = app.hosts(), app.json("deployments", "production")
    refused = app.slipway(
        "promote", digest_one, "--to", "production", "--allow-older", "--reason", "re-deploy release 1", check=False
    )
    assert refused.returncode == 7, refused.stdout + refused.stderr
    assert "Alembic revision 0003" in refused.stderr and f"deploy release {release_two}" in refused.stderr
    assert app.hosts() == before and app.json("deployments", "production") == deployments
    assert app.head("production") == "0003"
    # Rolling back behind expand revisions is what expand is for: allowed (no migration runs), and it says so.
    back = app.slipway("rollback", "production", "--reason", "try release 1 on the expanded schema")
    assert "revision 0003" in back.stdout + back.stderr and "does not know it" in back.stdout + back.stderr
    assert release_of(app, "production") == release_one and app.columns("production") == {"id", "name", "title"}
    # Status reads the release rolled back from, which knows the head: nothing shows as pending or missing.
    status = app.revisions("production")
    assert {r: row["state"] for r, row in status.items()} == {"0001": "applied", "0002": "applied", "0003": "applied"}


INDEX = '''"""index items by name"""

from alembic import op

revision = "0002"
down_revision = "0001"
phase = "expand"
{allow}

def upgrade() -> None:
    op.create_index("items_name", "items", ["name"])
'''


def test_the_linter_reads_the_sql_of_a_revision(alembic_app: AlembicApp) -> None:
    app = alembic_app
    app.run_and_approve()
    before = app.hosts()
    (app.root / VERSIONS / "0002_index_name.py").write_text(INDEX.format(allow=""))
    app.commit("an index built without CONCURRENTLY")
    refused = app.slipway("run", check=False)
    assert refused.returncode == 7, refused.stdout + refused.stderr
    assert "SW008" in refused.stderr and "0002_index_name.py (offline SQL of revision 0002)" in refused.stderr
    assert "CREATE INDEX items_name ON items" in refused.stderr, refused.stderr
    assert app.hosts() == before and app.head("dev") == "0001"
    lint = app.slipway("migrations", "lint", "--json", check=False)
    assert lint.returncode == 7 and '"rule": "SW008"' in lint.stdout, lint.stdout + lint.stderr

    (app.root / VERSIONS / "0002_index_name.py").write_text(
        INDEX.format(allow='allow = {"SW008": "items has a handful of rows"}')
    )
    app.commit("allowed: items is tiny")
    app.run_and_approve()
    assert app.head("production") == "0002"
    assert app.revisions("production")["0002"]["overrides"] == [
        {"rule": "SW008", "reason": "items has a handful of rows"}
    ]


ENV_FROM_SECRET = """config = context.config
import os  # noqa: E402
assert os.environ["SLIPWAY_ENVIRONMENT"] in ("dev", "production"), "Slipway says which environment"
config.set_main_option("sqlalchemy.url", os.environ["DATABASE_URL"].replace("%", "%%"))
"""


def test_manual_contract_waits_for_the_command(alembic_app: AlembicApp) -> None:
    app = alembic_app
    config = app.root / "slipway.yml"
    config.write_text(config.read_text().replace("contract: auto", "contract: manual"))
    # env.py reads the URL the way many apps do, from the environment's secret DATABASE_URL, as hooks get it.
    env_py = app.root / "migrations/env.py"
    env_py.write_text(env_py.read_text().replace("config = context.config\n", ENV_FROM_SECRET))
    app.commit("contract: manual; env.py takes the URL from DATABASE_URL")
    app.run_and_approve()
    shutil.copytree(app.root / "parallel-change/release-2", app.root, dirs_exist_ok=True)
    app.overlay(3)  # one release with the expand, the backfill and the contract
    parked = app.json("run")  # dev deployed; production parked after its canary
    assert parked["state"] == "waiting", parked
    assert app.head("dev") == "0003" and app.columns("dev") == {"id", "name", "title"}
    contract = app.revisions("dev")["0004"]
    assert contract["state"] == "held" and "contract: manual" in contract["held_because"], contract
    done = app.slipway("migrations", "contract", "dev")
    assert "applied 1 contract migration(s): 0004_drop_name.py" in done.stdout, done.stdout + done.stderr
    assert app.head("dev") == "0004" and app.columns("dev") == {"id", "title"}
    assert app.revisions("dev")["0004"]["state"] == "applied"
    assert app.head("production") == "0003"  # its own database: untouched by the command for dev
