"""Each check kind against a real server on 127.0.0.1: one that passes, one that fails with evidence."""

from __future__ import annotations

import asyncio
import time

import pytest
from checks_support import HttpServer, TcpListener, run

from slipway.checks import (
    CheckResult,
    CheckSpec,
    parse_checks,
    raise_for_failures,
    run_checks,
)
from slipway.checks.spec import CheckKind
from slipway.clock import SystemClock
from slipway.errors import CheckFailed
from slipway.testing.fakeclock import FakeClock

pytestmark = pytest.mark.timeout(60)


def one(item: dict[str, object]) -> CheckSpec:
    """Parse one list item the way slipway.yml's would be."""
    return parse_checks([item])[0]


def check(item: dict[str, object], clock: FakeClock | SystemClock | None = None) -> CheckResult:
    """Run one check and return its result."""
    (result,) = run(run_checks([one(item)], clock=clock or FakeClock()))
    return result


# --- http --------------------------------------------------------------------------------------------


def test_http_check_passes_on_status_body_and_json_value(http_server: HttpServer) -> None:
    result = check(
        {
            "kind": "http",
            "url": http_server.url("/health"),
            "expect_status": [200, 204],
            "body_contains": '"status": "ok"',
            "json_path": "$.db.replicas[0].lag",
            "json_equals": 0,
        }
    )
    assert result.ok, result.evidence
    assert result.kind is CheckKind.HTTP
    assert result.attempts == 1
    assert "HTTP 200" in result.evidence


def test_http_check_failing_on_status_shows_expected_seen_and_body(http_server: HttpServer) -> None:
    result = check({"kind": "http", "url": http_server.url("/status/503")})
    assert not result.ok
    assert "expected status 200, got 503" in result.evidence
    assert "the server says no" in result.evidence


def test_http_check_failing_on_json_value_shows_both_values(http_server: HttpServer) -> None:
    result = check(
        {"kind": "http", "url": http_server.url("/health"), "json_path": "version", "json_equals": "2.0.0"}
    )
    assert not result.ok
    assert 'expected version == "2.0.0", got "1.2.3"' in result.evidence


def test_http_check_fails_when_the_json_path_is_missing_or_body_is_not_json(http_server: HttpServer) -> None:
    missing = check({"kind": "http", "url": http_server.url("/health"), "json_path": "$.db.primary"})
    not_json = check({"kind": "http", "url": http_server.url("/notjson"), "json_path": "$.status"})
    assert not missing.ok and "expected $.db.primary in the JSON body" in missing.evidence
    assert not not_json.ok and "could not parse" in not_json.evidence and "not json" in not_json.evidence


def test_http_check_fails_when_the_body_lacks_the_text(http_server: HttpServer) -> None:
    result = check({"kind": "http", "url": http_server.url("/health"), "body_contains": "maintenance"})
    assert not result.ok
    assert "expected body to contain 'maintenance'" in result.evidence


def test_http_check_fails_when_slower_than_max_latency(http_server: HttpServer) -> None:
    result = check(
        {"kind": "http", "url": http_server.url("/slow?ms=150"), "max_latency_ms": 50}, SystemClock()
    )
    assert not result.ok
    assert "expected latency <= 50 ms, took" in result.evidence
    assert result.latency_ms >= 150


def test_http_check_reports_a_refused_connection_without_credentials(closed_port: int) -> None:
    result = check({"kind": "http", "url": f"http://deployer:s3cret@127.0.0.1:{closed_port}/health"})
    assert not result.ok
    assert "ConnectError" in result.evidence
    assert f"GET http://127.0.0.1:{closed_port}/health" in result.evidence
    assert "s3cret" not in result.evidence and "s3cret" not in result.name


def test_http_check_times_out_in_real_time_even_with_a_fake_clock(http_server: HttpServer) -> None:
    began = time.monotonic()
    result = check({"kind": "http", "url": http_server.url("/slow?ms=3000"), "timeout": 0.3})
    assert time.monotonic() - began < 2.5
    assert not result.ok
    assert "0.3 s" in result.evidence or "Timeout" in result.evidence


# --- tcp ---------------------------------------------------------------------------------------------


