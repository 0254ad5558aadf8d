"""Container targets against real Podman, a real registry and a real nginx: deploy, switch, roll back."""

from __future__ import annotations

import asyncio
import http.client
import io
import logging
import tarfile

import docker
import pytest
from containers_support import HEALTH, Load, PublishedSet
from tests.support.nginx import NginxServer
from tests.support.podman import BASE_IMAGE, HTTP_PORT, TEST_LABEL, PodmanService, exec_output
from tests.support.registry import RegistryServer

from slipway.artifacts.image import Engine, EngineSpec, ImageRef, Registry, build_image, push_image
from slipway.errors import ArtifactNotFound, CheckFailed, ConfigError, DeploymentError, HostUnreachable
from slipway.targets.container import (
    ContainerTarget,
    ServiceSpec,
    deploy_order,
    deploy_services,
    rollback_services,
)

pytestmark = pytest.mark.timeout(240)

SECRET = "hunter2-do-not-log"
WORKER_LOOP = ("sh", "-c", "while true; do sleep 1; done")


def services(*, worker_command: tuple[str, ...] = WORKER_LOOP) -> list[ServiceSpec]:
    """web (routed, readiness on /health) and a worker from the same image with another command."""
    web = ServiceSpec(name="web", port=HTTP_PORT, group="app", readiness=(HEALTH,), env={"GREETING": "hello"},
                      secrets={"API_TOKEN": SECRET}, stop_timeout=5)
    worker = ServiceSpec(name="worker", command=worker_command, depends_on=("web",), settle=0.5, stop_timeout=5)
    # Declared worker first: the order comes from depends_on, not from the list.
    return [worker, web]


def get(port: int, path: str) -> tuple[int, str]:
    """One GET on a new connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        response = conn.getresponse()
        return response.status, response.read().decode().strip()
    finally:
        conn.close()


def digests(target: ContainerTarget) -> dict[str, list[str]]:
    """The digests running per service, read back from the engine's labels."""
    async def read() -> dict[str, list[str]]:
        return {name: [r.ref.digest for r in await target.running(name)] for name in ("web", "worker")}
    return asyncio.run(read())


def test_deploy_order_follows_dependencies_and_rejects_cycles() -> None:
    a = ServiceSpec(name="a", depends_on=("b",))
    b = ServiceSpec(name="b", depends_on=("c",))
    c = ServiceSpec(name="c")
    assert [s.name for s in deploy_order([a, b, c])] == ["c", "b", "a"]
    with pytest.raises(ConfigError, match="cycle: a -> b -> a"):
        deploy_order([ServiceSpec(name="a", depends_on=("b",)), ServiceSpec(name="b", depends_on=("a",))])
    with pytest.raises(ConfigError, match="unknown service 'nope'"):
        deploy_order([ServiceSpec(name="a", depends_on=("nope",))])


def test_two_releases_behind_nginx_without_a_failed_request_then_rollback(
    engine: Engine, images: PublishedSet, nginx_server: NginxServer, cleanup_app: str,
    caplog: pytest.LogCaptureFixture, podman_client: docker.DockerClient,
) -> None:
    caplog.set_level(logging.DEBUG)
    target = ContainerTarget(engine, app=cleanup_app, environment="staging")
    router = nginx_server.router(drain_timeout=10)
    specs = services()
    v1 = {"web": images.v1.ref, "worker": images.v1.ref}
    v2 = {"web": images.v2.ref, "worker": images.v2.ref}

    first = asyncio.run(deploy_services(target, specs, v1, router=router))
    assert get(nginx_server.port, "/version") == (200, "v1")
    # Environment and secrets reach the container; nothing logs the secret.
    web = podman_client.containers.get(first.running["web"].container_id)
    assert exec_output(web, ["/bin/busybox", "sh", "-c", 'echo "$GREETING"']) == "hello"
    assert exec_output(web, ["/bin/busybox", "sh", "-c", 'echo "$API_TOKEN"']) == SECRET

    with Load(nginx_server.port, max_requests=4000, max_seconds=90) as load:
        second = asyncio.run(deploy_services(target, specs, v2, router=router))
        assert get(nginx_server.port, "/version") == (200, "v2")
        back = asyncio.run(rollback_services(target, specs, router=router))
    assert load.result.failures == [], load.result.failures[:5]
    assert load.result.total >= 50 and set(load.result.answers) <= {"v1", "v2"}
    assert load.result.sequence[:3] in (["v1", "v2", "v1"], ["v2", "v1"])

    assert get(nginx_server.port, "/version") == (200, "v1")
    assert digests(target) == {"web": [images.v1.ref.digest], "worker": [images.v1.ref.digest]}
    assert second.running["web"].previous == images.v1.ref and back.running["web"].previous == images.v2.ref
    assert back.running["web"].backend != first.running["web"].backend  # a new container, started again
    state = asyncio.run(router.current("app"))
    assert state.backends == (back.running["web"].backend,)
    assert SECRET not in caplog.text


