"""A registry that demands a login: Debian's docker-registry with a bcrypt htpasswd file, on loopback.

The login must reach the registry (a push or pull without it is refused), a wrong one is refused with
an error that names the registry, and the password shows nowhere: not in an error, a log line, the
CLI's output, ``slipway logs`` or the state store.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import docker
import pytest
from pipeline_support import FAST_CHECK, REGISTRY_PASSWORD, image_project
from tests.e2e.conftest import Project
from tests.support.podman import HTTP_PORT, PodmanService, app_context
from tests.support.pytest_podman import RegistryFactory

from slipway.artifacts.docker_engine import Engine
from slipway.artifacts.image_build import build_image, pull_image, push_image
from slipway.artifacts.image_refs import BuiltImage, Registry, RegistryCredentials
from slipway.errors import ArtifactError, ArtifactNotFound

pytestmark = pytest.mark.timeout(180)
USER = "ci"
PASSWORD = "right-registry-pass-do-not-log"
WRONG = "wrong-registry-pass-do-not-log"
#: What docker-registry logs when a request carried a login it could not verify (the user, never the password).
LOGIN_FAILED = f'error authenticating user \\"{USER}\\"'


@pytest.fixture
def built(engine: Engine) -> BuiltImage:
    """A small app image of this test's own (so that removing it locally disturbs no other test)."""
    return asyncio.run(build_image(engine, app_context(version="auth"), repository="localhost/slipway/auth",
                                   commit="a" * 40))


def test_the_right_login_pushes_and_the_digest_pulls_back_only_with_it(
    engine: Engine, built: BuiltImage, registry_factory: RegistryFactory, podman_client: docker.DockerClient,
) -> None:
    registry = registry_factory(login=(USER, PASSWORD))
    login = RegistryCredentials(USER, PASSWORD)
    ref = asyncio.run(push_image(engine, built, Registry(registry.address, credentials=login), name="auth"))
    assert ref.repository == f"{registry.address}/auth"
    assert registry.manifest_digest("auth", ref.digest) == ref.digest

    # Forget the image locally, so that the pulls below really come from the registry.
    podman_client.images.remove(built.image_id, force=True)
    for credentials in (None, RegistryCredentials(USER, WRONG)):
        with pytest.raises(ArtifactError) as refused:
            asyncio.run(pull_image(engine, ref, credentials=credentials))
        assert not isinstance(refused.value, ArtifactNotFound)
        assert ref.reference in str(refused.value) and "unauthorized" in str(refused.value).lower()
        assert "login" in refused.value.hint and WRONG not in f"{refused.value} {refused.value.hint}"
    assert asyncio.run(pull_image(engine, ref, credentials=login)) == built.image_id


@pytest.mark.parametrize("given", ["wrong password", "no login"])
def test_a_push_without_the_right_login_is_refused_naming_the_registry(
    given: str, engine: Engine, built: BuiltImage, registry_factory: RegistryFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = registry_factory(login=(USER, PASSWORD))
    credentials = RegistryCredentials(USER, WRONG) if given == "wrong password" else None
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ArtifactError) as refused:
        asyncio.run(push_image(engine, built, Registry(registry.address, credentials=credentials), name="auth"))
    error = refused.value
    assert f"registry {registry.address} refused the push of {registry.address}/auth:" in str(error)
    assert "unauthorized" in str(error).lower()
    if given == "wrong password":
        assert error.hint == "the registry refused the login: check artifact.registry.username and password"
        # The engine did send the login, and the registry checked it: it logs the user, never the password.
        assert LOGIN_FAILED in registry.log_tail(200)
    else:
        assert error.hint == "the registry demands a login: set artifact.registry.username and password"
        assert LOGIN_FAILED not in registry.log_tail(200)
    assert registry.repositories() == []
    for text in (str(error), error.hint, caplog.text, Path(registry.log_path).read_text()):
        assert WRONG not in text and PASSWORD not in text


# -- through slipway.yml and the CLI -------------------------------------------------------------


