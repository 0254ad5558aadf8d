"""``migrations: {tool: django}`` and ``{tool: command}`` without PostgreSQL: Django's plan output parsed, the
config keys of each tool, the head of a graph of apps, and a command "tool" (a small script) on SQLite."""

from __future__ import annotations

import shutil
import sqlite3
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tests.migrations.test_alembic_tool import CONFIG, record

from slipway.config import parse_config
from slipway.errors import ConfigError, MigrationError
from slipway.migrations.alembic_history import TABLES, read_records, record_applied
from slipway.migrations.command_tool import CommandProject, parse_listing
from slipway.migrations.django_tool import DJANGO, DjangoProject, parse_migrate_plan, parse_showmigrations_plan
from slipway.migrations.files import Phase
from slipway.migrations.framework import Revision
from slipway.model.config import MigrationCommands
from slipway.services.framework_migrations import (
    DatabaseView,
    behind_contract,
    refuse_expand_behind_contract,
    refuse_unknown_head,
)

pytestmark = pytest.mark.timeout(60)

PLAN = """\
[X]  items.0001_initial
[X]  items.0002_item_title ... (items.0001_initial)
[ ]  notes.0001_initial
[ ]  items.0003_link_notes ... (items.0002_item_title, notes.0001_initial)
"""

MIGRATE_PLAN = """\
Planned operations:
items.0002_item_title
    Add field title to item
items.0003_backfill_title
    Raw SQL operation -> UPDATE items_item SET title = name WHERE…
"""


def test_showmigrations_plan_gives_order_applied_and_dependencies() -> None:
    entries = parse_showmigrations_plan(PLAN)
    assert [(e.id, e.applied) for e in entries] == [
        ("items.0001_initial", True),
        ("items.0002_item_title", True),
        ("notes.0001_initial", False),
        ("items.0003_link_notes", False),
    ]
    assert entries[3].depends_on == ("items.0002_item_title", "notes.0001_initial") and entries[0].depends_on == ()
    assert parse_showmigrations_plan("(no migrations)\n") == ()


def test_a_plan_line_slipway_cannot_read_is_an_error_not_a_silent_skip() -> None:
    with pytest.raises(MigrationError) as info:
        parse_showmigrations_plan("[X]  items.0001_initial\n[-]  items.0002_squashed\n")
    assert "[-]  items.0002_squashed" in str(info.value) and "Django" in (info.value.hint or "")


def test_migrate_plan_lists_the_migrations_not_their_operations() -> None:
    assert parse_migrate_plan(MIGRATE_PLAN) == ["items.0002_item_title", "items.0003_backfill_title"]
    assert parse_migrate_plan("Planned operations:\n  No planned migration operations.\n") == []
    with pytest.raises(ValueError, match="printed no plan"):
        parse_migrate_plan("Operations to perform:\n  Apply all migrations: items\n")


def node(revision: str, *parents: str, phase: Phase = Phase.EXPAND) -> Revision:
    app, name = revision.split(".")
    return Revision(revision, None, f"{app}/migrations/{name}.py", f"change {revision}", phase, depends_on=parents)


def test_the_head_of_several_apps_is_every_applied_migration_the_release_has() -> None:
    revisions = (node("items.1"), node("notes.1"), node("items.2", "items.1"))
    view = DatabaseView(revisions, "items.1", applied_ids=frozenset({"items.1", "notes.1"}), words=DJANGO)
    assert view.knows_head and [r.revision for r in view.pending()] == ["items.2"]
    assert [r.revision for r in view.applied()] == ["items.1", "notes.1"]
    ahead = DatabaseView(
        revisions, "items.1", {"notes.2": record("notes.2", Phase.EXPAND, "r3")},
        frozenset({"items.1", "notes.1", "notes.2"}), DJANGO,
    )
    assert ahead.unknown_heads() == ("notes.2",) and ahead.pending() == ()
    with pytest.raises(MigrationError) as info:
        refuse_unknown_head(ahead, environment="prod", release="r2", rollback=False)
    assert "the database is at Django migration notes.2 (change notes.2)" in str(info.value)
    assert "the Django migrations of r2 do not contain it" in str(info.value) and "release r3" in (info.value.hint or "")
    warning = refuse_unknown_head(ahead, environment="prod", release="r2", rollback=True)
    assert warning and "Django migration notes.2" in warning


def test_a_rollback_past_a_contract_of_one_app_names_the_app_and_migration() -> None:
    view = DatabaseView(
        (node("items.1"), node("notes.1")), None, {"items.2": record("items.2", Phase.CONTRACT, "r3")},
        frozenset({"items.1", "notes.1", "items.2"}), DJANGO,
    )
    with pytest.raises(MigrationError) as info:
        refuse_unknown_head(view, environment="prod", release="r2", rollback=True)
    assert "contract migration items.2 (change items.2)" in str(info.value) and "with release r3" in str(info.value)


