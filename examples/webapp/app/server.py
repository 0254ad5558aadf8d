"""The example web service: a JSON API over SQLite (or PostgreSQL) with a /health endpoint.

Standard library only on SQLite; PostgreSQL needs psycopg (bin/restart.sh runs ${SLIPWAY_PYTHON:-python3}).
The database URL comes from DATABASE_URL (a secret in slipway.yml) or defaults to SQLite in --data.

Restarts and stops drop no request (bin/restart.sh, bin/stop.sh): a new process takes the listening
socket over from the running one (app/handover.py), and a process that stops answers every request it
accepted before it exits.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from app import store
from app.handover import STEP_TIMEOUT, ControlSocket, HandoverError, Predecessor


#: What stops the app gracefully (stop.sh sends SIGTERM).
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def release_info() -> dict[str, str]:
    """What release this process runs, read from the marker Slipway writes into every release.

    ``commit`` is the commit the release was deployed for (the hooks' ``{{ release.commit }}``, what the
    verify hook and the acceptance tests expect); ``artifact_commit`` the commit that built its files.
    """
    marker = Path(__file__).resolve().parent.parent / ".slipway-release"
    try:
        return json.loads(marker.read_text())
    except (OSError, ValueError):
        return {"release": "dev", "commit": "unknown", "digest": "unknown"}


class Handler(BaseHTTPRequestHandler):
    """Routes: GET /health, GET /items, POST /items {"name": ...}."""

    db_url: str = ""
    lock = threading.Lock()
    protocol_version = "HTTP/1.1"
    server: Server

    def parse_request(self) -> bool:
        """A request line arrived: the connection is busy until it is answered."""
        self.server.track(self.connection, idle=False)
        return super().parse_request()

    def handle_one_request(self) -> None:
        """Answer one request; a keep-alive connection then waits idle, unless the server is stopping."""
        super().handle_one_request()
        if not self.server.track(self.connection, idle=True):
            self.close_connection = True

    def _send(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if self.server.draining:
            self.send_header("Connection", "close")  # this process is stopping: reconnect to the next one
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path == "/health":
            try:
                with store.connect(self.db_url) as db:
                    db.query("SELECT 1")
                self._send(200, {"status": "ok", **release_info()})
            except Exception as exc:  # noqa: BLE001 - sqlite3 or psycopg: either way the database is not usable
                self._send(503, {"status": "database unavailable", "error": str(exc)})
        elif self.path == "/items":
            try:
                with store.connect(self.db_url) as db:
                    self._send(200, {"items": store.list_items(db)})
            except Exception as exc:  # noqa: BLE001
                self._send(500, {"error": str(exc)})
        else:
            self._send(404, {"error": "not found"})

    def do_POST(self) -> None:  # noqa: N802
        if self.path != "/items":
            self._send(404, {"error": "not found"})
            return
        length = int(self.headers.get("Content-Length", "0"))
        try:
            payload = json.loads(self.rfile.read(length) or b"{}")
            name = str(payload["name"]).strip()
            if not name:
                raise ValueError("empty name")
        except (ValueError, KeyError, TypeError):
            self._send(400, {"error": 'send {"name": "..."}'})
            return
        try:
            with self.lock, store.connect(self.db_url) as db:
                item = store.add_item(db, name)
        except Exception as exc:  # noqa: BLE001
            self._send(500, {"error": str(exc)})
            return
        self._send(201, item)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """Quiet: one line per request to stderr would flood the log under load."""


class Server(ThreadingHTTPServer):
    """The standard threading server with a listen backlog fit for load, and a stop that drops nothing.

    socketserver's default backlog is 5: while requests wait on the database (a migration holding
    SQLite's write lock, say), new connections overflow it and are reset, which clients see as failed
    requests although the app is healthy.

    Stopping (:meth:`finish_requests`) answers every request this process accepted: each connection
    keeps its handler until the request it carries is answered, and only a keep-alive connection that
    waits for its next request is closed (HTTP lets a server do that; clients reconnect).
    """

    request_queue_size = 256
    daemon_threads = True  # a request still running at the end of the grace period does not hold the exit

    def __init__(self, address: tuple[str, int], handler: type[Handler], listener: socket.socket | None) -> None:
        super().__init__(address, handler, bind_and_activate=listener is None)
        if listener is not None:  # inherited from the process this one replaces: already listening
            self.socket.close()
            self.socket = listener
            self.server_address = listener.getsockname()
        self.draining = False
        self.handed_over = False  # a successor accepts on the listening socket now
        self.control: ControlSocket | None = None
        self._idle: dict[socket.socket, bool] = {}  # each open connection: waiting for a request?
        self._changed = threading.Condition()

    def process_request(self, request: Any, client_address: Any) -> None:
        """A new connection is busy until its first request is answered, even if it is slow to send it."""
        self.track(request, idle=False)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        """The connection is closed: forget it."""
        super().shutdown_request(request)
        with self._changed:
            self._idle.pop(request, None)
            self._changed.notify_all()

    def track(self, conn: socket.socket, *, idle: bool) -> bool:
        """Record whether ``conn`` waits for a request; False if it waits while stopping (close it)."""
        with self._changed:
            self._idle[conn] = idle
            return not (idle and self.draining)

    def finish_requests(self, grace: float, *, accept_queued: bool) -> int:
        """After serve_forever: answer the queue (unless a successor does), close the listening socket,
        and wait at most ``grace`` seconds for the requests in flight; return how many are still running."""
        while accept_queued and select.select([self.socket], [], [], 0)[0]:
            with contextlib.suppress(OSError):
                self.process_request(*self.get_request())
        self.socket.close()  # only this process's descriptor: a successor's copy stays open
        with self._changed:
            self.draining = True
            idle = [conn for conn, is_idle in self._idle.items() if is_idle]
        for conn in idle:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RD)  # its handler reads end-of-file and closes it
        deadline = time.monotonic() + grace
        with self._changed:
            while self._idle and (left := deadline - time.monotonic()) > 0:
                self._changed.wait(left)
            return len(self._idle)


def detach() -> int:
    """Fork into a new session and return the pipe to the parent, which waits for the child to write
    ``1`` (it serves) and close the pipe (the process it replaced is gone): it then exits 0, or 1 if the
    child exited before serving. So a start script knows when the new release alone serves."""
    readable, writable = os.pipe()
    if os.fork():
        os.close(writable)
        said = b""
        while chunk := os.read(readable, 16):
            said += chunk
        os._exit(0 if said == b"1" else 1)
    os.close(readable)
    os.setsid()
    return writable


def inherited(predecessor: Predecessor | None, host: str, port: int) -> socket.socket | None:
    """The predecessor's listening socket if it listens where this process should; else None (bind)."""
    if predecessor is None:
        return None
    if predecessor.listener.getsockname()[:2] == (socket.gethostbyname(host), port):
        return predecessor.listener
    predecessor.listener.close()  # the address changed: this one binds anew, the old one stops anyway
    return None