def test_deploying_the_running_digest_changes_nothing(
    engine: Engine, images: PublishedSet, nginx_server: NginxServer, cleanup_app: str
) -> None:
    target = ContainerTarget(engine, app=cleanup_app, environment="dev")
    router = nginx_server.router()
    v1 = {"web": images.v1.ref, "worker": images.v1.ref}
    first = asyncio.run(deploy_services(target, services(), v1, router=router))
    again = asyncio.run(deploy_services(target, services(), v1, router=router))
    assert again.unchanged == ("web", "worker")
    assert again.running["web"].container_id == first.running["web"].container_id


def _deploy_v1(engine: Engine, images: PublishedSet, nginx: NginxServer, app: str) -> tuple[ContainerTarget, dict[str, str]]:
    target = ContainerTarget(engine, app=app, environment="prod")
    release = asyncio.run(deploy_services(target, services(), {"web": images.v1.ref, "worker": images.v1.ref},
                                          router=nginx.router()))
    return target, {name: r.container_id for name, r in release.running.items()}


def _assert_v1_untouched(target: ContainerTarget, images: PublishedSet, nginx: NginxServer, ids: dict[str, str]) -> None:
    async def read() -> dict[str, list[str]]:
        return {name: [r.container_id for r in await target.running(name)] for name in ("web", "worker")}
    assert asyncio.run(read()) == {name: [cid] for name, cid in ids.items()}
    assert get(nginx.port, "/version") == (200, "v1")
    web = asyncio.run(target.current("web"))
    assert web is not None
    assert asyncio.run(nginx.router().current("app")).backends == (web.backend,)


def test_a_container_that_never_becomes_ready_leaves_the_old_one_serving(
    engine: Engine, images: PublishedSet, nginx_server: NginxServer, cleanup_app: str,
    podman_client: docker.DockerClient,
) -> None:
    target, ids = _deploy_v1(engine, images, nginx_server, cleanup_app)
    with pytest.raises(DeploymentError) as failed:
        asyncio.run(deploy_services(target, services(), {"web": images.bad, "worker": images.bad},
                                    router=nginx_server.router()))
    assert isinstance(failed.value.__cause__, CheckFailed)
    assert "'web' did not become ready" in str(failed.value) and "404" in str(failed.value)
    assert [o.ok for o in failed.value.results.values()] == [False, True]
    _assert_v1_untouched(target, images, nginx_server, ids)
    leftovers = podman_client.containers.list(all=True, filters={"label": f"io.slipway.digest={images.bad.digest}"})
    assert [c for c in leftovers if c.labels.get("io.slipway.app") == cleanup_app] == []


