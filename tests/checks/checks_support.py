"""Helpers for the checks tests: a bounded runner and real servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

T = TypeVar("T")

#: Every coroutine a test runs is bounded by this many seconds of real time.
RUN_LIMIT = 30.0

HEALTH = {"status": "ok", "version": "1.2.3", "db": {"replicas": [{"name": "a", "lag": 0}]}}


def run(coro: Awaitable[T], *, limit: float = RUN_LIMIT) -> T:
    """Run a coroutine on a fresh event loop, failing the test if it takes longer than ``limit``."""

    async def bounded() -> T:
        return await asyncio.wait_for(coro, limit)

    return asyncio.run(bounded())


@dataclass
class HttpServer:
    """A threaded HTTP server with a few routes that behave well or badly on purpose."""

    base_url: str
    counters: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: Set when the server shuts down: requests to /hang stop waiting.
    closing: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str) -> str:
        """Absolute URL of ``path`` on this server."""
        return self.base_url + path

    def hit(self, key: str) -> int:
        """Count a request to ``key``; returns how many came before it."""
        with self.lock:
            seen = self.counters.get(key, 0)
            self.counters[key] = seen + 1
            return seen


def handler_for(state: HttpServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            segments = [s for s in parts.path.split("/") if s]
            route = segments[0] if segments else ""
            if route == "health":
                self._send(200, json.dumps(HEALTH), "application/json")
            elif route == "status":
                code = int(segments[1])
                self._send(code, f"status {code}: the server says no", "text/plain")
            elif route == "slow":
                time.sleep(int(query.get("ms", "100")) / 1000)
                self._send(200, "slow but fine", "text/plain")
            elif route == "flaky":
                # /flaky/<key>?fail=K: 503 for the first K requests with this key, then 200.
                seen = state.hit(segments[1])
                if seen < int(query.get("fail", "1")):
                    self._send(503, f"warming up ({seen + 1})", "text/plain")
                else:
                    self._send(200, "ready", "text/plain")
            elif route == "hang":
                # Never answers: holds the connection until the server shuts down (at most a minute).
                state.closing.wait(60)
            elif route == "notjson":
                self._send(200, "<html>not json</html>", "text/html")
            else:
                self._send(404, "no such route", "text/plain")

        def _send(self, code: int, body: str, content_type: str) -> None:
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    #: socketserver's default backlog is 5: a load test opening 50 connections at once would wait for
    #: SYN retransmits (1 s) and time out on the client side, not the server's.
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that give up (the load test's time limit) break pipes; that is expected here.
        pass


class TcpListener:
    """An asyncio TCP server on 127.0.0.1 that can be stopped and started again on the same port."""

    def __init__(self, port: int = 0) -> None:
        self.port = port
        self.connections = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Listen (again) on the port; the first start picks a free one."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening: new connections are refused."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
