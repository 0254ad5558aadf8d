"""Build an image once per commit, push it and pull it by digest; publish = build, smoke test, push."""

from __future__ import annotations

import io
import logging
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slipway.artifacts.docker_engine import Engine, inspect_image
from slipway.artifacts.image_refs import DIGEST_RE, LABEL, BuiltImage, ImageRef, Registry, RegistryCredentials
from slipway.artifacts.smoke import SmokeTest, SmokeTestResult, smoke_test
from slipway.errors import (
    ArtifactError,
    ArtifactNotFound,
    ConfigError,
    TargetError,
)
from slipway.ports import Clock

log = logging.getLogger(__name__)

_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_NOT_FOUND = ("manifest unknown", "not found", "no such image", "name unknown")
#: How an engine reports that the registry wants a login or refused the one it was given.
_UNAUTHORIZED = ("unauthorized", "authentication required")


async def build_image(
    engine: Engine,
    context: Path | bytes,
    *,
    repository: str,
    commit: str,
    dockerfile: str = "Dockerfile",
    build_args: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
) -> BuiltImage:
    """Build ``context`` (a directory, or a tar as bytes) once for ``commit``; reuse an earlier build.

    The image is tagged ``repository:commit`` and labelled with the commit, so a second call for
    the same commit returns the existing image (``reused=True``) instead of building a different one.
    """
    if not _TAG_RE.match(commit):
        raise ConfigError(f"commit {commit!r} cannot be an image tag", key_path="artifact.commit")
    tag = f"{repository}:{commit}"
    existing = await inspect_image(engine, tag)
    if existing is not None and existing.get("Config", {}).get("Labels", {}).get(f"{LABEL}.commit") == commit:
        log.info("image %s already built for commit %s: %s", repository, commit, existing["Id"])
        return BuiltImage(repository, commit, str(existing["Id"]), reused=True)
    options: dict[str, Any] = {
        "tag": tag, "rm": True, "forcerm": True, "dockerfile": dockerfile, "buildargs": dict(build_args or {}),
        "labels": {**(labels or {}), f"{LABEL}.commit": commit}, "timeout": engine.spec.timeout,
    }
    if isinstance(context, bytes):
        options.update(fileobj=io.BytesIO(context), custom_context=True)
    else:
        options.update(path=str(context))
    started = time.monotonic()
    try:
        image, _ = await engine.call(f"build {tag}", engine.client.images.build, **options)
    except TargetError as exc:
        raise ArtifactError(f"building image {tag} failed: {exc.message}", hint="see the build output") from exc
    log.info("built %s in %.1fs: %s", tag, time.monotonic() - started, image.id)
    return BuiltImage(repository, commit, str(image.id))


async def push_image(engine: Engine, image: BuiltImage, registry: Registry, *, name: str) -> ImageRef:
    """Tag ``image`` for ``registry``, push it and return it pinned by the registry's manifest digest."""
    repository = registry.repository(name)
    await engine.call(f"tag {image.image_id}", engine.client.api.tag, image.image_id, repository, image.commit)
    auth = registry.credentials.auth_config() if registry.credentials else None
    what = f"push {repository}:{image.commit}"
    lines = await engine.call(what, lambda: _consume(engine.client.api.push(
        repository, image.commit, stream=True, decode=True, auth_config=auth)))
    error = next((str(line["error"]) for line in lines if line.get("error")), None)
    if error is not None:
        raise ArtifactError(
            f"registry {registry.address} refused the push of {repository}:{image.commit}: {error.strip()}",
            hint=_registry_hint(error, registry.credentials,
                                "check that the registry runs, accepts pushes and that the credentials may push"),
        )
    digest = _pushed_digest(lines)
    if digest is None:
        raise ArtifactError(f"{what}: the engine did not report the manifest digest",
                            hint=f"engine output: {lines[-3:]}")
    ref = ImageRef(repository, digest)
    log.info("pushed %s", ref.reference)
    return ref


def _registry_hint(error: str, credentials: RegistryCredentials | None, default: str) -> str:
    """Say whether the registry refused the login we sent or wanted one; ``default`` otherwise.

    Neither the user name (it may be a secret reference too) nor the password is named.
    """
    if not any(marker in error.lower() for marker in _UNAUTHORIZED):
        return default
    if credentials is None:
        return "the registry demands a login: set artifact.registry.username and password"
    return "the registry refused the login: check artifact.registry.username and password"


def _consume(stream: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    # Read the whole progress stream: it is bounded, and an unread response would keep its socket open.
    return [line for line in stream if isinstance(line, dict)]


def _pushed_digest(lines: Sequence[Mapping[str, Any]]) -> str | None:
    for line in reversed(lines):
        aux = line.get("aux")
        if isinstance(aux, Mapping) and DIGEST_RE.match(str(aux.get("Digest", ""))):
            return str(aux["Digest"])
        match = re.search(r"digest: (sha256:[0-9a-f]{64})", str(line.get("status", "")))
        if match:
            return match.group(1)
    return None


async def pull_image(engine: Engine, ref: ImageRef, *, credentials: RegistryCredentials | None = None) -> str:
    """Pull ``ref`` by its digest and return the local image id; ArtifactNotFound when it is absent."""
    auth = credentials.auth_config() if credentials else None
    lines = await engine.call(f"pull {ref.reference}", lambda: _consume(engine.client.api.pull(
        ref.repository, ref.digest, stream=True, decode=True, auth_config=auth)))
    error = next((str(line["error"]) for line in lines if line.get("error")), None)
    if error is not None:
        if any(marker in error.lower() for marker in _NOT_FOUND):
            raise ArtifactNotFound(f"image {ref.reference} is not in the registry: {error.strip()}",
                                   hint="push the image first, or check the digest against the build's record")
        raise ArtifactError(f"pulling {ref.reference} failed: {error.strip()}",
                            hint=_registry_hint(error, credentials,
                                                "check that the registry runs and the engine may reach it"))
    attrs = await inspect_image(engine, ref.reference)
    if attrs is None:
        raise ArtifactNotFound(f"the engine pulled {ref.reference} but does not know it by that digest")
    return str(attrs["Id"])


@dataclass(frozen=True)
class PublishedImage:
    """An image built once, smoke tested and pushed: what the store records for the commit."""

    built: BuiltImage
    smoke: SmokeTestResult
    ref: ImageRef


async def publish_image(
    engine: Engine,
    context: Path | bytes,
    *,
    name: str,
    commit: str,
    registry: Registry,
    smoke: SmokeTest,
    dockerfile: str = "Dockerfile",
    clock: Clock | None = None,
) -> PublishedImage:
    """Build (once per commit), smoke test, then push; a failed smoke test raises and pushes nothing.

    The local tag is ``localhost/slipway/<name>:<commit>``: fully qualified, because Podman's Docker
    API would otherwise read a short name as docker.io's.
    """
    repository = f"localhost/slipway/{name}"
    built = await build_image(engine, context, repository=repository, commit=commit, dockerfile=dockerfile)
    result = await smoke_test(engine, built, smoke, clock=clock)
    ref = await push_image(engine, built, registry, name=name)
    return PublishedImage(built, result, ref)
