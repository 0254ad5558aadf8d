"""What the SSH test bed needs from this machine: packages (checked), keys, namespaces, firewall rules.

Split from :mod:`tests.support.sshbed`, which drives the hosts; these are the system-level helpers.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.support.testbed import missing_testbed

SSHD = Path("/usr/sbin/sshd")
IPTABLES = "iptables"
LOCK_DIR = Path("/run/slipway-sshbed")
#: Every iptables rule the bed adds carries this comment, followed by the owning process id.
RULE_TAG = "slipway-sshbed"
DEFAULT_DISK_SIZE = 1 << 30
PAGE = 4096
FILLER = ".sshbed-filler"
#: Bounds for the small external commands the bed runs (mount, iptables).
COMMAND_TIMEOUT = 30.0

_install_lock = threading.Lock()
_installed = False


class SSHBedError(RuntimeError):
    """The test bed could not be set up or driven (the message carries the evidence)."""


def generate_key(path: Path, *, comment: str = "") -> str:
    """Write a new ed25519 private key (OpenSSH format, mode 0600) and ``path.pub``; return the public key."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    line = public.decode() + (f" {comment}" if comment else "")
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(private)
    path.with_name(path.name + ".pub").write_text(line + "\n")
    return line


def ensure_installed() -> None:
    """Check that openssh-server and iptables are installed (``make testbed``) and create /run/sshd."""
    global _installed
    with _install_lock:
        if _installed:
            return
        needed = (("openssh-server", str(SSHD)), ("iptables", IPTABLES))
        for package, exe in needed:
            if not _which(exe):
                raise missing_testbed(exe, package)
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        _installed = True


def _which(exe: str) -> bool:
    return Path(exe).exists() if exe.startswith("/") else shutil.which(exe) is not None


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    """Run a small system command, bounded in time; raise with its output when it fails."""
    try:
        result = subprocess.run(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=COMMAND_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise SSHBedError(f"{shlex.join(cmd)} did not finish within {COMMAND_TIMEOUT:g}s") from exc
    if result.returncode != 0:
        raise SSHBedError(f"{shlex.join(cmd)} failed (exit {result.returncode}): {result.stdout.strip()}")
    return result


def _namespace_of(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/mnt").st_ino
    except OSError:
        return None


def _processes_by_namespace() -> dict[int, list[int]]:
    """Map each mount namespace (inode) to the pids living in it."""
    found: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            ns = _namespace_of(int(entry.name))
            if ns is not None:
                found.setdefault(ns, []).append(int(entry.name))
    return found


def _signal_all(pids: Iterable[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _accepts(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=0.5):
            return True
    except OSError:
        return False


def _bindable(address: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError:
            return False
    return True


def _is_mountpoint(path: Path) -> bool:
    return os.path.ismount(path)


def _release(locks: list[IO[bytes]]) -> None:
    """Unlink the lock files, then unlock them (in that order, see ``_lock_all``)."""
    for fh in locks:
        with contextlib.suppress(OSError):
            os.unlink(fh.name)
        fh.close()


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


def remove_stale_rules() -> int:
    """Delete iptables rules left by test beds whose process died without stopping; return how many."""
    if not _which(IPTABLES):
        return 0
    listing = _run(IPTABLES, "-w", "10", "-S", "INPUT").stdout.splitlines()
    removed = 0
    for line in listing:
        if RULE_TAG not in line or not line.startswith("-A INPUT "):
            continue
        owner = line.split("pid=", 1)[-1].split('"', 1)[0]
        if owner.isdigit() and Path(f"/proc/{owner}").exists():
            continue
        _run(IPTABLES, "-w", "10", "-D", "INPUT", *shlex.split(line)[2:])
        removed += 1
    return removed
