"""A keeper directory of a test's own (slipway.targets.ssh_keeper), and stopping the keeper it started."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def keepers(runtime: Path) -> list[int]:
    """The keeper processes started with ``XDG_RUNTIME_DIR=runtime``."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if b"slipway.targets.ssh_keeper" in (proc / "cmdline").read_bytes() and (
                f"XDG_RUNTIME_DIR={runtime}".encode() in (proc / "environ").read_bytes().split(b"\0")
            ):
                found.append(int(proc.name))
        except (OSError, ValueError):
            continue
    return found


@contextlib.contextmanager
def own_runtime_dir() -> Iterator[Path]:
    """A short XDG_RUNTIME_DIR (it holds unix sockets) whose keeper is stopped and removed at the end."""
    runtime = Path(tempfile.mkdtemp(prefix="sk", dir="/tmp"))
    try:
        yield runtime
    finally:
        for pid in keepers(runtime):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 15)
        shutil.rmtree(runtime, ignore_errors=True)
