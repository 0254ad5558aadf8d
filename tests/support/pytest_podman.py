"""pytest fixtures for a real container engine (Podman's Docker API) and real registries.

Import them in a ``conftest.py``::

    from tests.support.pytest_podman import (  # noqa: F401  (fixtures)
        podman_client, podman_service, registry_factory, session_registry,
    )

* ``podman_service`` (session): one ``podman system service`` for the whole session, started on first
  use (installing and configuring podman if needed) and stopped when the session ends; test images
  and containers left by the session are removed then. The busybox base image is built once.
* ``podman_client``: a ``docker.DockerClient`` on that service, closed after the test.
* ``session_registry`` (session): a docker-registry on loopback that the service may push to.
* ``registry_factory``: ``registry_factory(read_only=False, login=None)`` starts another registry for
  one test (stopped afterwards, pass or fail), already allowed as plain HTTP by the service; with
  ``login=(user, password)`` it refuses every request without that login.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import docker
import pytest

from tests.support.podman import PodmanService, ensure_base_image, remove_test_objects
from tests.support.registry import RegistryServer

_SERVICE = pytest.StashKey[PodmanService]()
_REGISTRY = pytest.StashKey[RegistryServer]()

#: ``registry_factory(read_only=False, login=None) -> RegistryServer`` (started, allowed by the engine).
RegistryFactory = Callable[..., RegistryServer]


def _cleanup(service: PodmanService) -> None:
    with contextlib.suppress(Exception), contextlib.closing(service.client()) as client:
        remove_test_objects(client)
    service.stop()


@pytest.fixture(scope="session")
def podman_service(request: pytest.FixtureRequest) -> PodmanService:
    """The Podman API service of this session, with the busybox base image built."""
    service = request.config.stash.get(_SERVICE, None)
    if service is None:
        service = PodmanService().start()
        request.config.stash[_SERVICE] = service
        request.config.add_cleanup(lambda: _cleanup(service))
        with contextlib.closing(service.client()) as client:
            ensure_base_image(client)
    return service


@pytest.fixture
def podman_client(podman_service: PodmanService) -> Iterator[docker.DockerClient]:
    """A Docker SDK client on the session's service; closed after the test.

    The base image is checked again for each test: another test session on this machine (a developer's,
    beside CI's) removes every test image when it ends, the base image too.
    """
    client = podman_service.client()
    ensure_base_image(client)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def session_registry(request: pytest.FixtureRequest, podman_service: PodmanService) -> RegistryServer:
    """A registry shared by the session (tests use their own repository names in it)."""
    registry = request.config.stash.get(_REGISTRY, None)
    if registry is None:
        registry = RegistryServer().start()
        request.config.stash[_REGISTRY] = registry
        request.config.add_cleanup(registry.stop)
        podman_service.allow_insecure_registry(registry.address)
    return registry


@pytest.fixture
def registry_factory(podman_service: PodmanService) -> Iterator[RegistryFactory]:
    """Starts registries for one test; every one is stopped when the test ends."""
    started: list[RegistryServer] = []

    def make(*, read_only: bool = False, login: tuple[str, str] | None = None) -> RegistryServer:
        registry = RegistryServer(read_only=read_only, login=login)
        started.append(registry)
        registry.start()
        podman_service.allow_insecure_registry(registry.address)
        return registry

    try:
        yield make
    finally:
        for registry in started:
            registry.stop()
