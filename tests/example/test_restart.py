"""The example app's restart and stop, which users copy: no request the app accepted is dropped.

``bin/restart.sh`` hands the listening socket from the running process to the new one, so the port never
closes: a request in flight in the old process is answered by it, a connection waiting in the listen
queue is answered by either, and no connection is refused while the new process starts. ``bin/stop.sh``
lets the requests in flight finish before the process exits.

The test makes each case certain instead of hoping the timing produces it: POSTs stay in flight in the
old process (the test holds back the last byte of each body until the new process serves); the old
process is stopped (SIGSTOP) while more requests are sent, so that their connections wait in its listen
queue; and a probe opens new connections in a loop for the whole restart. Nothing depends on how fast
the machine is: every wait is for an event, bounded only to fail instead of hanging.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.ports import free_port

pytestmark = pytest.mark.timeout(180)

#: A generous bound for anything this test waits for, so that a loaded machine is slow, not failing.
PATIENCE = 60.0


@dataclass
class App:
    """A copy of examples/webapp started with its own scripts on a free port, on SQLite."""

    root: Path
    shared: Path
    port: int
    env: dict[str, str]

    def script(self, name: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["sh", str(self.root / "bin" / name), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=PATIENCE,
            check=False,
        )

    def restart(self) -> subprocess.Popen[str]:
        return subprocess.Popen(
            ["sh", str(self.root / "bin/restart.sh"), str(self.port), str(self.shared)],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def pid(self) -> int:
        return int((self.shared / "run/app.pid").read_text())

    def log(self) -> str:
        path = self.shared / "log/app.log"
        return path.read_text()[-3000:] if path.exists() else ""


def request(port: int, method: str, path: str, body: object | None = None) -> tuple[int, str]:
    """One request on its own connection; the status and body, or the error's repr as status 0."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=PATIENCE)
    try:
        conn.request(method, path, json.dumps(body) if body is not None else None, {"Connection": "close"})
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    except (OSError, http.client.HTTPException) as exc:
        return 0, repr(exc)
    finally:
        conn.close()


@dataclass
class Pending:
    """Requests, each on its own connection, sent now and answered later. A request whose last byte is
    held back stays in flight inside the app (its handler waits for the body, without any timeout) until
    :meth:`answers` sends that byte: a slow client, made certain."""

    port: int
    sent: list[tuple[socket.socket, bytes]] = field(default_factory=list)

    def send(self, count: int, method: str, path: str, body: object | None = None, *, hold_back: int = 0) -> None:
        payload = json.dumps(body).encode() if body is not None else b""
        raw = (
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        ).encode() + payload
        cut = len(raw) - hold_back
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=PATIENCE)
            sock.sendall(raw[:cut])
            self.sent.append((sock, raw[cut:]))

    def answers(self) -> list[tuple[int, str]]:
        """Send what was held back, then read every answer: its status and body, or 0 and the error."""
        outcomes = []
        for sock, rest in self.sent:
            with sock:
                try:
                    sock.sendall(rest)
                    resp = http.client.HTTPResponse(sock)
                    resp.begin()
                    outcomes.append((resp.status, resp.read().decode()))
                except (OSError, http.client.HTTPException) as exc:
                    outcomes.append((0, repr(exc)))
        return outcomes

    def close(self) -> None:
        """Close what :meth:`answers` did not read (a test that failed first), so no socket leaks into the
        tests that follow as an unraisable warning."""
        for sock, _ in self.sent:
            sock.close()


class Probe:
    """New connections, one after another, until stopped: what a client arriving during a restart sees."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.outcomes: list[tuple[int, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        deadline = time.monotonic() + PATIENCE
        while not self._stop.is_set() and time.monotonic() < deadline:
            self.outcomes.append(request(self.port, "GET", "/health"))

    def __enter__(self) -> Probe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=PATIENCE)


def wait_for(condition: Callable[[], bool], what: str) -> None:
    """Wait (bounded) until ``condition`` holds: an event, not a guess at how long it takes."""
    deadline = time.monotonic() + PATIENCE
    while not condition():
        assert time.monotonic() < deadline, f"still waiting after {PATIENCE} s for {what}"
        time.sleep(0.01)


def servers_on(port: int) -> set[int]:
    """The pids of every app.server process started for ``port`` (by /proc, so no helper is needed)."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"app.server" in argv and str(port).encode() in argv:
                pids.add(int(entry.name))
    return pids


