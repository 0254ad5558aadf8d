"""Helpers of the router tests: real tiny HTTP backends on 127.0.0.1 and a bounded load client."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import httpx

from slipway.model.routing import Backend


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    name = ""
    in_flight = 0  # slow requests being answered now (read by tests to know a request has arrived)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        query = parse_qs(urlparse(self.path).query)
        delay_ms = int(query.get("ms", ["0"])[0])
        if delay_ms:
            self.server.in_flight += 1
            try:
                time.sleep(delay_ms / 1000)
            finally:
                self.server.in_flight -= 1
        body = self.server.name.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@dataclass
class HttpBackend:
    """One threaded http.server that answers every GET with its name; restartable on its port."""

    name: str
    port: int
    slot: str | None = None
    _server: _Server | None = field(default=None, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    @property
    def backend(self) -> Backend:
        return Backend(port=self.port, slot=self.slot)

    def start(self, name: str | None = None) -> None:
        if name is not None:
            self.name = name
        server = _Server(("127.0.0.1", self.port), _Handler)
        server.name = self.name
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def in_flight(self) -> int:
        """Slow requests (``?ms=``) this backend is answering right now."""
        return self._server.in_flight if self._server is not None else 0

    async def wait_in_flight(self, *, timeout: float = 30) -> None:
        """Wait until a slow request has reached this backend (a busy machine may take a while)."""
        deadline = time.monotonic() + timeout
        while self.in_flight == 0:
            if time.monotonic() > deadline:
                raise AssertionError(f"no request reached backend {self.name} within {timeout} s")
            await asyncio.sleep(0.01)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


@dataclass(frozen=True)
class Outcome:
    """One request of the load: when it started and ended, and who answered (or what failed)."""

    started: float
    ended: float
    status: int
    body: str
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status == 200 and not self.error


@dataclass
class Load:
    """A bounded load: ``total`` GETs with ``concurrency`` workers, each on a fresh connection."""

    url: str
    total: int = 2000
    concurrency: int = 8
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def done(self) -> int:
        return len(self.outcomes)

    async def run(self) -> list[Outcome]:
        # Fresh connection per request: a keep-alive connection that the client reuses while an old
        # nginx worker closes it (graceful shutdown closes idle connections) fails on the client side
        # for any server; real clients retry that case, this one must not hide anything.
        limits = httpx.Limits(max_keepalive_connections=0, max_connections=self.concurrency)
        queue = iter(range(self.total))
        async with httpx.AsyncClient(limits=limits, timeout=10) as client:

            async def worker() -> None:
                for _ in queue:
                    started = time.monotonic()
                    try:
                        response = await client.get(self.url)
                        outcome = Outcome(started, time.monotonic(), response.status_code, response.text)
                    except httpx.HTTPError as exc:
                        outcome = Outcome(started, time.monotonic(), 0, "", f"{type(exc).__name__}: {exc}")
                    self.outcomes.append(outcome)

            await asyncio.gather(*(worker() for _ in range(self.concurrency)))
        return self.outcomes

    async def wait_for(self, count: int, timeout: float = 20) -> None:
        """Wait (bounded) until ``count`` requests have finished."""
        deadline = time.monotonic() + timeout
        while self.done < count:
            assert time.monotonic() < deadline, f"load stalled at {self.done} requests"
            await asyncio.sleep(0.005)
