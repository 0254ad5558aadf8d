"""The container pipeline through the installed CLI: build once, smoke test, push, deploy by digest, roll back.

Real podman (one engine reached directly and through an SSH tunnel), a real registry, a real nginx per
environment, and a bounded load through nginx while staging is deployed and rolled back.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import pytest
from pipeline_support import HTTPD, REGISTRY_PASSWORD, TOKENS, config, get, image_project, ssh_engine, write_config
from tests.e2e.conftest import Project
from tests.support.load import Load, LoadResult
from tests.support.nginx import NginxServer
from tests.support.podman import PodmanService, exec_output
from tests.support.pytest_podman import RegistryFactory
from tests.support.pytest_ssh import ssh_bed_installed, ssh_testbed  # noqa: F401  (fixtures)
from tests.support.registry import RegistryServer
from tests.support.sshbed import SSHTestBed

from slipway.model.routing import Backend

pytestmark = pytest.mark.timeout(240)
#: Bounds of the load: it must outlast the action, so the cap is far above what 2 workers send in the time
#: limit (a fast, idle machine sent 50,000 during one deployment) and the time limit is what stops it.
MAX_REQUESTS = 500_000
TIME_LIMIT = 90


@pytest.fixture
def nginx_pair() -> Iterator[dict[str, NginxServer]]:
    """One nginx per environment, each starting with a placeholder backend nothing answers on."""
    servers = {env: NginxServer([Backend(port=9)]) for env in ("dev", "staging")}
    try:
        for server in servers.values():
            server.start()
        yield servers
    finally:
        for server in servers.values():
            server.stop()


def under_load(nginx: NginxServer, action: Callable[[], None]) -> LoadResult:
    """``action`` while 2 workers send requests through nginx (bounded: MAX_REQUESTS, TIME_LIMIT seconds)."""
    load = Load(f"{nginx.url}/version", workers=2, min_requests=300, max_requests=MAX_REQUESTS,
                time_limit=TIME_LIMIT).start()
    started = time.monotonic()
    action()
    took = time.monotonic() - started
    result = load.stop()
    # the load ran for as long as the action did: neither its cap nor its time limit stopped it before
    assert result.requests < MAX_REQUESTS and took < TIME_LIMIT, (result.requests, took)
    return result


def digests_running(client: docker.DockerClient, app: str, env: str) -> dict[str, set[str]]:
    """Target -> the digests its running containers carry, read from the engine's labels."""
    found: dict[str, set[str]] = {}
    filters = {"label": [f"io.slipway.app={app}", f"io.slipway.environment={env}"]}
    for container in client.containers.list(filters=filters):
        found.setdefault(container.labels["io.slipway.target"], set()).add(container.labels["io.slipway.digest"])
    return found


