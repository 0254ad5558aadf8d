"""An error in the middle of a batch never leaves a host drained (engine/rollout.py back_in_rotation_on_error).

The batch loop drives a real RouterGate over a real nginx and two real HTTP backends; only the deployment
run around it is the rollout tests' fake (its hosts "switch" in memory). Each scenario is a router error in
the middle of a batch: nginx refusing to leave the group empty (the reported case: a rollback drained both
hosts at once), nginx's reload failing while a host goes back in, and failing again on the retry.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from slipway.clock import SystemClock
from slipway.engine.strategy import Batch, BatchKind, Rolling, plan_batches
from slipway.errors import CommandFailed, DeploymentError, HostOutcome, SlipwayError
from slipway.model.traffic import ReadinessSpec
from slipway.routers.nginx import NginxRouter
from slipway.services.traffic import RouterGate
from tests.rollback.support import flaky_nginx
from tests.rollout.test_rollout_breaker import FakeRun, Messages
from tests.routers.routers_support import HttpBackend
from tests.support.nginx import NginxServer
from tests.support.ports import free_port

pytestmark = pytest.mark.timeout(120)

HOSTS = ("web-1", "web-2")


class ArmedRun(FakeRun):
    """The fake run; ``arm`` runs when a unit of the batch is deployed (as an activate hook would)."""

    arm: Callable[[], None] = staticmethod(lambda: None)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        deploy = self.units.deploy

        async def armed(name: str) -> HostOutcome | None:
            self.arm()
            return await deploy(name)

        self.units.deploy = armed  # type: ignore[method-assign]


@pytest.fixture
def web(nginx_server: NginxServer) -> Iterator[tuple[NginxServer, dict[str, HttpBackend]]]:
    backends = {name: HttpBackend(name=name, port=free_port()) for name in HOSTS}
    for backend in backends.values():
        backend.start()
    try:
        yield nginx_server, backends
    finally:
        for backend in backends.values():
            backend.stop()


def gate_for(server: NginxServer, backends: dict[str, HttpBackend], router: NginxRouter) -> RouterGate:
    readiness = ReadinessSpec(path="/", successes=2, interval=0.05, deadline=10)
    urls = {name: f"http://127.0.0.1:{b.port}/" for name, b in backends.items()}
    return RouterGate(
        router, "app", {n: b.backend for n, b in backends.items()}, readiness, urls, SystemClock(), Messages()
    )


def one_by_one_through_flaky_nginx(
    server: NginxServer, backends: dict[str, HttpBackend], directory: Path
) -> tuple[ArmedRun, NginxRouter, Path]:
    """A rolling run (batch size 1) whose router drives nginx through a wrapper that fails reloads on demand."""
    wrapper, fault = flaky_nginx(directory, server.binary)
    router = NginxRouter(
        conf_dir=server.conf_dir, config=server.config, prefix=server.root, pid_file=server.pid_file,
        nginx=str(wrapper), drain_timeout=5,
    )
    gate = gate_for(server, backends, router)
    fake = ArmedRun(plan_batches(HOSTS, Rolling(batch_size=1)), failing=set(), breaker=None, traffic=gate)  # type: ignore[arg-type]
    return fake, router, fault


async def roll(fake: FakeRun) -> SlipwayError:
    """Run the batches behind the real router gate; the error they end with."""
    gate = fake.traffic
    assert isinstance(gate, RouterGate)
    await gate.prepare()
    with pytest.raises(SlipwayError) as err:
        await asyncio.wait_for(fake.rollout().run_batches(), 60)
    return err.value


async def served_by(url: str, count: int = 40) -> set[str]:
    async with httpx.AsyncClient(timeout=10) as client:
        answers = [await client.get(url) for _ in range(count)]
    assert all(a.status_code == 200 for a in answers), [a.status_code for a in answers]
    return {a.text for a in answers}


def test_nginx_refusing_an_empty_group_puts_the_drained_host_back(
    web: tuple[NginxServer, dict[str, HttpBackend]],
) -> None:
    server, backends = web
    router = server.router(drain_timeout=5)
    gate = gate_for(server, backends, router)
    both = (Batch(index=0, kind=BatchKind.ALL, hosts=HOSTS),)  # what the planner made of a rollback
    fake = FakeRun(both, failing=set(), breaker=None, traffic=gate)  # type: ignore[arg-type]

    async def scenario() -> None:
        error = await roll(fake)
        assert isinstance(error, DeploymentError) and "would have no backend in rotation" in error.message
        state = await router.current("app")
        assert [b.down for b in state.backends] == [False, False], state
        assert gate.out == set()
        assert await served_by(f"{server.url}/") == set(HOSTS)  # nginx itself routes to both again

    asyncio.run(scenario())
    assert "putting web-1, web-2 back in rotation after the error: web-1, web-2 back" in fake.observer.lines


def test_a_failed_reload_while_a_host_goes_back_in_is_retried_and_the_error_still_fails(
    web: tuple[NginxServer, dict[str, HttpBackend]], tmp_path: Path
) -> None:
    server, backends = web
    fake, router, fault = one_by_one_through_flaky_nginx(server, backends, tmp_path)
    fake.arm = lambda: fault.write_text("1") if not fault.exists() else None  # the next reload fails, once

    async def scenario() -> None:
        error = await roll(fake)
        assert isinstance(error, CommandFailed) and "nginx reload failed" in error.message
        assert "injected by the test" in str(error) and "could not put back" not in error.hint
        state = await router.current("app")
        assert [b.down for b in state.backends] == [False, False], state
        assert await served_by(f"{server.url}/") == set(HOSTS)

    asyncio.run(scenario())
    assert fake.on_release == {"web-1": "new", "web-2": "old", **{h: "old" for h in fake.on_release if h not in HOSTS}}


def test_a_host_that_cannot_be_put_back_is_named_in_the_errors_hint(
    web: tuple[NginxServer, dict[str, HttpBackend]], tmp_path: Path
) -> None:
    server, backends = web
    fake, router, fault = one_by_one_through_flaky_nginx(server, backends, tmp_path)
    fake.arm = lambda: fault.write_text("2") if not fault.exists() else None  # the enable and its retry fail

    async def scenario() -> None:
        error = await roll(fake)
        assert "nginx reload failed" in error.message
        assert "could not put back in rotation (web-1: " in error.hint, error.hint
        state = await router.current("app")  # the file says what nginx runs: web-1 is still out
        assert [b.down for b in state.backends] == [True, False], state
        assert await served_by(f"{server.url}/") == {"web-2"}

    asyncio.run(scenario())
