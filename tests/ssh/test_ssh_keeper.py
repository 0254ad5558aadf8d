"""Kept connections (ssh_keeper): after a deployment's end hands a host over, the next Slipway process reaches
the host's agent through the keeper's local socket: no SSH connection, no key exchange, no login; a timed-out
command is still killed on the host; another key never shares the connection; an idle one is forgotten."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from ssh_support import arun
from tests.support.keeper import own_runtime_dir
from tests.support.pytest_ssh import BedFactory
from tests.support.pytest_ssh import target_for as plain_target

from slipway.errors import CommandTimeout
from slipway.targets.ssh import SSHTarget
from slipway.targets.ssh_keeper import keeper_dir, kept_socket

pytestmark = [pytest.mark.ssh, pytest.mark.timeout(120)]


@pytest.fixture(autouse=True)
def own_keeper(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A keeper directory of this test's own; its keeper is stopped after."""
    with own_runtime_dir() as runtime:
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
        yield runtime / "slipway-ssh"


def target_for(host: object, **options: object) -> SSHTarget:
    """A bed target with an agent and a kept connection, as slipway.yml's ``keep`` gives it."""
    return plain_target(host, **{"agent_idle": 600, "keep": 60, **options})  # type: ignore[arg-type]


def wait_for(what: str, check: object, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"waited {timeout}s for {what}"
        time.sleep(0.05)


def counts(target: SSHTarget) -> tuple[int, int, int]:
    """(SSH connections, agent shells, kept shells) this target opened."""
    return target.connections_opened, target.agent_shells_opened, target.kept_shells_opened


def test_the_next_process_uses_the_kept_connection_and_a_timeout_still_kills(
    ssh_testbed: BedFactory, own_keeper: Path
) -> None:
    bed = ssh_testbed(1, heavy_shell=2000)
    host = bed.hosts[0]

    async def deployment() -> None:
        async with target_for(host) as target:
            assert (await target.run("echo one")).stdout == "one\n"
            assert counts(target) == (1, 0, 0)

    arun(deployment())  # its end leaves the agent, then hands the host to the keeper
    spec = target_for(host).keep_spec
    assert spec is not None
    sock = kept_socket(spec)
    assert sock is not None and sock.parent == own_keeper == keeper_dir()
    wait_for("the kept connection's socket", sock.exists)
    assert oct(own_keeper.stat().st_mode & 0o777) == "0o700" and oct(sock.stat().st_mode & 0o777) == "0o600"
    accepted = bed.accepted_logins(host)  # the deployment's and the keeper's

    async def rollback() -> None:
        async with target_for(host) as target:
            out = await target.run("echo out; echo err >&2; exit 3")
            assert (out.stdout, out.stderr, out.exit_code) == ("out\n", "err\n", 3)
            blob = bytes(range(256)) * 2000  # stdin, byte for byte
            await target.put(blob, "/srv/app/blob")
            assert await target.read("/srv/app/blob") == blob
            assert counts(target) == (0, 0, 1)

    arun(rollback())
    assert bed.accepted_logins(host) == accepted  # sshd authenticated nobody new
    assert bed.logins() == {host.name: 1}

    async def timed_out() -> None:
        async with target_for(host) as target:
            marker = "/srv/app/still-running"
            with pytest.raises(CommandTimeout, match="timed out after 1s"):
                await target.run(f"(sleep 3; touch {marker}) & sleep 30", timeout=1)
            await asyncio.sleep(3.5)
            assert (await target.run(f"test -e {marker}")).exit_code == 1  # its process group was killed
            assert target.kept_shells_opened >= 1 and target.connections_opened == 1  # the kill's connection

    arun(timed_out())


def test_another_key_never_shares_a_kept_connection_and_an_idle_one_is_forgotten(
    ssh_testbed: BedFactory, own_keeper: Path, tmp_path: Path
) -> None:
    bed = ssh_testbed(1)
    host = bed.hosts[0]

    async def once(**options: object) -> tuple[int, int, int]:
        async with target_for(host, **options) as target:
            assert (await target.run("echo hi")).stdout == "hi\n"
            return counts(target)

    assert arun(once(keep=1)) == (1, 0, 0)
    spec = target_for(host).keep_spec
    assert spec is not None
    sock = kept_socket(spec)
    assert sock is not None
    wait_for("the kept connection's socket", sock.exists)
    copy = tmp_path / "same_key_elsewhere"
    shutil.copy(host.client_key, copy)  # the same key under another path: another connection's name
    other = target_for(host, client_keys=[copy]).keep_spec
    assert other is not None and kept_socket(other) != sock
    assert arun(once(client_keys=[copy])) == (1, 1, 0)  # the agent, through a connection of its own
    wait_for("the idle connection to be forgotten", lambda: not sock.exists())  # keep: 1 s, swept every 1 s
    assert arun(once(keep=1)) == (1, 1, 0)  # connects again (the agent still runs), and hands it over again
    wait_for("the kept connection's socket", sock.exists)

    own_keeper.chmod(0o755)  # a directory others could use: never trusted
    assert kept_socket(spec) is None
    assert arun(once()) == (1, 1, 0)
    own_keeper.chmod(0o700)
    assert arun(once()) == (0, 0, 1)


def test_keep_without_an_agent_keeps_nothing(ssh_testbed: BedFactory, own_keeper: Path) -> None:
    host = ssh_testbed(1).hosts[0]
    target = target_for(host, agent_idle=0)
    assert target.agent_path is None and target.keep_spec is None
    assert target_for(host, keep=0).keep_spec is None

