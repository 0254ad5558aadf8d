"""The lock a finding names is the lock PostgreSQL takes: each bad statement runs on a real server, in a
transaction, and pg_locks must show the rule's lock mode on the object the finding names."""

from __future__ import annotations

import re
from collections.abc import Iterator

import psycopg
import pytest
import sqlalchemy as sa

from slipway.migrations import RULES, lint_migration, parse_migration

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(120)]

SCHEMA = """
CREATE TABLE users (id int PRIMARY KEY, email text, age int, active boolean DEFAULT true);
INSERT INTO users VALUES (1, 'a@example.org', 30, true);
CREATE INDEX users_email ON users (email);
CREATE TABLE orders (id int PRIMARY KEY, user_id int);
CREATE TABLE bookings (room int, during tstzrange);
CREATE TABLE events (id int);
CREATE MATERIALIZED VIEW stats AS SELECT count(*) AS n FROM users;
"""

# (rule, statement, the object to look at instead of the one the finding names)
CASES = [
    ("SW005", "ALTER TABLE users ALTER COLUMN age TYPE bigint", None),
    ("SW007", "ALTER TABLE users ALTER COLUMN email SET NOT NULL", None),
    ("SW008", "CREATE INDEX users_age ON users (age)", None),
    ("SW008", "CREATE UNIQUE INDEX users_email_u ON users (email)", None),
    ("SW009", "DROP INDEX users_email", "users"),  # the finding names the index; its table is locked too
    ("SW010", "ALTER TABLE orders ADD CONSTRAINT o_u FOREIGN KEY (user_id) REFERENCES users (id)", None),
    ("SW011", "ALTER TABLE users ADD CONSTRAINT age_positive CHECK (age > 0)", None),
    ("SW012", "ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE (email)", None),
    ("SW013", "ALTER TABLE events ADD PRIMARY KEY (id)", None),
    ("SW015", "CLUSTER users USING users_pkey", "users"),
    ("SW016", "TRUNCATE users", None),
    ("SW017", "DELETE FROM orders", None),
    ("SW018", "LOCK TABLE users", "users"),
    ("SW019", "ALTER TABLE users ADD COLUMN token uuid DEFAULT gen_random_uuid()", None),
    ("SW020", "REINDEX TABLE users", "users"),
    ("SW021", "UPDATE users SET active = true", None),
    ("SW023", "ALTER TABLE bookings ADD CONSTRAINT no_overlap EXCLUDE USING gist (during WITH &&)", None),
    ("SW027", "ALTER TABLE events SET UNLOGGED", None),
    ("SW028", "REFRESH MATERIALIZED VIEW stats", None),
]
# VACUUM FULL (SW014) cannot run inside a transaction block, so it cannot be held open here.
NOT_IN_A_TRANSACTION = {"SW014"}

PG_MODES = {
    "ACCESS EXCLUSIVE": "AccessExclusiveLock",
    "SHARE ROW EXCLUSIVE": "ShareRowExclusiveLock",
    "SHARE": "ShareLock",
    "ROW EXCLUSIVE": "RowExclusiveLock",
}


@pytest.fixture
def conn(postgres_url: str) -> Iterator[psycopg.Connection]:
    url = sa.make_url(postgres_url)
    info = f"host={url.host} port={url.port} user={url.username} dbname={url.database} connect_timeout=10"
    with psycopg.connect(info, autocommit=True) as connection:
        connection.execute(SCHEMA)
        connection.autocommit = False
        yield connection


def pg_mode(lock: str) -> str:
    """``ACCESS EXCLUSIVE`` -> ``AccessExclusiveLock``: the first mode the rule names, as pg_locks spells it."""
    if lock.startswith("the mode it names"):  # SW018: LOCK TABLE without a mode
        lock = "ACCESS EXCLUSIVE"
    return PG_MODES[re.split(r",| on | \(", lock)[0].strip()]


def test_every_rule_with_a_lock_is_checked_here() -> None:
    with_lock = {r.id for r in RULES.values() if r.lock}
    assert with_lock - NOT_IN_A_TRANSACTION == {c[0] for c in CASES}


@pytest.mark.parametrize(("rule", "sql", "relation"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_the_named_lock_is_the_lock_postgres_takes(
    conn: psycopg.Connection, rule: str, sql: str, relation: str | None
) -> None:
    (finding,) = lint_migration(parse_migration("db/0001_expand_x.sql", sql + ";\n"), dialect="postgres").findings
    assert finding.rule == rule and finding.lock == RULES[rule].lock
    target = (relation or finding.table or "").split(",")[0]
    assert target, "the finding names no object and the case gives none"
    conn.execute(sql)
    modes = {
        row[0]
        for row in conn.execute(
            "SELECT mode FROM pg_locks WHERE pid = pg_backend_pid() AND granted AND relation = to_regclass(%s)",
            (target,),
        )
    }
    conn.rollback()
    assert finding.lock is not None and pg_mode(finding.lock) in modes, (finding.lock, target, modes)


# (rule, expand statement, what the release still running does next, the error it then gets)
BREAKS = [
    (
        "SW024",
        "ALTER TABLE users ALTER COLUMN active SET NOT NULL, ALTER COLUMN active DROP DEFAULT",
        "INSERT INTO users (id, email) VALUES (2, 'b@example.org')",
        "not-null",
    ),
    (
        "SW025",
        "ALTER TABLE users DROP CONSTRAINT users_pkey",
        "INSERT INTO users (id) VALUES (1) ON CONFLICT (id) DO NOTHING",
        "no unique or exclusion constraint matching",
    ),
    (
        "SW026",
        "ALTER TYPE mood RENAME VALUE 'sad' TO 'unhappy'",
        "INSERT INTO feelings VALUES ('sad')",
        "invalid input value for enum",
    ),
]


@pytest.mark.parametrize(("rule", "expand", "old_code", "error"), BREAKS, ids=[b[0] for b in BREAKS])
def test_what_the_finding_says_breaks_does_break_the_old_release(
    conn: psycopg.Connection, rule: str, expand: str, old_code: str, error: str
) -> None:
    report = lint_migration(parse_migration("db/0001_expand_x.sql", expand + ";\n"), dialect="postgres")
    assert rule in [f.rule for f in report.findings]
    conn.execute("CREATE TYPE mood AS ENUM ('sad', 'happy'); CREATE TABLE feelings (m mood)")
    conn.execute(old_code)  # works before the expand migration
    conn.execute(expand)
    with pytest.raises(psycopg.Error, match=error):
        conn.execute(old_code.replace("(2,", "(3,"))
    conn.rollback()
