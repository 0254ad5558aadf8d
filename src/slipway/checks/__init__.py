"""Checks: verify a host after activation, smoke-test an environment, guard external dependencies.

The library is self-contained: :mod:`.spec` parses what slipway.yml says, :mod:`.runner` runs checks
with timeouts and retries, :mod:`.breaker` and :mod:`.guard` keep a circuit breaker per dependency, and
:mod:`.loadtest` runs a bounded load test. docs/checks.md describes the configuration.

Exports are imported on first use: the config models import :mod:`.spec` (pure, pydantic only), and
reading slipway.yml must not pay for httpx and SQLAlchemy, which only running a check needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
    from slipway.checks.loadtest import LoadTestResult, raise_for_breaches, run_load_test
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
        LoadTestSpec,
        LoadThresholds,
        SqlCheck,
        TcpCheck,
        parse_checks,
    )

_MODULES = {
    "Backoff": "slipway.checks.spec",
    "BreakerPolicy": "slipway.checks.spec",
    "BreakerRepository": "slipway.checks.breaker",
    "BreakerState": "slipway.checks.breaker",
    "BreakerStatus": "slipway.checks.breaker",
    "CheckKind": "slipway.checks.spec",
    "CheckResult": "slipway.checks.runner",
    "CheckRunner": "slipway.checks.runner",
    "CheckSpec": "slipway.checks.spec",
    "CommandCheck": "slipway.checks.spec",
    "CommandExecutor": "slipway.checks.probes",
    "DependencyGuard": "slipway.checks.guard",
    "DnsCheck": "slipway.checks.spec",
    "HttpCheck": "slipway.checks.spec",
    "InMemoryBreakerRepository": "slipway.checks.breaker",
    "LoadTestResult": "slipway.checks.loadtest",
    "LoadTestSpec": "slipway.checks.spec",
    "LoadThresholds": "slipway.checks.spec",
    "Outcome": "slipway.checks.breaker",
    "SqlCheck": "slipway.checks.spec",
    "TcpCheck": "slipway.checks.spec",
    "allow": "slipway.checks.breaker",
    "parse_checks": "slipway.checks.spec",
    "raise_for_breaches": "slipway.checks.loadtest",
    "raise_for_failures": "slipway.checks.runner",
    "record": "slipway.checks.breaker",
    "run_checks": "slipway.checks.runner",
    "run_load_test": "slipway.checks.loadtest",
    "run_local_command": "slipway.checks.probes",
}


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


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
