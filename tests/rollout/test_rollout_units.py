"""The rollout's behaviour, once, for every kind of unit: release directories on hosts and container targets.

Each test runs the same scenario through the ``slipway`` CLI against three real units of each kind (local
targets running the example webapp; container targets on a real podman engine, the image in a real
registry) and asserts the same outcome: what each unit really serves, the messages, the records. The
engine drives both kinds through one protocol (slipway.engine.units), so the outcome must not differ.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import project as project  # the fixture
from tests.rollout.rollout_units_support import (
    Fleet,
    container_fleet,
    host_fleet,
    remove_containers,
    stop_hosts,
)
from tests.support import pytest_podman
from tests.support.podman import PodmanService
from tests.support.registry import RegistryServer

# The real servers of the container kind, found by pytest under these names (started only when used).
podman_service = pytest_podman.podman_service
session_registry = pytest_podman.session_registry

pytestmark = pytest.mark.timeout(420)

BREAKER_OF_TWO = {"threshold": 2, "min_threshold": 1}


# The container kind drives podman: it joins the podman xdist group (tests/conftest.py says why).
@pytest.fixture(params=["hosts", pytest.param("containers", marks=pytest.mark.xdist_group("podman"))])
def fleet(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Fleet]:
    """Three units of one kind, v1 committed (not deployed yet)."""
    if request.param == "hosts":
        made = host_fleet(request.getfixturevalue("project"))
        try:
            yield made
        finally:
            stop_hosts(made)
        return
    podman: PodmanService = request.getfixturevalue("podman_service")
    registry: RegistryServer = request.getfixturevalue("session_registry")
    app = f"r{uuid.uuid4().hex[:8]}"
    try:
        yield container_fleet(tmp_path / "shop", app, podman, registry.address)
    finally:
        remove_containers(podman, app)


def deployed(fleet: Fleet) -> None:
    """Run the pipeline; it must succeed."""
    outcome = fleet.project.json("run")
    assert outcome["state"] == "succeeded", outcome


def failing(fleet: Fleet) -> str:
    """Run the pipeline; it must fail with a deployment error (exit 6): its stderr."""
    proc = fleet.run("run")
    assert proc.returncode == 6, f"{proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return " ".join(proc.stderr.split())


def test_batches_run_in_strategy_order_each_reported_as_it_starts_and_ends(fleet: Fleet) -> None:
    fleet.configure({"kind": "rolling", "batch_size": 1})
    proc = fleet.run("run")
    assert proc.returncode == 0, proc.stderr
    events = re.findall(r"batch (\d) of 3 (?:\(batch\): (u-\d)|(done) in [\d.]+s: 1 ok)", proc.stdout)
    assert events == [
        ("1", "u-1", ""), ("1", "", "done"), ("2", "u-2", ""), ("2", "", "done"), ("3", "u-3", ""), ("3", "", "done"),
    ], proc.stdout
    assert fleet.serving() == {"u-1": "v1", "u-2": "v1", "u-3": "v1"}
    latest = fleet.latest()
    assert (latest["state"], latest["strategy"]) == ("succeeded", "rolling")
    assert {h["host"]: h["state"] for h in latest["hosts"]} == dict.fromkeys(("u-1", "u-2", "u-3"), "succeeded")


def test_the_breaker_reverts_a_unit_alone_below_its_threshold_and_everything_at_it(fleet: Fleet) -> None:
    fleet.configure({"kind": "rolling", "batch_size": 1}, circuit_breaker=BREAKER_OF_TWO)
    deployed(fleet)

    fleet.release("v2", fail_on=("u-2",))  # 1 failure, threshold 2: u-2 goes back alone, u-3 goes on
    err = failing(fleet)
    assert (
        "deployment of production failed on 1 of 3 hosts, below the circuit breaker threshold (2): "
        "u-2 went back to the release each ran before; the other hosts run"
    ) in err, err
    assert fleet.serving() == {"u-1": "v2", "u-2": "v1", "u-3": "v2"}
    hosts = {h["host"]: h for h in fleet.latest()["hosts"]}
    assert [hosts[u]["state"] for u in ("u-1", "u-2", "u-3")] == ["succeeded", "failed", "succeeded"]
    assert "fail" in hosts["u-2"]["error"]  # a host switched and went back; a container target never left v1

    # No breaker: the first failure reverts every unit this deployment switched, to the environment's last
    # release that succeeded (v1: the deployment of v2 failed), and u-3 is not touched.
    fleet.configure({"kind": "rolling", "batch_size": 1})
    fleet.release("v3", fail_on=("u-2",))
    err = failing(fleet)
    assert "deployment of production failed after the switch on 1 of 3 hosts; hosts already switched were reverted" in err
    assert fleet.serving() == {"u-1": "v1", "u-2": "v1", "u-3": "v2"}
    hosts = {h["host"]: h for h in fleet.latest()["hosts"]}
    assert "reverted to" in hosts["u-1"]["error"] and hosts["u-3"]["state"] == "failed"


def test_auto_rollback_off_halts_and_leaves_every_unit_for_a_person(fleet: Fleet) -> None:
    fleet.configure({"kind": "rolling", "batch_size": 1})
    deployed(fleet)
    fleet.configure({"kind": "rolling", "batch_size": 1},
                    circuit_breaker={"threshold": 1, "min_threshold": 1, "auto_rollback": False})
    fleet.release("v2", fail_on=("u-2",))
    err = failing(fleet)
    assert "circuit breaker tripped: 1 of 3 hosts failed (threshold 1); halted (on_failure: halt):" in err, err
    assert "a person decides now" in err and "go back with 'slipway rollback production --to" in err
    serving = fleet.serving()
    assert (serving["u-1"], serving["u-3"]) == ("v2", "v1")  # nothing went back, nothing went on
    latest = fleet.latest()
    assert latest["state"] == "failed" and "halted" in latest["reason"]


def test_a_canary_that_fails_its_bake_goes_back_and_no_other_unit_is_touched(fleet: Fleet) -> None:
    canary = {"kind": "canary", "canary_hosts": 1, "bake_time": 1, "check_interval": 0.5, "batch_size": 2}
    fleet.configure(canary)
    deployed(fleet)
    fleet.release("v2", fail_bake=True)  # its checks pass once, on deploy; the bake sees it go bad
    proc = fleet.run("run")
    assert proc.returncode == 6, proc.stderr
    assert "canary bake 1/2: 0 of 1 healthy" in proc.stdout, proc.stdout
    assert "deployment of production failed after the switch on 1 of 3 hosts" in proc.stderr
    assert fleet.serving() == {"u-1": "v1", "u-2": "v1", "u-3": "v1"}
    hosts = {h["host"]: h for h in fleet.latest()["hosts"]}
    assert "reverted to" in hosts["u-1"]["error"] and hosts["u-2"]["state"] == "failed"


def test_a_paused_canary_goes_on_when_approved_and_goes_back_when_rejected(fleet: Fleet) -> None:
    fleet.configure({"kind": "canary", "canary_hosts": 1, "bake_time": 0.3, "check_interval": 0.1,
                     "on_success": "pause", "batch_size": 2})
    one = fleet.project.json("run")
    assert one["state"] == "waiting", one
    parked = fleet.latest()
    assert parked["state"] == "waiting"
    assert {h["host"]: h["state"] for h in parked["hosts"]} == {"u-1": "succeeded", "u-2": "pending", "u-3": "pending"}
    assert fleet.serving()["u-1"] == "v1"

    approved = fleet.project.json("approve", str(one["id"]), "--reason", "canary looks good")  # a new process
    assert approved["state"] == "succeeded", approved
    assert fleet.serving() == {"u-1": "v1", "u-2": "v1", "u-3": "v1"}
    done = fleet.latest()
    assert done["id"] == parked["id"] and {h["state"] for h in done["hosts"]} == {"succeeded"}

    fleet.release("v2")
    two = fleet.project.json("run")
    assert two["state"] == "waiting", two
    assert fleet.serving() == {"u-1": "v2", "u-2": "v1", "u-3": "v1"}
    rejected = fleet.run("reject", str(two["id"]), "--reason", "error rate up")
    assert rejected.returncode == 0 and f"run {two['id']} rejected" in rejected.stdout, rejected.stderr
    assert fleet.serving() == {"u-1": "v1", "u-2": "v1", "u-3": "v1"}
    aborted = fleet.latest()
    assert aborted["run_id"] == two["id"] and aborted["state"] == "failed"
    assert aborted["reason"].startswith("deployment of production rejected after its canary (rejected by tester")
