"""A private Podman API service for tests, and test images built from scratch with Debian's busybox.

    with PodmanService() as podman:
        client = podman.client()                       # a docker.DockerClient; close it when done
        image_id = build_test_image(client, tag="localhost/slipway-test/app:v1", version="v1")

What :func:`ensure_podman` does, because CI machines start empty (see ../shared/TESTBED.md):

* checks that Debian's ``podman``, ``runc`` and ``busybox-static`` are installed (``make testbed``
  installs them; a missing one fails with that hint);
* writes ``/etc/containers/containers.conf`` so that podman uses runc with cgroupfs and no default
  ulimits (crun fails on this kind of machine's cgroups); an existing different file is backed up first.

:class:`PodmanService` runs ``podman system service --time=0 unix://<tmp>/podman.sock`` with a private
``registries.conf`` (``CONTAINERS_REGISTRIES_CONF``), so that marking a loopback test registry as
plain-HTTP (:meth:`PodmanService.allow_insecure_registry`) never touches the machine's own config.
Podman re-reads registries.conf on SIGHUP; the method waits until the service really uses the new file.

Test images are never pulled: a *base* image (``FROM scratch``: the static busybox, a tiny init that
forwards SIGTERM) is built once per session, and app images add an httpd document root with a
``/health`` file whose body (or absence) the test chooses, so that a "bad" image fails its smoke test.
"""

from __future__ import annotations

import contextlib
import io
import ipaddress
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests

from tests.support.processes import ServerProcess
from tests.support.testbed import missing_testbed, require

PODMAN = "/usr/bin/podman"
RUNC = "/usr/sbin/runc"
BUSYBOX = "/bin/busybox"
CONTAINERS_CONF = Path("/etc/containers/containers.conf")
#: What TESTBED.md prescribes; compared as text so that a machine already set up is left alone.
REQUIRED_CONTAINERS_CONF = """\
# Written by Slipway's test setup (tests.support.podman): crun fails on this machine's cgroups.
[containers]
default_ulimits = []

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
"""
#: Every test container and image carries this label, so that a session can clean up after itself.
TEST_LABEL = "io.slipway.test"
BASE_IMAGE = "localhost/slipway-test/base:busybox"
#: The port the test images' httpd listens on inside the container.
HTTP_PORT = 8080

_PACKAGES = {"podman": PODMAN, "runc": RUNC, "busybox-static": BUSYBOX}

#: PID 1 in a container has no default signal handlers: busybox httpd would ignore SIGTERM and every
#: stop would wait for the kill timeout. This init forwards TERM/INT to the real process and exits.
_INIT_SCRIPT = b"""\
trap 'kill -TERM "$child" 2>/dev/null; wait "$child"; exit 0' TERM INT
/bin/busybox "$@" &
child=$!
wait "$child"
"""


# -- installation and configuration ------------------------------------------------------------


def ensure_podman(*, conf_path: Path = CONTAINERS_CONF) -> str:
    """Check that podman, runc and a static busybox are installed, write containers.conf; returns podman."""
    for package, path in _PACKAGES.items():
        require(path, package)
    # /bin/busybox may be Debian's dynamically linked busybox, which cannot run in a FROM scratch image.
    if b"ld-linux" in Path(BUSYBOX).read_bytes()[:4096]:
        raise missing_testbed(f"a static {BUSYBOX}", "busybox-static")
    configure_containers_conf(conf_path)
    return PODMAN


def configure_containers_conf(path: Path = CONTAINERS_CONF) -> bool:
    """Write the containers.conf TESTBED.md prescribes unless it is already there; True when written.

    A different existing file is kept as ``containers.conf.slipway-backup-<epoch>`` (never overwritten
    silently: it may be the machine owner's).
    """
    try:
        if path.read_text() == REQUIRED_CONTAINERS_CONF:
            return False
        backup = path.with_name(f"{path.name}.slipway-backup-{int(time.time())}")
        shutil.copy2(path, backup)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(REQUIRED_CONTAINERS_CONF)
    os.replace(tmp, path)
    return True


# -- the API service ---------------------------------------------------------------------------


