"""One attempt of each check kind: do the I/O once, compare, and say what was expected and what was seen.

A probe never raises for a failed check: it returns an :class:`Observation` whose evidence a person can
act on. Retries, timeouts and concurrency belong to :mod:`slipway.checks.runner`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import math
import os
import re
import signal
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from slipway.model.checks import CommandCheck, DnsCheck, HttpCheck, SqlCheck, TcpCheck, render_scalar
from slipway.model.jsonpath import MISSING, extract_json_path, json_equal
from slipway.ports import Clock

#: Runs a shell command somewhere: ``(command, timeout) -> (exit code, stdout and stderr)``; raises
#: TimeoutError when the command outlives ``timeout``. The engine passes one that runs on a Target.
CommandExecutor = Callable[[str, float], Awaitable[tuple[int, str]]]

#: How much of a response body is read: enough for any health document, bounded for a runaway one.
BODY_LIMIT = 1024 * 1024
#: How much of a body or output goes into evidence.
SNIPPET_CHARS = 200
OUTPUT_LIMIT = 1024 * 1024


@dataclass(frozen=True)
class Observation:
    """What one attempt saw."""

    ok: bool
    evidence: str


def safe_url(url: str) -> str:
    """``url`` without user, password, query or fragment, for evidence and logs."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def describe_exception(exc: BaseException) -> str:
    """``TypeName: message`` (the first line only: driver messages run on)."""
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _snippet(data: str) -> str:
    return repr(data[:SNIPPET_CHARS] + ("..." if len(data) > SNIPPET_CHARS else ""))


# --- http --------------------------------------------------------------------------------------------


async def probe_http(spec: HttpCheck, client: httpx.AsyncClient, clock: Clock) -> Observation:
    """Send the request once and compare status, body, JSON value and latency."""
    where = f"{spec.method} {safe_url(spec.url)}"
    started = clock.monotonic()
    try:
        async with client.stream(
            spec.method, spec.url, headers=spec.headers, timeout=spec.timeout
        ) as response:
            body = await _read_capped(response)
    except httpx.HTTPError as exc:
        return Observation(False, f"{where}: {describe_exception(exc)}")
    latency_ms = (clock.monotonic() - started) * 1000
    body_text = body.decode("utf-8", "replace")
    problems = _http_problems(spec, response.status_code, body_text, latency_ms)
    seen = f"HTTP {response.status_code} in {latency_ms:.0f} ms"
    if not problems:
        return Observation(True, f"{where}: {seen}")
    return Observation(False, f"{where}: {'; '.join(problems)}; seen {seen}, body {_snippet(body_text)}")


async def _read_capped(response: httpx.Response) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= BODY_LIMIT:
            break
    return b"".join(chunks)[:BODY_LIMIT]


def _http_problems(spec: HttpCheck, status: int, body: str, latency_ms: float) -> list[str]:
    problems: list[str] = []
    if status not in spec.expected_statuses:
        expected = " or ".join(str(s) for s in sorted(spec.expected_statuses))
        problems.append(f"expected status {expected}, got {status}")
    if spec.body_contains is not None and spec.body_contains not in body:
        problems.append(f"expected body to contain {spec.body_contains!r}")
    if spec.json_path is not None:
        problems.extend(_json_problems(spec, body))
    if spec.max_latency_ms is not None and latency_ms > spec.max_latency_ms:
        problems.append(f"expected latency <= {spec.max_latency_ms:g} ms, took {latency_ms:.0f} ms")
    return problems


def _json_problems(spec: HttpCheck, body: str) -> list[str]:
    try:
        document: Any = json.loads(body)
    except ValueError as exc:
        return [f"expected a JSON body for {spec.json_path}, could not parse it ({exc})"]
    value = extract_json_path(document, spec.json_segments)
    if value is MISSING:
        return [f"expected {spec.json_path} in the JSON body, it is not there"]
    if spec.json_equals is not None and not json_equal(value, spec.json_equals):
        return [f"expected {spec.json_path} == {json.dumps(spec.json_equals)}, got {json.dumps(value)}"]
    return []


# --- tcp ---------------------------------------------------------------------------------------------


async def probe_tcp(spec: TcpCheck, clock: Clock) -> Observation:
    """Open a connection and close it again."""
    where = f"{spec.host}:{spec.port}"
    started = clock.monotonic()
    try:
        _reader, writer = await asyncio.open_connection(spec.host, spec.port)
    except OSError as exc:
        return Observation(False, f"expected {where} to accept a connection: {describe_exception(exc)}")
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return Observation(True, f"connected to {where} in {(clock.monotonic() - started) * 1000:.0f} ms")


