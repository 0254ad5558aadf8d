"""The batch loop: strategy batches, the router gate and the deployment circuit breaker, with fakes."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from slipway.engine.pause import DeploymentParked, Resumed
from slipway.engine.rollout import Rollout
from slipway.engine.strategy import Batch, BatchKind, Canary, CircuitBreakerPolicy, Rolling, plan_batches
from slipway.engine.units import Ledger
from slipway.errors import CanaryRejected, CheckFailed, DeploymentError, DeploymentHalted, HostOutcome

HOSTS = [f"web-{i}" for i in range(1, 7)]


class Messages:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def message(self, text: str) -> None:
        self.lines.append(text)

    def batch_started(self, index: int, total: int, kind: str, hosts: Sequence[str]) -> None:
        self.lines.append(f"batch {index + 1} of {total} ({kind}): {', '.join(hosts)}")

    def batch_finished(self, index: int, total: int, failed: Sequence[str], duration: float) -> None:
        self.lines.append(f"batch {index + 1} of {total} done: {len(failed)} failed")


@dataclass
class FakeTraffic:
    """Records the router calls; a host is 'out' between take_out and put_back."""

    unready: set[str] = field(default_factory=set)
    out: set[str] = field(default_factory=set)
    calls: list[tuple[str, str]] = field(default_factory=list)
    max_out: int = 0

    async def take_out(self, hosts: Sequence[str]) -> None:
        for h in hosts:
            self.out.add(h)
            self.calls.append(("out", h))
        self.max_out = max(self.max_out, len(self.out))

    async def ready(self, host: str) -> None:
        self.calls.append(("ready", host))
        if host in self.unready:
            raise CheckFailed(f"readiness of {host} failed")

    async def put_back(self, hosts: Sequence[str]) -> None:
        for h in hosts:
            self.out.discard(h)
            self.calls.append(("in", h))

    def is_out(self, host: str) -> bool:
        return host in self.out


@dataclass
class FakeUnits:
    """A kind of unit for the rollout (slipway.engine.units.Units); units in ``failing`` fail their deploy."""

    failing: set[str]
    names: tuple[str, ...] = tuple(HOSTS)
    environment: str = "production"
    release_id: str = "new"
    ledger: Ledger = field(default_factory=Ledger)
    on_release: dict[str, str] = field(default_factory=lambda: {h: "old" for h in HOSTS})
    finished: bool = False

    async def prepare(self, resumed: Resumed | None) -> None:
        self.ledger.previous.update({h: "old" for h in self.names})

    #: Units whose deploy fails before their switch (they still run what they ran).
    fail_before_switch: set[str] = field(default_factory=set)

    async def deploy(self, name: str) -> HostOutcome | None:
        if name in self.fail_before_switch:
            return HostOutcome(name, False, step="activate: switch-current", error="cannot rename current")
        self.ledger.switched.append(name)
        self.on_release[name] = "new"
        if name in self.failing:
            return HostOutcome(name, False, step="verify: check", error="boom")
        return None

    async def verify(self, name: str) -> None:
        pass

    async def revert(self, name: str) -> str:
        self.on_release[name] = "old"
        return "reverted to old"

    async def finish(self, rollout: Any) -> None:
        self.finished = True

    def explain(self, error: DeploymentError) -> DeploymentError:
        return error


class FakeRun:
    """A rollout over FakeUnits, with its observer and the sleeps it asked for."""

    def __init__(
        self,
        batches: tuple[Batch, ...],
        *,
        failing: set[str],
        breaker: CircuitBreakerPolicy | None,
        traffic: FakeTraffic | None = None,
    ) -> None:
        self.units = FakeUnits(failing)
        self.batches = batches
        self.breaker = breaker
        self.traffic = traffic
        self.observer = Messages()
        self.slept: list[float] = []
        self.resumed: Resumed | None = None

    @property
    def switched(self) -> list[str]:
        return self.units.ledger.switched

    @switched.setter
    def switched(self, value: list[str]) -> None:
        self.units.ledger.switched[:] = value

    @property
    def on_release(self) -> dict[str, str]:
        return self.units.on_release

    @property
    def outcomes(self) -> dict[str, HostOutcome]:
        return self.units.ledger.outcomes

    @property
    def failed_checks(self) -> set[str]:
        return self.units.ledger.failed_checks

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)

    def rollout(self) -> Rollout:
        return Rollout(
            units=self.units, log=None, deployment_id=1, run_id=None,  # type: ignore[arg-type]  (execute only)
            observer=self.observer, batches=self.batches, breaker=self.breaker, traffic=self.traffic,
            resumed=self.resumed, sleep=self.sleep,
        )


def rolling(size: int) -> tuple[Batch, ...]:
    return plan_batches(HOSTS, Rolling(batch_size=size, pause=2))


def run(fake: FakeRun) -> Rollout:
    rollout = fake.rollout()
    asyncio.run(rollout.execute())
    return rollout


def test_the_breaker_trips_at_its_threshold_and_reverts_every_updated_host() -> None:
    fake = FakeRun(rolling(1), failing={"web-2", "web-4"}, breaker=CircuitBreakerPolicy(threshold=2, min_threshold=1))
    with pytest.raises(DeploymentError) as err:
        run(fake)
    assert "circuit breaker tripped: 2 of 6 hosts failed (threshold 2)" in err.value.message
    # no batch started after the fourth; every host that was updated is back on its release
    assert fake.switched == [] and set(fake.on_release.values()) == {"old"}
    assert "web-5" not in fake.outcomes and err.value.results["web-4"].ok is False


def test_a_failure_below_the_threshold_reverts_that_host_alone_and_the_rollout_goes_on() -> None:
    fake = FakeRun(rolling(2), failing={"web-3"}, breaker=CircuitBreakerPolicy(threshold=0.5))
    with pytest.raises(DeploymentError) as err:  # after the last batch
        run(fake)
    assert fake.on_release == {h: "old" if h == "web-3" else "new" for h in HOSTS}
    assert "failed on 1 of 6 hosts, below the circuit breaker threshold (3)" in err.value.message
    assert fake.slept == [2, 2]  # the pause after every batch but the last


def test_without_a_breaker_the_first_failure_reverts_everything() -> None:
    fake = FakeRun(rolling(2), failing={"web-3"}, breaker=None)
    with pytest.raises(DeploymentError) as err:
        run(fake)
    assert "failed after the switch on 1 of 6 hosts" in err.value.message  # the environment, not the batch
    assert set(fake.on_release.values()) == {"old"} and "web-5" not in fake.outcomes


def test_auto_rollback_off_halts_and_leaves_hosts_for_a_person() -> None:
    breaker = CircuitBreakerPolicy(threshold=1, min_threshold=1, auto_rollback=False)
    fake = FakeRun(rolling(2), failing={"web-4"}, breaker=breaker)
    with pytest.raises(DeploymentHalted):
        run(fake)
    assert [fake.on_release[h] for h in HOSTS] == ["new", "new", "new", "new", "old", "old"]


def test_behind_a_router_each_batch_leaves_rotation_passes_readiness_and_rejoins() -> None:
    traffic = FakeTraffic()
    fake = FakeRun(rolling(2), failing=set(), breaker=None, traffic=traffic)
    run(fake)
    assert traffic.calls[:6] == [
        ("out", "web-1"),
        ("out", "web-2"),
        ("ready", "web-1"),
        ("ready", "web-2"),
        ("in", "web-1"),
        ("in", "web-2"),
    ]
    assert traffic.max_out == 2 and traffic.out == set()


def test_a_host_that_fails_readiness_counts_as_failed_and_stays_out() -> None:
    traffic = FakeTraffic(unready={"web-1"})
    fake = FakeRun(
        rolling(1), failing=set(), breaker=CircuitBreakerPolicy(threshold=1, min_threshold=1), traffic=traffic
    )
    with pytest.raises(DeploymentError) as err:
        run(fake)
    assert "circuit breaker tripped: 1 of 6" in err.value.message and "web-1" in fake.failed_checks
    assert ("in", "web-1") not in traffic.calls


@pytest.mark.parametrize("threshold", [1, 2], ids=["breaker trips", "below the threshold"])
def test_a_unit_that_failed_before_its_switch_goes_back_in_rotation(threshold: int) -> None:
    # It still serves the release it ran, and nothing reverts it: without this it stayed drained for good.
    traffic = FakeTraffic()
    fake = FakeRun(
        rolling(1), failing=set(), breaker=CircuitBreakerPolicy(threshold=threshold, min_threshold=1), traffic=traffic
    )
    fake.units.fail_before_switch = {"web-1"}
    with pytest.raises(DeploymentError):
        run(fake)
    assert fake.on_release["web-1"] == "old" and "web-1" not in fake.switched
    assert traffic.out == set(), traffic.calls
    back = traffic.calls.index(("in", "web-1"))
    assert ("ready", "web-1") in traffic.calls[:back]  # ready before it serves again


def test_a_canary_bakes_with_checks_every_interval() -> None:
    canary = (Batch(index=0, kind=BatchKind.CANARY, hosts=("web-1",), bake_time=30, check_interval=10),)
    traffic = FakeTraffic()
    fake = FakeRun(canary, failing=set(), breaker=None, traffic=traffic)
    fake.units.names = ("web-1",)
    run(fake)
    assert fake.slept == [10, 10, 10]
    assert traffic.calls.count(("ready", "web-1")) == 4  # the gate, then once per bake round


def paused_canary() -> tuple[Batch, ...]:
    return plan_batches(HOSTS, Canary(canary_hosts=1, bake_time=1, check_interval=1, on_success="pause", batch_size=2))


def test_a_healthy_canary_with_on_success_pause_parks_the_deployment() -> None:
    fake = FakeRun(paused_canary(), failing=set(), breaker=None)
    with pytest.raises(DeploymentParked) as parked:
        run(fake)
    assert (parked.value.next_batch, parked.value.hosts) == (1, ("web-1",))
    assert fake.switched == ["web-1"] and fake.on_release["web-2"] == "old"


def test_a_resumed_deployment_goes_on_after_the_canary() -> None:
    fake = FakeRun(paused_canary(), failing=set(), breaker=None)
    fake.resumed = Resumed(1, {"web-1": "old"})
    fake.switched = ["web-1"]
    run(fake)
    assert fake.switched == HOSTS  # web-1 was not deployed again
    assert not any("canary bake" in line for line in fake.observer.lines)


def test_a_rejected_canary_goes_back_and_no_other_host_is_touched() -> None:
    fake = FakeRun(paused_canary(), failing=set(), breaker=None)
    fake.resumed = Resumed(1, {"web-1": "old"}, rejected="rejected by ann: errors")
    fake.switched, fake.on_release["web-1"] = ["web-1"], "new"
    with pytest.raises(CanaryRejected, match=r"rejected after its canary \(rejected by ann: errors\): web-1 went back"):
        run(fake)
    assert set(fake.on_release.values()) == {"old"} and fake.switched == []


def test_a_canary_that_failed_below_the_threshold_does_not_park() -> None:
    fake = FakeRun(paused_canary(), failing={"web-1"}, breaker=CircuitBreakerPolicy(threshold=2, min_threshold=1))
    with pytest.raises(DeploymentError, match="below the circuit breaker threshold"):
        run(fake)  # the failed canary host was reverted alone; nothing to wait for: the rollout went on
    assert fake.on_release["web-1"] == "old" and fake.on_release["web-6"] == "new"
