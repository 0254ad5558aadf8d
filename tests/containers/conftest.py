"""Fixtures for the container tests: real Podman API service, real registries, real nginx; no mocks.

The session builds three app images once (v1, v2 and a "bad" one whose /health is missing) and pushes
v1 and v2 to the session registry; tests that need another registry start their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator

import pytest
from containers_support import PublishedSet, publish_test_images
from tests.support import pytest_nginx, pytest_podman
from tests.support.podman import PodmanService
from tests.support.registry import RegistryServer

from slipway.artifacts.image import Engine, EngineSpec

# The fixtures of the real servers, found by pytest under these names.
nginx_server = pytest_nginx.nginx_server
podman_service = pytest_podman.podman_service
podman_client = pytest_podman.podman_client
session_registry = pytest_podman.session_registry
registry_factory = pytest_podman.registry_factory


@pytest.fixture
def engine(podman_service: PodmanService) -> Iterator[Engine]:
    """An Engine on the session's Podman service; closed after the test."""
    opened = asyncio.run(Engine.open(EngineSpec(podman_service.base_url, name="podman")))
    try:
        yield opened
    finally:
        opened.client.close()


@pytest.fixture(scope="session")
def images(podman_service: PodmanService, session_registry: RegistryServer) -> PublishedSet:
    """v1 and v2 built once, smoke tested and pushed; 'bad' built and pushed without a smoke test."""
    return publish_test_images(podman_service, session_registry)


@pytest.fixture
def app_name() -> str:
    """A fresh app name per test, so that tests never see each other's containers."""
    return f"t{uuid.uuid4().hex[:8]}"


@pytest.fixture
def cleanup_app(podman_service: PodmanService, app_name: str) -> Iterator[str]:
    """Removes every container of ``app_name`` after the test, whatever happened."""
    yield app_name
    with contextlib.closing(podman_service.client()) as client:
        for container in client.containers.list(all=True, filters={"label": f"io.slipway.app={app_name}"}):
            container.remove(force=True)
