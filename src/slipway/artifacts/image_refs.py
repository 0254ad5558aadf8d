"""Images and registries as values: a registry and its login, an image pinned by digest, a local build.

An image is identified by two immutable values: its *image id* (the config digest, known right after
the build, before any registry is involved) and its registry *manifest digest* (known after the push,
and what every pull uses: ``repository@sha256:...``). Tags are only for humans. Nothing here does I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from slipway.errors import (
    ArtifactError,
    ConfigError,
)

#: The prefix of the labels Slipway puts on images and containers.
LABEL = "io.slipway"
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class RegistryCredentials:
    """A registry login, resolved from secret references at the last moment; never printed."""

    username: str
    password: str = field(repr=False)

    def auth_config(self) -> dict[str, str]:
        """What the SDK sends (base64-encoded) in the ``X-Registry-Auth`` header."""
        return {"username": self.username, "password": self.password}


@dataclass(frozen=True)
class Registry:
    """An OCI registry: ``host[:port]`` and optional credentials."""

    address: str
    credentials: RegistryCredentials | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.address or "/" in self.address or "@" in self.address:
            raise ConfigError(f"registry address {self.address!r} must be host[:port]", key_path="registry.address")

    def repository(self, name: str) -> str:
        """The full repository of image ``name`` in this registry."""
        return f"{self.address}/{name}"


@dataclass(frozen=True)
class ImageRef:
    """An image in a registry pinned by its manifest digest: ``repository@sha256:...``."""

    repository: str
    digest: str

    def __post_init__(self) -> None:
        if not DIGEST_RE.match(self.digest):
            raise ArtifactError(f"{self.digest!r} is not an image digest",
                                hint="image digests look like sha256:<64 hex digits>")
        if not self.repository or "@" in self.repository:
            raise ArtifactError(f"{self.repository!r} is not an image repository")

    @property
    def reference(self) -> str:
        """``repository@digest``: what pulls and containers use."""
        return f"{self.repository}@{self.digest}"

    @property
    def short(self) -> str:
        """The first 12 hex digits of the digest (for names and logs)."""
        return self.digest[len("sha256:"):][:12]

    @classmethod
    def parse(cls, text: str) -> ImageRef:
        """Read ``repository@sha256:...``; a tag is not accepted (tags move, digests do not)."""
        repository, sep, digest = text.partition("@")
        if not sep:
            raise ArtifactError(f"{text!r} is not pinned by digest", hint="use repository@sha256:<digest>")
        return cls(repository, digest)


@dataclass(frozen=True)
class BuiltImage:
    """An image built for one commit, known by its image id before any push."""

    repository: str
    commit: str
    image_id: str
    #: True when an image for this commit already existed and was not built again.
    reused: bool = False

    @property
    def local_ref(self) -> str:
        """``repository:commit``: the local tag."""
        return f"{self.repository}:{self.commit}"
