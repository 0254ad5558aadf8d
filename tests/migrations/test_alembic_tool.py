"""``migrations: {tool: alembic}`` without a database: the config keys, the revisions read through Alembic's
API from examples/alembic-app, their phase markers, the offline SQL cut per revision, and the pure rules
that refuse a release (unknown head, rollback past a contract, expand behind a pending contract)."""

from __future__ import annotations

import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from slipway.config import parse_config
from slipway.errors import ConfigError, MigrationError
from slipway.migrations.alembic_history import RevisionRecord, read_records, record_applied
from slipway.migrations.alembic_tool import AlembicProject, Revision, database_heads, split_offline_sql
from slipway.migrations.files import Phase
from slipway.migrations.statements import Dialect
from slipway.services.framework_migrations import DatabaseView, refuse_expand_behind_contract, refuse_unknown_head

pytestmark = pytest.mark.timeout(60)

CONFIG = """\
name: app
artifact: {{paths: [app]}}
migrations: {migrations}
environments:
  dev:
    secrets: {{DATABASE_URL: {{env: APP_DB}}}}
    database: {{secret: DATABASE_URL}}
    targets: [{{kind: local, name: d, path: t}}]
pipeline:
  - {{name: build, kind: build}}
  - {{name: deploy-dev, kind: deploy, environment: dev}}
"""


