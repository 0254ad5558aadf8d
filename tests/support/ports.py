"""Ports for the tests' servers, chosen outside the kernel's ephemeral range.

A port found by binding port 0 comes from the ephemeral range (``ip_local_port_range``, 32768-60999 on
Debian), which every outgoing connection on the machine also draws its local port from. Between a test
choosing such a port and its server binding it, any client (an SSH session, a health check, a database
connection of the other xdist worker) may take it: CI saw a release's app fail with "Address already in
use" that way. Ports below the range are never handed out to clients. Each xdist worker draws from its own
slice of them, in order from a random start, so two workers never choose the same port and one worker
chooses a port again only after going through its whole slice.
"""

from __future__ import annotations

import itertools
import os
import random
import socket
import threading
from pathlib import Path

LOWEST = 10000  # below: well-known services (PostgreSQL's 5432, ...)


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _slice() -> range:
    top = _ephemeral_start()
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    size = max(1, (top - LOWEST) // max(workers, 1))
    start = LOWEST + (index % max(workers, 1)) * size
    return range(start, start + size)


_lock = threading.Lock()
_ports: itertools.cycle[int] | None = None


def _next() -> int:
    global _ports
    with _lock:
        if _ports is None:
            ports = _slice()
            first = random.randrange(len(ports))
            _ports = itertools.cycle([*ports[first:], *ports[:first]])
        return next(_ports)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on or is connected from, and that no client will take."""
    return free_ports(1, host)


def free_ports(count: int, host: str = "127.0.0.1") -> int:
    """The first of ``count`` consecutive free ports on ``host`` (a service whose instance N listens on
    port + N); none of them is handed out again by this worker until it has gone through its slice."""
    if _ephemeral_start() <= LOWEST + 1000:  # a machine whose ephemeral range starts low: the kernel chooses
        return _kernel_chosen(count, host)
    for _ in range(len(_slice())):
        ports = [_next() for _ in range(count)]
        if ports != list(range(ports[0], ports[0] + count)):  # wrapped round the slice's end
            continue
        if all(_bindable(host, port) for port in ports):
            return ports[0]
    raise RuntimeError(f"no {count} free port(s) in a row on {host} in {_slice()}")


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def _kernel_chosen(count: int, host: str) -> int:
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if all(_bindable(host, port + n) for n in range(1, count)):
            return port
    raise RuntimeError(f"no {count} free port(s) in a row on {host}")