def refuses(port: int) -> bool:
    """Whether nothing listens on ``port`` any more."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=PATIENCE).close()
    except ConnectionRefusedError:
        return True
    return False


def is_alive(pid: int) -> bool:
    """Whether ``pid`` still runs: not gone, not a zombie, and not past closing its files on the way out
    (the kernel closes them before the process turns zombie; restart.sh learns of the exit from that)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0]
        return state != "Z" and any(Path(f"/proc/{pid}/fd").iterdir())
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False


@pytest.fixture
def app(tmp_path: Path, repo_root: Path) -> Iterator[App]:
    root = tmp_path / "webapp"
    shutil.copytree(repo_root / "examples/webapp", root)
    shared = tmp_path / "shared"
    (shared / "data").mkdir(parents=True)
    with sqlite3.connect(shared / "data/app.db") as db:  # the schema Slipway would apply before the start
        db.executescript((root / "db/migrations/0001_expand_create_items.sql").read_text())
    started = App(root, shared, free_port(), {**os.environ, "SLIPWAY_PYTHON": sys.executable})
    try:
        yield started
    finally:
        for pid in servers_on(started.port):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def serving(app: App) -> App:
    """The app started by restart.sh and answering."""
    first = app.script("restart.sh", str(app.port), str(app.shared))
    assert first.returncode == 0, first.stdout + first.stderr + app.log()
    wait_for(lambda: request(app.port, "GET", "/health")[0] == 200, "the first start to answer")
    return app


def test_restart_returns_once_the_new_process_answers(app: App) -> None:
    """A verify hook or a person right after the restart finds the new process, not a closed port."""
    for _ in range(2):  # the first start, then a restart over the running app
        done = app.script("restart.sh", str(app.port), str(app.shared))
        assert done.returncode == 0, done.stdout + done.stderr + app.log()
        status, body = request(app.port, "GET", "/health")
        assert status == 200 and f"pid {app.pid()}" in done.stdout, (body, app.log())
        assert {p for p in servers_on(app.port) if is_alive(p)} == {app.pid()}  # the old one is gone


def test_restart_answers_every_request_in_flight_queued_or_new(serving: App) -> None:
    app = serving
    old = app.pid()
    in_flight, queued = Pending(app.port), Pending(app.port)
    in_flight.send(5, "POST", "/items", {"name": "Ada Lovelace"}, hold_back=1)  # held in the old process
    os.kill(old, signal.SIGSTOP)  # connections from now on wait in the old process's listen queue
    try:
        queued.send(5, "GET", "/health")
        with Probe(app.port) as probe:
            restart = app.restart()
            try:
                wait_for(lambda: bool(servers_on(app.port) - {old}), "restart.sh to start the new process")
            finally:
                os.kill(old, signal.SIGCONT)  # a no-op when the restart has already killed it
            wait_for(lambda: app.pid() != old, "the new process to serve")
            posted = in_flight.answers()  # the old process still has them, or it dropped them
            output, _ = restart.communicate(timeout=PATIENCE)
            # restart.sh returns once the old process has answered what it held and exited
            assert not is_alive(old), "restart.sh returned while the previous release still runs"
    except BaseException:
        in_flight.close()
        queued.close()
        raise
    finally:
        if is_alive(old):
            os.kill(old, signal.SIGCONT)
    assert restart.returncode == 0, output + app.log()

    assert [status for status, _ in posted] == [201] * 5, (posted, app.log())
    assert [status for status, _ in queued.answers()] == [200] * 5, (queued.sent, app.log())
    refused = [o for o in probe.outcomes if o[0] != 200]
    assert probe.outcomes and not refused, f"{len(refused)} of {len(probe.outcomes)} failed: {refused[:3]}"
    assert is_alive(app.pid())
    assert json.loads(request(app.port, "GET", "/health")[1])["status"] == "ok"


def test_stop_answers_the_requests_in_flight(serving: App) -> None:
    app = serving
    pid = app.pid()
    in_flight = Pending(app.port)
    in_flight.send(3, "POST", "/items", {"name": "Grace Hopper"}, hold_back=1)
    stopping = threading.Thread(target=app.script, args=("stop.sh", str(app.shared)), daemon=True)
    stopping.start()
    wait_for(lambda: refuses(app.port), "the app to stop accepting")  # now let the requests finish
    posted = in_flight.answers()
    assert [status for status, _ in posted] == [201] * 3, (posted, app.log())
    stopping.join(timeout=PATIENCE)
    wait_for(lambda: not is_alive(pid), "the app to exit")
    assert request(app.port, "GET", "/health")[0] == 0  # stopped means the port is closed