def test_a_failing_later_service_rolls_back_the_services_already_switched(
    engine: Engine, images: PublishedSet, nginx_server: NginxServer, cleanup_app: str
) -> None:
    target, ids = _deploy_v1(engine, images, nginx_server, cleanup_app)
    crashing = services(worker_command=("sh", "-c", "echo cannot reach the queue >&2; exit 3"))
    with pytest.raises(DeploymentError) as failed:
        asyncio.run(deploy_services(target, crashing, {"web": images.v2.ref, "worker": images.v2.ref},
                                    router=nginx_server.router()))
    assert "'worker' did not become ready" in str(failed.value) and "exited with code 3" in str(failed.value)
    assert "cannot reach the queue" in str(failed.value)
    _assert_v1_untouched(target, images, nginx_server, ids)


def test_a_digest_that_is_not_in_the_registry_changes_nothing(
    engine: Engine, images: PublishedSet, nginx_server: NginxServer, cleanup_app: str
) -> None:
    target, ids = _deploy_v1(engine, images, nginx_server, cleanup_app)
    missing = ImageRef(images.v1.ref.repository, "sha256:" + "f" * 64)
    with pytest.raises(DeploymentError) as failed:
        asyncio.run(deploy_services(target, services(), {"web": missing, "worker": images.v1.ref},
                                    router=nginx_server.router()))
    assert isinstance(failed.value.__cause__, ArtifactNotFound)
    assert missing.reference in str(failed.value)
    _assert_v1_untouched(target, images, nginx_server, ids)


def test_an_unreachable_engine_is_a_clear_error(images: PublishedSet) -> None:
    with PodmanService() as other:
        engine = asyncio.run(Engine.open(EngineSpec(other.base_url, name="edge-1")))
    try:
        target = ContainerTarget(engine, app="gone", environment="prod")
        with pytest.raises(HostUnreachable) as unreachable:
            asyncio.run(deploy_services(target, [ServiceSpec(name="worker", command=WORKER_LOOP)],
                                        {"worker": images.v1.ref}))
        assert unreachable.value.host == "edge-1" and "unreachable" in str(unreachable.value)
    finally:
        engine.client.close()


def test_services_with_a_router_group_need_a_router(engine: Engine, images: PublishedSet) -> None:
    target = ContainerTarget(engine, app="norouter", environment="dev")
    with pytest.raises(ConfigError, match="need a router"):
        asyncio.run(deploy_services(target, services(), {"web": images.v1.ref, "worker": images.v1.ref}))


def pid_1_image(engine: Engine, registry: RegistryServer) -> ImageRef:
    """An image whose PID 1 is the command itself (no init script, unlike the other test images)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        dockerfile = f'FROM {BASE_IMAGE}\nLABEL {TEST_LABEL}=app\nENTRYPOINT ["/bin/busybox"]\nCMD ["sh"]\n'.encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile))

    async def main() -> ImageRef:
        built = await build_image(engine, buf.getvalue(), repository="localhost/slipway/pid1", commit="3" * 40)
        return await push_image(engine, built, Registry(registry.address), name="pid1")

    return asyncio.run(main())


@pytest.mark.parametrize("init", [True, False])
def test_an_app_as_pid_1_stops_on_sigterm_only_behind_the_init(
    engine: Engine, session_registry: RegistryServer, cleanup_app: str, podman_client: docker.DockerClient,
    init: bool,
) -> None:
    """A shell loop as PID 1 ignores SIGTERM (the kernel drops signals PID 1 does not handle), so every
    stop waited the whole stop_timeout and ended in SIGKILL; behind the engine's init (the default) the
    loop gets the SIGTERM and the container ends with 143 (128 + SIGTERM), not 137 (128 + SIGKILL)."""
    target = ContainerTarget(engine, app=cleanup_app, environment="staging")
    spec = ServiceSpec(name="worker", command=WORKER_LOOP, settle=0.5, stop_timeout=4, init=init)
    running = asyncio.run(target.start(spec, pid_1_image(engine, session_registry)))
    container = podman_client.containers.get(running.container_id)
    podman_client.api.stop(running.container_id, timeout=spec.stop_timeout)
    container.reload()
    assert container.attrs["State"]["ExitCode"] == (143 if init else 137), container.attrs["State"]
