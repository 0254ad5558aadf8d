"""The host's resident agent: after one login, later connections (a rollback, the next deployment) reach
the dispatcher through a unix socket channel, without a login shell, and keep every guarantee."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from ssh_support import arun
from tests.support.pytest_ssh import BedFactory
from tests.support.pytest_ssh import target_for as plain_target

from slipway.errors import CommandTimeout
from slipway.targets.ssh import SSHTarget
from slipway.targets.ssh_agent import VERSION, agent_socket

pytestmark = [pytest.mark.ssh, pytest.mark.timeout(120)]


def socket_of(bed_host_dir: Path) -> Path:
    """The agent's socket as this machine sees it (the host's /srv is its host_dir)."""
    path = agent_socket("/srv/app")
    assert path is not None
    return bed_host_dir / Path(path).relative_to("/srv")


def target_for(host: object, **options: object) -> SSHTarget:
    """A bed target that leaves an agent (10 minutes), as slipway.yml's ssh targets do by default."""
    return plain_target(host, **{"agent_idle": 600, **options})  # type: ignore[arg-type]


def wait_for(what: str, check: object, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"waited {timeout}s for {what}"
        time.sleep(0.05)


def test_after_one_login_the_next_connections_run_without_one(ssh_testbed: BedFactory) -> None:
    bed = ssh_testbed(1, heavy_shell=2000)
    host = bed.hosts[0]

    async def first() -> None:
        async with target_for(host) as target:
            assert (await target.run("echo one")).stdout == "one\n"
            assert target.shells_opened == 1 and target.agent_shells_opened == 0

    arun(first())
    assert bed.logins() == {host.name: 1}
    sock = socket_of(host.host_dir)
    wait_for("the agent's socket", sock.exists)
    assert oct(sock.parent.stat().st_mode & 0o777) == "0o700"

    async def later() -> None:
        async with target_for(host) as target:
            out = await target.run("echo out; echo err >&2; exit 3")
            assert (out.stdout, out.stderr, out.exit_code) == ("out\n", "err\n", 3)
            killed = await target.run("kill -TERM $$")
            assert killed.exit_code == -15  # a signal still reads as one
            blob = bytes(range(256)) * 5000  # stdin through the socket, byte for byte
            await target.put(blob, "/srv/app/blob")
            assert await target.read("/srv/app/blob") == blob
            both = await asyncio.gather(*(target.run(f"sleep 0.2; echo {i}") for i in range(3)))
            assert [r.stdout for r in both] == ["0\n", "1\n", "2\n"]
            assert target.shells_opened == 0 and target.agent_shells_opened == 3

    arun(later())
    assert bed.logins() == {host.name: 1}  # the second target never logged in


def test_a_timed_out_command_through_the_agent_is_killed(ssh_testbed: BedFactory) -> None:
    bed = ssh_testbed(1)
    host = bed.hosts[0]

    async def main() -> None:
        async with target_for(host) as target:
            await target.run("true")
        wait_for("the agent's socket", socket_of(host.host_dir).exists)
        async with target_for(host) as target:
            marker = "/srv/app/still-running"
            with pytest.raises(CommandTimeout, match="timed out after 1s"):
                await target.run(f"(sleep 3; touch {marker}) & sleep 30", timeout=1)
            await asyncio.sleep(3.5)
            assert (await target.run(f"test -e {marker}")).exit_code == 1
            assert target.agent_shells_opened == 1

    arun(main())


def test_an_idle_agent_exits_and_a_removed_one_is_replaced_by_a_login(ssh_testbed: BedFactory) -> None:
    bed = ssh_testbed(1, heavy_shell=2000)
    host = bed.hosts[0]
    sock = socket_of(host.host_dir)

    async def once(**options: float) -> tuple[int, int]:
        async with target_for(host, **options) as target:
            assert (await target.run("echo hi")).stdout == "hi\n"
            return target.shells_opened, target.agent_shells_opened

    assert arun(once(agent_idle=1)) == (1, 0)
    wait_for("the agent's socket", sock.exists)
    wait_for("the idle agent to exit", lambda: not sock.exists())  # within its 1 s, checked every 2 s
    assert arun(once()) == (1, 0)  # nobody listens: a login, which leaves a new agent
    wait_for("the new agent's socket", sock.exists)
    sock.unlink()  # removed (a cleanup, another version's tidy-up): its agent leaves, the next one logs in
    assert arun(once()) == (1, 0)
    assert bed.logins() == {host.name: 3}
    wait_for("the agent's socket", sock.exists)
    assert arun(once()) == (0, 1)
    assert bed.logins() == {host.name: 3}


def test_agent_idle_zero_never_leaves_an_agent(ssh_testbed: BedFactory) -> None:
    bed = ssh_testbed(1)
    host = bed.hosts[0]

    async def main() -> None:
        async with target_for(host, agent_idle=0) as target:
            assert target.agent_path is None
            await target.run("true")

    arun(main())
    time.sleep(1)
    assert not socket_of(host.host_dir).parent.exists()
    assert agent_socket("/srv/" + "x" * 120) is None  # too long for a unix socket: no agent
    assert VERSION in (agent_socket("/srv/app") or "")
