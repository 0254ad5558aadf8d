"""Helpers shared by the SSH tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from tests.support.sshbed import SSHTestBed

T = TypeVar("T")


def arun(coro: Coroutine[Any, Any, T], *, limit: float = 60) -> T:
    """Run one async test body in a fresh event loop, bounded in time."""

    async def bounded() -> T:
        async with asyncio.timeout(limit):
            return await coro

    return asyncio.run(bounded())


def host_commands(bed: SSHTestBed, host: str) -> list[str]:
    """The command lines of every process living on a test bed host."""
    lines = []
    for pid in bed.pids(host):
        with contextlib.suppress(OSError):
            lines.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip())
    return lines