def test_in_a_graph_only_what_depends_on_a_pending_contract_is_behind_it() -> None:
    contract = node("items.3", "items.2", phase=Phase.CONTRACT)
    other_app = node("notes.2", "notes.1")  # after the contract in the plan, but not after it in the graph
    after = node("items.4", "items.3")
    assert behind_contract([contract, other_app]) == {}
    refuse_expand_behind_contract([contract, other_app], environment="prod")
    with pytest.raises(MigrationError) as info:
        refuse_expand_behind_contract([contract, other_app, after], environment="prod")
    assert "expand migration items.4 comes after contract migration items.3" in str(info.value)


def parse(migrations: str) -> object:
    return parse_config(CONFIG.format(migrations=migrations), path=Path("/p/slipway.yml")).project.migrations


def test_tool_django_and_tool_command_parse_with_their_keys() -> None:
    django = parse("{tool: django, manage: src/manage.py, settings: shop.settings, python: python3}")
    assert django.django_manage == "src/manage.py" and django.settings == "shop.settings"
    assert parse("{tool: django}").django_manage == "manage.py"
    command = parse("{tool: command, commands: {apply: 'a', head: 'h', list: 'l'}}")
    assert command.commands == MigrationCommands(apply="a", head="h", list="l")


@pytest.mark.parametrize(
    ("migrations", "says"),
    [
        ("{tool: command}", "tool command needs commands.apply, commands.head, commands.list"),
        ("{tool: command, commands: {apply: a, list: l}}", "commands.head: the command that prints the id"),
        ("{tool: django, commands: {apply: a}}", "commands: only for 'tool: command'"),
        ("{tool: alembic, manage: manage.py}", "manage: only for 'tool: django'"),
        ("{tool: command, commands: {apply: a, head: h, list: l}, python: python3}", "python: only for 'tool: alembic'"),
        ("{tool: django, manage: ../manage.py}", "must be a relative path inside the artifact"),
        ("{tool: django, directory: db}", "directory is for tool sql"),
        ("{tool: django, settings: shop/settings.py}", "not a module name: write the dotted name"),
    ],
)
def test_bad_keys_of_a_tool_say_what_where_and_what_to_do(migrations: str, says: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(migrations)
    assert says in str(info.value) and "migrations" in str(info.value), str(info.value)


TOOL = '''\
"""A migration tool of its own: migrations/NNNN_PHASE.sql, applied in order to a SQLite database."""
import os, pathlib, sqlite3, sys

db = sqlite3.connect(os.environ["SLIPWAY_APP_DATABASE_URL"].removeprefix("sqlite:///"))
db.execute("CREATE TABLE IF NOT EXISTS tool_version (id TEXT)")
files = sorted(pathlib.Path("migrations").glob("*.sql"))
if sys.argv[1] == "list":
    for f in files:
        print(f.stem.split("_")[0], f.stem.split("_")[1], "file", f.name)
elif sys.argv[1] == "head":
    print("connecting...")
    row = db.execute("SELECT max(id) FROM tool_version").fetchone()
    print(row[0] or "")
elif sys.argv[1] == "sql":
    print(next(f for f in files if f.stem.startswith(os.environ["SLIPWAY_MIGRATION"])).read_text())
else:
    head = db.execute("SELECT max(id) FROM tool_version").fetchone()[0] or ""
    for f in files:
        number = f.stem.split("_")[0]
        if head < number <= os.environ["SLIPWAY_MIGRATION"]:
            db.executescript(f.read_text())
            db.execute("INSERT INTO tool_version VALUES (?)", (number,))
    db.commit()
'''


@pytest.fixture
def tool_release(tmp_path: Path) -> Path:
    root = tmp_path / "release"
    (root / "migrations").mkdir(parents=True)
    (root / "tool.py").write_text(TOOL)
    (root / "migrations/0001_expand.sql").write_text("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT);\n")
    (root / "migrations/0002_expand.sql").write_text("ALTER TABLE items ADD COLUMN title TEXT;\n")
    (root / "migrations/0003_contract.sql").write_text("ALTER TABLE items DROP COLUMN name;\n")
    return root


def commands(**changed: str) -> MigrationCommands:
    python = shutil.which("python3") or sys.executable
    base = {role: f"{python} tool.py {role}" for role in ("apply", "head", "list", "sql")}
    return MigrationCommands(**{**base, **changed})


def test_a_command_tool_lists_applies_and_prints_its_head_on_sqlite(tool_release: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    tool = CommandProject(tool_release, url, commands(), timeout=30)
    state = tool.read()
    assert [(r.revision, r.phase, r.parents) for r in state.revisions] == [
        ("0001", Phase.EXPAND, ()), ("0002", Phase.EXPAND, ("0001",)), ("0003", Phase.CONTRACT, ("0002",)),
    ]
    assert state.head is None and state.revisions[2].name == "file 0003_contract.sql"
    assert tool.pending_sql(None, state.revisions[1:2]) == {"0002": "ALTER TABLE items ADD COLUMN title TEXT;\n\n"}
    assert tool.apply(state.revisions[1]) == f"SLIPWAY_MIGRATION=0002 {commands().apply}"
    record_applied(
        url, state.revisions[1], connect_timeout=5, applied_at=datetime.now(UTC),
        applied_by="ada", duration=0.1, release="r2", overrides=(), table=TABLES["command"],
    )
    assert tool.read().head == "0002"
    with sqlite3.connect(tmp_path / "app.db") as db:
        assert [c[1] for c in db.execute("PRAGMA table_info(items)")] == ["id", "name", "title"]
    records = read_records(url, connect_timeout=5, table=TABLES["command"])
    view = DatabaseView(tool.read().revisions[:1], "0002", records, words=tool.words)
    with pytest.raises(MigrationError) as info:
        refuse_unknown_head(view, environment="prod", release="r1", rollback=False)
    assert "the database is at migration 0002 (file 0002_expand.sql)" in str(info.value)
    assert "the migrations listed by migrations.commands.list of r1 do not contain it" in str(info.value)
    assert "deploy release r2" in (info.value.hint or "")


def test_a_failing_command_says_which_key_its_exit_code_and_output(tool_release: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    broken = CommandProject(tool_release, url, commands(apply="echo 'relation items does not exist' >&2; exit 3"), timeout=30)
    with pytest.raises(MigrationError) as info:
        broken.apply(Revision("0001", None, "", "", Phase.EXPAND))
    text = str(info.value)
    assert "migrations.commands.apply" in text and "exited 3 for SLIPWAY_MIGRATION=0001" in text
    assert "relation items does not exist" in text


def test_a_listing_with_a_bad_phase_or_a_repeated_id_names_the_line() -> None:
    with pytest.raises(MigrationError) as info:
        parse_listing("0001 expand\n0002 later\n")
    assert "line 2" in str(info.value) and "'later' is not a phase" in str(info.value)
    with pytest.raises(MigrationError) as twice:
        parse_listing("# comment\n0001\n0001 contract\n")
    assert "lists 0001 a second time" in str(twice.value)


def test_a_django_migration_with_a_bad_phase_is_named_by_its_file(tmp_path: Path, repo_root: Path) -> None:
    root = tmp_path / "release"
    shutil.copytree(repo_root / "examples/django-app", root)
    path = root / "items/migrations/0001_initial.py"
    path.write_text(path.read_text().replace('phase = "expand"', 'phase = "soon"'))
    environ = {"PATH": "/usr/bin:/bin", "DATABASE_URL": f"sqlite:///{tmp_path / 'app.db'}"}
    with pytest.raises(MigrationError) as info:
        DjangoProject(root, f"sqlite:///{tmp_path / 'app.db'}", environ=environ, timeout=50).read()
    assert "items/migrations/0001_initial.py" in str(info.value) and "'soon' is not a phase" in str(info.value)


def test_a_django_release_applies_one_migration_at_a_time_through_manage_py(tmp_path: Path, repo_root: Path) -> None:
    root = tmp_path / "release"
    shutil.copytree(repo_root / "examples/django-app", root)
    shutil.copytree(root / "parallel-change/release-2", root, dirs_exist_ok=True)
    url = f"sqlite:///{tmp_path / 'app.db'}"
    django = DjangoProject(root, url, settings="shop.settings", environ={"PATH": "/usr/bin:/bin", "DATABASE_URL": url}, timeout=50)
    state = django.read()
    ids = [r.revision for r in state.revisions]
    assert ids[:3] == ["items.0001_initial", "items.0002_item_title", "items.0003_backfill_title"] and len(ids) == 4
    assert state.revisions[2].phase is Phase.MIGRATE and state.revisions[2].parents == ("items.0002_item_title",)
    assert state.revisions[1].path == "items/migrations/0002_item_title.py" and state.applied_ids == frozenset()
    sql = django.pending_sql(None, state.revisions[1:3])
    assert sql["items.0002_item_title"] == 'ALTER TABLE "items_item" ADD COLUMN "title" text NULL;\n\n'
    # migrate --plan guards: applying 0002 would also apply 0001, which Slipway did not ask for.
    with pytest.raises(MigrationError) as info:
        django.apply(state.revisions[1])
    assert "would run items.0001_initial, items.0002_item_title, not only items.0002_item_title" in str(info.value)
    assert django.apply(state.revisions[0]) == "manage.py migrate items 0001_initial"
    assert django.read().applied_ids == frozenset({"items.0001_initial"})
    with sqlite3.connect(tmp_path / "app.db") as db:
        assert {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")} >= {"items_item"}
        assert "notes_note" not in {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
