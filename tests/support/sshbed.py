"""A fleet of real OpenSSH servers on this machine, for integration tests and benchmarks.

Each host is one ``sshd`` on its own loopback address (``127.X.Y.2``, ``127.X.Y.3``, ...), with its own
ed25519 host key, in its own mount namespace where its ``host_dir`` is bind-mounted onto ``/srv``::

    unshare -m --propagation private sh -c 'mount --bind HOSTDIR /srv && exec sshd -D -f /dev/null -o ...'

Everything a command over SSH starts inherits that namespace, so each host sees its own ``/srv``. Each
host also sees its own ``/etc/passwd``, in which root's login shell is ``/bin/sh``, so commands run as on a
plain server and not through this machine's ``~/.bashrc``. By
default ``host_dir`` is a tmpfs (1 GiB limit, memory is only used as files are written): the test can
shrink it to "disk full" with :meth:`SSHTestBed.fill_disk`, because a tmpfs size lives in the superblock
that the host's bind mount shares. Host-key checking is never turned off: the bed writes a
``known_hosts`` file listing every host key, and clients authenticate with a generated client key.

Fault injection: :meth:`pause`/:meth:`resume` (SIGSTOP/SIGCONT every process of the host), :meth:`kill`
(SIGKILL them: "the host crashed"), :meth:`restart`, :meth:`rotate_host_key`, :meth:`block`/
:meth:`unblock` (an iptables DROP rule for the host's address and port) and :meth:`fill_disk`/
:meth:`restore_disk`. :meth:`stop` undoes all of it, also after a failed :meth:`start`.

Parallel beds do not collide: each bed picks a random ``127.X.Y.0/24`` block and holds an flock per
address under ``/run/slipway-sshbed`` for as long as it runs.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import random
import shlex
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

from tests.support.sshsystem import (
    COMMAND_TIMEOUT,
    DEFAULT_DISK_SIZE,
    FILLER,
    IPTABLES,
    LOCK_DIR,
    PAGE,
    RULE_TAG,
    SSHD,
    SSHBedError,
    _accepts,
    _bindable,
    _is_mountpoint,
    _is_zombie,
    _namespace_of,
    _processes_by_namespace,
    _release,
    _run,
    _signal_all,
    ensure_installed,
    generate_key,
)


@dataclass(frozen=True)
class SSHHost:
    """One host of the bed: where to reach it and the files a client needs."""

    name: str
    address: str
    port: int
    #: Seen by the host as /srv.
    host_dir: Path
    known_hosts: Path
    client_key: Path
    host_key: Path
    #: sshd's own log (LogLevel VERBOSE).
    log: Path
    username: str = "root"

    @property
    def known_hosts_pattern(self) -> str:
        """How this host is written in a known_hosts file."""
        return self.address if self.port == 22 else f"[{self.address}]:{self.port}"


@dataclass
class _State:
    """What the bed tracks about one running host."""

    host: SSHHost
    disk_size: int | None
    console: Path
    proc: subprocess.Popen[bytes] | None = None
    #: The host's mount namespace (inode), pinned by ``namespace_fd``: an unpinned namespace that dies
    #: frees its inode number for the next one, and we would signal another bed's processes.
    namespace: int | None = None
    namespace_fd: int | None = None
    blocked: bool = False
    filled: bool = False

    def pin_namespace(self, pid: int) -> int | None:
        """Hold the namespace of ``pid`` open and return its inode."""
        self.release_namespace()
        try:
            self.namespace_fd = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        self.namespace = os.fstat(self.namespace_fd).st_ino
        return self.namespace

    def release_namespace(self) -> None:
        """Forget the namespace (after its processes are gone)."""
        if self.namespace_fd is not None:
            os.close(self.namespace_fd)
        self.namespace_fd = None
        self.namespace = None


class SSHTestBed:
    """``count`` real OpenSSH hosts on loopback addresses, each seeing its own ``host_dir`` as /srv."""

    def __init__(
        self,
        base_dir: str | Path,
        count: int,
        *,
        base_address: str | None = None,
        port: int | None = None,
        disk_size: int | None = DEFAULT_DISK_SIZE,
        disk_sizes: Mapping[str, int | None] | None = None,
        name_prefix: str = "host",
        start_timeout: float = 30.0,
        sshd_options: Mapping[str, str] | None = None,
        check_installed: bool = True,
        heavy_shell: int | None = None,
    ) -> None:
        if count < 1:
            raise ValueError("a test bed needs at least one host")
        self.base_dir = Path(base_dir).absolute()
        self.count = count
        self.start_timeout = start_timeout
        self._base_address = base_address
        self._port = port
        self._disk_size = disk_size
        self._disk_sizes = dict(disk_sizes or {})
        self._prefix = name_prefix
        self._sshd_options = dict(sshd_options or {})
        self._check_installed = check_installed
        self._heavy_shell = heavy_shell
        #: With ``heavy_shell``: root's home, whose ``logins`` file has one line per login shell (its host's
        #: address), written by the ``.bashrc`` that every command over SSH runs first.
        self.home = self.base_dir / "home"
        self._states: dict[str, _State] = {}
        self._locks: list[IO[bytes]] = []
        self.known_hosts = self.base_dir / "known_hosts"
        self.client_key = self.base_dir / "client" / "id_ed25519"
        self.authorized_keys = self.base_dir / "client" / "authorized_keys"

    # ----------------------------------------------------------------- lifecycle

    @property
    def hosts(self) -> list[SSHHost]:
        """The hosts, in order (empty until :meth:`start`)."""
        return [state.host for state in self._states.values()]

    def host(self, which: SSHHost | str | int) -> SSHHost:
        """A host by name, by index, or the host itself."""
        return self._state(which).host

    def start(self) -> SSHTestBed:
        """Generate keys, start every sshd concurrently and wait until each accepts TCP connections."""
        if self._states:
            raise SSHBedError("test bed already started")
        try:
            if self._check_installed:
                ensure_installed()
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
            Path("/srv").mkdir(exist_ok=True)
            addresses, port = self._reserve_addresses()
            self._prepare(addresses, port)
            for state in self._states.values():
                self._launch(state)
            self._wait_ready(list(self._states.values()))
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Kill every process of every host, drop the iptables rules, unmount the disks; never halfway."""
        errors: list[str] = []
        by_ns = _processes_by_namespace() if self._states else {}
        for state in self._states.values():
            for step in (self._unblock_state, lambda s: self._kill_state(s, by_ns), self._unmount):
                try:
                    step(state)
                except Exception as exc:  # keep going: stop must clean up every host
                    errors.append(f"{state.host.name}: {exc}")
        self._states.clear()
        _release(self._locks)
        self._locks.clear()
        if errors:
            raise SSHBedError("test bed did not stop cleanly:\n" + "\n".join(errors))

    def __enter__(self) -> SSHTestBed:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ----------------------------------------------------------------- fault injection

    def pids(self, which: SSHHost | str | int) -> list[int]:
        """Every process of the host: its sshd, the sessions, and whatever commands they started."""
        state = self._state(which)
        if state.namespace is None:
            return []
        return sorted(_processes_by_namespace().get(state.namespace, []))

    def pause(self, which: SSHHost | str | int) -> None:
        """SIGSTOP every process of the host: it keeps its sockets but answers nothing."""
        state = self._state(which)
        if state.namespace is not None:
            self._stop_namespace(state.namespace, seen=set())

    @staticmethod
    def _stop_namespace(namespace: int, *, seen: set[int]) -> set[int]:
        """SIGSTOP every process in the namespace; return them all."""
        stopped = set(seen)
        for _ in range(5):  # a session may fork while we stop its siblings
            pids = set(_processes_by_namespace().get(namespace, [])) - stopped
            if not pids:
                break
            _signal_all(pids, signal.SIGSTOP)
            stopped |= pids
        return stopped

    def resume(self, which: SSHHost | str | int) -> None:
        """SIGCONT every process of the host."""
        _signal_all(self.pids(which), signal.SIGCONT)

    def kill(self, which: SSHHost | str | int) -> None:
        """SIGKILL every process of the host, as if it crashed; its address then refuses connections."""
        self._kill_state(self._state(which), _processes_by_namespace())

    def restart(self, which: SSHHost | str | int) -> None:
        """Kill the host (if running) and start its sshd again; its /srv contents survive."""
        state = self._state(which)
        self._kill_state(state, _processes_by_namespace())
        self._launch(state)
        self._wait_ready([state])

    def rotate_host_key(self, which: SSHHost | str | int) -> None:
        """Give the host a new host key and restart it; known_hosts keeps the old one (a changed key)."""
        state = self._state(which)
        generate_key(state.host.host_key, comment=state.host.name)
        self.restart(state.host)

    def block(self, which: SSHHost | str | int) -> None:
        """Drop every packet sent to the host's address and port (iptables), so connections hang."""
        state = self._state(which)
        if not state.blocked:
            _run(IPTABLES, "-w", "10", "-I", "INPUT", *self._rule(state.host))
            state.blocked = True

    def unblock(self, which: SSHHost | str | int) -> None:
        """Remove the DROP rule added by :meth:`block`."""
        self._unblock_state(self._state(which))

    def fill_disk(self, which: SSHHost | str | int, *, free: int = 0) -> None:
        """Shrink the host's /srv to what it holds now plus ``free`` bytes, so larger writes fail ENOSPC."""
        state = self._state(which)
        host_dir = state.host.host_dir
        if state.disk_size is None:
            raise SSHBedError(f"{state.host.name} has no tmpfs disk: start the bed with disk_size set")
        stat = os.statvfs(host_dir)
        used = (stat.f_blocks - stat.f_bfree) * stat.f_frsize
        size = max(PAGE, -(-(used + free) // PAGE) * PAGE)  # size=0 would mean "unlimited"
        _run("mount", "-o", f"remount,size={size}", str(host_dir))
        state.filled = True
        if free == 0:
            self._write_filler(host_dir / FILLER)

    def restore_disk(self, which: SSHHost | str | int) -> None:
        """Undo :meth:`fill_disk`: remove the filler and give the disk its start size back."""
        state = self._state(which)
        if state.filled and state.disk_size is not None:
            with contextlib.suppress(FileNotFoundError):
                (state.host.host_dir / FILLER).unlink()
            _run("mount", "-o", f"remount,size={state.disk_size}", str(state.host.host_dir))
            state.filled = False

    # ----------------------------------------------------------------- observation

    def accepted_logins(self, which: SSHHost | str | int) -> int:
        """How many SSH connections the host has authenticated so far (from sshd's log)."""
        log = self._state(which).host.log
        try:
            text = log.read_text(errors="replace")
        except FileNotFoundError:
            return 0
        return sum(1 for line in text.splitlines() if line.startswith("Accepted publickey for "))

    def established_connections(self, which: SSHHost | str | int) -> int:
        """How many TCP connections to the host's sshd are established right now."""
        host = self._state(which).host
        result = _run("ss", "-Htn", "state", "established", "src", f"{host.address}:{host.port}")
        return sum(1 for line in result.stdout.splitlines() if line.strip())

    # ----------------------------------------------------------------- internals

    def _state(self, which: SSHHost | str | int) -> _State:
        if isinstance(which, SSHHost):
            which = which.name
        if isinstance(which, int):
            return list(self._states.values())[which]
        try:
            return self._states[which]
        except KeyError:
            running = ", ".join(self._states)
            raise SSHBedError(f"no host {which!r} in this test bed (running: {running})") from None

    def _reserve_addresses(self) -> tuple[list[str], int]:
        """Pick addresses nobody else uses (flock per address) and a port every one of them can bind."""
        LOCK_DIR.mkdir(parents=True, exist_ok=True)
        if self._base_address is not None:
            candidates = [ipaddress.IPv4Address(self._base_address)]
        else:
            rng = random.Random()
            candidates = [
                ipaddress.IPv4Address(f"127.{rng.randint(16, 254)}.{rng.randint(0, 255)}.2")
                for _ in range(32)
            ]
        problems: list[str] = []
        for base in candidates:
            addresses = [str(base + i) for i in range(self.count)]
            if not all(ipaddress.IPv4Address(a) in ipaddress.IPv4Network("127.0.0.0/8") for a in addresses):
                raise SSHBedError(f"addresses from {base} for {self.count} hosts leave 127.0.0.0/8")
            locks = self._lock_all(addresses)
            if locks is None:
                problems.append(f"{base}: in use by another test bed")
                continue
            port = self._pick_port(addresses)
            if port is not None:
                self._locks.extend(locks)
                return addresses, port
            _release(locks)
            problems.append(f"{base}: no port free on every address")
        raise SSHBedError("cannot reserve loopback addresses: " + "; ".join(problems[-5:]))

    @staticmethod
    def _lock_all(addresses: list[str]) -> list[IO[bytes]] | None:
        """flock one file per address; None (holding nothing) when another bed has any of them."""
        held: list[IO[bytes]] = []
        for address in addresses:
            path = LOCK_DIR / f"{address}.lock"
            fh = open(path, "ab")  # noqa: SIM115 - held open for the bed's life
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                # The holder unlinks the file when it stops: a lock on an unlinked file guards nothing.
                current = os.stat(path).st_ino
            except (BlockingIOError, FileNotFoundError):
                current = -1
            if current != os.fstat(fh.fileno()).st_ino:
                fh.close()
                _release(held)
                return None
            held.append(fh)
        return held

    def _pick_port(self, addresses: list[str]) -> int | None:
        wanted = [self._port] if self._port is not None else [22, *random.sample(range(20000, 30000), 8)]
        for port in wanted:
            if all(_bindable(a, port) for a in addresses):
                return port
        return None

    def _prepare(self, addresses: list[str], port: int) -> None:
        """Keys, authorized_keys, known_hosts, the host directories (tmpfs when sized)."""
        self.base_dir.mkdir(parents=True, exist_ok=True)
        client_line = generate_key(self.client_key, comment="slipway-sshbed-client")
        self.authorized_keys.write_text(client_line + "\n")
        known: list[str] = []
        for i, address in enumerate(addresses):
            name = f"{self._prefix}{i + 1}"
            root = self.base_dir / "hosts" / name
            host = SSHHost(
                name=name, address=address, port=port, host_dir=root / "srv", known_hosts=self.known_hosts,
                client_key=self.client_key, host_key=root / "ssh_host_ed25519_key", log=root / "sshd.log",
            )
            disk = self._disk_sizes.get(name, self._disk_size)
            state = _State(host=host, disk_size=disk, console=root / "console.log")
            self._states[name] = state
            host.host_dir.mkdir(parents=True, exist_ok=True)
            if disk is not None:
                options = f"size={disk},mode=0755"
                _run("mount", "-t", "tmpfs", "-o", options, "slipway-sshbed", str(host.host_dir))
            public = generate_key(host.host_key, comment=name)
            known.append(f"{host.known_hosts_pattern} {' '.join(public.split()[:2])}")
        self.known_hosts.write_text("\n".join(known) + "\n")

    def _sshd_command(self, host: SSHHost) -> list[str]:
        options = {
            "HostKey": str(host.host_key),
            "ListenAddress": f"{host.address}:{host.port}",
            "AuthorizedKeysFile": str(self.authorized_keys),
            "PidFile": str(host.log.with_name("sshd.pid")),
            "StrictModes": "no",
            "LogLevel": "VERBOSE",
            "PasswordAuthentication": "no",
            "KbdInteractiveAuthentication": "no",
            "PermitRootLogin": "prohibit-password",
            "PrintMotd": "no",
            "PrintLastLog": "no",
            "UseDNS": "no",
            **self._sshd_options,
        }
        sshd = [str(SSHD), "-D", "-f", "/dev/null", "-E", str(host.log)]
        for key, value in options.items():
            sshd += ["-o", f"{key}={value}"]
        # The host gets its own /etc/passwd in which root's login shell is /bin/sh: a command over SSH
        # then runs as on a plain server, without this machine's ~/.bashrc (here it runs pyenv, whose
        # rehash lock, left behind by a killed session, made every later login hang).
        script = (
            f"mount --bind {shlex.quote(str(host.host_dir))} /srv && "
            f"mount --bind {shlex.quote(str(self._passwd()))} /etc/passwd && exec {shlex.join(sshd)}"
        )
        return ["unshare", "-m", "--propagation", "private", "sh", "-c", script]

    def _passwd(self) -> Path:
        """A copy of /etc/passwd whose root account logs in with /bin/sh (written once per bed).

        With ``heavy_shell`` (a loop count), root logs in with bash instead and its home is the bed's
        :attr:`home`, whose ``.bashrc`` (Debian's bash sources it for every command sshd starts) records
        the login and then burns CPU for ``heavy_shell`` loop turns, as ``eval "$(pyenv init -)"`` and its
        kin do on real servers (about 0.1 s per 25,000 turns on this machine's kind).
        """
        path = self.base_dir / "passwd"
        if not path.exists():
            if self._heavy_shell is not None:
                self._write_bashrc(self._heavy_shell)
            lines = []
            for line in Path("/etc/passwd").read_text().splitlines():
                fields = line.split(":")
                if len(fields) == 7 and fields[0] == "root":
                    if self._heavy_shell is None:
                        fields[6] = "/bin/sh"
                    else:
                        fields[5], fields[6] = str(self.home), "/bin/bash"
                lines.append(":".join(fields))
            path.write_text("\n".join(lines) + "\n")
            path.chmod(0o644)
        return path

    def _write_bashrc(self, loops: int) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "logins").touch()
        (self.home / ".bashrc").write_text(
            "# written by the SSH test bed: a login shell that costs what real ones do\n"
            'set -- $SSH_CONNECTION\n'
            'printf \'%s\\n\' "$3" >> "$HOME/logins"\n'
            f'i=0; while [ "$i" -lt {int(loops)} ]; do i=$((i + 1)); done\n'
        )

    def logins(self) -> dict[str, int]:
        """How many login shells each host (by name) has run, with ``heavy_shell``."""
        by_address = {state.host.address: name for name, state in self._states.items()}
        counts = {name: 0 for name in self._states}
        for line in (self.home / "logins").read_text().splitlines():
            if line in by_address:
                counts[by_address[line]] += 1
        return counts

    def _launch(self, state: _State) -> None:
        with open(state.console, "ab") as console:
            state.proc = subprocess.Popen(
                self._sshd_command(state.host), stdin=subprocess.DEVNULL, stdout=console, stderr=console,
                start_new_session=True,
            )
        state.release_namespace()

    def _wait_ready(self, states: list[_State]) -> None:
        """Poll until every sshd accepts TCP connections; fail fast when one exits."""
        deadline = time.monotonic() + self.start_timeout
        own_ns = _namespace_of(os.getpid())
        pending = list(states)
        while pending:
            for state in list(pending):
                assert state.proc is not None
                if state.proc.poll() is not None:
                    raise SSHBedError(f"{state.host.name}: sshd exited with {state.proc.returncode}: "
                                      f"{self._evidence(state)}")
                if _accepts(state.host.address, state.host.port):
                    namespace = state.pin_namespace(state.proc.pid)
                    if namespace is None or namespace == own_ns:
                        raise SSHBedError(f"{state.host.name}: sshd is not in its own mount namespace")
                    pending.remove(state)
            if pending and time.monotonic() > deadline:
                names = ", ".join(s.host.name for s in pending)
                raise SSHBedError(f"not accepting connections after {self.start_timeout:g}s: {names}; "
                                  f"{self._evidence(pending[0])}")
            if pending:
                time.sleep(0.02)

    @staticmethod
    def _evidence(state: _State) -> str:
        texts = []
        for path in (state.console, state.host.log):
            with contextlib.suppress(OSError):
                texts.append(path.read_text(errors="replace").strip())
        tail = "\n".join("\n".join(texts).splitlines()[-10:])
        return tail or "(no output)"

    def _kill_state(self, state: _State, by_ns: Mapping[int, list[int]]) -> None:
        """Stop every process first, then kill them: a crash, so none of them can report another's death."""
        pids = set(by_ns.get(state.namespace, [])) if state.namespace is not None else set()
        if state.proc is not None and state.proc.poll() is None:
            pids.add(state.proc.pid)
        _signal_all(pids, signal.SIGSTOP)
        if state.namespace is not None:
            pids |= self._stop_namespace(state.namespace, seen=pids)
        _signal_all(pids, signal.SIGKILL)
        try:
            if state.proc is not None:
                try:
                    state.proc.wait(timeout=10)
                except subprocess.TimeoutExpired as exc:
                    raise SSHBedError(f"sshd (pid {state.proc.pid}) survived SIGKILL for 10s") from exc
            self._wait_gone(pids)
        finally:
            state.release_namespace()

    @staticmethod
    def _wait_gone(pids: set[int]) -> None:
        """Session processes are not our children: wait (bounded) until the kernel has reaped them."""
        deadline = time.monotonic() + 10
        while pids and time.monotonic() < deadline:
            pids = {pid for pid in pids if Path(f"/proc/{pid}").exists() and not _is_zombie(pid)}
            if pids:
                time.sleep(0.01)

    def _unblock_state(self, state: _State) -> None:
        if state.blocked:
            _run(IPTABLES, "-w", "10", "-D", "INPUT", *self._rule(state.host))
            state.blocked = False

    @staticmethod
    def _rule(host: SSHHost) -> list[str]:
        return [
            "-d", f"{host.address}/32", "-p", "tcp", "--dport", str(host.port),
            "-m", "comment", "--comment", f"{RULE_TAG} pid={os.getpid()}", "-j", "DROP",
        ]

    def _unmount(self, state: _State) -> None:
        host_dir = state.host.host_dir
        if state.disk_size is None or not _is_mountpoint(host_dir):
            return
        for _ in range(20):
            if subprocess.run(["umount", str(host_dir)], capture_output=True, timeout=COMMAND_TIMEOUT,
                              check=False).returncode == 0:
                return
            time.sleep(0.05)
        _run("umount", "-l", str(host_dir))  # still busy (a cwd inside it): detach it anyway

    @staticmethod
    def _write_filler(path: Path) -> None:
        """Take the last free pages of a tmpfs (bounded: the disk is at most a few pages from full)."""
        chunk = b"\0" * PAGE
        with contextlib.suppress(OSError), open(path, "ab", buffering=0) as fh:
            for _ in range(1024):
                fh.write(chunk)
