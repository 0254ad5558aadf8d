"""A container engine lost while the old containers are being stopped (issue 11, item 13).

Two container targets, each on its own Podman API service (so that one can be killed), behind one nginx,
rolling. Target staging-1's engine is SIGKILLed at a deterministic point: while the old worker container
is being stopped (its first SIGTERM is ignored and announced in its log, so the stop is in progress
until the test kills the engine). The containers keep running (each has its own conmon); only the API
is gone. Then: exit 6 with a clear error; what nginx serves on each target is what ``slipway status``
says; every container running outside nginx is named in the store's record; once the engine is back,
the next deployment removes those orphans and says so.

The two services share the machine's container storage with the session's service, so the session's
client (``podman_client``) sees every container: the test reads logs and labels through it.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from containers_support import HEALTH, PublishedSet
from pipeline_support import config, get, image_project
from tests.e2e.conftest import SLIPWAY
from tests.support.nginx import NginxServer
from tests.support.podman import HTTP_PORT, PodmanService
from tests.support.registry import RegistryServer

from slipway.artifacts.image import Engine, published_ports
from slipway.model.routing import Backend
from slipway.targets.container import ContainerTarget, RunningService, ServiceSpec, ServiceUnits

pytestmark = pytest.mark.timeout(420)
TARGETS = ("staging-1", "staging-2")
#: The worker ignores its first SIGTERM, once, and says so, only on staging-1 and only in an image that
#: has /www/slow-stop (v1): that stop is in progress until its timeout, a window in which the test kills
#: the engine. A second SIGTERM (the next stop) ends it at once.
WORKER = ("trap 'if [ -n \"$t\" ] || [ \"$TARGET\" != staging-1 ] || [ ! -e /www/slow-stop ]; then exit 0; fi; "
          "t=1; echo stopping' TERM; while true; do sleep 0.2; done")
STOP_TIMEOUT = 120


@pytest.fixture
def engines(session_registry: RegistryServer) -> Iterator[dict[str, PodmanService]]:
    """One Podman API service per target, allowed to pull from the session registry; stopped after."""
    services = {name: PodmanService() for name in TARGETS}
    try:
        for service in services.values():
            service.start().allow_insecure_registry(session_registry.address)
        yield services
    finally:
        for service in services.values():
            service.stop()


@pytest.fixture
def staging_nginx() -> Iterator[NginxServer]:
    """The nginx in front of staging, starting with a placeholder backend nothing answers on."""
    server = NginxServer([Backend(port=9)])
    server.start()
    try:
        yield server
    finally:
        server.stop()


def slipway_yml(app: str, build: PodmanService, registry: str, nginx: NginxServer,
                engines: dict[str, PodmanService]) -> dict[str, Any]:
    """staging only: two targets on their own engines, rolling one at a time; the worker above."""
    targets = [{"kind": "container", "name": name, "engine": engines[name].base_url} for name in TARGETS]
    conf = config(app, build, registry, {"dev": nginx, "staging": nginx}, targets)
    del conf["environments"]["dev"]
    conf["pipeline"] = [s for s in conf["pipeline"] if s.get("environment") != "dev"]
    conf["services"]["worker"].update(command=["sh", "-c", WORKER], env={"TARGET": "{{ host.name }}"},
                                      stop_timeout=STOP_TIMEOUT)
    return conf


def live_containers(client: docker.DockerClient, app: str) -> list[dict[str, Any]]:
    """Every container of ``app`` whose process runs (a container stuck 'stopping' counts: it runs)."""
    found = []
    for summary in client.api.containers(all=True, filters={"label": f"io.slipway.app={app}"}):
        attrs = client.api.inspect_container(summary["Id"])
        if attrs["State"].get("Running") or attrs["State"].get("Pid"):
            found.append(attrs)
    return found


def served_by_nginx(nginx: NginxServer, containers: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Target -> the digests of the containers nginx routes to there (backends not marked down)."""
    by_port = {published_ports(c, [HTTP_PORT]).get(HTTP_PORT): c for c in containers}
    served: dict[str, list[str]] = {}
    for backend in asyncio.run(nginx.router().current("app")).backends:
        if backend.down:
            continue
        labels = by_port[backend.port]["Config"]["Labels"]
        served.setdefault(labels["io.slipway.target"], []).append(labels["io.slipway.digest"])
    return served


