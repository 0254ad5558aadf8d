"""A private OCI registry for tests: Debian's docker-registry on a free 127.0.0.1 port.

    with RegistryServer() as registry:
        registry.address                          # "127.0.0.1:PORT", what image references start with
        registry.manifest_digest("slipway/app", "sha256:...")   # None when the registry lacks it

The registry stores its blobs in a temp dir and speaks plain HTTP: it listens on loopback only, and
the engine is told to skip TLS for exactly this address (``PodmanService.allow_insecure_registry``).
``read_only=True`` starts it in maintenance mode, so that every push is refused: the "registry that
refuses the push" of the tests. :meth:`RegistryServer.stop` always stops the process and removes the
temp dir, also after a failed start.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from slipway.testing.nginx import free_port
from slipway.testing.podman import apt_install
from slipway.testing.processes import ServerProcess

DOCKER_REGISTRY = "/usr/bin/docker-registry"
_INSTALL_LOCK = Path(tempfile.gettempdir()) / "slipway-registry-install.lock"
#: Manifest media types we accept when asking for a digest (Docker v2 and OCI, single and index).
MANIFEST_TYPES = ", ".join(
    (
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    )
)


def ensure_docker_registry() -> str:
    """Return the docker-registry binary, installing Debian's package first when it is missing.

    The package's postinst may start its own service on :5000; we stop it (we never use it).
    """
    if os.access(DOCKER_REGISTRY, os.X_OK):
        return DOCKER_REGISTRY
    _INSTALL_LOCK.touch(exist_ok=True)
    with _INSTALL_LOCK.open() as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.access(DOCKER_REGISTRY, os.X_OK):
            apt_install(["docker-registry"])
            for stop in (["systemctl", "disable", "--now", "docker-registry"], ["service", "docker-registry", "stop"]):
                with contextlib.suppress(OSError, subprocess.SubprocessError):
                    subprocess.run(stop, capture_output=True, timeout=60, check=False)
    return DOCKER_REGISTRY


class RegistryServer(ServerProcess):
    """One docker-registry process on ``127.0.0.1:<port>`` with its storage in a temp dir."""

    def __init__(
        self,
        *,
        root: str | Path | None = None,
        port: int | None = None,
        read_only: bool = False,
        startup_timeout: float = 30.0,
    ) -> None:
        self._own_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="slipway-registry-")) if root is None else Path(root)
        self.port = port if port is not None else free_port()
        self.read_only = read_only
        self.startup_timeout = startup_timeout
        self.config_path = self.root / "config.yml"
        self.log_path = self.root / "registry.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``: the registry part of an image reference."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """Base URL of the registry's HTTP API."""
        return f"http://{self.address}"

    def render_config(self) -> str:
        """The registry's config.yml: loopback address, filesystem storage, deletes allowed."""
        readonly = "  maintenance:\n    readonly:\n      enabled: true\n" if self.read_only else ""
        return f"""\
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {self.root / "data"}
  delete:
    enabled: true
{readonly}http:
  addr: {self.address}
"""

    def start(self) -> RegistryServer:
        """Write the config, start the registry and wait until ``/v2/`` answers."""
        binary = ensure_docker_registry()
        (self.root / "data").mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.render_config())
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                [binary, "serve", str(self.config_path)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        last = ""
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited with {self._proc.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/v2/", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError as exc:
                last = str(exc)
            time.sleep(0.05)
        raise RuntimeError(f"docker-registry did not answer within {self.startup_timeout}s: {last}\n{self.log_tail()}")

    def manifest_digest(self, repository: str, reference: str) -> str | None:
        """The registry's digest of ``repository:reference`` (a tag or a digest), None when absent."""
        response = httpx.head(
            f"{self.url}/v2/{repository}/manifests/{reference}", headers={"Accept": MANIFEST_TYPES}, timeout=10
        )
        if response.status_code == 404:
            return None
        response.raise_for_status()
        digest = response.headers.get("Docker-Content-Digest")
        return None if digest is None else str(digest)

    def repositories(self) -> list[str]:
        """Every repository the registry holds (its catalog)."""
        response = httpx.get(f"{self.url}/v2/_catalog", timeout=10)
        response.raise_for_status()
        return list(response.json().get("repositories") or [])

    def is_running(self) -> bool:
        """True while the registry process runs."""
        return self._proc is not None and self._proc.poll() is None


