"""A dependency's breaker after the switch: a passing check never opens it, and an open one is not
evidence against the release (``breaker.open_after_switch`` decides, default: the release stays)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import Project
from tests.integration_checks.conftest import TcpListener, config

pytestmark = pytest.mark.timeout(240)

#: Another Slipway process opening the breaker while this deployment's hosts switch: written to the
#: real state store by a hook, between the check before the deployment and the one after the switch.
OPEN_BREAKER = """\
import sys, time
from dataclasses import replace
from sqlalchemy import create_engine
from slipway.checks.breaker import BreakerState, BreakerStatus
from slipway.store.breakers import SqlBreakerRepository

repo = SqlBreakerRepository(create_engine(f"sqlite:///{sys.argv[1]}"))
for _ in range(50):
    current = repo.load("dev/cache") or BreakerState()
    opened = replace(current, status=BreakerStatus.OPEN, opened_at=time.time(), reason="3 of the last 4 checks failed")
    if repo.save("dev/cache", opened, expected_version=current.version):
        break
else:
    sys.exit("could not open the breaker")
"""


def dependency(port: int, policy: str = "") -> str:
    return (
        "    dependencies:\n"
        f"      - {{kind: tcp, name: cache, host: 127.0.0.1, port: {port}, timeout: 2,\n"
        f"         breaker: {{window: 4, min_calls: 2, failure_rate: 0.5, cool_down: 600{policy}}}}}\n"
    )


def test_a_passing_check_after_a_failed_one_does_not_open_the_breaker(
    project: Project, tcp_listener: TcpListener
) -> None:
    # The reported case: window 4, min_calls 2, rate 0.5. One run fails while the cache is down, the
    # cache comes back, the next run's check before the deployment passes ("1 of the last 2 failed"):
    # the breaker stays closed, the check after the switch runs and passes, the release stays.
    (project.root / "slipway.yml").write_text(config(project.ports["dev"], env_extra=dependency(tcp_listener.port)))
    project.commit("deploy behind a cache")
    tcp_listener.stop()
    down = project.slipway("run", check=False)
    assert down.returncode == 8, down.stderr
    assert project.status()["dev"]["release"] is None
    tcp_listener.start()
    done = project.slipway("run", check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    [breaker] = project.json("breakers")
    assert breaker["status"] == "closed" and (breaker["failures"], breaker["outcomes"]) == (1, 3)
    [deployment, *_] = project.json("deployments", "dev")
    assert deployment["state"] == "succeeded"
    assert project.status()["dev"]["release"] == deployment["release"]


def two_runs(project: Project, listener: TcpListener, policy: str) -> tuple[str, str, str]:
    """Deploy once, then again with a hook that opens the breaker after the switch.

    Returns the first release, the second run's release and the second run's CLI output.
    """
    script = project.root.parent / "open_breaker.py"
    script.write_text(OPEN_BREAKER)
    flag = project.root.parent / "open-the-breaker"
    hook = f"test ! -e {flag} || {sys.executable} {script} {project.root / '.slipway/state.db'}"
    text = config(project.ports["dev"], env_extra=dependency(listener.port, policy))
    text = text.replace(
        "activate: ['sh bin/restart.sh {{ vars.port }} {{ paths.shared }}']",
        f"activate: ['sh bin/restart.sh {{{{ vars.port }}}} {{{{ paths.shared }}}}', '{hook}']",
    )
    (project.root / "slipway.yml").write_text(text)
    project.commit("deploy behind a cache")
    project.slipway("run")
    first = project.status()["dev"]["release"]
    assert first is not None
    flag.touch()
    project.edit("app/server.py", "\n", "\n# second release\n")
    project.commit("second release")
    second = project.slipway("run", check=False)
    [latest, *_] = project.json("deployments", "dev")
    assert latest["release"] != first
    assert project.json("breakers")[0]["status"] == "open"
    return first, latest["release"], f"{second.returncode}\n{second.stdout}\n{second.stderr}"


def test_an_open_breaker_after_the_switch_keeps_the_release_and_fails_the_run_by_default(
    project: Project, tcp_listener: TcpListener
) -> None:
    first, second, output = two_runs(project, tcp_listener, "")
    code = output.partition("\n")[0]
    assert code == "8", output
    text = " ".join(output.split())
    assert "dependency 'cache' of dev is unavailable: its circuit breaker is open" in text
    assert f"release {second}: it passed its checks and stays on every host" in text
    assert project.status()["dev"]["release"] == second  # not reverted
    [deployment, *_] = project.json("deployments", "dev")
    assert deployment["state"] == "succeeded"  # the deployment did what it should; the run reports the dependency
    [run, *_] = project.json("history", "--limit", "1")
    assert run["state"] == "failed"
    assert Path(project.root / ".slipway/targets/dev/current").resolve().name == second
    assert first != second


def test_open_after_switch_revert_puts_the_hosts_back(project: Project, tcp_listener: TcpListener) -> None:
    first, _, output = two_runs(project, tcp_listener, ", open_after_switch: revert")
    assert output.startswith("6\n"), output
    assert "reverted" in output
    assert project.status()["dev"]["release"] == first


def test_open_after_switch_ignore_warns_and_goes_on(project: Project, tcp_listener: TcpListener) -> None:
    _, second, output = two_runs(project, tcp_listener, ", open_after_switch: ignore")
    assert output.startswith("0\n"), output
    assert project.status()["dev"]["release"] == second
    [run, *_] = project.json("history", "--limit", "1")
    logs = project.slipway("logs", str(run["id"]), "--stage", "deploy-dev").stdout
    assert "open_after_switch: ignore" in logs and "circuit open since" in logs


def test_a_breaker_key_on_a_verify_or_smoke_check_is_refused(project: Project) -> None:
    smoke = (
        "    smoke:\n"
        "      - kind: tcp\n"
        "        host: 127.0.0.1\n"
        "        port: 1\n"
        "        breaker: {window: 4, min_calls: 2}\n"
    )
    (project.root / "slipway.yml").write_text(config(project.ports["dev"], env_extra=smoke))
    refused = project.slipway("validate", check=False)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    text = " ".join(refused.stderr.split())
    assert "slipway.yml:24:9: environments.dev.smoke[0].breaker: a smoke check has no circuit breaker" in text
    assert "'dependencies:'" in text
    checks = "    - {kind: tcp, host: 127.0.0.1, port: 1, breaker: {window: 4, min_calls: 2}}"
    (project.root / "slipway.yml").write_text(config(project.ports["dev"], checks=checks))
    refused = project.slipway("validate", check=False)
    assert refused.returncode == 2
    assert "deploy.checks[0].breaker: a verify check has no circuit breaker" in refused.stderr
