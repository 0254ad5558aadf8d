"""Checks: verify a host after activation, smoke-test an environment, guard external dependencies.

The library is self-contained: :mod:`.spec` parses what slipway.yml says, :mod:`.runner` runs checks
with timeouts and retries, :mod:`.breaker` and :mod:`.guard` keep a circuit breaker per dependency, and
:mod:`.loadtest` runs a bounded load test. docs/checks.md describes the configuration.
"""

from slipway.checks.breaker import (
    BreakerRepository,
    BreakerState,
    BreakerStatus,
    InMemoryBreakerRepository,
    Outcome,
    allow,
    record,
)
from slipway.checks.guard import DependencyGuard
from slipway.checks.loadtest import (
    LoadTestResult,
    LoadTestSpec,
    LoadThresholds,
    raise_for_breaches,
    run_load_test,
)
from slipway.checks.probes import CommandExecutor, run_local_command
from slipway.checks.runner import CheckResult, CheckRunner, raise_for_failures, run_checks
from slipway.checks.spec import (
    Backoff,
    BreakerPolicy,
    CheckKind,
    CheckSpec,
    CommandCheck,
    DnsCheck,
    HttpCheck,
    SqlCheck,
    TcpCheck,
    parse_checks,
)

__all__ = [
    "Backoff",
    "BreakerPolicy",
    "BreakerRepository",
    "BreakerState",
    "BreakerStatus",
    "CheckKind",
    "CheckResult",
    "CheckRunner",
    "CheckSpec",
    "CommandCheck",
    "CommandExecutor",
    "DependencyGuard",
    "DnsCheck",
    "HttpCheck",
    "InMemoryBreakerRepository",
    "LoadTestResult",
    "LoadTestSpec",
    "LoadThresholds",
    "Outcome",
    "SqlCheck",
    "TcpCheck",
    "allow",
    "parse_checks",
    "raise_for_breaches",
    "raise_for_failures",
    "record",
    "run_checks",
    "run_load_test",
    "run_local_command",
]