class PodmanService(ServerProcess):
    """``podman system service`` on a unix socket in a temp dir, with a private registries.conf."""

    STOP_TIMEOUT = 15.0

    def __init__(self, *, root: str | Path | None = None, startup_timeout: float = 60.0) -> None:
        self._own_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="slipway-podman-")) if root is None else Path(root)
        self.startup_timeout = startup_timeout
        self.socket_path = self.root / "podman.sock"
        self.registries_conf = self.root / "registries.conf"
        self.log_path = self.root / "service.log"
        self._insecure: list[str] = []
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        """The Docker API address: ``unix:///.../podman.sock`` (what ``DOCKER_HOST`` would say)."""
        return f"unix://{self.socket_path}"

    def client(self, *, timeout: int = 120) -> docker.DockerClient:
        """A new Docker SDK client for this service; the caller closes it."""
        return docker.DockerClient(base_url=self.base_url, timeout=timeout)

    def start(self) -> PodmanService:
        """Install and configure podman if needed, start the service and wait until the API answers."""
        podman = ensure_podman()
        self.root.mkdir(parents=True, exist_ok=True)
        self.socket_path.unlink(missing_ok=True)  # left by a killed service: "exists" must mean "ours"
        self._write_registries_conf()
        env = {**os.environ, "CONTAINERS_REGISTRIES_CONF": str(self.registries_conf)}
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                [podman, "system", "service", "--time=0", self.base_url],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                start_new_session=True,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def kill(self) -> None:
        """SIGKILL the API service process alone, as when an engine is lost: its containers keep running
        (each has its own conmon), the socket stops answering. :meth:`start` brings the API back."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(self.STOP_TIMEOUT)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        last = ""
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(f"podman system service exited with {self._proc.returncode}:\n{self.log_tail()}")
            if self.socket_path.exists():
                try:
                    with contextlib.closing(self.client(timeout=5)) as client:
                        if client.ping():
                            return
                except (docker.errors.DockerException, requests.RequestException) as exc:
                    last = str(exc)
            time.sleep(0.05)
        raise RuntimeError(f"podman API did not answer within {self.startup_timeout}s: {last}\n{self.log_tail()}")

    def allow_insecure_registry(self, address: str, *, timeout: float = 15.0) -> None:
        """Let the service talk plain HTTP to the registry at ``address`` (``127.x.y.z:PORT`` only).

        Podman reloads registries.conf on SIGHUP; we then probe the registry through the service
        until the answer stops being the HTTPS error, so the caller never races the reload.
        """
        host, _, port = address.rpartition(":")
        if not port.isdigit() or not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"only loopback registries may skip TLS, got {address!r}")
        if address in self._insecure:
            return
        self._insecure.append(address)
        self._write_registries_conf()
        if self._proc is None:
            return
        self._proc.send_signal(signal.SIGHUP)
        self._wait_registry_insecure(address, timeout)

    def _wait_registry_insecure(self, address: str, timeout: float) -> None:
        probe = f"{address}/slipway-probe/none"
        deadline = time.monotonic() + timeout
        message = ""
        with contextlib.closing(self.client(timeout=10)) as client:
            while time.monotonic() < deadline:
                message = _pull_error(client, probe, "sha256:" + "0" * 64)
                if "HTTPS client" not in message:
                    return
                time.sleep(0.05)
        raise RuntimeError(f"podman did not pick up the insecure registry {address}: {message}")

    def _write_registries_conf(self) -> None:
        # No short-name search: a test must never reach out to docker.io by accident.
        lines = ["unqualified-search-registries = []", ""]
        for address in self._insecure:
            lines += ["[[registry]]", f'location = "{address}"', "insecure = true", ""]
        tmp = self.registries_conf.with_suffix(".tmp")
        tmp.write_text("\n".join(lines))
        os.replace(tmp, self.registries_conf)




def _pull_error(client: docker.DockerClient, repository: str, tag: str) -> str:
    """The error text of a pull through the service ('' when the pull worked)."""
    try:
        for line in client.api.pull(repository, tag, stream=True, decode=True):
            if isinstance(line, dict) and line.get("error"):
                return str(line["error"])
    except docker.errors.APIError as exc:
        return str(exc.explanation or exc)
    return ""


def remove_test_objects(client: docker.DockerClient) -> None:
    """Remove every container and image labelled as a test object (what a crashed run left behind)."""
    for container in client.containers.list(all=True, filters={"label": TEST_LABEL}):
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)
    for image in client.images.list(filters={"label": TEST_LABEL}):
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            client.images.remove(image.id, force=True)


# -- test images -------------------------------------------------------------------------------


def _add(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    tar.addfile(info, io.BytesIO(data))


def base_context() -> bytes:
    """Build context (a tar) of the base image: static busybox, the init script, ``FROM scratch``."""
    dockerfile = f"""\