def config_error(migrations: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(CONFIG.format(migrations=migrations), path=Path("/p/slipway.yml"))
    return info.value


def test_tool_alembic_parses_and_sql_stays_the_default() -> None:
    loaded = parse_config(CONFIG.format(migrations="{tool: alembic, config: deploy/alembic.ini}"), path=Path("/p/x"))
    spec = loaded.project.migrations
    assert spec is not None and spec.tool == "alembic" and spec.alembic_config == "deploy/alembic.ini"
    default = parse_config(CONFIG.format(migrations="{directory: db/migrations}"), path=Path("/p/x")).project.migrations
    assert default is not None and default.tool == "sql" and default.directory == "db/migrations"


@pytest.mark.parametrize(
    ("migrations", "says"),
    [
        ("{tool: alembic, directory: db/migrations}", "directory is for tool sql"),
        ("{tool: sql}", "tool sql needs 'directory'"),
        ("{directory: db, config: alembic.ini}", "config: only for 'tool: alembic'"),
        ("{tool: flyway}", "alembic"),
        ("{tool: alembic, config: /etc/alembic.ini}", "must be a relative path inside the artifact"),
    ],
)
def test_bad_migrations_settings_say_what_and_where(migrations: str, says: str) -> None:
    err = config_error(migrations)
    assert says in str(err), str(err)
    assert "migrations" in str(err), str(err)


@pytest.fixture
def release_two(tmp_path: Path, repo_root: Path) -> Path:
    root = tmp_path / "release"
    shutil.copytree(repo_root / "examples/alembic-app", root)
    shutil.copytree(root / "parallel-change/release-2", root, dirs_exist_ok=True)
    return root


def project(root: Path) -> AlembicProject:
    return AlembicProject(root, "postgresql+psycopg://", timeout=50)


def test_revisions_are_read_base_first_with_their_phase(release_two: Path) -> None:
    revisions = project(release_two).revisions()
    assert [(r.revision, r.down_revision, r.phase) for r in revisions] == [
        ("0001", None, Phase.EXPAND),
        ("0002", "0001", Phase.EXPAND),
        ("0003", "0002", Phase.MIGRATE),
    ]
    assert revisions[1].path == "migrations/versions/0002_add_title.py"
    assert revisions[1].name == "add items.title, nullable: release 1 keeps writing name only"


def test_a_bad_phase_or_allow_names_the_revision_file(release_two: Path) -> None:
    path = release_two / "migrations/versions/0003_backfill_title.py"
    path.write_text(path.read_text().replace('phase = "migrate"', 'phase = "later"'))
    with pytest.raises(MigrationError) as bad_phase:
        project(release_two).revisions()
    assert "'later' is not a phase" in str(bad_phase.value) and "0003_backfill_title.py" in str(bad_phase.value)
    path.write_text(path.read_text().replace('phase = "later"', 'phase = "migrate"\nallow = {"SW021": ""}'))
    with pytest.raises(MigrationError) as bad_allow:
        project(release_two).revisions()
    assert "SW021 has no reason" in str(bad_allow.value)


def test_two_heads_are_refused(release_two: Path) -> None:
    branch = release_two / "migrations/versions/0009_branch.py"
    branch.write_text('revision = "0009"\ndown_revision = "0001"\n\ndef upgrade():\n    pass\n')
    with pytest.raises(MigrationError) as info:
        project(release_two).revisions()
    assert "2 heads" in str(info.value) and "alembic merge heads" in (info.value.hint or "")


def test_offline_sql_is_cut_per_revision_without_alembics_own_statements(release_two: Path) -> None:
    sql = project(release_two).offline_sql("0001", "0003")
    assert list(sql) == ["0002", "0003"]
    assert sql["0002"].strip() == "ALTER TABLE items ADD COLUMN title TEXT;"
    assert sql["0003"].strip() == "UPDATE items SET title = name WHERE title IS NULL;"


def test_split_offline_sql_keeps_the_revision_statements() -> None:
    text = (
        "BEGIN;\n\nCREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL);\n\n"
        "-- Running upgrade  -> a1\n\nCREATE INDEX i ON t (c);\n\n"
        "INSERT INTO alembic_version (version_num) VALUES ('a1');\n\n"
        "-- Running upgrade a1 -> b2\n\nALTER TABLE t DROP COLUMN c;\n\n"
        "UPDATE alembic_version SET version_num='b2' WHERE alembic_version.version_num = 'a1';\n\nCOMMIT;\n"
    )
    assert split_offline_sql(text, dialect=Dialect.POSTGRES) == {
        "a1": "CREATE INDEX i ON t (c);\n\n",
        "b2": "ALTER TABLE t DROP COLUMN c;\n\n",
    }


def rev(revision: str, phase: Phase = Phase.EXPAND) -> Revision:
    return Revision(revision, None, f"migrations/versions/{revision}.py", f"change {revision}", phase)


def record(revision: str, phase: Phase, release: str) -> RevisionRecord:
    at = datetime(2026, 11, 30, 9, 15, tzinfo=UTC)
    return RevisionRecord(revision, f"change {revision}", phase, f"v/{revision}.py", at, "ada", 0.1, release)


def test_a_release_that_knows_the_head_passes_and_its_pending_revisions_follow_the_head() -> None:
    view = DatabaseView((rev("a"), rev("b"), rev("c")), "b")
    assert refuse_unknown_head(view, environment="prod", release="r3", rollback=False) is None
    assert [r.revision for r in view.pending()] == ["c"] and [r.revision for r in view.applied()] == ["a", "b"]
    assert [r.revision for r in DatabaseView((rev("a"),), None).pending()] == ["a"]
    behind = DatabaseView((rev("a"),), "b")  # the database is past this release: all of it is applied
    assert not behind.knows_head and behind.pending() == () and [r.revision for r in behind.applied()] == ["a"]


def test_deploying_a_release_without_the_head_names_the_revision_and_the_release_that_applied_it() -> None:
    view = DatabaseView((rev("a"),), "b", {"b": record("b", Phase.EXPAND, "r2")})
    with pytest.raises(MigrationError) as info:
        refuse_unknown_head(view, environment="prod", release="r1", rollback=False)
    assert "Alembic revision b (change b)" in str(info.value) and "with release r2" in str(info.value)
    assert "deploy release r2 or a later one" in (info.value.hint or "")
    unrecorded = DatabaseView((rev("a"),), "x")
    with pytest.raises(MigrationError) as outside:
        refuse_unknown_head(unrecorded, environment="prod", release="r1", rollback=False)
    assert "outside Slipway" in str(outside.value)


def test_a_rollback_behind_expand_is_allowed_with_a_warning_and_past_a_contract_refused() -> None:
    expand_only = DatabaseView((rev("a"),), "b", {"b": record("b", Phase.EXPAND, "r2")})
    warning = refuse_unknown_head(expand_only, environment="prod", release="r1", rollback=True)
    assert warning and "revision b" in warning and "roll forward" in warning
    past_contract = DatabaseView(
        (rev("a"),), "c", {"b": record("b", Phase.CONTRACT, "r2"), "c": record("c", Phase.EXPAND, "r3")}
    )
    with pytest.raises(MigrationError) as info:
        refuse_unknown_head(past_contract, environment="prod", release="r1", rollback=True)
    assert "contract revision b (change b)" in str(info.value) and "with release r2" in str(info.value)


def test_an_expand_behind_a_pending_contract_is_refused() -> None:
    refuse_expand_behind_contract([rev("a"), rev("b", Phase.CONTRACT)], environment="prod")
    with pytest.raises(MigrationError) as info:
        refuse_expand_behind_contract([rev("b", Phase.CONTRACT), rev("c")], environment="prod")
    assert "expand revision c comes after contract revision b" in str(info.value)


def test_upgrade_head_and_records_on_sqlite(release_two: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    alembic = AlembicProject(release_two, url, timeout=50)
    assert database_heads(url, connect_timeout=5) == ()
    revisions = alembic.revisions()
    for revision in revisions[:2]:
        alembic.upgrade(revision.revision)
        at = datetime(2026, 11, 30, 9, 15, tzinfo=UTC)
        record_applied(
            url, revision, connect_timeout=5, applied_at=at, applied_by="ada", duration=0.5, release="r2", overrides=()
        )
    assert database_heads(url, connect_timeout=5) == ("0002",)
    records = read_records(url, connect_timeout=5)
    assert list(records) == ["0001", "0002"]
    assert (records["0002"].phase, records["0002"].release, records["0002"].applied_by) == (Phase.EXPAND, "r2", "ada")
    assert records["0002"].path == "migrations/versions/0002_add_title.py"


def test_a_failing_upgrade_says_which_revision_and_why(release_two: Path, tmp_path: Path) -> None:
    path = release_two / "migrations/versions/0002_add_title.py"
    path.write_text(path.read_text().replace('op.add_column("items"', 'op.add_column("no_such_table"'))
    url = f"sqlite:///{tmp_path / 'app.db'}"
    with pytest.raises(MigrationError) as failed:
        AlembicProject(release_two, url, timeout=50).upgrade("0002")
    assert "alembic upgrade failed" in str(failed.value) and "no_such_table" in str(failed.value), failed.value
    assert database_heads(url, connect_timeout=5) == ("0001",)  # 0001 committed on its own, 0002 rolled back


def test_migrations_python_runs_the_worker_and_a_missing_one_is_named(release_two: Path) -> None:
    assert len(AlembicProject(release_two, "sqlite://", python=sys.executable, timeout=50).revisions()) == 3
    with pytest.raises(MigrationError) as info:
        AlembicProject(release_two, "sqlite://", python=str(release_two / "no-python"), timeout=50).revisions()
    assert "cannot start" in str(info.value) and "no-python" in str(info.value)
    assert "migrations.python" in (info.value.hint or "")


def test_a_releases_revisions_are_listed_once_per_process(release_two: Path) -> None:
    """A deployment reads the release's scripts at its check, expand and contract; each listing started a
    Python with Alembic. The second one comes from what the first found (an artifact never changes)."""
    from dataclasses import replace

    known: dict[tuple[str, ...], tuple[Revision, ...]] = {}
    first = replace(project(release_two), known=known, key=("sha256:x", "alembic.ini", ""))
    listed = first.revisions()
    assert [r.revision for r in listed] == ["0001", "0002", "0003"] and len(known) == 1
    unable = replace(first, python="/nonexistent/python3")  # would fail if it started a worker
    assert unable.revisions() == listed
    with pytest.raises(MigrationError, match="cannot start /nonexistent/python3"):
        replace(unable, key=("sha256:y", "alembic.ini", "")).revisions()  # another release is listed anew
