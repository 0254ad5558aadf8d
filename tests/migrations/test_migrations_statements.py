"""Splitting a migration into statements: original text, lines, keywords, transaction needs."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slipway.errors import MigrationError
from slipway.migrations import Dialect, split_statements
from slipway.migrations.statements import leading_keywords

pytestmark = pytest.mark.timeout(60)


def test_split_keeps_the_text_as_written_and_skips_leading_comments() -> None:
    sql = (
        "-- slipway:phase expand\n"
        "CREATE TABLE t (a text DEFAULT 'x;y');  -- trailing\n"
        "/* block; comment */\n"
        "INSERT INTO t VALUES ('it''s; fine');\n"
        ";\n"
    )
    statements = split_statements(sql, dialect="postgres")
    assert [s.text for s in statements] == [
        "CREATE TABLE t (a text DEFAULT 'x;y')",
        "INSERT INTO t VALUES ('it''s; fine')",
    ]
    assert [(s.index, s.line) for s in statements] == [(1, 2), (2, 4)]


def test_dollar_quoted_bodies_are_one_statement_on_postgres() -> None:
    sql = "CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; SELECT 2; $$ LANGUAGE sql;\nSELECT 3;"
    assert len(split_statements(sql, dialect=Dialect.POSTGRES)) == 2


def test_statement_without_final_semicolon_is_kept() -> None:
    assert [s.text for s in split_statements("SELECT 1;\nSELECT 2", dialect="sqlite")] == [
        "SELECT 1",
        "SELECT 2",
    ]


def test_unterminated_string_is_an_error_naming_the_file() -> None:
    with pytest.raises(MigrationError, match=r"db/1_expand_x.sql: SQL cannot be tokenized"):
        split_statements("SELECT 'oops;", dialect="postgres", file="db/1_expand_x.sql")


@pytest.mark.parametrize(
    ("sql", "dialect", "autocommit"),
    [
        ("CREATE INDEX CONCURRENTLY i ON t (a)", "postgres", True),
        ("CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS i ON t (a)", "postgres", True),
        ("DROP INDEX CONCURRENTLY i", "postgres", True),
        ("REINDEX INDEX CONCURRENTLY i", "postgres", True),
        ("VACUUM ANALYZE t", "postgres", True),
        ("VACUUM", "sqlite", True),
        ("CREATE DATABASE x", "postgres", True),
        ("CREATE INDEX i ON t (a)", "postgres", False),
        ("CREATE TABLE concurrently_log (a int)", "postgres", False),
        ("UPDATE t SET note = 'CREATE INDEX CONCURRENTLY'", "postgres", False),
        ("CREATE INDEX CONCURRENTLY i ON t (a)", "sqlite", False),
    ],
)
def test_statements_that_cannot_run_in_a_transaction(sql: str, dialect: str, autocommit: bool) -> None:
    (statement,) = split_statements(sql, dialect=dialect)
    assert statement.needs_autocommit(Dialect(dialect)) is autocommit


def test_leading_keywords_skip_strings_comments_and_quoted_names() -> None:
    assert leading_keywords('/* x */ VACUUM -- c\n (FULL) "Users"') == ("VACUUM", "FULL")
    assert leading_keywords("lock table users in access exclusive mode", 3) == ("LOCK", "TABLE", "USERS")


plain_strings = st.text(alphabet=st.sampled_from("ab;c -'$*/"), max_size=12)


@settings(max_examples=150, deadline=None)
@given(values=st.lists(plain_strings, min_size=1, max_size=8), dialect=st.sampled_from(list(Dialect)))
def test_semicolons_in_strings_never_split_a_statement(values: list[str], dialect: Dialect) -> None:
    texts = ["INSERT INTO t VALUES ('" + v.replace("'", "''") + "')" for v in values]
    statements = split_statements(";\n".join(texts) + ";", dialect=dialect)
    assert [s.text for s in statements] == texts
    assert [s.line for s in statements] == list(range(1, len(texts) + 1))
