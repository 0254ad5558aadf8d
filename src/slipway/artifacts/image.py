"""Container images as artifacts: build once per commit, smoke test, push, pull by digest.

Everything goes through the Docker Engine API with the ``docker`` SDK, so the same code drives Docker
Engine and Podman's Docker-compatible service::

    engine = await Engine.open(EngineSpec("unix:///run/podman/podman.sock"))
    published = await publish_image(
        engine, Path("."), name="shop/web", commit=sha, registry=Registry("registry.example.com"),
        smoke=SmokeTest(checks=parse_checks([{"kind": "http", "url": "http://container:8080/health"}])),
    )
    published.ref.reference          # registry.example.com/shop/web@sha256:...  (what deploys use)

An image is identified by two immutable values: its *image id* (the config digest, known right after
the build, before any registry is involved) and its registry *manifest digest* (known after the push,
and what every pull uses: ``repository@sha256:...``). Tags are only for humans.

Checks of a smoke test (and of readiness, :mod:`slipway.targets.container`) are written against the
container: ``http://container:8080/health`` names the container's port 8080. That port is published
on a free loopback port and the check is pointed there (:func:`retarget_checks`).

The pieces live in one module per idea, and this module re-exports them for callers that want the whole
image workflow in one import:

- :mod:`.docker_engine`: the Docker Engine API client (:class:`Engine`), its errors translated at the seam;
- :mod:`.image_refs`: the registry value types (:class:`Registry`, :class:`ImageRef`, :class:`BuiltImage`);
- :mod:`.image_build`: build once per commit, push, pull by digest, and :func:`publish_image`;
- :mod:`.smoke`: the image smoke test and the checks pointed at a container's published ports.
"""

from __future__ import annotations

from slipway.artifacts.docker_engine import Engine as Engine
from slipway.artifacts.docker_engine import EngineSpec as EngineSpec
from slipway.artifacts.docker_engine import container_logs as container_logs
from slipway.artifacts.docker_engine import inspect_image as inspect_image
from slipway.artifacts.docker_engine import remove_container as remove_container
from slipway.artifacts.docker_engine import translate_error as translate_error
from slipway.artifacts.image_build import PublishedImage as PublishedImage
from slipway.artifacts.image_build import build_image as build_image
from slipway.artifacts.image_build import publish_image as publish_image
from slipway.artifacts.image_build import pull_image as pull_image
from slipway.artifacts.image_build import push_image as push_image
from slipway.artifacts.image_refs import DIGEST_RE as DIGEST_RE
from slipway.artifacts.image_refs import LABEL as LABEL
from slipway.artifacts.image_refs import BuiltImage as BuiltImage
from slipway.artifacts.image_refs import ImageRef as ImageRef
from slipway.artifacts.image_refs import Registry as Registry
from slipway.artifacts.image_refs import RegistryCredentials as RegistryCredentials
from slipway.artifacts.smoke import CONTAINER_HOST as CONTAINER_HOST
from slipway.artifacts.smoke import SmokeTest as SmokeTest
from slipway.artifacts.smoke import SmokeTestFailed as SmokeTestFailed
from slipway.artifacts.smoke import SmokeTestResult as SmokeTestResult
from slipway.artifacts.smoke import check_ports as check_ports
from slipway.artifacts.smoke import published_ports as published_ports
from slipway.artifacts.smoke import retarget_checks as retarget_checks
from slipway.artifacts.smoke import smoke_test as smoke_test