def test_tcp_check_passes_when_the_port_accepts() -> None:
    async def scenario() -> CheckResult:
        listener = TcpListener()
        await listener.start()
        try:
            (result,) = await run_checks(
                [one({"kind": "tcp", "host": "127.0.0.1", "port": listener.port})], clock=FakeClock()
            )
        finally:
            await listener.stop()
        assert listener.connections == 1
        return result

    result = run(scenario())
    assert result.ok, result.evidence
    assert result.name.startswith("tcp 127.0.0.1:")


def test_tcp_check_fails_with_the_refusal_as_evidence(closed_port: int) -> None:
    result = check({"kind": "tcp", "host": "127.0.0.1", "port": closed_port})
    assert not result.ok
    assert f"expected 127.0.0.1:{closed_port} to accept a connection" in result.evidence
    assert "Connect" in result.evidence or "refused" in result.evidence


# --- command -----------------------------------------------------------------------------------------


def test_command_check_passes_on_exit_code_and_output() -> None:
    result = check(
        {"kind": "command", "run": "echo 'migrations: 12 applied' >&2", "output_matches": r"\d+ applied"}
    )
    assert result.ok, result.evidence
    assert result.evidence == "exit code 0"


def test_command_check_fails_with_exit_code_and_output_tail() -> None:
    result = check({"kind": "command", "run": "echo 'disk is full'; exit 3", "output_matches": "all good"})
    assert not result.ok
    assert "expected exit code 0, got 3" in result.evidence
    assert "expected output to match 'all good'" in result.evidence
    assert "disk is full" in result.evidence


def test_command_check_accepts_an_expected_nonzero_exit() -> None:
    assert check({"kind": "command", "run": "exit 4", "expect_exit": 4}).ok


def test_command_check_kills_a_command_that_outlives_its_timeout() -> None:
    began = time.monotonic()
    result = check({"kind": "command", "run": "sleep 5; echo late", "timeout": 0.3})
    assert time.monotonic() - began < 3
    assert not result.ok
    assert "0.3 s" in result.evidence


def test_command_check_runs_through_the_given_executor() -> None:
    calls: list[tuple[str, float]] = []

    async def remote(command: str, timeout: float) -> tuple[int, str]:
        calls.append((command, timeout))
        return 0, "remote host says ok"

    spec = one({"kind": "command", "run": "systemctl is-active app", "timeout": 7, "output_matches": "ok"})
    (result,) = run(run_checks([spec], clock=FakeClock(), command_executor=remote))
    assert result.ok
    assert calls == [("systemctl is-active app", 7.0)]


# --- sql ---------------------------------------------------------------------------------------------


def test_sql_check_passes_when_the_first_value_matches(sqlite_url: str) -> None:
    result = check(
        {"kind": "sql", "url": sqlite_url, "query": "SELECT schema_version FROM deploy_state", "expect": 42}
    )
    assert result.ok, result.evidence
    assert "'42'" in result.evidence


def test_sql_check_fails_showing_expected_and_seen_values(sqlite_url: str) -> None:
    result = check(
        {"kind": "sql", "url": sqlite_url, "query": "SELECT schema_version FROM deploy_state", "expect": "43"}
    )
    assert not result.ok
    assert "expected first value '43', got '42'" in result.evidence


def test_sql_check_compares_null_as_text(sqlite_url: str) -> None:
    assert check(
        {"kind": "sql", "url": sqlite_url, "query": "SELECT note FROM deploy_state", "expect": "null"}
    ).ok


def test_sql_check_reports_a_failing_query(sqlite_url: str) -> None:
    result = check({"kind": "sql", "url": sqlite_url, "query": "SELECT missing_column FROM deploy_state"})
    assert not result.ok
    assert "OperationalError" in result.evidence and "missing_column" in result.evidence


def test_sql_check_reports_no_rows(sqlite_url: str) -> None:
    result = check(
        {"kind": "sql", "url": sqlite_url, "query": "SELECT 1 FROM deploy_state WHERE 0", "expect": 1}
    )
    assert not result.ok
    assert "returned no rows" in result.evidence


def test_sql_check_cannot_write(sqlite_url: str) -> None:
    check({"kind": "sql", "url": sqlite_url, "query": "DELETE FROM deploy_state"})
    assert check(
        {"kind": "sql", "url": sqlite_url, "query": "SELECT count(*) FROM deploy_state", "expect": 1}
    ).ok


