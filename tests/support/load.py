"""A small, bounded HTTP load for zero-downtime tests and benchmarks (loopback only).

Every request opens a new connection (``Connection: close``): a client that reuses keep-alive connections
can lose a request to nginx closing idle connections during a graceful reload, which is nginx behaviour
and not what we measure (docs/strategies.md). The load stops by itself: at ``max_requests``, at
``time_limit`` seconds, or when :meth:`Load.stop` is called once at least ``min_requests`` were sent.

Tests pace it (``rate`` requests per second in all): a request every few milliseconds finds any moment in
which a switch refuses or drops a connection, and an unpaced load took both cores of the machine, so the
other xdist worker's tests ran 2-5 times slower (one of them 44 s instead of 8 s). Benchmarks pass
``rate=None`` to send as fast as the workers can.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class LoadResult:
    """What the load saw."""

    requests: int
    failures: int
    latencies_ms: list[float]
    duration: float
    errors: dict[str, int] = field(default_factory=dict)

    def percentile(self, p: float) -> float:
        """The ``p``-th percentile latency in ms (nearest rank); 0 without requests."""
        if not self.latencies_ms:
            return 0.0
        ordered = sorted(self.latencies_ms)
        rank = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
        return ordered[rank]


class Load:
    """``workers`` threads sending GET ``url`` one connection per request until told or bounded to stop."""

    def __init__(
        self,
        url: str,
        *,
        workers: int = 8,
        min_requests: int = 10_000,
        max_requests: int = 200_000,
        time_limit: float = 60.0,
        timeout: float = 5.0,
        expect_status: int = 200,
        rate: float | None = 400.0,
    ) -> None:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"load goes to loopback addresses only, not {host!r}")
        self.address = (host, parts.port or 80)
        self.request = (
            f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\nConnection: close\r\n\r\n"
        ).encode()
        self.expect = f" {expect_status} ".encode()
        self.workers, self.min_requests, self.max_requests = workers, min_requests, max_requests
        self.time_limit, self.timeout = time_limit, timeout
        self.interval = workers / rate if rate else 0.0  # between two requests of one worker
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._count = self._failures = 0
        self._latencies: list[float] = []
        self._errors: dict[str, int] = {}
        self._started = 0.0
        self._deadline = 0.0

    def start(self) -> Load:
        """Start the workers; returns at once."""
        self._started = time.monotonic()
        self._deadline = self._started + self.time_limit
        self._threads = [threading.Thread(target=self._work, daemon=True) for _ in range(self.workers)]
        for thread in self._threads:
            thread.start()
        return self

    @property
    def count(self) -> int:
        """Requests finished so far."""
        return self._count

    def stop(self) -> LoadResult:
        """Let the load reach ``min_requests`` (within the time limit), stop it, and return what it saw."""
        while self._count < self.min_requests and time.monotonic() < self._deadline:
            time.sleep(0.02)
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.timeout + 5)
        return LoadResult(
            self._count, self._failures, list(self._latencies), time.monotonic() - self._started, dict(self._errors)
        )

    def _work(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set() and time.monotonic() < self._deadline:
            with self._lock:
                if self._count >= self.max_requests:
                    return
            if self.interval:  # paced: no burst to catch up after a slow request
                self._stop.wait(max(0.0, next_at - time.monotonic()))
                next_at = max(next_at + self.interval, time.monotonic())
            began = time.monotonic()
            error = self._one()
            took = (time.monotonic() - began) * 1000
            with self._lock:
                self._count += 1
                self._latencies.append(took)
                if error:
                    self._failures += 1
                    self._errors[error] = self._errors.get(error, 0) + 1

    def _one(self) -> str:
        """One request on a new connection; an empty string when it succeeded, else what went wrong."""
        try:
            with socket.create_connection(self.address, timeout=self.timeout) as sock:
                sock.sendall(self.request)
                chunks: list[bytes] = []
                while True:
                    data = sock.recv(65536)
                    if not data:
                        break
                    chunks.append(data)
        except OSError as exc:
            return type(exc).__name__
        head = b"".join(chunks)[:64]
        if not head.startswith(b"HTTP/1.") or self.expect not in head.split(b"\r\n", 1)[0] + b" ":
            return head.split(b"\r\n", 1)[0].decode("latin-1") or "empty response"
        return ""
