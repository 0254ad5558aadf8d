"""Blue/green without hosts: which slot is idle, slot templates, config rules, the store's slot records,
what a switch back may reach, and how the slot gate lists both slots' backends for the router."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slipway.config import LoadedConfig, parse_config
from slipway.engine.planner import HostInfo, ReleaseInfo, template_context
from slipway.engine.slots import SlotInfo, idle_slot, other_slot, slot_root, warm_mismatches, warm_release
from slipway.errors import ConfigError, DeploymentError, GateError
from slipway.model.config import Project
from slipway.model.routing import Backend, RouterState
from slipway.model.states import DeploymentKind, State
from slipway.services.bluegreen import SlotGate
from slipway.services.switchback import choose_rollback
from slipway.services.validate import validate_project
from slipway.store.repository import Store
from tests.rollout.test_rollout_config import BASE, error_of

BLUE_GREEN = """\
    strategy: {kind: blue_green, slot_vars: {blue: {port: 8001}, green: {port: 8002}}}
    router: {kind: nginx, group: web}"""


def project(extra: str = BLUE_GREEN) -> Project:
    return parse_config(BASE.replace("EXTRA", extra), path=Path("/p/slipway.yml")).project


def test_the_idle_slot_is_the_one_not_serving_and_the_first_by_name_before_any() -> None:
    assert idle_slot(("blue", "green"), "blue") == "green"
    assert idle_slot(("blue", "green"), "green") == "blue"
    assert idle_slot(("green", "blue"), None) == "blue"  # the slot a router activates first
    assert idle_slot(("blue", "green"), "red") == "blue"
    assert other_slot(("a", "b"), "a") == "b" and other_slot(("a", "b"), "b") == "a"


@given(st.dictionaries(st.sampled_from(["h1", "h2", "h3"]), st.sampled_from(["r1", "r2", None]), min_size=1))
def test_a_switch_back_reaches_a_release_only_when_every_warm_slot_holds_it(warm: dict[str, str | None]) -> None:
    release = warm_release(warm)
    if release is not None:
        assert warm_mismatches(warm, release) == {}
    for candidate in ("r1", "r2"):
        assert (warm_mismatches(warm, candidate) == {}) == all(v == candidate for v in warm.values())


def test_a_slot_has_its_own_layout_and_vars_in_templates() -> None:
    proj = project()
    env = proj.environments["prod"]
    host = HostInfo("h1", "/srv/app", vars={"port": 9000, "x": 1}, slot=SlotInfo("green", {"port": 8002}))
    ctx = template_context(
        project=proj, environment="prod", env=env, host=host, release=ReleaseInfo("r1", "sha256:0", "c" * 40), url=None
    )
    assert ctx["vars"] == {"port": 8002, "x": 1}  # the slot's vars win over the host's
    assert ctx["slot"] == {"name": "green", "root": "/srv/app/slots/green", "vars": {"port": 8002}}
    assert ctx["paths"]["current"] == "/srv/app/slots/green/current"
    assert ctx["release"]["dir"] == "/srv/app/slots/green/releases/r1"
    assert ctx["host"]["root"] == "/srv/app"  # the host's own root stays reachable for data both slots share
    assert slot_root("/srv/app/", "blue") == "/srv/app/slots/blue"
    plain = template_context(
        project=proj, environment="prod", env=env, host=HostInfo("h1", "/srv/app"),
        release=ReleaseInfo("r1", "sha256:0", "c" * 40), url=None,
    )
    assert "slot" not in plain and plain["paths"]["current"] == "/srv/app/current"


def test_blue_green_parses_and_needs_a_router_and_a_warm_old_slot() -> None:
    strategy = project().environments["prod"].strategy
    assert strategy is not None and strategy.kind == "blue_green"
    assert "through a router" in error_of("    strategy: {kind: blue_green}").reason
    warm = error_of(BLUE_GREEN.replace("blue_green,", "blue_green, keep_old_warm: false,"))
    assert "keep_old_warm" in warm.reason
    unknown = error_of(BLUE_GREEN.replace("green: {port: 8002}", "red: {port: 8002}"))
    assert "slot_vars names slot(s) red" in unknown.reason


def test_validate_renders_hooks_and_checks_for_each_slot() -> None:
    def loaded(hook: str, check: str, strategy: str = BLUE_GREEN) -> LoadedConfig:
        text = BASE.replace("EXTRA", strategy).replace(
            'activate: "sh restart.sh {{ vars.port }}"',
            f'activate: "{hook}"\n  checks:\n    - {{kind: http, url: "http://127.0.0.1:8080/health/{check}"}}',
        )
        return parse_config(text, path=Path("/p/slipway.yml"))

    # Hooks and checks may use the slot: every host of both slots renders (5 hosts x 2 slots checks).
    summary = validate_project(loaded("sh restart.sh {{ slot.name }} {{ vars.port }}", "{{ slot.vars.port }}"))
    assert "10 check(s)" in summary, summary
    # A variable that only blue defines is caught in green, although a dry run shows blue's plan.
    only_blue = BLUE_GREEN.replace("{port: 8001}", "{port: 8001, only_blue: 1}")
    with pytest.raises(ConfigError, match="only_blue"):
        validate_project(loaded("sh restart.sh {{ slot.vars.only_blue }}", "{{ vars.port }}", only_blue))
    with pytest.raises(ConfigError, match="only_blue"):
        validate_project(loaded("sh restart.sh", "{{ slot.vars.only_blue }}", only_blue))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'state.db'}")
    yield s
    s.close()


def deployed(store: Store, slot: str, release: str, *, ok: bool = True, hosts: Sequence[str] = ("h1", "h2")) -> int:
    deployment = store.start_deployment(
        environment="prod", kind=DeploymentKind.DEPLOY, run_id=None, artifact_digest=f"sha256:{release}",
        release_id=release, deployed_by="ann", strategy="blue_green",
    )
    for host in hosts:
        store.set_slot_release(
            environment="prod", host=host, slot=slot, release_id=release, artifact_digest=f"sha256:{release}",
            commit=release * 4, deployment_id=deployment, run_id=None,
        )
    if ok:
        store.set_serving_slot("prod", slot, actor="ann")
    store.finish_deployment(deployment, State.SUCCEEDED if ok else State.FAILED)
    return deployment


def test_the_store_says_which_slot_serves_and_what_the_warm_one_holds(store: Store) -> None:
    first = deployed(store, "blue", "r1")
    assert [(h.host, h.release_id, h.deployment_id) for h in store.host_releases("prod")] == [
        ("h1", "r1", first), ("h2", "r1", first)
    ]
    second = deployed(store, "green", "r2")
    rows = {(r.host, r.slot): (r.release_id, r.serving) for r in store.slot_releases("prod")}
    assert rows == {
        ("h1", "blue"): ("r1", False), ("h1", "green"): ("r2", True),
        ("h2", "blue"): ("r1", False), ("h2", "green"): ("r2", True),
    }
    assert {h.release_id for h in store.host_releases("prod")} == {"r2"}
    store.set_serving_slot("prod", "blue")  # a switch back: the hosts serve r1 again, from its deployment
    assert {(h.release_id, h.deployment_id) for h in store.host_releases("prod")} == {("r1", first)}
    assert second != first


def app_of(store: Store, hosts: Sequence[str] = ("h1", "h2")) -> Any:
    targets = [SimpleNamespace(name=h) for h in hosts]
    config = SimpleNamespace(project=SimpleNamespace(environments={"prod": SimpleNamespace(targets=targets)}))
    return SimpleNamespace(store=store, config=config)


def test_a_switch_back_goes_to_what_the_warm_slot_holds_if_it_deployed_well(store: Store) -> None:
    with pytest.raises(GateError, match="no slot of prod serves yet"):
        choose_rollback(app_of(store), "prod", None)
    deployed(store, "blue", "r1")
    with pytest.raises(GateError, match="holds no one release on every host"):
        choose_rollback(app_of(store), "prod", None)  # green holds nothing yet
    deployed(store, "green", "r2")
    target = choose_rollback(app_of(store), "prod", None)
    assert (target.release_id, target.digest, target.commit) == ("r1", "sha256:r1", "r1" * 4)
    with pytest.raises(GateError, match="already serves prod"):
        choose_rollback(app_of(store), "prod", "r2")
    with pytest.raises(GateError, match="does not hold r0: h1 holds r1, h2 holds r1"):
        choose_rollback(app_of(store), "prod", "r0")
    deployed(store, "blue", "r3", ok=False)  # a failed deployment left r3 in the idle slot
    with pytest.raises(GateError, match="holds r3, which never deployed successfully"):
        choose_rollback(app_of(store), "prod", None)


class FakeRouter:
    """Records what the slot gate asks; keeps a RouterState like nginx's state line."""

    def __init__(self, state: RouterState | None) -> None:
        self.state = state
        self.calls: list[tuple[str, Any]] = []

    async def current(self, group: str) -> RouterState:
        if self.state is None:
            raise DeploymentError("no group")
        return self.state

    async def set_upstream(self, group: str, backends: Sequence[Backend]) -> None:
        self.calls.append(("set_upstream", sorted((b.slot, b.port, b.down) for b in backends)))
        active = self.state.active_slot if self.state and self.state.active_slot else min(b.slot or "" for b in backends)
        self.state = RouterState(group=group, backends=tuple(backends), active_slot=active)

    async def switch(self, group: str, slot: str) -> None:
        self.calls.append(("switch", slot))
        assert self.state is not None
        self.state = self.state.model_copy(update={"active_slot": slot})


def gate_of(router: FakeRouter) -> SlotGate:
    backends = {
        slot: {"h1": Backend(host="127.0.0.2", port=port, slot=slot)} for slot, port in (("blue", 1), ("green", 2))
    }
    return SlotGate(router, "web", backends, {})  # type: ignore[arg-type]


def test_the_slot_gate_lists_the_other_slot_down_until_it_ran_then_switches() -> None:
    asyncio.run(_gate_switches())


async def _gate_switches() -> None:
    router = FakeRouter(RouterState(group="web", backends=(Backend(host="127.0.0.2", port=9),)))
    gate = gate_of(router)
    await gate.load()
    assert gate.active is None  # a group without slots: nothing serves a slot yet
    await gate.switch_to("blue")
    assert router.calls == [("set_upstream", [("blue", 1, False), ("green", 2, True)]), ("switch", "blue")]
    router.calls.clear()
    await gate.switch_to("green")  # green ran and passed readiness: it joins the rotation with the switch
    assert router.calls == [("set_upstream", [("blue", 1, False), ("green", 2, False)]), ("switch", "green")]
    router.calls.clear()
    await gate.switch_to("blue")  # a switch back lists nothing new
    assert router.calls == [("switch", "blue")]