def test_build_once_deploy_dev_and_staging_behind_nginx_then_roll_back(
    tmp_path: Path, podman_service: PodmanService, session_registry: RegistryServer, cleanup_app: str,
    nginx_pair: dict[str, NginxServer], ssh_testbed: Callable[..., SSHTestBed],  # noqa: F811
    podman_client: docker.DockerClient,
) -> None:
    bed = ssh_testbed(1)
    staging = [{"kind": "container", "name": "staging-1", "engine": podman_service.base_url},
               ssh_engine(bed.hosts[0], podman_service, "staging-2")]
    project = image_project(tmp_path / "shop", config(cleanup_app, podman_service, session_registry.address,
                                                      nginx_pair, staging))
    first = project.json("run")
    assert first["state"] == "succeeded", first
    v1 = first["artifact_digest"]
    status = project.status()
    assert {status[e]["artifact_digest"] for e in ("dev", "staging")} == {v1}  # built once, the same digest
    assert get(nginx_pair["dev"]) == get(nginx_pair["staging"]) == (200, "v1")
    assert digests_running(podman_client, cleanup_app, "staging") == {"staging-1": {v1}, "staging-2": {v1}}
    # staging-2's published port listens on the SSH host's address; both targets serve behind one nginx
    backends = asyncio.run(nginx_pair["staging"].router().current("app")).backends
    assert sorted(b.host for b in backends) == ["127.0.0.1", bed.hosts[0].address]

    (project.root / "www/version").write_text("v2\n")
    project.commit("v2")
    outcome: dict[str, object] = {}
    deploy = under_load(nginx_pair["staging"], lambda: outcome.update(project.json("run")))
    assert outcome["state"] == "succeeded", outcome
    v2 = str(outcome["artifact_digest"])
    assert v2 != v1 and get(nginx_pair["staging"]) == (200, "v2")
    assert deploy.failures == 0, deploy.errors

    back: dict[str, subprocess.CompletedProcess[str]] = {}
    rollback = under_load(nginx_pair["staging"], lambda: back.update(
        proc=project.slipway("rollback", "staging", "--reason", "v2 misbehaves")))
    assert rollback.failures == 0, rollback.errors
    said = back["proc"].stdout + back["proc"].stderr  # the strategy's batches, one target at a time
    assert "batch 1 of 2 (batch): staging-1" in said and "batch 2 of 2 (batch): staging-2" in said, said
    assert get(nginx_pair["staging"]) == (200, "v1") and get(nginx_pair["dev"]) == (200, "v2")
    assert digests_running(podman_client, cleanup_app, "staging") == {"staging-1": {v1}, "staging-2": {v1}}
    after = project.status()["staging"]
    assert after["artifact_digest"] == v1 and {h["artifact_digest"] for h in after["hosts"]} == {v1}
    [latest, *_] = project.json("deployments", "staging")
    assert (latest["kind"], latest["state"], latest["reason"]) == ("rollback", "succeeded", "v2 misbehaves")
    assert {h["host"]: h["state"] for h in latest["hosts"]} == {"staging-1": "succeeded", "staging-2": "succeeded"}

    # Secrets reach the containers of their own environment and no log line.
    [web] = [c for c in podman_client.containers.list(filters={"label": f"io.slipway.app={cleanup_app}"})
             if c.labels["io.slipway.environment"] == "staging" and c.labels["io.slipway.service"] == "web"
             and c.labels["io.slipway.target"] == "staging-1"]
    shown = exec_output(web, ["/bin/busybox", "sh", "-c", 'echo "$API_TOKEN $GREETING $TARGET"'])
    assert shown.strip() == f"{TOKENS['staging']} hello staging staging-1"
    logs = project.slipway("logs", str(outcome["run_id"] if "run_id" in outcome else outcome["id"])).stdout
    assert "push to" in logs and "smoke test" in logs
    for secret in (*TOKENS.values(), REGISTRY_PASSWORD):
        assert secret not in logs
    print(f"\ndeploy: {deploy.requests} requests, {deploy.failures} failed; "
          f"rollback: {rollback.requests} requests, {rollback.failures} failed")


def run_failing(project: Project, *args: str) -> tuple[int, str]:
    """``slipway ARGS`` that must fail: its exit code and stderr."""
    proc = project.slipway(*args, check=False)
    assert proc.returncode != 0, proc.stdout
    return proc.returncode, proc.stderr


def registry_tags(registry: RegistryServer, repository: str) -> list[str]:
    """The tags the registry holds for ``repository`` (none when it never received a push)."""
    try:
        with urllib.request.urlopen(f"http://{registry.address}/v2/{repository}/tags/list", timeout=5) as resp:
            return list(json.loads(resp.read()).get("tags") or [])
    except urllib.error.HTTPError as exc:
        assert exc.code == 404
        return []


