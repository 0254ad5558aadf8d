"""The sql check and a sql dependency against a real PostgreSQL started by the test setup."""

from __future__ import annotations

import time

import psycopg
import pytest
from checks_support import run
from sqlalchemy.engine import make_url

from slipway.checks import (
    BreakerStatus,
    CheckResult,
    DependencyGuard,
    InMemoryBreakerRepository,
    parse_checks,
    run_checks,
)
from slipway.errors import DependencyUnavailable
from slipway.testing.fakeclock import FakeClock

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(180)]


def check(item: dict[str, object]) -> CheckResult:
    (result,) = run(run_checks(parse_checks([item]), clock=FakeClock()))
    return result


@pytest.fixture
def migrated_url(postgres_url: str) -> str:
    """A database with a schema_migrations table at version 7."""
    url = make_url(postgres_url)
    conninfo = f"host={url.host} port={url.port} user={url.username} dbname={url.database}"
    with psycopg.connect(conninfo, autocommit=True) as connection:
        connection.execute("CREATE TABLE schema_migrations (version integer PRIMARY KEY, applied boolean)")
        connection.execute("INSERT INTO schema_migrations VALUES (6, true), (7, true)")
    return postgres_url


def test_sql_check_passes_against_postgres(migrated_url: str) -> None:
    result = check(
        {
            "kind": "sql",
            "url": migrated_url,
            "query": "SELECT max(version) FROM schema_migrations",
            "expect": 7,
        }
    )
    assert result.ok, result.evidence


def test_sql_check_renders_postgres_booleans_as_text(migrated_url: str) -> None:
    query = "SELECT applied FROM schema_migrations WHERE version = 7"
    assert check({"kind": "sql", "url": migrated_url, "query": query, "expect": True}).ok
    assert check({"kind": "sql", "url": migrated_url, "query": query, "expect": "true"}).ok


def test_a_plain_postgresql_url_uses_psycopg_3(migrated_url: str) -> None:
    plain = migrated_url.replace("postgresql+psycopg://", "postgresql://")
    assert check({"kind": "sql", "url": plain, "query": "SELECT 1", "expect": 1}).ok


def test_sql_check_fails_against_postgres_with_both_values(migrated_url: str) -> None:
    result = check(
        {
            "kind": "sql",
            "url": migrated_url,
            "query": "SELECT max(version) FROM schema_migrations",
            "expect": 8,
        }
    )
    assert not result.ok
    assert "expected first value '8', got '7'" in result.evidence


def test_sql_check_reports_a_missing_table(postgres_url: str) -> None:
    result = check({"kind": "sql", "url": postgres_url, "query": "SELECT 1 FROM nowhere"})
    assert not result.ok
    assert "ProgrammingError" in result.evidence and "nowhere" in result.evidence


def test_a_slow_query_is_cut_off_by_the_timeout(postgres_url: str) -> None:
    began = time.monotonic()
    result = check({"kind": "sql", "url": postgres_url, "query": "SELECT pg_sleep(10)", "timeout": 1})
    assert time.monotonic() - began < 5
    assert not result.ok
    assert "1 s" in result.evidence or "statement timeout" in result.evidence


def test_a_sql_check_cannot_change_the_database(migrated_url: str) -> None:
    check({"kind": "sql", "url": migrated_url, "query": "DELETE FROM schema_migrations RETURNING version"})
    assert check(
        {"kind": "sql", "url": migrated_url, "query": "SELECT count(*) FROM schema_migrations", "expect": 2}
    ).ok


def test_a_database_dependency_that_disappears_opens_its_breaker(postgres_url: str) -> None:
    gone = str(make_url(postgres_url).set(database="dropped_database"))
    breaker = {"window": 3, "min_calls": 2, "failure_rate": 1.0, "cool_down": 30}
    dependency = parse_checks(
        [{"kind": "sql", "name": "orders-db", "url": gone, "query": "SELECT 1", "breaker": breaker}]
    )[0]
    clock = FakeClock()
    guard = DependencyGuard([dependency], repository=InMemoryBreakerRepository(), clock=clock)

    async def scenario() -> None:
        for _ in range(2):
            result = await guard.check(dependency)
            assert not result.ok and "dropped_database" in result.evidence
        assert guard.state("orders-db").status is BreakerStatus.OPEN
        with pytest.raises(DependencyUnavailable, match="circuit open since"):
            await guard.check(dependency)

    run(scenario())
