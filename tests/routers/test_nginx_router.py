"""The nginx router against a real nginx and real HTTP backends on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError
from routers_support import HttpBackend, Load
from tests.support.nginx import NginxServer

from slipway.errors import CommandFailed, DeploymentError, TargetError
from slipway.routers import Backend, Router, RouterState
from slipway.routers.nginx import NginxRouter, NginxRouterConfig, parse_state, render_upstream

pytestmark = pytest.mark.timeout(120)

MakeBackend = Callable[..., HttpBackend]


def run(coro: Awaitable[None], timeout: float = 60) -> None:
    """Run one test body with its own time bound."""

    async def bounded() -> None:
        await asyncio.wait_for(coro, timeout)

    asyncio.run(bounded())


async def names_served(url: str, count: int) -> Counter[str]:
    async with httpx.AsyncClient(timeout=10) as client:
        bodies = [(await client.get(url)) for _ in range(count)]
    assert all(r.status_code == 200 for r in bodies), [r.status_code for r in bodies]
    return Counter(r.text for r in bodies)


async def start_slow_request_on(
    router: NginxRouter,
    server: NginxServer,
    client: httpx.AsyncClient,
    target: HttpBackend,
    other: HttpBackend,
    *,
    ms: int,
) -> asyncio.Task[httpx.Response]:
    """Put a slow request in flight on ``target``, then route the group to ``target`` and ``other``."""
    await router.set_upstream("app", [target.backend])
    slow = asyncio.create_task(client.get(f"{server.url}/?ms={ms}"))
    await target.wait_in_flight()
    await router.set_upstream("app", [target.backend, other.backend])
    assert not slow.done()
    return slow


def test_nginx_router_is_a_router(nginx_server: NginxServer) -> None:
    assert isinstance(nginx_server.router(), Router)


def test_set_upstream_routes_to_exactly_those_backends(
    nginx_server: NginxServer, backends: MakeBackend
) -> None:
    a, b, c = backends("a"), backends("b"), backends("c")
    router = nginx_server.router()

    async def body() -> None:
        await router.set_upstream("app", [a.backend, b.backend])
        assert await names_served(nginx_server.url, 40) == Counter({"a": 20, "b": 20})
        await router.set_upstream("app", [c.backend])
        assert await names_served(nginx_server.url, 10) == Counter({"c": 10})
        assert await router.current("app") == RouterState(group="app", backends=(c.backend,))

    run(body())


def test_drain_under_load_loses_no_request(nginx_server: NginxServer, backends: MakeBackend) -> None:
    a, b = backends("a"), backends("b-v1")
    router = nginx_server.router(drain_timeout=10)
    load = Load(nginx_server.url, total=2000, concurrency=8)
    marks: dict[str, float] = {}

    async def body() -> None:
        await router.set_upstream("app", [a.backend, b.backend])
        traffic = asyncio.create_task(load.run())
        await load.wait_for(300)
        await router.drain("app", b.backend)
        marks["drained"] = time.monotonic()
        b.stop()  # the "deployment" of b: gone, then back with a new version
        await asyncio.sleep(0.2)
        b.start(name="b-v2")
        marks["enabling"] = time.monotonic()
        await router.enable("app", b.backend)
        marks["enabled"] = time.monotonic()
        await asyncio.wait_for(traffic, 60)

    run(body())
    outcomes = load.outcomes
    failed = [o for o in outcomes if not o.ok]
    assert len(outcomes) == 2000
    assert failed == [], failed[:5]
    out_of_rotation = [o for o in outcomes if marks["drained"] < o.started and o.ended < marks["enabling"]]
    assert out_of_rotation, "the load finished before b was put back: test proves nothing"
    assert {o.body for o in out_of_rotation} == {"a"}
    after = Counter(o.body for o in outcomes if o.started > marks["enabled"])
    assert after["b-v2"] > 0 and after["a"] > 0 and "b-v1" not in after, after


def test_drain_waits_for_in_flight_requests(nginx_server: NginxServer, backends: MakeBackend) -> None:
    a, b = backends("a"), backends("b")
    router = nginx_server.router(drain_timeout=10)

    async def body() -> None:
        async with httpx.AsyncClient(timeout=10) as client:
            slow = await start_slow_request_on(router, nginx_server, client, b, a, ms=1500)
            assert b.in_flight == 1  # still being answered when the drain starts
            started = time.monotonic()
            await router.drain("app", b.backend)
            waited = time.monotonic() - started
            assert slow.done(), "drain returned while a request to b was in flight"
            assert waited < 5, waited
            b.stop()
            assert slow.result().text == "b"
        assert await names_served(nginx_server.url, 10) == Counter({"a": 10})

    run(body())


def test_drain_wait_is_bounded_by_the_drain_timeout(
    nginx_server: NginxServer, backends: MakeBackend, caplog: pytest.LogCaptureFixture
) -> None:
    a = backends("a")
    b = backends("b")
    router = nginx_server.router(drain_timeout=0.5)

    async def body() -> None:
        async with httpx.AsyncClient(timeout=10) as client:
            slow = await start_slow_request_on(router, nginx_server, client, b, a, ms=3000)
            started = time.monotonic()
            with caplog.at_level(logging.WARNING, logger="slipway.routers.nginx"):
                await router.drain("app", b.backend)
            assert time.monotonic() - started < 2.5
            assert not slow.done()
            # nginx's old worker still finishes what it had: nothing is cut off
            assert (await slow).text == "b"
        assert "drain timeout" in caplog.text

    run(body())


def test_blue_green_switch_under_load(nginx_server: NginxServer, backends: MakeBackend) -> None:
    blue = [backends("blue-1", slot="blue"), backends("blue-2", slot="blue")]
    green = [backends("green-1", slot="green"), backends("green-2", slot="green")]
    router = nginx_server.router(drain_timeout=10)
    load = Load(nginx_server.url, total=2000, concurrency=8)
    marks: dict[str, float] = {}

    async def body() -> None:
        await router.set_upstream("app", [x.backend for x in blue + green])
        assert (await router.current("app")).active_slot == "blue"
        traffic = asyncio.create_task(load.run())
        await load.wait_for(300)
        marks["switching"] = time.monotonic()
        await router.switch("app", "green")
        marks["green"] = time.monotonic()
        await load.wait_for(load.done + 300)
        marks["switching_back"] = time.monotonic()
        await router.switch("app", "blue")  # rollback is a switch back
        marks["blue"] = time.monotonic()
        await asyncio.wait_for(traffic, 60)

    run(body())
    outcomes = load.outcomes
    assert len(outcomes) == 2000
    assert [o for o in outcomes if not o.ok] == []
    # Ended before the switch began: blue. (The switch returns only once the old workers exited, which on a
    # busy machine can be seconds after green took its first request, so its end is no bound for "before".)
    before = {o.body for o in outcomes if o.ended < marks["switching"]}
    on_green = Counter(
        o.body for o in outcomes if marks["green"] < o.started and o.ended < marks["switching_back"]
    )
    on_blue = Counter(o.body for o in outcomes if o.started > marks["blue"])
    assert before <= {"blue-1", "blue-2"}
    assert set(on_green) == {"green-1", "green-2"}, on_green
    assert set(on_blue) == {"blue-1", "blue-2"}, on_blue


def test_invalid_config_is_refused_and_the_old_one_keeps_serving(
    nginx_server: NginxServer, backends: MakeBackend
) -> None:
    a = backends("a")
    router = nginx_server.router()
    path = Path(router.path_for("app"))

    async def body() -> None:
        await router.set_upstream("app", [a.backend])
        before_text = path.read_text()
        before_workers = await router._workers()
        unresolvable = Backend(host="no-such-host.invalid", port=80)
        with pytest.raises(CommandFailed, match="nginx refused the new configuration") as info:
            await router.set_upstream("app", [a.backend, unresolvable])
        assert "no-such-host.invalid" in info.value.stderr_tail
        assert info.value.command.startswith(nginx_server.binary)
        assert path.read_text() == before_text
        assert await router._workers() == before_workers, "nginx was reloaded"
        assert await names_served(nginx_server.url, 5) == Counter({"a": 5})
        assert (await router.current("app")).backends == (a.backend,)

    run(body())


def test_a_conf_dir_nginx_does_not_include_is_refused(
    nginx_server: NginxServer, backends: MakeBackend, tmp_path: Path
) -> None:
    a = backends("a")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    router = NginxRouter(
        conf_dir=elsewhere, config=nginx_server.config, prefix=nginx_server.root,
        pid_file=nginx_server.pid_file, nginx=nginx_server.binary,
    )

    async def body() -> None:
        with pytest.raises(TargetError, match="does not include") as info:
            await router.set_upstream("app", [a.backend])
        assert f"include {elsewhere}/*.conf" in info.value.hint
        assert list(elsewhere.iterdir()) == [], "the file was not cleaned up"

    run(body())


def test_nginx_not_running_is_a_clear_error(nginx_server: NginxServer, backends: MakeBackend) -> None:
    a = backends("a")
    router = nginx_server.router()
    path = Path(router.path_for("app"))
    before = path.read_text()
    nginx_server.stop()

    async def body() -> None:
        with pytest.raises(TargetError, match="nginx is not running") as info:
            await router.set_upstream("app", [a.backend])
        assert "start nginx" in info.value.hint
        assert path.read_text() == before

    run(body())


def test_unknown_backend_slot_or_group_are_deployment_errors(
    nginx_server: NginxServer, backends: MakeBackend
) -> None:
    a = backends("a")
    router = nginx_server.router()

    async def body() -> None:
        await router.set_upstream("app", [a.backend])
        with pytest.raises(DeploymentError, match="not in upstream group"):
            await router.drain("app", Backend(port=1))
        with pytest.raises(DeploymentError, match="no backend in slot 'green'"):
            await router.switch("app", "green")
        with pytest.raises(DeploymentError, match="no upstream group 'other'"):
            await router.current("other")
        with pytest.raises(DeploymentError, match="no backend in rotation"):
            await router.drain("app", a.backend)  # the last one: refused, would serve only 502s
        assert await names_served(nginx_server.url, 3) == Counter({"a": 3})

    run(body())


def test_include_file_round_trips_and_leaves_inactive_slot_out() -> None:
    state = RouterState(
        group="web",
        backends=(
            Backend(port=8001, slot="blue"),
            Backend(port=8002, slot="blue", down=True),
            Backend(port=8003, slot="green"),
        ),
        active_slot="blue",
    )
    text = render_upstream(state)
    assert parse_state(text) == state
    assert "upstream slipway_web {" in text
    assert "server 127.0.0.1:8002 weight=1 down;" in text
    assert "8003" not in text.split("upstream", 1)[1]


def test_bad_names_are_refused() -> None:
    with pytest.raises(ValueError, match="group name"):
        render_upstream(RouterState(group="a b; }", backends=(Backend(port=1),)))
    with pytest.raises(ValueError, match="neither an IP address nor a host name"):
        Backend(host="1.2.3.4;evil", port=80)


def test_router_config_builds_the_router(nginx_server: NginxServer, backends: MakeBackend) -> None:
    a = backends("a")
    config = NginxRouterConfig.model_validate(
        {"kind": "nginx", "conf_dir": str(nginx_server.conf_dir), "config": str(nginx_server.config),
         "prefix": str(nginx_server.root), "pid_file": str(nginx_server.pid_file),
         "nginx": nginx_server.binary, "drain_timeout": 5}
    )
    router = NginxRouter.from_config(config)
    assert router.drain_timeout == 5

    async def body() -> None:
        await router.set_upstream(config.group, [a.backend])
        assert await names_served(nginx_server.url, 2) == Counter({"a": 2})

    run(body())
    with pytest.raises(ValidationError, match="Extra inputs"):
        NginxRouterConfig.model_validate({"kind": "nginx", "conf": "/x"})