FROM scratch
COPY rootfs/ /
LABEL {TEST_LABEL}=base
ENTRYPOINT ["/bin/busybox", "sh", "/init"]
CMD ["sleep", "3600"]
"""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        _add(tar, "Dockerfile", dockerfile.encode())
        _add(tar, "rootfs/bin/busybox", Path(BUSYBOX).read_bytes(), 0o755)
        _add(tar, "rootfs/init", _INIT_SCRIPT, 0o755)
    return buf.getvalue()


def app_context(
    *,
    version: str,
    health: str | None = "ok\n",
    base: str = BASE_IMAGE,
    files: Mapping[str, bytes] | None = None,
    labels: Mapping[str, str] | None = None,
) -> bytes:
    """Build context of an app image: busybox httpd on :data:`HTTP_PORT` serving ``/www``.

    ``/version`` answers ``version``; ``/health`` answers ``health`` (no such file when None, so the
    smoke test of that image fails with 404).
    """
    label_lines = "".join(f'LABEL {key}="{value}"\n' for key, value in (labels or {}).items())
    dockerfile = f"""\
FROM {base}
COPY www/ /www/
LABEL {TEST_LABEL}=app
{label_lines}EXPOSE {HTTP_PORT}
CMD ["httpd", "-f", "-p", "{HTTP_PORT}", "-h", "/www"]
"""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        _add(tar, "Dockerfile", dockerfile.encode())
        _add(tar, "www/version", f"{version}\n".encode())
        if health is not None:
            _add(tar, "www/health", health.encode())
        for name, data in (files or {}).items():
            _add(tar, f"www/{name}", data)
    return buf.getvalue()


def build_context(client: docker.DockerClient, context: bytes, *, tag: str, timeout: int = 300) -> str:
    """Build a tar build context through the API and return the image id; RuntimeError with the log."""
    try:
        image, _logs = client.images.build(
            fileobj=io.BytesIO(context), custom_context=True, tag=tag, rm=True, timeout=timeout
        )
    except docker.errors.BuildError as exc:
        log = "".join(str(chunk.get("stream", chunk.get("error", ""))) for chunk in exc.build_log)
        raise RuntimeError(f"building {tag} failed: {exc.msg}\n{log[-2000:]}") from exc
    return str(image.id)


def ensure_base_image(client: docker.DockerClient) -> str:
    """Build the busybox base image unless it is already in the engine's storage; returns its id."""
    with contextlib.suppress(docker.errors.ImageNotFound):
        return str(client.images.get(BASE_IMAGE).id)
    return build_context(client, base_context(), tag=BASE_IMAGE)


def build_test_image(
    client: docker.DockerClient, *, tag: str, version: str, health: str | None = "ok\n"
) -> str:
    """Build an app image (see :func:`app_context`) on the base image; returns its id."""
    ensure_base_image(client)
    return build_context(client, app_context(version=version, health=health), tag=tag)


def exec_output(container: Any, command: list[str], *, attempts: int = 10) -> str:
    """What ``command`` prints in a running container, stripped. Podman's Docker-compatible exec sometimes
    hands back no output at all for a command that printed and exited 0 when the machine is loaded (the
    stream attaches after the process ended): such an empty answer is asked again, a bounded number of times."""
    output = ""
    for _ in range(attempts):
        result = container.exec_run(command)
        output = result.output.decode().strip()
        if output or result.exit_code not in (0, None):
            return output
        time.sleep(0.2)
    return output
