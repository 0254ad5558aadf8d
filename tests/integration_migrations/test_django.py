"""``migrations: {tool: django}``: examples/django-app through the CLI on a real PostgreSQL.

Release 1 creates ``items_item (id, name)`` and ``notes_note`` (two apps); release 2 adds ``title`` (expand)
and backfills it (migrate); release 3 drops ``name`` (contract). Slipway drives the release's own manage.py
(showmigrations --plan, migrate --plan, migrate, sqlmigrate). Production has two hosts behind a canary that
parks after the first, so release 3's contract is held while production-2 still runs release 2, and runs
once it is approved. A rollback past the applied contract migration is refused before any host changes,
naming the app and the migration and the release that applied it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool
from tests.e2e.conftest import GIT_ENV
from tests.integration_migrations.test_alembic import AlembicApp
from tests.integration_migrations.test_parallel_change import migration_windows
from tests.support.postgres import PostgresServer

pytestmark = [pytest.mark.timeout(400), pytest.mark.postgres]
CONTRACT = "items.0004_remove_item_name"


class DjangoApp(AlembicApp):
    """examples/django-app in its own git repository, one PostgreSQL database per environment."""

    label: ClassVar[str] = "django-app"

    def applied_ids(self, environment: str) -> set[str]:
        """What Django's own table says is applied."""
        engine = sa.create_engine(self.db_urls[environment], poolclass=NullPool)
        try:
            with engine.connect() as conn:
                return {f"{a}.{n}" for a, n in conn.exec_driver_sql("SELECT app, name FROM django_migrations")}
        finally:
            engine.dispose()

    def item_columns(self, environment: str) -> set[str]:
        engine = sa.create_engine(self.db_urls[environment], poolclass=NullPool)
        try:
            return {c["name"] for c in sa.inspect(engine).get_columns("items_item")}
        finally:
            engine.dispose()

    def migrations(self, environment: str) -> dict[str, dict[str, Any]]:
        return {r["version"]: r for r in self.json("migrations", "status", environment)}


@pytest.fixture
def django_app(tmp_path: Path, repo_root: Path, postgres_server: PostgresServer) -> Iterator[DjangoApp]:
    root = tmp_path / "django-app"
    shutil.copytree(repo_root / "examples/django-app", root)
    env = {**os.environ, **GIT_ENV, "SLIPWAY_USER": "tester"}
    app = DjangoApp(root=root, env=env)
    # Production only: its canary holds the contract; dev would run the same migrations once more (test_alembic
    # covers a second environment) and double the test's time.
    config = root / "slipway.yml"
    text = config.read_text()
    dev = text[text.index("  dev:\n") : text.index("  production:\n")]
    config.write_text(text.replace(dev, "").replace("  - {name: deploy-dev, kind: deploy, environment: dev}\n", ""))
    url = postgres_server.create_database(f"django_{tmp_path.name[-12:].lower().replace('-', '_')}")
    env["DJANGO_APP_PRODUCTION_DATABASE_URL"] = app.db_urls["production"] = url
    subprocess.run(["git", "init", "-q"], cwd=root, check=True, env=env)
    app.commit("django-app: release 1")
    yield app


def test_three_releases_parallel_change_and_no_rollback_past_the_contract(django_app: DjangoApp) -> None:
    app = django_app
    releases: dict[int, dict[str, str]] = {}
    for number in (1, 2, 3):
        if number > 1:
            app.overlay(number)
        parked = app.json("run")
        assert parked["state"] == "waiting", parked
        if number == 3:  # production-1 runs release 3, production-2 still release 2: the contract waits
            held = app.migrations("production")[CONTRACT]
            assert held["state"] == "held" and "production-2 runs release" in held["held_because"], held
            assert "name" in app.item_columns("production") and CONTRACT not in app.applied_ids("production")
        app.slipway("approve", str(parked["id"]), "--reason", f"release {number}")
        production = app.status()["production"]
        releases[number] = {"id": production["release"], "run": str(parked["id"]), "digest": production["artifact_digest"]}

    expected = ["items.0001_initial", "items.0002_item_title", "items.0003_backfill_title", CONTRACT, "notes.0001_initial"]
    assert app.item_columns("production") == {"id", "title"} and app.applied_ids("production") == set(expected)
    status = app.migrations("production")
    assert list(status) == expected, status  # Django's plan order
    assert [status[m]["phase"] for m in expected] == ["expand", "expand", "migrate", "contract", "expand"]
    assert all(row["state"] == "applied" and row["applied_by"] == "tester" for row in status.values()), status
    assert [status[m]["release"] for m in expected] == [releases[n]["id"] for n in (1, 2, 2, 3, 1)]
    assert status[CONTRACT]["file"] == "items/migrations/0004_remove_item_name.py"
    # Expand and migrate ran before any host switched, contract after the last verify.
    windows = migration_windows(app, int(releases[2]["run"]), "production")  # type: ignore[arg-type]
    assert windows["expand"][1] <= windows["before-switch"][1] and windows["migrate"][1] <= windows["before-switch"][1]
    windows = migration_windows(app, int(releases[3]["run"]), "production")  # type: ignore[arg-type]
    assert windows["contract"][0] >= windows["switch"][1], windows

    # Rolling production back past the applied contract migration is refused before any host changes.
    before, deployments = app.hosts(), app.json("deployments", "production")
    refused = app.slipway("rollback", "production", "--to", releases[2]["id"], "--reason", "back", check=False)
    assert refused.returncode == 7, refused.stdout + refused.stderr
    assert f"contract migration {CONTRACT} (drop items.name" in refused.stderr, refused.stderr
    assert f"with release {releases[3]['id']}" in refused.stderr and "Django migrations" in refused.stderr
    assert app.hosts() == before and app.json("deployments", "production") == deployments
    # Promoting release 1's artifact, which knows none of the later migrations, is refused the same way.
    stale = app.slipway("promote", releases[1]["digest"], "--to", "production", "--allow-older",
                        "--reason", "re-deploy release 1", check=False)
    assert stale.returncode == 7, stale.stdout + stale.stderr
    assert "Django migration" in stale.stderr and CONTRACT in stale.stderr, stale.stderr
    assert app.hosts() == before and app.json("deployments", "production") == deployments
