"""Migration files: naming, ordering, phases, headers, overrides, batch headers and checksums."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slipway.errors import MigrationError
from slipway.migrations import (
    BatchSpec,
    Phase,
    checksum,
    load_migrations,
    order_migrations,
    parse_filename,
    parse_migration,
)

pytestmark = pytest.mark.timeout(60)

names = st.from_regex(r"[a-z0-9][a-z0-9_]{0,20}", fullmatch=True)
phases = st.sampled_from(list(Phase))


def test_name_gives_version_phase_and_description() -> None:
    assert parse_filename("0003_expand_split_name.sql") == (3, Phase.EXPAND, "split_name")
    assert parse_filename("12_contract_drop_old.sql") == (12, Phase.CONTRACT, "drop_old")
    assert parse_filename("0004_split_name.sql") == (4, None, "split_name")
    assert parse_filename("0005_migrate.sql") == (5, Phase.MIGRATE, "migrate")


@pytest.mark.parametrize(
    "filename", ["expand_x.sql", "0003.sql", "0003_.sql", "0003_x.SQL", "v3_expand_x.sql", "0003 expand.sql"]
)
def test_badly_named_sql_file_is_an_error_naming_it(filename: str) -> None:
    with pytest.raises(MigrationError) as caught:
        parse_filename(filename)
    assert filename in str(caught.value)


@settings(max_examples=150, deadline=None)
@given(version=st.integers(0, 10**15), padding=st.integers(0, 8), phase=phases, name=names)
def test_filename_round_trips(version: int, padding: int, phase: Phase, name: str) -> None:
    filename = f"{version:0{padding}d}_{phase.value}_{name}.sql"
    assert parse_filename(filename) == (version, phase, name)


@settings(max_examples=100, deadline=None)
@given(versions=st.lists(st.integers(0, 10**6), min_size=1, max_size=30, unique=True), seed=st.integers())
def test_order_is_numeric_whatever_the_padding(versions: list[int], seed: int) -> None:
    rng = random.Random(seed)
    migrations = [parse_migration(f"{v:0{rng.randint(0, 7)}d}_expand_m{v}.sql", "SELECT 1;") for v in versions]
    rng.shuffle(migrations)
    assert [m.version for m in order_migrations(migrations)] == sorted(versions)


@settings(max_examples=50, deadline=None)
@given(version=st.integers(0, 10**6), first=st.integers(0, 5), second=st.integers(6, 9))
def test_same_version_with_other_padding_is_a_duplicate(version: int, first: int, second: int) -> None:
    a = parse_migration(f"{version:0{first}d}_expand_a.sql", "SELECT 1;")
    b = parse_migration(f"{version:0{second}d}_expand_b.sql", "SELECT 1;")
    with pytest.raises(MigrationError, match=r"used by both"):
        order_migrations([a, b])


def test_header_gives_the_phase_when_the_name_does_not() -> None:
    m = parse_migration("0004_split_name.sql", "-- slipway:phase contract\nALTER TABLE t DROP COLUMN a;")
    assert m.phase is Phase.CONTRACT
    assert m.name == "split_name"


def test_header_and_name_may_agree() -> None:
    assert parse_migration("1_expand_x.sql", "-- slipway:phase expand\nSELECT 1;").phase is Phase.EXPAND


def test_header_and_name_disagreeing_is_an_error() -> None:
    with pytest.raises(MigrationError, match=r"says phase 'expand' but the header says 'contract'") as caught:
        parse_migration("1_expand_x.sql", "-- slipway:phase contract\nSELECT 1;")
    assert "1_expand_x.sql" in str(caught.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("SELECT 1;", "no phase"),
        ("-- slipway:phase backfill\nSELECT 1;", "unknown phase 'backfill'"),
        ("-- slipway:phase expand\n-- slipway:phase expand\nSELECT 1;", "more than one"),
        ("-- slipway:phase expand\n-- slipway:allow SW001\nSELECT 1;", "has no reason"),
        ('-- slipway:phase expand\n-- slipway:allow SW001 reason=""\nSELECT 1;', "has no reason"),
        ('-- slipway:phase expand\n-- slipway:allow SW001 reason="   "\nSELECT 1;', "has no reason"),
        ("-- slipway:phase expand\n-- slipway:allow drop-column because\nSELECT 1;", "cannot read override"),
        (
            '-- slipway:phase expand\n-- slipway:allow SW001 reason="a"\n-- slipway:allow SW001 reason="b"\n',
            "allowed twice",
        ),
        ("-- slipway:phase expand\n-- slipway:alow SW001\nSELECT 1;", "unknown directive"),
    ],
)
def test_bad_headers_are_errors_naming_the_file(text: str, message: str) -> None:
    with pytest.raises(MigrationError, match=message) as caught:
        parse_migration("db/0007_things.sql", text)
    assert "db/0007_things.sql" in str(caught.value)


def test_override_needs_a_reason_and_keeps_it_with_its_line() -> None:
    m = parse_migration("2_expand_x.sql", 'SELECT 1;\n-- slipway:allow SW008 reason="tiny table, 12 rows"\nSELECT 2;')
    assert [(o.rule, o.reason, o.line) for o in m.overrides] == [("SW008", "tiny table, 12 rows", 2)]
    assert m.override_for("SW008") is not None
    assert m.override_for("SW001") is None


BACKFILL = "UPDATE users SET n = 1 WHERE id BETWEEN :batch_start AND :batch_end;"


def test_batch_header_is_read() -> None:
    m = parse_migration("3_migrate_fill.sql", "-- slipway:batch table=app.users key=id size=250\n" + BACKFILL)
    assert m.batch == BatchSpec(table="app.users", key="id", size=250)


def test_batch_size_defaults_to_a_thousand() -> None:
    assert parse_migration("3_migrate_fill.sql", "-- slipway:batch table=users key=id\n" + BACKFILL).batch == (
        BatchSpec("users", "id", 1000)
    )


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("3_migrate_fill.sql", BACKFILL, "needs a batch header"),
        ("3_migrate_fill.sql", "-- slipway:batch key=id\n" + BACKFILL, "needs table="),
        ("3_migrate_fill.sql", "-- slipway:batch table=users\n" + BACKFILL, "needs key="),
        ("3_migrate_fill.sql", "-- slipway:batch table=users key=id size=0\n" + BACKFILL, "batch size"),
        ("3_migrate_fill.sql", "-- slipway:batch table=users key=id size=ten\n" + BACKFILL, "batch size"),
        ("3_migrate_fill.sql", "-- slipway:batch table=users;drop key=id\n" + BACKFILL, "plain SQL name"),
        ("3_migrate_fill.sql", "-- slipway:batch table=users key=id rows=5\n" + BACKFILL, "cannot read"),
        (
            "3_migrate_fill.sql",
            "-- slipway:batch table=users key=id\nUPDATE users SET n = 1 WHERE id >= :batch_start;",
            "missing :batch_end",
        ),
        (
            "3_migrate_fill.sql",
            "-- slipway:batch table=users key=id\n-- :batch_start :batch_end\nUPDATE users SET n = 1;",
            "missing :batch_end, :batch_start",
        ),
        ("3_expand_x.sql", "-- slipway:batch table=users key=id\nSELECT 1;", "only for migrate files"),
    ],
)
def test_bad_batch_declarations_are_errors(name: str, text: str, message: str) -> None:
    with pytest.raises(MigrationError, match=message):
        parse_migration(name, text)


def test_checksum_ignores_line_endings_and_trailing_whitespace() -> None:
    text = "-- slipway:phase expand\nCREATE TABLE t (a int);\n"
    assert checksum(text) == checksum(text.replace("\n", "\r\n"))
    assert checksum(text) == checksum("\ufeff" + text.replace("\n", "   \n") + "\n\n")


def test_checksum_changes_with_sql_and_with_comments() -> None:
    text = "CREATE TABLE t (a int);\n"
    assert checksum(text) != checksum("CREATE TABLE t (a bigint);\n")
    assert checksum(text) != checksum('-- slipway:allow SW001 reason="x"\n' + text)


@settings(max_examples=100, deadline=None)
@given(
    lines=st.lists(
        st.text(alphabet=st.characters(blacklist_categories=["Cs", "Zl", "Zp", "Cc"]), max_size=40),
        max_size=10,
    ),
    spaces=st.integers(0, 3),
)
def test_checksum_is_stable_under_whitespace_only_resaves(lines: list[str], spaces: int) -> None:
    text = "\n".join(lines)
    resaved = "\r\n".join(line + " " * spaces for line in lines) + "\r\n"
    assert checksum(text) == checksum(resaved)


def test_load_migrations_reads_a_directory_in_version_order(tmp_path: Path) -> None:
    (tmp_path / "10_contract_drop.sql").write_text("ALTER TABLE t DROP COLUMN a;\n")
    (tmp_path / "9_expand_add.sql").write_text("ALTER TABLE t ADD COLUMN b int;\n")
    (tmp_path / "0001_create.sql").write_text("-- slipway:phase expand\nCREATE TABLE t (a int);\n")
    (tmp_path / "README.md").write_text("not a migration")
    (tmp_path / ".0002_expand_hidden.sql").write_text("SELECT 1;")
    (tmp_path / "sub").mkdir()
    migrations = load_migrations(tmp_path)
    assert [(m.version, m.phase, m.filename) for m in migrations] == [
        (1, Phase.EXPAND, "0001_create.sql"),
        (9, Phase.EXPAND, "9_expand_add.sql"),
        (10, Phase.CONTRACT, "10_contract_drop.sql"),
    ]
    assert migrations[0].path == str(tmp_path / "0001_create.sql")


def test_duplicate_versions_in_a_directory_name_both_files(tmp_path: Path) -> None:
    (tmp_path / "0003_expand_a.sql").write_text("SELECT 1;")
    (tmp_path / "3_expand_b.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError) as caught:
        load_migrations(tmp_path)
    assert "0003_expand_a.sql" in str(caught.value)
    assert "3_expand_b.sql" in str(caught.value)


def test_misnamed_sql_file_in_a_directory_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "add_users.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=r"add_users.sql"):
        load_migrations(tmp_path)


def test_missing_directory_and_non_utf8_file_are_errors(tmp_path: Path) -> None:
    with pytest.raises(MigrationError, match=r"does not exist"):
        load_migrations(tmp_path / "nope")
    (tmp_path / "1_expand_x.sql").write_bytes(b"SELECT '\xff';")
    with pytest.raises(MigrationError, match=r"1_expand_x.sql: not UTF-8"):
        load_migrations(tmp_path)
