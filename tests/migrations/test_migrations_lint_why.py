"""Findings say why (lock, what it blocks, what breaks, docs anchor); the rules added for issue 16; and
statements the linter cannot see (DO blocks, EXECUTE) are reported, never passed silently."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_migrations_lint import CASES

from slipway.errors import LintError
from slipway.migrations import RULES, lint_migration, parse_migration
from slipway.migrations.lint import Finding

pytestmark = pytest.mark.timeout(60)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "migrations.md"
SLIPWAY = Path(sys.executable).with_name("slipway")

# (rule, bad SQL, safe SQL doing the same job) of the rules added for issue 16: expand phase, PostgreSQL.
NEW_RULES = [case for case in CASES if case[0] >= "SW023"]

MORE_BAD = [
    ("SW023", "ALTER TABLE bookings ADD EXCLUDE USING gist (room WITH =)"),
    ("SW023", "ALTER TABLE ONLY app.bookings ADD CONSTRAINT x EXCLUDE (room WITH =)"),
    ("SW025", "ALTER TABLE users DROP CONSTRAINT IF EXISTS users_email_key CASCADE"),
    (
        "SW025",  # added again, but on another table: this one's is gone
        "ALTER TABLE users DROP CONSTRAINT users_check;\n"
        "ALTER TABLE orders ADD CONSTRAINT users_check CHECK (a > 0) NOT VALID",
    ),
    ("SW026", "ALTER TYPE app.mood RENAME VALUE 'sad' TO 'unhappy'"),
    ("SW027", "ALTER TABLE events SET LOGGED"),
    ("SW028", "REFRESH MATERIALIZED VIEW app.stats WITH DATA"),
    ("SW029", "DO LANGUAGE plpgsql $body$ BEGIN EXECUTE format('DROP TABLE %I', 'old'); END $body$"),
    ("SW029", "DO $$ BEGIN IF NOT EXISTS (SELECT 1) THEN CREATE INDEX users_email ON users (email); END IF; END $$"),
    ("SW029", "DO 'BEGIN UPDATE users SET active = true; END'"),
    (
        "SW029",
        "CREATE OR REPLACE FUNCTION drop_all() RETURNS void LANGUAGE plpgsql AS $f$ BEGIN "
        "EXECUTE 'ALTER TABLE ' || quote_ident('users') || ' DROP COLUMN name'; END $f$",
    ),
    ("SW029", "CREATE PROCEDURE p() LANGUAGE plpgsql AS $$ BEGIN EXECUTE 'VACUUM FULL users'; END $$"),
    ("SW029", "CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS 'BEGIN EXECUTE ''DROP TABLE t''; END'"),
    ("SW029", "DO $$ DECLARE r record; BEGIN FOR r IN EXECUTE 'SELECT 1' LOOP NULL; END LOOP; END $$"),
]

# Safe statements the new rules must leave alone: no noise.
SAFE = [
    "CREATE INDEX CONCURRENTLY users_email ON users (email)",
    "CREATE UNIQUE INDEX CONCURRENTLY users_email ON users (email)",
    "ALTER TABLE orders ADD CONSTRAINT orders_user FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID",
    "ALTER TABLE orders VALIDATE CONSTRAINT orders_user",
    "REFRESH MATERIALIZED VIEW CONCURRENTLY app.stats WITH DATA",
    "CREATE MATERIALIZED VIEW stats2 AS SELECT 1 AS one;\nREFRESH MATERIALIZED VIEW stats2",
    "CREATE TABLE bookings (room int, during tstzrange, EXCLUDE USING gist (room WITH =, during WITH &&))",
    "CREATE TABLE t (a int DEFAULT 1);\nALTER TABLE t ALTER COLUMN a DROP DEFAULT;\nALTER TABLE t SET LOGGED",
    "ALTER TYPE mood ADD VALUE IF NOT EXISTS 'meh'",
    "ALTER TABLE users ALTER COLUMN nickname DROP NOT NULL",
    "ALTER TYPE mood RENAME TO feeling_old_unused",  # not a value rename (SW026 is about values)
    "DO $$ BEGIN PERFORM pg_sleep(0); RAISE NOTICE 'ok'; END $$",
    "DO $$ BEGIN CREATE TYPE mood AS ENUM ('sad', 'happy'); EXCEPTION WHEN duplicate_object THEN NULL; END $$",
    # replacing a constraint (drop and add it again under the same name) is how expand loosens it
    "ALTER TABLE orders DROP CONSTRAINT orders_status_check;\n"
    "ALTER TABLE orders ADD CONSTRAINT orders_status_check CHECK (status IN ('new', 'paid', 'sent')) NOT VALID",
    "DO $$ DECLARE n int; BEGIN SELECT count(*) INTO n FROM users FOR UPDATE; END $$",
    "CREATE FUNCTION sync_name() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    "UPDATE audit SET seen = now() WHERE id = NEW.id; RETURN NEW; END $$",
    "CREATE TRIGGER t BEFORE INSERT ON users FOR EACH ROW EXECUTE FUNCTION sync_name()",
    "COMMENT ON TABLE users IS 'DO $$ EXECUTE $$ REFRESH MATERIALIZED VIEW'",
]


def findings(sql: str, *, phase: str = "expand", dialect: str = "postgres") -> list[Finding]:
    """The blocking findings for ``sql`` in a file of ``phase``."""
    migration = parse_migration(f"db/0001_{phase}_x.sql", sql + ";\n")
    return list(lint_migration(migration, dialect=dialect).findings)


def rules(sql: str, **kwargs: str) -> list[str]:
    return [f.rule for f in findings(sql, **kwargs)]


@pytest.mark.parametrize(("rule", "bad", "safe"), NEW_RULES, ids=[c[0] for c in NEW_RULES])
def test_new_rule_catches_the_bad_statement(rule: str, bad: str, safe: str) -> None:
    assert rules(bad) == [rule]


@pytest.mark.parametrize(("rule", "bad", "safe"), NEW_RULES, ids=[c[0] for c in NEW_RULES])
def test_new_rule_passes_the_safe_statement(rule: str, bad: str, safe: str) -> None:
    assert rules(safe) == []


@pytest.mark.parametrize(("rule", "bad"), MORE_BAD, ids=[f"{r}-{i}" for i, (r, _) in enumerate(MORE_BAD)])
def test_new_rule_catches_variants(rule: str, bad: str) -> None:
    assert rule in rules(bad)


@pytest.mark.parametrize("sql", SAFE)
def test_safe_statements_have_no_finding(sql: str) -> None:
    assert rules(sql) == []


@pytest.mark.parametrize(
    "bad",
    [
        "ALTER TABLE users ALTER COLUMN active DROP DEFAULT",
        "ALTER TABLE users DROP CONSTRAINT users_email_key",
        "ALTER TYPE mood RENAME VALUE 'sad' TO 'unhappy'",
    ],
)
def test_compatibility_rules_fire_in_expand_only(bad: str) -> None:
    assert rules(bad, phase="expand")
    assert rules(bad, phase="contract") == []


@pytest.mark.parametrize("rule", ["SW023", "SW027", "SW028", "SW029"])
def test_locking_and_not_linted_rules_fire_in_contract_files_too(rule: str) -> None:
    bad = next(c[1] for c in NEW_RULES if c[0] == rule)
    assert rules(bad, phase="contract") == [rule]


def test_a_dangerous_statement_inside_a_do_block_does_not_pass_silently() -> None:
    (finding,) = findings("DO $$ BEGIN ALTER TABLE users DROP COLUMN name; END $$")
    assert finding.rule == "SW029" and finding.severity == "review"
    assert "DO block" in finding.message and "ALTER" in finding.message
    assert "by hand" in finding.fix
    assert "cannot see" in finding.why


def test_execute_in_a_do_block_is_named_as_dynamic_sql() -> None:
    (finding,) = findings("DO $$ BEGIN EXECUTE 'DROP TABLE ' || 'old'; END $$")
    assert "EXECUTE" in finding.message and "dynamic SQL" in finding.message


def test_not_linted_finding_can_be_allowed_with_a_reason_and_is_recorded() -> None:
    text = (
        '-- slipway:allow SW029 reason="checked: only adds a nullable column"\n'
        "DO $$ BEGIN ALTER TABLE u ADD c int; END $$;\n"
    )
    report = lint_migration(parse_migration("db/0002_expand_x.sql", text), dialect="postgres")
    assert report.ok and [o.rule for o in report.overrides_used] == ["SW029"]


def test_sw008_fix_for_a_unique_index_says_unique() -> None:
    (finding,) = findings("CREATE UNIQUE INDEX users_email ON users (email)")
    assert finding.rule == "SW008"
    assert "CREATE UNIQUE INDEX CONCURRENTLY" in finding.fix
    assert "UNIQUE" in finding.message
    (plain,) = findings("CREATE INDEX users_email ON users (email)")
    assert "CREATE INDEX CONCURRENTLY" in plain.fix and "UNIQUE" not in plain.fix


@pytest.mark.parametrize(
    ("sql", "lock", "blocks"),
    [
        ("CREATE INDEX users_email ON users (email)", "SHARE", "writes"),
        ("DROP INDEX users_email", "ACCESS EXCLUSIVE", "reads and writes"),
        ("ALTER TABLE o ADD FOREIGN KEY (u) REFERENCES users", "SHARE ROW EXCLUSIVE", "writes"),
        ("ALTER TABLE users ADD CONSTRAINT c CHECK (a > 0)", "ACCESS EXCLUSIVE", "reads and writes"),
        ("ALTER TABLE b ADD CONSTRAINT x EXCLUDE USING gist (r WITH &&)", "ACCESS EXCLUSIVE", "reads and writes"),
        ("ALTER TABLE events SET LOGGED", "ACCESS EXCLUSIVE", "reads and writes"),
        ("REFRESH MATERIALIZED VIEW stats", "ACCESS EXCLUSIVE", "reads"),
    ],
)
def test_locking_findings_name_the_lock_and_what_it_blocks(sql: str, lock: str, blocks: str) -> None:
    (finding,) = findings(sql)
    assert finding.lock == lock
    assert finding.blocks is not None and finding.blocks.startswith(blocks)


@pytest.mark.parametrize("rule", ["SW001", "SW003", "SW024", "SW025", "SW026"])
def test_compatibility_findings_say_what_breaks_in_the_running_release(rule: str) -> None:
    assert RULES[rule].breaks and "old" in RULES[rule].breaks


def test_every_finding_links_to_its_rule_section_in_the_docs() -> None:
    docs = DOCS.read_text()
    for rule in RULES.values():
        assert rule.docs == f"docs/migrations.md#{rule.id.lower()}"
        assert f'<a id="{rule.id.lower()}"></a>' in docs, f"no anchor for {rule.id}"
        section = docs.split(f'<a id="{rule.id.lower()}"></a>', 1)[1].split("<a id=", 1)[0]
        assert rule.name in section
        if rule.lock:
            assert rule.lock in section, f"docs of {rule.id} do not name its lock"
    (finding,) = findings("ALTER TABLE users DROP COLUMN name")
    assert finding.docs == "docs/migrations.md#sw001"
    assert finding.as_dict()["docs"] == "docs/migrations.md#sw001"


def test_the_cli_prints_lock_blocks_why_and_docs_in_text_and_json(tmp_path: Path) -> None:
    migrations = tmp_path / "db"
    migrations.mkdir()
    (migrations / "0001_expand_idx.sql").write_text("CREATE UNIQUE INDEX users_email ON users (email);\n")
    (migrations / "0002_expand_do.sql").write_text("DO $$ BEGIN ALTER TABLE users DROP COLUMN name; END $$;\n")
    run = [str(SLIPWAY), "migrations", "lint", str(migrations)]
    text = subprocess.run(run, capture_output=True, text=True, timeout=60, cwd=tmp_path, env={"COLUMNS": "200"})
    assert text.returncode == 7, text.stderr
    out = " ".join(text.stdout.split())
    assert "lock: SHARE on users" in out and "blocks: writes" in out
    assert "fix: Use CREATE UNIQUE INDEX CONCURRENTLY" in out
    assert "docs: docs/migrations.md#sw008" in out
    assert "SW029 not-linted (review)" in out and "docs/migrations.md#sw029" in out
    as_json = subprocess.run([*run, "--json"], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    first, second = json.loads(as_json.stdout)
    assert (first["rule"], first["lock"], first["severity"], first["docs"]) == (
        "SW008",
        "SHARE",
        "error",
        "docs/migrations.md#sw008",
    )
    assert first["blocks"].startswith("writes") and first["why"] and first["table"] == "users"
    assert (second["rule"], second["severity"], second["lock"]) == ("SW029", "review", None)
    assert re.search(r"cannot see", second["why"])


def test_the_refusal_before_a_deploy_says_why_and_links_the_docs() -> None:
    sql = "CREATE INDEX users_email ON users (email);\nALTER TABLE users DROP COLUMN name;\n"
    report = lint_migration(parse_migration("db/0003_expand_x.sql", sql), dialect="postgres")
    with pytest.raises(LintError) as caught:
        report.raise_for_findings()
    message = str(caught.value)
    assert "SHARE lock on users, blocks writes" in message
    assert "also SW001 drop-column at line 2" in message and "old code still reads" in message
    assert "docs/migrations.md#sw008" in caught.value.hint
