"""A private, real nginx for tests and benchmarks: own prefix, config, pid file and loopback port.

``NginxServer`` needs Debian's nginx (``make testbed`` installs it), writes a config
whose only site proxies ``http://127.0.0.1:<port>/`` to the Slipway-managed upstream ``slipway_<group>``,
starts nginx as a normal master process (daemonised, pid file in the prefix) and hands out an
:class:`~slipway.routers.nginx.NginxRouter` pointed at it. :meth:`NginxServer.stop` always cleans up.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from slipway.model.routing import Backend, RouterState
from slipway.routers.nginx import NginxRouter, render_upstream, upstream_name
from tests.support.ports import free_port
from tests.support.testbed import require

NGINX = "/usr/sbin/nginx"
_TEMP_KINDS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def ensure_nginx() -> str:
    """Return the nginx binary; :class:`MissingTestbed` when Debian's nginx is not installed."""
    return require(NGINX, "nginx")


class NginxServer:
    """A private nginx master on ``127.0.0.1:<port>`` proxying ``/`` to the upstream of ``group``."""

    def __init__(
        self,
        backends: Sequence[Backend],
        *,
        group: str = "app",
        root: str | Path | None = None,
        port: int | None = None,
        worker_processes: int = 2,
        extra_http: str = "",
    ) -> None:
        self.group = group
        self.initial_backends = tuple(backends)
        self._own_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="slipway-nginx-")) if root is None else Path(root)
        self.port = port if port is not None else free_port()
        self.worker_processes = worker_processes
        self.extra_http = extra_http
        self.conf_dir = self.root / "slipway"
        self.config = self.root / "nginx.conf"
        self.pid_file = self.root / "nginx.pid"
        self.error_log = self.root / "logs" / "error.log"
        self.binary = NGINX
        self._started = False

    @property
    def url(self) -> str:
        """Base URL of the proxy."""
        return f"http://127.0.0.1:{self.port}"

    def router(self, *, drain_timeout: float = 30.0, reload_timeout: float = 10.0) -> NginxRouter:
        """An NginxRouter that manages this server's upstreams."""
        return NginxRouter(
            conf_dir=self.conf_dir, config=self.config, prefix=self.root, pid_file=self.pid_file,
            nginx=self.binary, drain_timeout=drain_timeout, reload_timeout=reload_timeout,
        )

    def render_config(self) -> str:
        """The main config: error log, pid and temp paths under the prefix; one proxying server."""
        user = "user root root;\n" if os.geteuid() == 0 else ""  # our temp dirs are not readable by nobody
        temp = "\n".join(
            f"    {kind}_temp_path {self.root / 'tmp' / kind};"
            for kind in _TEMP_KINDS
        )
        return f"""\
{user}worker_processes {self.worker_processes};
pid {self.pid_file};
error_log {self.error_log} warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
{temp}
    # Slipway owns the files in this directory (one upstream group per file).
    include {self.conf_dir}/*.conf;
{self.extra_http}
    server {{
        listen 127.0.0.1:{self.port};
        location / {{
            proxy_pass http://{upstream_name(self.group)};
            # No silent retry on another backend: a request sent to a dead backend must show as an error.
            proxy_next_upstream off;
            proxy_connect_timeout 2s;
            proxy_read_timeout 30s;
        }}
    }}
}}
"""

    def prepare(self, *, upstream: bool = True) -> None:
        """Install nginx if needed and write its config; ``upstream=False``: leave the group file to Slipway."""
        self.binary = ensure_nginx()
        for sub in ("logs", *(f"tmp/{kind}" for kind in _TEMP_KINDS)):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        if upstream:
            self.conf_dir.mkdir(parents=True, exist_ok=True)
            group_file = self.conf_dir / f"{upstream_name(self.group)}.conf"
            group_file.write_text(render_upstream(RouterState(group=self.group, backends=self.initial_backends)))
        self.config.write_text(self.render_config())

    def check(self) -> subprocess.CompletedProcess[str]:
        """``nginx -t`` on this config (as a user would run it before starting nginx)."""
        return subprocess.run(
            [self.binary, "-p", str(self.root), "-c", str(self.config), "-t"],
            capture_output=True, text=True, timeout=30, check=False,
        )

    def start(self, *, timeout: float = 15.0, prepared: bool = False) -> None:
        """Install nginx if needed, write the config and start the master; waits until it answers.

        ``prepared``: :meth:`prepare` wrote the config already (the group file may be Slipway's own).
        """
        if not prepared:
            self.prepare()
        self._started = True
        try:
            proc = subprocess.run(
                [self.binary, "-p", str(self.root), "-c", str(self.config)],
                capture_output=True, text=True, timeout=timeout, check=False,
            )
            if proc.returncode != 0:
                raise RuntimeError(f"nginx did not start: {proc.stderr.strip()}\n{self._log_tail()}")
            self._wait_listening(timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_listening(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.5):
                return
            time.sleep(0.02)
        raise RuntimeError(f"nginx does not listen on {self.url} after {timeout}s\n{self._log_tail()}")

    def master_pid(self) -> int | None:
        """The master's pid, or None when it is not running."""
        try:
            pid = int(self.pid_file.read_text().strip())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        return pid

    def stop(self, *, timeout: float = 10.0, keep: bool = False) -> None:
        """Stop the master and its workers (quit, then TERM, then KILL) and remove the prefix we made
        (``keep``: leave it, to start this nginx again)."""
        if self._started:
            self._started = False
            pid = self.master_pid()
            if pid is not None:
                self._signal_until_gone(pid, timeout)
        if self._own_root and not keep:
            shutil.rmtree(self.root, ignore_errors=True)

    def _signal_until_gone(self, pid: int, timeout: float) -> None:
        group = _children(pid)
        for sig, share in ((signal.SIGQUIT, 0.5), (signal.SIGTERM, 0.3), (signal.SIGKILL, 0.2)):
            for target in [pid, *group]:
                with contextlib.suppress(OSError):
                    os.kill(target, sig)
            deadline = time.monotonic() + timeout * share
            while time.monotonic() < deadline:
                if not any(_alive(p) for p in [pid, *group]):
                    return
                time.sleep(0.02)

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.error_log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self) -> NginxServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (nginx workers of every generation)."""
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if len(fields) > 1 and fields[1] == str(pid):
            found.append(int(entry.name))
    return found
