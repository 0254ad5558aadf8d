"""A private OCI registry for tests: Debian's docker-registry on a free 127.0.0.1 port.

    with RegistryServer() as registry:
        registry.address                          # "127.0.0.1:PORT", what image references start with
        registry.manifest_digest("slipway/app", "sha256:...")   # None when the registry lacks it

The registry stores its blobs in a temp dir and speaks plain HTTP: it listens on loopback only, and
the engine is told to skip TLS for exactly this address (``PodmanService.allow_insecure_registry``).
``read_only=True`` starts it in maintenance mode, so that every push is refused: the "registry that
refuses the push" of the tests. ``login=("ci", "secret")`` makes it demand HTTP basic auth for every
request (``auth: htpasswd`` in its config): docker-registry reads only bcrypt htpasswd entries, which
Debian's ``htpasswd -B`` (package apache2-utils, from ``make testbed``) writes; the password goes to
it on stdin, never on a command line. Plain HTTP is enough: the registry does not demand TLS for basic
auth, and podman sends the login to a registry marked insecure. :meth:`RegistryServer.stop` always
stops the process and removes the temp dir, also after a failed start.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from tests.support.ports import free_port
from tests.support.processes import ServerProcess
from tests.support.testbed import require

DOCKER_REGISTRY = "/usr/bin/docker-registry"
HTPASSWD = "/usr/bin/htpasswd"
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
    """Return the docker-registry binary; :class:`MissingTestbed` when it is not installed."""
    return require(DOCKER_REGISTRY, "docker-registry")


def ensure_htpasswd() -> str:
    """Return Apache's htpasswd (bcrypt-capable); :class:`MissingTestbed` when apache2-utils is not installed."""
    return require(HTPASSWD, "apache2-utils")


def htpasswd_line(username: str, password: str) -> str:
    """One bcrypt htpasswd entry ``user:$2y$...``; the password is passed on stdin, never as an argument."""
    if not username or ":" in username or "\n" in username + password:
        raise ValueError("a registry login needs a user name without ':' and no newline in either part")
    proc = subprocess.run(
        [ensure_htpasswd(), "-n", "-i", "-B", username], input=password + "\n",
        capture_output=True, text=True, timeout=30, check=False,
    )
    line = proc.stdout.strip()
    if proc.returncode != 0 or not line.startswith(f"{username}:$2"):
        raise RuntimeError(f"htpasswd failed with {proc.returncode}: {proc.stderr.strip()}")
    return line


class RegistryServer(ServerProcess):
    """One docker-registry process on ``127.0.0.1:<port>`` with its storage in a temp dir."""

    def __init__(
        self,
        *,
        root: str | Path | None = None,
        port: int | None = None,
        read_only: bool = False,
        login: tuple[str, str] | None = None,
        startup_timeout: float = 30.0,
    ) -> None:
        self._own_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="slipway-registry-")) if root is None else Path(root)
        self.port = port if port is not None else free_port()
        self.read_only = read_only
        self.login = login
        self.startup_timeout = startup_timeout
        self.config_path = self.root / "config.yml"
        self.log_path = self.root / "registry.log"
        self.htpasswd_path = self.root / "htpasswd"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``: the registry part of an image reference."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """Base URL of the registry's HTTP API."""
        return f"http://{self.address}"

    @property
    def _auth(self) -> httpx.BasicAuth | None:
        # The tests' own look-ups (readiness, digests, catalog) log in like any client must.
        return None if self.login is None else httpx.BasicAuth(*self.login)

    def render_config(self) -> str:
        """The registry's config.yml: loopback address, filesystem storage, deletes allowed, maybe auth."""
        readonly = "  maintenance:\n    readonly:\n      enabled: true\n" if self.read_only else ""
        auth = (f"auth:\n  htpasswd:\n    realm: slipway-test\n    path: {self.htpasswd_path}\n"
                if self.login is not None else "")
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
{auth}"""

    def start(self) -> RegistryServer:
        """Write the config, start the registry and wait until ``/v2/`` answers."""
        binary = ensure_docker_registry()
        (self.root / "data").mkdir(parents=True, exist_ok=True)
        if self.login is not None:
            self.htpasswd_path.write_text(htpasswd_line(*self.login) + "\n")
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
                status = httpx.get(f"{self.url}/v2/", auth=self._auth, timeout=2).status_code
                if status == 200:
                    return
                if status == 401:  # it loaded the htpasswd file before listening: this will not change
                    raise RuntimeError(f"docker-registry refused its own login:\n{self.log_tail()}")
            except httpx.HTTPError as exc:
                last = str(exc)
            time.sleep(0.05)
        raise RuntimeError(f"docker-registry did not answer within {self.startup_timeout}s: {last}\n{self.log_tail()}")

    def manifest_digest(self, repository: str, reference: str) -> str | None:
        """The registry's digest of ``repository:reference`` (a tag or a digest), None when absent."""
        response = httpx.head(
            f"{self.url}/v2/{repository}/manifests/{reference}", headers={"Accept": MANIFEST_TYPES}, auth=self._auth,
            timeout=10,
        )
        if response.status_code == 404:
            return None
        response.raise_for_status()
        digest = response.headers.get("Docker-Content-Digest")
        return None if digest is None else str(digest)

    def repositories(self) -> list[str]:
        """Every repository the registry holds (its catalog)."""
        response = httpx.get(f"{self.url}/v2/_catalog", auth=self._auth, timeout=10)
        response.raise_for_status()
        return list(response.json().get("repositories") or [])

    def is_running(self) -> bool:
        """True while the registry process runs."""
        return self._proc is not None and self._proc.poll() is None