def slipway_yml(app: str, podman: PodmanService, registry: str) -> dict[str, Any]:
    """One web service on one container target; the registry login as secret references."""
    health = {"kind": "http", "url": f"http://container:{HTTP_PORT}/health", "body_contains": "ok", **FAST_CHECK}
    return {
        "version": 1,
        "name": app,
        "artifact": {
            "kind": "image", "name": f"{app}/web", "engine": podman.base_url, "timeout": 120,
            "registry": {"address": registry, "username": {"env": "REGISTRY_USER"},
                         "password": {"env": "REGISTRY_PASSWORD"}},
            "smoke": [health],
        },
        "services": {"web": {"port": HTTP_PORT, "readiness": [health], "stop_timeout": 2}},
        "environments": {"dev": {"targets": [{"kind": "container", "name": "dev-1", "engine": podman.base_url}]}},
        "pipeline": [{"name": "build", "kind": "build"}, {"name": "deploy-dev", "kind": "deploy", "environment": "dev"}],
    }


def running_digests(client: docker.DockerClient, app: str) -> set[str]:
    """The digests the app's running containers carry (read from the engine's labels)."""
    return {c.labels["io.slipway.digest"] for c in client.containers.list(filters={"label": f"io.slipway.app={app}"})}


def refused(project: Project, *args: str, code: int) -> str:
    """``slipway ARGS`` with the wrong registry password, exiting ``code``; returns everything it printed."""
    proc = project.slipway(*args, check=False, extra_env={"REGISTRY_PASSWORD": WRONG})
    assert proc.returncode == code, f"{proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def test_the_login_in_slipway_yml_reaches_the_registry_and_no_output_log_or_store(
    tmp_path: Path, podman_service: PodmanService, registry_factory: RegistryFactory, cleanup_app: str,
    podman_client: docker.DockerClient,
) -> None:
    registry = registry_factory(login=(USER, REGISTRY_PASSWORD))
    project = image_project(tmp_path / "shop", slipway_yml(cleanup_app, podman_service, registry.address))
    project.env["REGISTRY_USER"] = USER  # REGISTRY_PASSWORD is already in the project's environment
    printed: list[str] = []

    # 1. A wrong password: the push is refused (an ArtifactError, exit 4), nothing is deployed.
    printed.append(refused(project, "run", code=4))
    assert f"registry {registry.address} refused the push" in printed[-1] and "refused the login" in printed[-1]
    assert registry.repositories() == [] and running_digests(podman_client, cleanup_app) == set()

    # 2. The right one: pushed, and the deploy pulls the digest back with the same login.
    first = project.json("run")
    assert first["state"] == "succeeded", first
    v1 = first["artifact_digest"]
    assert registry.manifest_digest(f"{cleanup_app}/web", v1) == v1
    assert running_digests(podman_client, cleanup_app) == {v1}

    # 3. v2, then a rollback whose pull of v1 carries the wrong password: the target's deploy fails
    #    (a DeploymentError, exit 6) and v2 keeps running.
    (project.root / "www/version").write_text("v2\n")
    project.commit("v2")
    second = project.json("run")
    assert second["state"] == "succeeded", second
    v2 = second["artifact_digest"]
    assert running_digests(podman_client, cleanup_app) == {v2}
    printed.append(refused(project, "rollback", "dev", "--reason", "wrong password", code=6))
    assert f"pulling {registry.address}/{cleanup_app}/web@{v1} failed" in printed[-1]
    assert "unauthorized" in printed[-1]
    assert running_digests(podman_client, cleanup_app) == {v2}

    # The password is in no output, no stored log of any run, and no file of the state store.
    runs = project.json("history")
    logs = [project.slipway("logs", str(run["id"])).stdout for run in runs]
    assert len(logs) == 4 and any("push to" in text for text in logs)
    stored = [path.read_bytes() for path in (project.root / ".slipway").rglob("*") if path.is_file()]
    assert stored, "the state store wrote no file"
    for secret in (REGISTRY_PASSWORD, WRONG):
        assert not [text for text in (*printed, *logs) if secret in text]
        assert not [data for data in stored if secret.encode() in data]