# --- command -----------------------------------------------------------------------------------------


async def run_local_command(command: str, timeout: float) -> tuple[int, str]:
    """The default executor: ``sh -c command`` here, its process group killed on timeout or cancel."""
    process = await asyncio.create_subprocess_exec(
        "sh",
        "-c",
        command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,  # its own process group, so that children die with it
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
        raise
    return (process.returncode if process.returncode is not None else -1), output[:OUTPUT_LIMIT].decode(
        "utf-8", "replace"
    )


async def probe_command(spec: CommandCheck, executor: CommandExecutor) -> Observation:
    """Run the command once and compare its exit code and output."""
    try:
        exit_code, output = await executor(spec.run, spec.timeout)
    except TimeoutError:
        return Observation(False, f"expected {spec.run!r} to finish within {spec.timeout:g} s; it did not")
    except OSError as exc:
        return Observation(False, f"could not start {spec.run!r}: {describe_exception(exc)}")
    problems: list[str] = []
    if exit_code != spec.expect_exit:
        problems.append(f"expected exit code {spec.expect_exit}, got {exit_code}")
    if spec.output_matches is not None and re.search(spec.output_matches, output) is None:
        problems.append(f"expected output to match {spec.output_matches!r}")
    tail = "\n".join(output.strip().splitlines()[-10:])
    if problems:
        return Observation(False, f"{'; '.join(problems)}; output tail: {_snippet(tail[-SNIPPET_CHARS:])}")
    return Observation(True, f"exit code {exit_code}")


# --- sql ---------------------------------------------------------------------------------------------


async def probe_sql(spec: SqlCheck) -> Observation:
    """Run the query in a worker thread (the drivers block) and compare the first value as text."""
    where = _safe_db_url(spec.url)
    try:
        row_found, value = await asyncio.to_thread(_first_value, spec.url, spec.query, spec.timeout)
    except SQLAlchemyError as exc:
        return Observation(False, f"{where}: {describe_exception(exc)}")
    expected = spec.expected_text
    if expected is None:
        seen = render_scalar(value) if row_found else "no rows"
        return Observation(True, f"{where}: query succeeded ({seen})")
    if not row_found:
        return Observation(False, f"{where}: expected first value {expected!r}, the query returned no rows")
    actual = render_scalar(value)
    if actual != expected:
        return Observation(False, f"{where}: expected first value {expected!r}, got {actual!r}")
    return Observation(True, f"{where}: first value {actual!r}")


def _first_value(url: str, query: str, timeout: float) -> tuple[bool, object]:
    engine = _engine(url, timeout)
    try:
        # connect() opens a transaction that is rolled back on close: a check cannot write by accident.
        with engine.connect() as connection:
            row = connection.execute(text(query)).first()
            return (row is not None, row[0] if row is not None and len(row) else None)
    finally:
        engine.dispose()


def _engine(url: str, timeout: float) -> Engine:
    parsed: URL = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")  # psycopg 3 is the driver Slipway ships
    connect_args: dict[str, Any] = {}
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        # Bound the work on the server side too: the worker thread cannot be cancelled from here.
        connect_args = {
            "connect_timeout": max(1, math.ceil(timeout)),
            "options": f"-c statement_timeout={max(1, int(timeout * 1000))}",
        }
    elif backend == "sqlite":
        connect_args = {"timeout": timeout}
    return create_engine(parsed, poolclass=NullPool, connect_args=connect_args)


def _safe_db_url(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable database URL>"


# --- dns ---------------------------------------------------------------------------------------------


async def probe_dns(spec: DnsCheck) -> Observation:
    """Resolve the name with the system resolver and look for the expected address."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(spec.host, None, type=socket.SOCK_STREAM)
    except OSError as exc:
        return Observation(False, f"expected {spec.host} to resolve: {describe_exception(exc)}")
    addresses = sorted({_normalise(str(info[4][0])) for info in infos})
    seen = ", ".join(addresses) or "no addresses"
    if spec.expect_address is not None and spec.expect_address not in addresses:
        return Observation(False, f"expected {spec.host} to resolve to {spec.expect_address}, got {seen}")
    return Observation(True, f"{spec.host} resolves to {seen}")


def _normalise(address: str) -> str:
    try:
        return str(ipaddress.ip_address(address.split("%", 1)[0]))
    except ValueError:
        return address