def test_sql_check_never_shows_the_password(closed_port: int) -> None:
    url = f"postgresql://slipway:hunter2@127.0.0.1:{closed_port}/app"
    result = check({"kind": "sql", "url": url, "query": "SELECT 1", "timeout": 5})
    assert not result.ok
    assert "hunter2" not in result.evidence and "hunter2" not in result.name
    assert "OperationalError" in result.evidence


# --- dns ---------------------------------------------------------------------------------------------


def test_dns_check_passes_when_the_name_resolves_to_the_address() -> None:
    result = check({"kind": "dns", "host": "localhost", "expect_address": "127.0.0.1"})
    assert result.ok, result.evidence
    assert "127.0.0.1" in result.evidence


def test_dns_check_fails_showing_the_addresses_it_got() -> None:
    result = check({"kind": "dns", "host": "localhost", "expect_address": "127.0.0.2"})
    assert not result.ok
    assert "expected localhost to resolve to 127.0.0.2, got 127.0.0.1" in result.evidence


# --- retries and backoff on the fake clock -----------------------------------------------------------


def test_retries_back_off_exponentially_until_the_check_passes(http_server: HttpServer) -> None:
    clock = FakeClock()
    began_fake, began_real = clock.monotonic(), time.monotonic()
    result = check(
        {
            "kind": "http",
            "url": http_server.url("/flaky/warmup?fail=3"),
            "retries": 5,
            "backoff": {"initial": 2, "factor": 3, "max": 100},
        },
        clock,
    )
    assert result.ok, result.evidence
    assert result.attempts == 4
    assert clock.sleeps == [2, 6, 18]
    assert clock.monotonic() - began_fake == pytest.approx(26)
    assert time.monotonic() - began_real < 5  # the 26 s of backoff cost no real time


def test_retries_stop_after_the_last_attempt_with_its_evidence(http_server: HttpServer) -> None:
    clock = FakeClock()
    result = check(
        {
            "kind": "http",
            "url": http_server.url("/flaky/down?fail=100"),
            "retries": 3,
            "backoff": {"initial": 1, "factor": 10, "max": 5},
        },
        clock,
    )
    assert not result.ok
    assert result.attempts == 4
    assert clock.sleeps == [1, 5, 5]  # capped at max
    assert "warming up (4)" in result.evidence
    assert result.started_at == FakeClock().now()


# --- many checks ------------------------------------------------------------------------------------


def test_run_checks_keeps_order_and_respects_concurrency() -> None:
    in_flight = 0
    peak = 0

    async def executor(command: str, timeout: float) -> tuple[int, str]:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return int(command.split()[-1]) % 2, command

    specs = [one({"kind": "command", "run": f"check {i}"}) for i in range(10)]
    results = run(run_checks(specs, clock=FakeClock(), concurrency=3, command_executor=executor))
    assert [r.name for r in results] == [f"command check {i}" for i in range(10)]
    assert [r.ok for r in results] == [i % 2 == 0 for i in range(10)]
    assert peak == 3


def test_run_checks_rejects_a_concurrency_below_one() -> None:
    with pytest.raises(ValueError, match="concurrency"):
        run(run_checks([], clock=FakeClock(), concurrency=0))


def _result(name: str, ok: bool, *, required: bool = True) -> CheckResult:
    return CheckResult(name, CheckKind.TCP, ok, 1, 1.0, f"evidence of {name}", 0.0, required)


def test_raise_for_failures_holds_all_evidence() -> None:
    with pytest.raises(CheckFailed) as caught:
        raise_for_failures([_result("db", False), _result("api", True), _result("cache", False)])
    text = str(caught.value)
    assert "2 of 3 checks failed" in text
    assert "db: evidence of db" in text and "cache: evidence of cache" in text
    assert caught.value.hint


def test_raise_for_failures_names_a_single_failure_and_ignores_optional_ones() -> None:
    with pytest.raises(CheckFailed) as caught:
        raise_for_failures([_result("db", False), _result("metrics", False, required=False)])
    assert caught.value.check == "db"
    assert "metrics" not in str(caught.value)
    raise_for_failures([_result("db", True), _result("metrics", False, required=False)])