def test_bad_input_stops_with_a_clear_error_and_leaves_running_containers_alone(
    tmp_path: Path, podman_service: PodmanService, session_registry: RegistryServer, cleanup_app: str,
    nginx_pair: dict[str, NginxServer], registry_factory: RegistryFactory, podman_client: docker.DockerClient,
) -> None:
    staging = [{"kind": "container", "name": f"staging-{i}", "engine": podman_service.base_url} for i in (1, 2)]
    good = config(cleanup_app, podman_service, session_registry.address, nginx_pair, staging)
    project = image_project(tmp_path / "shop", good)
    first = project.json("run")
    assert first["state"] == "succeeded", first
    v1 = first["artifact_digest"]

    def unchanged() -> None:
        assert get(nginx_pair["dev"]) == get(nginx_pair["staging"]) == (200, "v1")
        assert digests_running(podman_client, cleanup_app, "staging") == {"staging-1": {v1}, "staging-2": {v1}}
        assert {e["artifact_digest"] for e in project.status().values()} == {v1}

    # 1. The smoke test fails: nothing is pushed, the pipeline stops at the build.
    (project.root / "www/health").unlink()
    unhealthy = project.commit("v2 without /health")
    code, err = run_failing(project, "run")
    assert code == 8 and "smoke test of image" in err and "404" in err, err
    assert unhealthy not in registry_tags(session_registry, f"{cleanup_app}/web")
    unchanged()

    # 2. A container that never becomes ready on staging-2: staging-1, already switched, goes back to v1.
    (project.root / "www/health").write_text("ok\n")
    (project.root / "www/version").write_text("v3\n")
    broken = dict(good, services={**good["services"], "web": {
        **good["services"]["web"], "command": ["sh", "-c", f'[ "$TARGET" != staging-2 ] || exit 3; {HTTPD}']}})
    write_config(project, broken)
    project.commit("v3: web exits on staging-2")
    code, err = run_failing(project, "run")
    assert code == 6 and "failed after the switch on 1 of 2 hosts" in err and "'web' did not become ready" in err, err
    assert "staging-1: " in err and "reverted to" in err
    assert get(nginx_pair["dev"]) == (200, "v3")  # dev deployed v3 before staging failed
    assert get(nginx_pair["staging"]) == (200, "v1")
    assert digests_running(podman_client, cleanup_app, "staging") == {"staging-1": {v1}, "staging-2": {v1}}
    [failed, *_] = project.json("deployments", "staging")
    assert failed["state"] == "failed" and failed["strategy"] == "rolling"
    assert {h["host"]: h["state"] for h in failed["hosts"]} == {"staging-1": "failed", "staging-2": "failed"}
    assert project.status()["staging"]["artifact_digest"] == v1
    project.slipway("rollback", "dev", "--reason", "v3 is broken")

    # 3. The registry refuses the push: the run stops at the build, nothing is deployed.
    refusing = registry_factory(read_only=True)
    write_config(project, dict(good, artifact={**good["artifact"], "registry": {"address": refusing.address}}))
    (project.root / "www/version").write_text("v4\n")
    project.commit("v4 to a read-only registry")
    code, err = run_failing(project, "run")
    assert code == 4 and f"registry {refusing.address} refused the push" in err, err
    unchanged()

    # 4. A digest the registry does not have (an empty registry now): the rollback changes nothing.
    empty = registry_factory()
    write_config(project, dict(good, artifact={**good["artifact"], "registry": {"address": empty.address}}))
    code, err = run_failing(project, "rollback", "dev", "--reason", "back to v3")
    assert code == 6 and "is not in the registry" in err, err
    unchanged()

    # 5. An engine that does not answer: nothing changes anywhere, the error names the engine.
    gone = dict(good, environments={**good["environments"], "staging": {
        **good["environments"]["staging"], "targets": [staging[0], {**staging[1], "engine": "unix:///nonexistent.sock"}]}})
    write_config(project, gone)
    release = project.status()["staging"]["release"]
    code, err = run_failing(project, "rollback", "staging", "--to", release, "--reason", "try")
    assert code == 5 and "[staging-2] container engine at unix:///nonexistent.sock does not answer" in err, err
    unchanged()
