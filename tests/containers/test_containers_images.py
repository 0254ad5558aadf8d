"""Image artifacts against a real Podman API service and real registries: build, smoke, push, pull."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import replace

import docker
import pytest
from containers_support import BAD_COMMIT, SMOKE, PublishedSet, context
from tests.support.podman import PodmanService
from tests.support.ports import free_port
from tests.support.pytest_podman import RegistryFactory
from tests.support.registry import RegistryServer

from slipway.artifacts.docker_engine import Engine, EngineSpec
from slipway.artifacts.image_build import build_image, publish_image, pull_image, push_image
from slipway.artifacts.image_refs import ImageRef, Registry, RegistryCredentials
from slipway.artifacts.smoke import SmokeTestFailed, smoke_test
from slipway.errors import ArtifactError, ArtifactNotFound, CheckFailed, HostUnreachable

pytestmark = pytest.mark.timeout(180)


def test_image_is_built_once_smoke_tested_pushed_and_recorded_by_digest(
    images: PublishedSet, session_registry: RegistryServer
) -> None:
    v1 = images.v1
    assert v1.smoke.ok and [r.name for r in v1.smoke.results] == ["http GET http://container:8080/health"]
    assert v1.ref.repository == f"{session_registry.address}/app"
    # The digest is the registry's own manifest digest: pulling by it gets exactly this image.
    assert session_registry.manifest_digest("app", v1.ref.digest) == v1.ref.digest
    assert session_registry.manifest_digest("app", "1" * 40) == v1.ref.digest
    assert v1.built.image_id.startswith("sha256:") and v1.ref.digest != images.v2.ref.digest


def test_a_second_build_of_the_same_commit_reuses_the_image(engine: Engine) -> None:
    # Its own repository and commit: the session's shared tags are not this test's to rely on.
    first = asyncio.run(build_image(engine, context("reuse"), repository="localhost/slipway/reuse", commit="3" * 40))
    again = asyncio.run(build_image(engine, context("reuse-changed"), repository="localhost/slipway/reuse",
                                    commit="3" * 40))
    assert again.reused and again.image_id == first.image_id


def test_pull_by_digest_gets_the_pushed_image(
    engine: Engine, images: PublishedSet, podman_client: docker.DockerClient
) -> None:
    # Forget every local name of v2, so that the pull really comes from the registry.
    podman_client.images.remove(images.v2.built.image_id, force=True)
    image_id = asyncio.run(pull_image(engine, images.v2.ref))
    assert image_id == images.v2.built.image_id
    assert images.v2.ref.reference in podman_client.images.get(image_id).attrs["RepoDigests"]


def smoke_containers(client: docker.DockerClient, run: str) -> list[object]:
    """The smoke-test containers started with ``SMOKE_RUN=<run>``: other tests (and other xdist workers,
    whose fixtures smoke test the same commits) start smoke-test containers on the same engine meanwhile."""
    found = client.containers.list(all=True, filters={"label": "io.slipway.smoke-test"}, ignore_removed=True)
    return [c for c in found if f"SMOKE_RUN={run}" in (c.attrs.get("Config", {}).get("Env") or [])]


def test_an_image_whose_smoke_test_fails_is_not_pushed(
    engine: Engine, images: PublishedSet, registry_factory: RegistryFactory, podman_client: docker.DockerClient
) -> None:
    registry = registry_factory()
    run = uuid.uuid4().hex
    with pytest.raises(SmokeTestFailed) as failed:
        asyncio.run(publish_image(engine, context("bad", healthy=False), name="bad", commit=BAD_COMMIT,
                                  registry=Registry(registry.address), smoke=replace(SMOKE, env={"SMOKE_RUN": run})))
    assert isinstance(failed.value, CheckFailed)
    assert "404" in failed.value.evidence and "container:8080/health" in str(failed.value)
    assert failed.value.result.ok is False and failed.value.result.image_id == images.bad_built.image_id
    assert registry.repositories() == []
    # The container under test is gone, pass or fail.
    assert smoke_containers(podman_client, run) == []


def test_a_smoke_test_passes_for_a_good_image_and_leaves_no_container(
    engine: Engine, images: PublishedSet, podman_client: docker.DockerClient
) -> None:
    run = uuid.uuid4().hex
    result = asyncio.run(smoke_test(engine, images.v1.built, replace(SMOKE, env={"SMOKE_RUN": run})))
    assert result.ok and result.results[0].attempts >= 1
    assert smoke_containers(podman_client, run) == []


@pytest.mark.parametrize("how", ["stopped", "read-only"])
def test_a_registry_that_refuses_the_push_is_a_clear_error(
    how: str, engine: Engine, images: PublishedSet, registry_factory: RegistryFactory
) -> None:
    registry = registry_factory(read_only=how == "read-only")
    if how == "stopped":
        registry.stop()
    with pytest.raises(ArtifactError) as refused:
        asyncio.run(push_image(engine, images.v1.built, Registry(registry.address), name="refused"))
    assert f"registry {registry.address} refused the push" in str(refused.value)
    assert ("connection refused" if how == "stopped" else "405") in str(refused.value).lower()


def test_a_digest_that_is_not_in_the_registry_is_artifact_not_found(
    engine: Engine, images: PublishedSet
) -> None:
    missing = ImageRef(images.v1.ref.repository, "sha256:" + "0" * 64)
    with pytest.raises(ArtifactNotFound) as absent:
        asyncio.run(pull_image(engine, missing))
    assert missing.reference in str(absent.value) and "push the image first" in absent.value.hint


def test_a_pull_from_a_stopped_registry_is_an_artifact_error(
    engine: Engine, images: PublishedSet, registry_factory: RegistryFactory
) -> None:
    registry = registry_factory()
    registry.stop()
    ref = ImageRef(f"{registry.address}/app", images.v1.ref.digest)
    with pytest.raises(ArtifactError) as failed:
        asyncio.run(pull_image(engine, ref))
    assert not isinstance(failed.value, ArtifactNotFound)
    assert "connection refused" in str(failed.value).lower()


@pytest.mark.parametrize("where", ["missing socket", "closed tcp port"])
def test_an_unreachable_engine_is_host_unreachable(where: str, tmp_path: object) -> None:
    url = "unix:///nonexistent/podman.sock" if where == "missing socket" else f"tcp://127.0.0.1:{free_port()}"
    with pytest.raises(HostUnreachable) as unreachable:
        asyncio.run(Engine.open(EngineSpec(url, name="gone"), ping_timeout=5))
    assert unreachable.value.host == "gone" and url in str(unreachable.value)


def test_an_engine_that_stops_mid_way_is_host_unreachable(images: PublishedSet) -> None:
    with PodmanService() as other:
        engine = asyncio.run(Engine.open(EngineSpec(other.base_url, name="short-lived")))
    try:
        with pytest.raises(HostUnreachable) as unreachable:
            asyncio.run(pull_image(engine, images.v1.ref))
        assert unreachable.value.host == "short-lived"
    finally:
        engine.client.close()


def test_registry_credentials_are_sent_but_never_logged_or_printed(
    engine: Engine, images: PublishedSet, registry_factory: RegistryFactory, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "s3cr3t-registry-password"
    # The registry demands this login, so the push below only works when the engine sent it.
    registry = Registry(registry_factory(login=("ci", secret)).address, credentials=RegistryCredentials("ci", secret))
    caplog.set_level(logging.DEBUG)
    ref = asyncio.run(push_image(engine, images.v1.built, registry, name="withauth"))
    assert ref.digest
    assert secret not in caplog.text and secret not in repr(registry) and secret not in repr(registry.credentials)
    with contextlib.suppress(Exception):
        assert secret not in str(ref)