def wait_for_log(client: docker.DockerClient, filters: dict[str, Any], text: bytes, proc: subprocess.Popen[str],
                 *, timeout: float = 180) -> None:
    """Until the container matching ``filters`` printed ``text`` (bounded; fails if slipway ended first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"slipway ended before the stop began:\n{proc.communicate()}"
        for container in client.containers.list(all=True, filters=filters):
            if text in container.logs():
                return
        time.sleep(0.05)
    raise AssertionError(f"no container {filters} printed {text!r} within {timeout}s")


def test_engine_lost_while_stopping_old_containers_is_recorded_truthfully_and_orphans_are_removed(
    tmp_path: Path, podman_service: PodmanService, session_registry: RegistryServer, cleanup_app: str,
    engines: dict[str, PodmanService], staging_nginx: NginxServer, podman_client: docker.DockerClient,
) -> None:
    app = cleanup_app
    project = image_project(tmp_path / "shop", slipway_yml(app, podman_service, session_registry.address,
                                                           staging_nginx, engines))
    (project.root / "www/slow-stop").write_text("v1's worker ignores its first SIGTERM on staging-1\n")
    project.commit("v1 with a slow-stopping worker")
    first = project.json("run")
    assert first["state"] == "succeeded", first
    v1 = first["artifact_digest"]

    (project.root / "www/slow-stop").unlink()
    (project.root / "www/version").write_text("v2\n")
    project.commit("v2")
    run = subprocess.Popen([SLIPWAY, "run"], cwd=project.root, env=project.env, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        old_worker = {"label": [f"io.slipway.app={app}", "io.slipway.target=staging-1", "io.slipway.service=worker",
                                f"io.slipway.digest={v1}"]}
        wait_for_log(podman_client, old_worker, b"stopping", run)
        engines["staging-1"].kill()  # the stop of staging-1's old worker is in progress
        out, err = run.communicate(timeout=240)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    assert run.returncode == 6, (out, err)
    assert "[staging-1] stop container" in err and "container engine" in err and "unreachable" in err, err
    [failed, *_] = project.json("deployments", "staging")
    v2 = failed["artifact_digest"]
    assert failed["state"] == "failed" and v2 != v1

    # What nginx serves on each target is what the store says runs there: one unit per target.
    status = {h["name"]: h["artifact_digest"] for h in project.status()["staging"]["hosts"]}
    live = live_containers(podman_client, app)
    served = served_by_nginx(staging_nginx, live)
    assert served == {name: [status[name]] for name in TARGETS}, (served, status)
    assert status == {"staging-1": v2, "staging-2": v1}
    # Every container that runs and is not its target's current unit is named in the store's record.
    errors = {h["host"]: h["error"] or "" for h in failed["hosts"]}
    left = [c for c in live if c["Config"]["Labels"]["io.slipway.digest"] != status[c["Config"]["Labels"]["io.slipway.target"]]]
    assert {c["Config"]["Labels"]["io.slipway.target"] for c in left} == {"staging-1"}
    for container in left:
        assert container["Name"].lstrip("/") in errors["staging-1"], (container["Name"], errors)

    # The engine comes back; the next deployment removes the orphans first and says so.
    engines["staging-1"].start()
    (project.root / "www/version").write_text("v3\n")
    project.commit("v3")
    third = project.slipway("run", "--json")
    assert "remove orphan containers" in third.stderr, third.stderr
    for container in left:
        assert container["Name"].lstrip("/") in third.stderr, third.stderr
    v3 = json.loads(third.stdout)["artifact_digest"]
    live = live_containers(podman_client, app)
    assert sorted((c["Config"]["Labels"]["io.slipway.target"], c["Config"]["Labels"]["io.slipway.service"],
                   c["Config"]["Labels"]["io.slipway.digest"]) for c in live) == [
        (t, s, v3) for t in TARGETS for s in ("web", "worker")]
    status = {h["name"]: h["artifact_digest"] for h in project.status()["staging"]["hosts"]}
    assert served_by_nginx(staging_nginx, live) == {name: [v3] for name in TARGETS} and set(status.values()) == {v3}
    assert get(staging_nginx) == (200, "v3")


def test_the_digest_the_store_records_decides_which_container_is_current(
    engine: Engine, images: PublishedSet, cleanup_app: str, podman_client: docker.DockerClient,
) -> None:
    """A deployment cut short before its switch leaves a newer container running, out of the router: the
    digest the store records for the target stays current, the newer one is the orphan."""
    target = ContainerTarget(engine, app=cleanup_app, environment="prod", instance="prod-1")
    web = ServiceSpec(name="web", port=HTTP_PORT, readiness=(HEALTH,), stop_timeout=5)

    async def start_both() -> tuple[RunningService, RunningService]:
        old = await target.start(web, images.v1.ref)
        return old, await target.start(web, images.v2.ref, previous=images.v1.ref)

    def ids(units: ServiceUnits) -> tuple[str | None, list[str]]:
        return (units.current.container_id if units.current else None), [o.container_id for o in units.orphans]

    old, new = asyncio.run(start_both())
    assert ids(asyncio.run(target.units("web", recorded=images.v1.ref.digest))) == (old.container_id, [new.container_id])
    # Without a record (a first deployment, a new store) the newest running container is current.
    assert ids(asyncio.run(target.units("web"))) == (new.container_id, [old.container_id])
    # An exited container runs nothing: not an orphan (and it keeps its logs).
    podman_client.containers.get(new.container_id).stop(timeout=5)
    assert ids(asyncio.run(target.units("web", recorded=images.v2.ref.digest))) == (old.container_id, [])
