"""SSHPool and run_on_all: many hosts at once, a per-host result map, bounded concurrency."""

from __future__ import annotations

import asyncio
import time

import pytest
from ssh_support import arun
from tests.support.pytest_ssh import BedFactory, pool_for

from slipway.errors import CommandResult, HostUnreachable
from slipway.targets.pool import run_on_all
from slipway.targets.ssh import SSHTarget

pytestmark = [pytest.mark.ssh, pytest.mark.timeout(90)]


def test_ten_hosts_run_in_parallel_and_each_is_itself(ssh_testbed: BedFactory) -> None:
    bed = ssh_testbed(10)

    async def main() -> tuple[dict[str, CommandResult | Exception], float]:
        async with pool_for(bed) as pool:
            stamped = await pool.map(lambda t: t.put(t.name.encode(), "/srv/identity"))
            assert all(v is None for v in stamped.values())
            started = time.monotonic()
            results = await pool.run("sleep 1; cat /srv/identity")
            return results, time.monotonic() - started

    results, elapsed = arun(main())
    assert list(results) == [h.name for h in bed.hosts]
    for name, result in results.items():
        assert isinstance(result, CommandResult) and result.stdout == name
    assert elapsed < 4, "ten one-second commands must overlap"
    for host in bed.hosts:
        assert (host.host_dir / "identity").read_text() == host.name


def test_one_dead_host_is_reported_in_the_map_and_the_rest_succeed(ssh_testbed: BedFactory) -> None:
    bed = ssh_testbed(4)
    bed.kill(bed.hosts[2])

    async def main() -> dict[str, CommandResult | Exception]:
        async with pool_for(bed, connect_timeout=3) as pool:
            return await pool.run("echo ok")

    results = arun(main())
    assert isinstance(results["host3"], HostUnreachable)
    assert all(isinstance(results[n], CommandResult) for n in ("host1", "host2", "host4"))


def test_run_on_all_never_runs_more_than_the_limit(ssh_testbed: BedFactory) -> None:
    bed = ssh_testbed(6)
    active = 0
    peak = 0

    async def probe(target: SSHTarget) -> str:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        try:
            return (await target.run("sleep 0.3; echo done")).stdout
        finally:
            active -= 1

    async def main() -> dict[str, str | Exception]:
        async with pool_for(bed) as pool:
            return await run_on_all(pool.targets.values(), probe, limit=2)

    results = arun(main())
    assert results == {h.name: "done\n" for h in bed.hosts}
    assert peak == 2


def test_connection_starts_are_capped_by_the_pool(ssh_testbed: BedFactory) -> None:
    """With one connection start at a time, a host that hangs during login holds up the others; with
    several, the others log in while it hangs."""
    bed = ssh_testbed(3)
    bed.pause(bed.hosts[0])

    async def finish_times() -> dict[str, float]:
        started = time.monotonic()
        done: dict[str, float] = {}

        async def connect(target: SSHTarget) -> None:
            try:
                await target.run("true")
            finally:
                done[target.name] = time.monotonic() - started

        async with pool_for(bed, max_connecting=1, connect_timeout=1.5) as pool:
            results = await pool.map(connect)
        assert isinstance(results["host1"], HostUnreachable)
        return done

    async def finish_order() -> list[str]:
        """host1 stays paused until host2 and host3 are through, then it logs in too: the order proves
        that they did not wait for it, however slow the machine (a time bound would only guess)."""
        order: list[str] = []

        async def connect(target: SSHTarget) -> None:
            await target.run("true")
            order.append(target.name)
            if {"host2", "host3"} <= set(order) and "host1" not in order:
                bed.resume(bed.hosts[0])

        async with pool_for(bed, max_connecting=8, connect_timeout=30) as pool:
            results = await pool.map(connect)
        assert all(v is None for v in results.values()), results
        return order

    serial = arun(finish_times())
    assert min(serial["host2"], serial["host3"]) > 1.4  # a lower bound: a busy machine only adds to it
    assert arun(finish_order())[-1] == "host1"
    bed.resume(bed.hosts[0])


def test_the_result_map_keeps_programming_errors_per_host(ssh_testbed: BedFactory) -> None:
    bed = ssh_testbed(2)

    async def main() -> dict[str, int | Exception]:
        async def picky(target: SSHTarget) -> int:
            if target.name == "host2":
                raise ValueError("host2 is not welcome")
            await asyncio.sleep(0)
            return 1

        async with pool_for(bed) as pool:
            return await pool.map(picky)

    results = arun(main())
    assert results["host1"] == 1
    assert isinstance(results["host2"], ValueError)
