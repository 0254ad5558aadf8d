"""Every lint rule catches a bad statement and passes the safe way of doing the same thing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from slipway.errors import LintError, MigrationError
from slipway.migrations import RULES, Dialect, Phase, lint_migration, parse_migration

pytestmark = pytest.mark.timeout(60)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "migrations.md"

# (rule, bad SQL, safe SQL doing the same job): expand phase, PostgreSQL.
CASES = [
    ("SW000", "CREAT TABLE audit (id int)", "CREATE TABLE audit (id int)"),
    ("SW001", "ALTER TABLE users DROP COLUMN name", "ALTER TABLE users ADD COLUMN nickname text"),
    ("SW002", "DROP TABLE users", "CREATE TABLE scratch (a int);\nDROP TABLE scratch"),
    (
        "SW003",
        "ALTER TABLE users RENAME COLUMN name TO full_name",
        "ALTER TABLE users ADD COLUMN full_name text",
    ),
    ("SW004", "ALTER TABLE users RENAME TO people", "CREATE VIEW people AS SELECT * FROM users"),
    (
        "SW005",
        "ALTER TABLE users ALTER COLUMN age TYPE bigint",
        "ALTER TABLE users ADD COLUMN age_big bigint",
    ),
    (
        "SW006",
        "ALTER TABLE users ADD COLUMN active boolean NOT NULL",
        "ALTER TABLE users ADD COLUMN active boolean NOT NULL DEFAULT true",
    ),
    (
        "SW007",
        "ALTER TABLE users ALTER COLUMN email SET NOT NULL",
        "ALTER TABLE users ADD CONSTRAINT email_nn CHECK (email IS NOT NULL) NOT VALID",
    ),
    (
        "SW008",
        "CREATE INDEX users_email ON users (email)",
        "CREATE INDEX CONCURRENTLY users_email ON users (email)",
    ),
    ("SW009", "DROP INDEX users_email", "DROP INDEX CONCURRENTLY users_email"),
    (
        "SW010",
        "ALTER TABLE orders ADD CONSTRAINT orders_user FOREIGN KEY (user_id) REFERENCES users (id)",
        "ALTER TABLE orders ADD CONSTRAINT orders_user FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID",
    ),
    (
        "SW011",
        "ALTER TABLE users ADD CONSTRAINT age_positive CHECK (age > 0)",
        "ALTER TABLE users ADD CONSTRAINT age_positive CHECK (age > 0) NOT VALID",
    ),
    (
        "SW012",
        "ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE (email)",
        "ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE USING INDEX users_email_idx",
    ),
    (
        "SW013",
        "ALTER TABLE users ADD PRIMARY KEY (id)",
        "ALTER TABLE users ADD CONSTRAINT users_pkey PRIMARY KEY USING INDEX users_id_idx",
    ),
    ("SW014", "VACUUM FULL users", "VACUUM ANALYZE users"),
    ("SW015", "CLUSTER users USING users_pkey", "ANALYZE users"),
    ("SW016", "TRUNCATE users", "DELETE FROM users WHERE id = 1"),
    ("SW017", "DELETE FROM users", "DELETE FROM users WHERE created < '2020-01-01'"),
    ("SW018", "LOCK TABLE users IN ACCESS EXCLUSIVE MODE", "ALTER TABLE users ADD COLUMN note text"),
    (
        "SW019",
        "ALTER TABLE users ADD COLUMN token uuid DEFAULT gen_random_uuid()",
        "ALTER TABLE users ADD COLUMN created timestamptz DEFAULT now()",
    ),
    ("SW020", "REINDEX TABLE users", "REINDEX TABLE CONCURRENTLY users"),
    ("SW021", "UPDATE users SET active = true", "UPDATE users SET active = true WHERE id = 1"),
    (
        "SW022",
        "CREATE INDEX CONCURRENTLY a ON users (x);\nCREATE INDEX CONCURRENTLY b ON users (y)",
        "CREATE INDEX CONCURRENTLY a ON users (x)",
    ),
    # Issue 16: more rules (their variants and the safe statements they must pass: test_migrations_lint_why.py).
    (
        "SW023",
        "ALTER TABLE bookings ADD CONSTRAINT no_overlap EXCLUDE USING gist (room WITH =, during WITH &&)",
        "CREATE TABLE bookings2 (room int, during tstzrange);\n"
        "ALTER TABLE bookings2 ADD CONSTRAINT no_overlap EXCLUDE USING gist (room WITH =, during WITH &&)",
    ),
    (
        "SW024",
        "ALTER TABLE users ALTER COLUMN active DROP DEFAULT",
        "ALTER TABLE users ALTER COLUMN active SET DEFAULT true",
    ),
    (
        "SW025",
        "ALTER TABLE users DROP CONSTRAINT users_email_key",
        "ALTER TABLE users VALIDATE CONSTRAINT users_age",
    ),
    ("SW026", "ALTER TYPE mood RENAME VALUE 'sad' TO 'unhappy'", "ALTER TYPE mood ADD VALUE 'unhappy'"),
    ("SW027", "ALTER TABLE events SET UNLOGGED", "CREATE UNLOGGED TABLE scratch (a int)"),
    ("SW028", "REFRESH MATERIALIZED VIEW stats", "REFRESH MATERIALIZED VIEW CONCURRENTLY stats"),
    (
        "SW029",
        "DO $$ BEGIN ALTER TABLE users DROP COLUMN name; END $$",
        "DO $$ BEGIN RAISE NOTICE 'nothing to change; really'; END $$",
    ),
]

# More ways to break the same rules.
MORE_BAD = [
    ("SW001", "ALTER TABLE users DROP COLUMN a, DROP COLUMN b"),
    ("SW002", "DROP VIEW active_users"),
    ("SW002", "DROP MATERIALIZED VIEW stats"),
    ("SW002", "DROP SCHEMA legacy CASCADE"),
    ("SW005", "ALTER TABLE users ALTER COLUMN age SET DATA TYPE text USING age::text"),
    ("SW006", "ALTER TABLE users ADD COLUMN a int, ADD COLUMN b int NOT NULL"),
    ("SW008", "CREATE UNIQUE INDEX users_email ON app.users (email) WHERE email IS NOT NULL"),
    ("SW008", "CREATE INDEX ON users (email)"),
    ("SW010", "ALTER TABLE orders ADD COLUMN user_id int REFERENCES users (id)"),
    ("SW010", "ALTER TABLE orders ADD FOREIGN KEY (user_id) REFERENCES users"),
    ("SW011", "ALTER TABLE users ADD COLUMN age int CHECK (age > 0)"),
    ("SW012", "ALTER TABLE users ADD UNIQUE (email)"),
    ("SW012", "ALTER TABLE users ADD COLUMN handle text UNIQUE"),
    ("SW013", "ALTER TABLE users ADD CONSTRAINT users_pkey PRIMARY KEY (id)"),
    ("SW013", "ALTER TABLE users ADD COLUMN id2 int PRIMARY KEY"),
    ("SW014", "VACUUM (FULL, ANALYZE) users"),
    ("SW019", "ALTER TABLE users ADD COLUMN r float DEFAULT random()"),
    ("SW019", "ALTER TABLE users ADD COLUMN r int DEFAULT floor(random() * 10)"),
    ("SW019", "ALTER TABLE users ADD COLUMN seen timestamptz DEFAULT clock_timestamp()"),
    ("SW019", "ALTER TABLE users ADD COLUMN seq bigint DEFAULT nextval('s')"),
    ("SW019", "ALTER TABLE users ADD COLUMN seq bigserial"),
    ("SW019", "ALTER TABLE users ADD COLUMN n bigint GENERATED ALWAYS AS IDENTITY"),
    ("SW019", "ALTER TABLE users ADD COLUMN twice int GENERATED ALWAYS AS (age * 2) STORED"),
    ("SW020", "REINDEX INDEX users_email"),
    ("SW022", "CREATE TABLE t (a int);\nVACUUM t"),
]


def lint(sql: str, *, phase: str = "expand", dialect: str = "postgres", overrides: str = "") -> list[str]:
    """The rule ids of the blocking findings for ``sql`` in a file of ``phase``."""
    migration = parse_migration(f"db/0001_{phase}_x.sql", overrides + sql + ";\n")
    return [f.rule for f in lint_migration(migration, dialect=dialect).findings]


@pytest.mark.parametrize(("rule", "bad", "safe"), CASES, ids=[c[0] for c in CASES])
def test_rule_catches_the_bad_statement(rule: str, bad: str, safe: str) -> None:
    assert rule in lint(bad)


@pytest.mark.parametrize(("rule", "bad", "safe"), CASES, ids=[c[0] for c in CASES])
def test_rule_passes_the_safe_statement(rule: str, bad: str, safe: str) -> None:
    assert lint(safe) == []


@pytest.mark.parametrize(("rule", "bad"), MORE_BAD, ids=[f"{r}-{i}" for i, (r, _) in enumerate(MORE_BAD)])
def test_rule_catches_variants(rule: str, bad: str) -> None:
    assert rule in lint(bad)


def test_every_rule_has_a_test_case_and_docs() -> None:
    assert {c[0] for c in CASES} == set(RULES)
    docs = DOCS.read_text()
    for rule in RULES.values():
        assert re.search(rf"\b{rule.id}\b.*{re.escape(rule.name)}", docs), f"{rule.id} missing from docs"
        assert rule.why and rule.fix


def test_finding_names_file_line_statement_and_fix() -> None:
    migration = parse_migration("db/0001_expand_x.sql", "SELECT 1;\n\nALTER TABLE users DROP COLUMN name;\n")
    (finding,) = lint_migration(migration, dialect="postgres").findings
    assert (finding.rule, finding.name, finding.file, finding.line) == (
        "SW001",
        "drop-column",
        migration.path,
        3,
    )
    assert finding.statement == "ALTER TABLE users DROP COLUMN name"
    assert "contract" in finding.fix
    assert str(finding).startswith("db/0001_expand_x.sql:3: [SW001 drop-column]")


def test_syntax_error_names_the_file_and_statement() -> None:
    report = lint_migration(parse_migration("db/0002_expand_x.sql", "SELECT 1;\nSELEC 2;\n"), dialect="postgres")
    (finding,) = report.findings
    assert finding.rule == "SW000"
    assert "statement 2" in finding.message
    assert finding.statement == "SELEC 2"
    with pytest.raises(LintError) as caught:
        report.raise_for_findings()
    assert caught.value.rule == "SW000"
    assert "db/0002_expand_x.sql" in str(caught.value)


def test_untokenizable_sql_is_a_migration_error_naming_the_file() -> None:
    with pytest.raises(MigrationError, match=r"db/0003_expand_x.sql: SQL cannot be tokenized"):
        lint_migration(parse_migration("db/0003_expand_x.sql", "SELECT 'unterminated;\n"), dialect="postgres")


def test_override_suppresses_exactly_the_named_rule_and_is_returned() -> None:
    text = (
        '-- slipway:allow SW008 reason="lookup table with 40 rows"\n'
        "CREATE INDEX countries_code ON countries (code);\n"
        "ALTER TABLE countries DROP COLUMN legacy;\n"
    )
    report = lint_migration(parse_migration("db/0004_expand_x.sql", text), dialect="postgres")
    assert [f.rule for f in report.findings] == ["SW001"]
    assert [f.rule for f in report.suppressed] == ["SW008"]
    assert [(o.rule, o.reason) for o in report.overrides_used] == [("SW008", "lookup table with 40 rows")]
    assert report.unused_overrides == ()
    assert not report.ok


def test_unused_override_is_reported_not_recorded() -> None:
    text = '-- slipway:allow SW001 reason="old"\nALTER TABLE users ADD COLUMN a int;\n'
    report = lint_migration(parse_migration("db/0005_expand_x.sql", text), dialect="postgres")
    assert report.ok
    assert report.overrides_used == ()
    assert [o.rule for o in report.unused_overrides] == ["SW001"]


def test_override_of_unknown_rule_is_an_error() -> None:
    text = '-- slipway:allow SW999 reason="typo"\nSELECT 1;\n'
    with pytest.raises(MigrationError, match=r"db/0006_expand_x.sql: line 1: override names unknown rule SW999"):
        lint_migration(parse_migration("db/0006_expand_x.sql", text), dialect="postgres")


def test_syntax_error_can_be_overridden_for_sql_the_parser_does_not_know() -> None:
    text = '-- slipway:allow SW000 reason="valid PostgreSQL sqlglot cannot parse"\nDROP INDEX a, b;\n'
    report = lint_migration(parse_migration("db/0007_contract_x.sql", text), dialect="postgres")
    assert report.ok
    assert [o.rule for o in report.overrides_used] == ["SW000"]


def test_raise_for_findings_lists_every_finding_with_the_fix() -> None:
    sql = "ALTER TABLE users DROP COLUMN a;\nALTER TABLE users RENAME COLUMN b TO c;\n"
    report = lint_migration(parse_migration("db/0008_expand_x.sql", sql), dialect="postgres")
    with pytest.raises(LintError) as caught:
        report.raise_for_findings()
    assert caught.value.rule == "SW001"
    assert "also SW003 rename-column at line 2" in str(caught.value)
    assert "slipway:allow SW001" in caught.value.hint


@pytest.mark.parametrize("rule", ["SW001", "SW002", "SW003", "SW004", "SW006", "SW007"])
def test_compatibility_rules_apply_only_to_expand_files(rule: str) -> None:
    bad = next(c[1] for c in CASES if c[0] == rule)
    assert rule in lint(bad, phase="expand")
    assert rule not in lint(bad, phase="contract")


@pytest.mark.parametrize("rule", ["SW008", "SW009", "SW010", "SW014", "SW016", "SW017", "SW019"])
def test_locking_and_data_loss_rules_apply_in_contract_files_too(rule: str) -> None:
    bad = next(c[1] for c in CASES if c[0] == rule)
    assert rule in lint(bad, phase="contract")


@pytest.mark.parametrize("rule", ["SW008", "SW009", "SW010", "SW011", "SW012", "SW013", "SW019"])
def test_postgres_locking_rules_do_not_apply_to_sqlite(rule: str) -> None:
    bad = next(c[1] for c in CASES if c[0] == rule)
    assert rule not in lint(bad, dialect="sqlite")


def test_sqlite_still_gets_compatibility_rules() -> None:
    assert lint("ALTER TABLE users DROP COLUMN name", dialect="sqlite") == ["SW001"]
    assert lint("ALTER TABLE users RENAME COLUMN a TO b", dialect="sqlite") == ["SW003"]


def test_update_without_where_is_fine_in_a_batched_migrate_file() -> None:
    sql = "UPDATE users SET n = 1 WHERE id BETWEEN :batch_start AND :batch_end"
    assert lint(sql, phase="migrate", overrides="-- slipway:batch table=users key=id\n") == []
    assert Phase.MIGRATE not in RULES["SW021"].phases


def test_tables_created_in_the_same_file_are_exempt_from_locking_rules() -> None:
    sql = (
        "CREATE TABLE audit (id int, user_id int, at timestamptz);\n"
        "CREATE INDEX audit_user ON audit (user_id);\n"
        "ALTER TABLE audit ADD CONSTRAINT audit_user_fk FOREIGN KEY (user_id) REFERENCES users (id);\n"
        "ALTER TABLE audit ADD COLUMN seq bigserial;\n"
        "ALTER TABLE audit ADD COLUMN kind text NOT NULL;\n"
        "ALTER TABLE audit ADD PRIMARY KEY (id)"
    )
    assert lint(sql) == []


def test_the_exemption_does_not_leak_to_other_tables() -> None:
    sql = "CREATE TABLE audit (id int);\nCREATE INDEX users_email ON users (email)"
    assert lint(sql) == ["SW008"]


def test_statements_the_parser_does_not_model_are_not_syntax_errors() -> None:
    sql = (
        "ALTER TABLE orders VALIDATE CONSTRAINT orders_user;\n"
        "CREATE EXTENSION IF NOT EXISTS pgcrypto;\n"
        "COMMENT ON TABLE users IS 'people; and more';\n"
        "DO $$ BEGIN RAISE NOTICE 'hi; there'; END $$;\n"
        "CREATE OR REPLACE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql"
    )
    assert lint(sql) == []


def test_lint_is_pure_the_same_input_gives_the_same_report() -> None:
    migration = parse_migration("db/0009_expand_x.sql", "ALTER TABLE users DROP COLUMN a;\n")
    assert lint_migration(migration, dialect=Dialect.POSTGRES) == lint_migration(migration, dialect="postgres")
