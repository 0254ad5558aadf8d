"""A throwaway PostgreSQL cluster for tests: own data directory, loopback port and socket directory.

    with PostgresServer() as pg:
        url = pg.create_database("app")      # postgresql+psycopg://postgres@127.0.0.1:PORT/app
        engine = sqlalchemy.create_engine(url)

The server binaries are found on PATH or under /usr/lib/postgresql/*/bin (version 15 preferred); when
missing, the error says to run ``make testbed`` (which installs Debian's ``postgresql``). initdb refuses to run as
root, so when we are root the cluster belongs to the ``postgres`` system user (created if missing) and
its commands run through ``runuser``. Authentication is ``trust`` and the server listens on 127.0.0.1
only. :meth:`PostgresServer.stop` always removes the data directory, also after a failed start, and a
finaliser stops a server that a crashed test run forgot.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import weakref
from pathlib import Path
from types import TracebackType

import psycopg

from tests.support.ports import free_port
from tests.support.testbed import missing_testbed

PREFERRED_VERSION = 15
_COMMAND_TIMEOUT = 120.0
_DB_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class PostgresServer:
    """A private PostgreSQL server on 127.0.0.1 for the duration of a test session."""

    def __init__(self, *, startup_timeout: float = 60.0, user: str = "postgres") -> None:
        self.startup_timeout = startup_timeout
        self.user = user
        self.host = "127.0.0.1"
        self.port = 0
        self.root: Path | None = None
        self._bindir: Path | None = None
        self._finalizer: weakref.finalize[..., PostgresServer] | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> PostgresServer:
        """initdb a fresh cluster in a temporary directory and start it; returns self."""
        if self.root is not None:
            return self
        self._bindir = find_bindir()
        self.root = Path(tempfile.mkdtemp(prefix="slipway-pg-"))
        self._finalizer = weakref.finalize(self, _cleanup, self._bindir, self.root, _as_root())
        try:
            self._prepare_root()
            self._run(
                [
                    str(self._bindir / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    self.user,
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-sync",
                ]
            )
            self._start_on_free_port()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the server (immediate shutdown) and delete its directory; safe to call twice."""
        if self._finalizer is not None:
            self._finalizer()
        self._finalizer = None
        self.root = None

    def crash(self) -> None:
        """Stop the server at once, as a crash would (``pg_ctl -m immediate``); its data stays for restart()."""
        assert self._bindir is not None
        self._run([str(self._bindir / "pg_ctl"), "-D", str(self.data_dir), "-m", "immediate", "-w", "-t", "60", "stop"])

    def restart(self) -> None:
        """Start a stopped (or crashed) server again, on the same port."""
        assert self._bindir is not None
        options = self._options()
        log = self._require_root() / "postgres.log"
        self._run(
            [str(self._bindir / "pg_ctl"), "-D", str(self.data_dir), "-l", str(log), "-o", options, "-w", "-t",
             str(int(self.startup_timeout)), "start"]
        )

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- addresses -----------------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        """The cluster's data directory."""
        return self._require_root() / "data"

    @property
    def socket_dir(self) -> Path:
        """The directory holding the server's unix socket."""
        return self._require_root()

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the ``postgres`` maintenance database."""
        return self.url_for("postgres")

    def url_for(self, database: str) -> str:
        """SQLAlchemy URL (``postgresql+psycopg://``) of ``database`` on this server."""
        self._require_root()
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{database}"

    def conninfo(self, database: str = "postgres") -> str:
        """libpq connection string, for psycopg or psql."""
        self._require_root()
        return f"host={self.host} port={self.port} user={self.user} dbname={database} connect_timeout=10"

    # -- databases -----------------------------------------------------------------------------

    def create_database(self, name: str) -> str:
        """Create an empty database and return its SQLAlchemy URL."""
        self._check_name(name)
        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, disconnecting its sessions first."""
        self._check_name(name)
        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    # -- internals -----------------------------------------------------------------------------

    def _require_root(self) -> Path:
        if self.root is None:
            raise RuntimeError("the PostgreSQL test server is not running: call start() first")
        return self.root

    @staticmethod
    def _check_name(name: str) -> None:
        if not _DB_NAME.match(name):
            raise ValueError(f"database name {name!r} must match {_DB_NAME.pattern}")

    def _prepare_root(self) -> None:
        """Make the temporary directory the cluster owner's (initdb refuses to run as root)."""
        if _as_root():
            _ensure_system_user("postgres")
            shutil.chown(self._require_root(), user="postgres", group="postgres")

    def _start_on_free_port(self) -> None:
        """Start the server; a port taken between choosing and binding it gets another try."""
        assert self._bindir is not None
        log = self._require_root() / "postgres.log"
        for attempt in range(3):
            self.port = free_port()
            options = self._options()
            result = self._run(
                [
                    str(self._bindir / "pg_ctl"),
                    "-D",
                    str(self.data_dir),
                    "-l",
                    str(log),
                    "-o",
                    options,
                    "-w",
                    "-t",
                    str(int(self.startup_timeout)),
                    "start",
                ],
                check=False,
            )
            if result.returncode == 0:
                return
            if attempt == 2:
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise RuntimeError(
                    f"PostgreSQL did not start (pg_ctl exit {result.returncode}):\n"
                    f"{result.stderr.strip()}\n{tail}"
                )

    def _options(self) -> str:
        return (
            f"-c listen_addresses={self.host} -p {self.port} -k {self.socket_dir} "
            # fsync=off is safe for a throwaway cluster (the OS does not crash under it), and cheap. A commit is
            # still synchronous, as on a production server: the crash tests (pg_ctl -m immediate) must not lose
            # what PostgreSQL acknowledged, or they test a server nobody runs.
            "-c fsync=off -c synchronous_commit=on -c full_page_writes=off -c max_connections=100"
        )

    def _run(self, argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a server command as the cluster owner, in the cluster's directory."""
        return _run_as_owner(argv, cwd=self._require_root(), check=check)


def find_bindir() -> Path:
    """The directory with initdb and pg_ctl; :class:`MissingTestbed` when PostgreSQL is not installed."""
    found = _search_bindir()
    if found is None:
        raise missing_testbed("PostgreSQL server binaries (initdb, pg_ctl)", "postgresql")
    return found


def _search_bindir() -> Path | None:
    """PATH first, then /usr/lib/postgresql/<version>/bin with the preferred version first."""
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl:
        bindir = Path(initdb).resolve().parent
        if (bindir / "pg_ctl").exists():
            return bindir
    candidates = [Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")]
    candidates = [c for c in candidates if (c / "pg_ctl").exists()]

    def preference(path: Path) -> tuple[bool, int]:
        version = path.parent.name
        number = int(version) if version.isdigit() else 0
        return (number != PREFERRED_VERSION, -number)

    return min(candidates, key=preference) if candidates else None


def _as_root() -> bool:
    return os.geteuid() == 0


def _ensure_system_user(name: str) -> None:
    """Create the system user (and its group) when missing."""
    try:
        import pwd

        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
            check=True,
            capture_output=True,
            timeout=60,
        )


def _run_as_owner(argv: list[str], *, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run argv as the postgres user when we are root, else as ourselves."""
    if _as_root():
        argv = ["runuser", "-u", "postgres", "--", *argv]
    env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
    result = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=_COMMAND_TIMEOUT, check=False
    )
    if check and result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} failed with exit {result.returncode}:\n"
            f"{(result.stderr or result.stdout)[-2000:]}"
        )
    return result


def _cleanup(bindir: Path, root: Path, as_root: bool) -> None:
    """Stop the server if it runs and delete its directory (also called by the finaliser)."""
    data = root / "data"
    if (data / "postmaster.pid").exists():
        with contextlib.suppress(Exception):
            _run_as_owner(
                [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "-t", "30", "stop"],
                cwd=root,
                check=False,
            )
        _kill_leftover(data / "postmaster.pid")
    shutil.rmtree(root, ignore_errors=True)


def _kill_leftover(pid_file: Path) -> None:
    """SIGKILL a postmaster that pg_ctl could not stop."""
    with contextlib.suppress(Exception):
        pid = int(pid_file.read_text().split()[0])
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            os.kill(pid, 0)
            time.sleep(0.05)
