"""Which process holds a lock or drives a run, and whether it is provably gone.

A pid alone proves nothing: pids are reused. A holder is named by its pid, the machine it runs on and its
start time (field 22 of ``/proc/<pid>/stat``, clock ticks since boot). It is dead only when it ran on this
machine and no process with that pid and that start time exists. A holder on another machine is never
judged: only its own machine could tell (its lock expires instead).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

_HOLDER = re.compile(r"pid (?P<pid>\d+) on (?P<host>[^,)\s]+)(?:, started (?P<started>\d+))?")


@dataclass(frozen=True)
class ProcessId:
    """A process: its pid, the machine it runs on, and when it started (None: not known)."""

    pid: int
    host: str
    started: int | None = None

    def describe(self) -> str:
        """The words a holder text carries; :func:`parse_holder` reads them back."""
        started = f", started {self.started}" if self.started is not None else ""
        return f"pid {self.pid} on {self.host}{started}"


def machine() -> str:
    """This machine's name, as holders record it."""
    return os.uname().nodename


def start_time(pid: int, *, proc: Path = Path("/proc")) -> int | None:
    """The process's start time in clock ticks since boot; None when there is no such process."""
    try:
        text = (proc / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError, OSError):
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ')'.
    fields = text[text.rfind(")") + 2 :].split()
    try:
        return int(fields[19])  # field 22 of the whole line
    except (IndexError, ValueError):
        return None


def this_process() -> ProcessId:
    """The process we run in."""
    pid = os.getpid()
    return ProcessId(pid, machine(), start_time(pid))


def parse_holder(text: str) -> ProcessId | None:
    """The process a holder text names (``... pid N on HOST, started T ...``); None if it names none."""
    found = _HOLDER.search(text)
    if found is None:
        return None
    started = found.group("started")
    return ProcessId(int(found.group("pid")), found.group("host"), int(started) if started else None)


def is_dead(holder: ProcessId, *, proc: Path = Path("/proc")) -> bool:
    """True only when the holder ran on this machine and is provably gone (its pid gone, or reused)."""
    if holder.host != machine():
        return False
    now = start_time(holder.pid, proc=proc)
    if now is None:
        return not (proc / str(holder.pid)).exists()
    return holder.started is not None and now != holder.started