def arguments() -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data", required=True, help="directory of the SQLite database (without DATABASE_URL)")
    parser.add_argument("--handover", type=Path, help="control socket: take the port over from the app there")
    parser.add_argument("--pidfile", type=Path, help="written once this process serves")
    parser.add_argument("--detach", action="store_true", help="run in the background; exit 0 once serving")
    parser.add_argument("--grace", type=float, default=30.0, help="seconds a stop waits for requests in flight")
    return parser.parse_args()


def start(args: argparse.Namespace, stop: threading.Event) -> tuple[Server, Predecessor | None]:
    """Serve on the predecessor's listening socket (or a new one), then tell the predecessor to stop
    accepting; ``stop`` is set when a successor takes over from this process in turn."""
    predecessor = Predecessor.reach(args.handover) if args.handover else None
    server = Server((args.host, args.port), Handler, inherited(predecessor, args.host, args.port))

    def stop_accepting() -> None:  # a successor serves now
        server.handed_over = True
        server.shutdown()
        stop.set()

    if args.handover:  # kept by the server: its connection to a successor must stay open until exit
        server.control = ControlSocket(args.handover, server.socket, stop_accepting=stop_accepting)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    if predecessor is not None and not predecessor.stop_accepting():
        print("the previous process did not confirm that it stopped accepting", file=sys.stderr, flush=True)
    return server, predecessor


def main() -> None:
    """Serve until SIGTERM (or SIGINT), or until a successor took the listening socket over."""
    args = arguments()
    os.makedirs(args.data, exist_ok=True)
    Handler.db_url = os.environ.get("DATABASE_URL") or "sqlite:///" + os.path.join(args.data, "app.db")
    parent = detach() if args.detach else None
    stop = threading.Event()
    for signum in STOP_SIGNALS:
        signal.signal(signum, lambda *_: stop.set())
    # Only the main thread may take SIGTERM: delivered to another thread, it would leave the main thread
    # asleep in stop.wait() (Python runs handlers in the main thread, when that thread wakes up). Every
    # thread started from here on inherits the block; the main thread lifts it once they are started.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        server, predecessor = start(args, stop)
    except HandoverError as exc:
        sys.exit(f"not started: {exc}")
    if args.pidfile:  # atomically: stop.sh or a reader never sees it empty or half written
        partial = args.pidfile.with_name(f".{args.pidfile.name}.{os.getpid()}")
        partial.write_text(f"{os.getpid()}\n")
        partial.replace(args.pidfile)
    how = "took the port over" if predecessor else "serving"
    print(f"{how} on http://{args.host}:{args.port} ({release_info().get('release')}, pid {os.getpid()})", flush=True)
    if parent is not None:
        os.write(parent, b"1")
    if predecessor is not None and not predecessor.wait_until_gone(args.grace + STEP_TIMEOUT):
        print("the previous process is still running", file=sys.stderr, flush=True)
    if parent is not None:
        os.close(parent)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    stop.wait()
    server.shutdown()
    left = server.finish_requests(args.grace, accept_queued=not server.handed_over)
    note = f"; {left} request(s) still running after {args.grace:g} s" if left else ""
    print(f"stopped, pid {os.getpid()} ({'handed over' if server.handed_over else 'signalled'}){note}", flush=True)
    # Exit now, without the interpreter's teardown: a request still running after the grace period cannot
    # hold the exit, and the control connection stays open until the process is gone, which is how the
    # successor (and restart.sh) learns that no process of this release runs any more.
    os._exit(0)


if __name__ == "__main__":
    main()
