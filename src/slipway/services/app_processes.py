"""``slipway app status|logs|start ENV``: the app's services on an environment's hosts.

Both ask each host (local or SSH target, in parallel, ``parallel`` at a time) what the supervisord of its
deploy root knows (docs/services-on-hosts.md): ``supervisorctl status`` and the release each process runs
(its working directory, a ``releases/<id>`` it was started in), or the services' log files under
``shared/log``, followed with ``tail -F`` until the command is stopped. Neither changes anything on a host,
nor records anything. ``app start`` runs each host's ``supervisor/boot.sh`` (its supervisord, then every
service of the current release: what a reboot stopped), records that in the audit log, then reports as
``status`` does. Containers have their engine's own ``logs`` and ``ps``: they are refused here.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from shlex import quote
from typing import TypeVar

from slipway.errors import ConfigError, SecretError, TargetError
from slipway.ports import Target
from slipway.services import supervisor
from slipway.services.app import App, make_target
from slipway.services.fleet import chosen_targets
from slipway.services.secrets import resolve_secrets

T = TypeVar("T")
#: Receives one log line: (host, the log it comes from such as ``web-0``, the line).
LineSink = Callable[[str, str, str], None]
_STATUS_LINE = re.compile(r"^(?P<name>\S+)\s+(?P<state>[A-Z]+)\s*(?P<detail>.*)$")
_RUNNING = re.compile(r"pid (?P<pid>\d+), uptime (?P<uptime>[\w:, ]+)")
_TAIL_HEADER = re.compile(r"^==> (?P<file>.+) <==$")
#: What supervisorctl says when its daemon does not answer on the socket.
_NO_DAEMON = ("no such file", "refused connection", "SHUTDOWN_STATE")


@dataclass(frozen=True)
class ProcessStatus:
    """One process of a service on one host, as its supervisord reports it."""

    service: str
    process: str
    state: str
    pid: int | None
    uptime: str | None
    #: The release the process was started in (from its working directory), when it runs.
    release: str | None
    #: supervisord's description when it does not run (``Exited too quickly``, a stop time).
    detail: str


@dataclass(frozen=True)
class HostStatus:
    """The services of one host: the release ``current`` points at, each process, or why there are none."""

    host: str
    current: str | None
    processes: tuple[ProcessStatus, ...] = ()
    #: Why no process is listed: nothing deployed, supervisord not running, the host unreachable.
    note: str | None = None

    @property
    def ok(self) -> bool:
        """True when every service process runs the current release."""
        return self.note is None and all(p.state == "RUNNING" and p.release == self.current for p in self.processes)


def parse_status(text: str) -> list[tuple[str, str, str, int | None, str | None, str]]:
    """``supervisorctl status`` lines as (service, process, state, pid, uptime, detail)."""
    rows = []
    for line in text.splitlines():
        match = _STATUS_LINE.match(line.strip())
        if not match:
            continue
        group, _, process = match["name"].partition(":")
        running = _RUNNING.search(match["detail"])
        pid, uptime = (int(running["pid"]), running["uptime"].strip()) if running else (None, None)
        rows.append((group, process or group, match["state"], pid, uptime, "" if running else match["detail"].strip()))
    return rows


def release_of(path: str) -> str | None:
    """The release id in a path ``.../releases/<id>`` (a process's working directory, ``current``'s target)."""
    parts = path.strip().rstrip("/").split("/")
    return parts[-1] if len(parts) >= 2 and parts[-2] == "releases" and parts[-1] else None


def _status_script(root: str) -> str:
    layout = supervisor.Layout(root)
    return "\n".join([
        f"[ -f {quote(layout.conf)} ] || {{ echo '@@none'; exit 0; }}",
        f"echo \"@@current $(readlink {quote(root + '/current')} 2>/dev/null)\"",
        f"out=$({layout.ctl('status')} 2>&1)",
        "printf '%s\\n' \"$out\"",
        "echo '@@cwd'",
        "for pid in $(printf '%s\\n' \"$out\" | sed -n 's/.* pid \\([0-9][0-9]*\\),.*/\\1/p'); do",
        '  echo "$pid $(readlink /proc/$pid/cwd 2>/dev/null)"',
        "done",
    ])


def parse_host_status(host: str, output: str) -> HostStatus:
    """One host's status from what :func:`_status_script` printed."""
    if output.startswith("@@none"):
        return HostStatus(host, None, note="no services were deployed here")
    head, _, cwds = output.partition("@@cwd\n")
    first, _, status = head.partition("\n")
    current = release_of(first.removeprefix("@@current"))
    if any(marker in status for marker in _NO_DAEMON):
        return HostStatus(host, current, note="supervisord is not running (after a reboot: slipway app start ENV)")
    releases = {int(pid): release_of(cwd) for pid, _, cwd in (line.partition(" ") for line in cwds.splitlines())
                if pid.isdigit()}
    processes = tuple(
        ProcessStatus(service, process, state, pid, uptime, releases.get(pid) if pid else None, detail)
        for service, process, state, pid, uptime, detail in parse_status(status)
    )
    return HostStatus(host, current, processes, None if processes else "supervisord runs no service")


def _targets(app: App, environment: str, command: str) -> tuple[list[Target], asyncio.Semaphore]:
    """The environment's host targets (containers refused), and the gate of ``parallel`` hosts at a time."""
    specs = chosen_targets(app, environment, (), command=command)
    env = app.config.project.environments[environment]
    gate = asyncio.Semaphore(env.max_connecting)
    targets = [make_target(s, root=app.root, environ=app.environ, connect_gate=gate) for s in specs]
    return targets, asyncio.Semaphore(env.parallel)


async def _on_each(targets: Sequence[Target], slots: asyncio.Semaphore, work: Callable[[Target], Awaitable[T]]) -> list[T]:
    async def one(target: Target) -> T:
        async with slots:
            try:
                return await work(target)
            finally:
                await target.close()

    return list(await asyncio.gather(*(one(t) for t in targets)))


async def app_status(app: App, environment: str) -> list[HostStatus]:
    """Each host's services: state, pid, uptime and release of every process, and the host's current release."""
    targets, slots = _targets(app, environment, "slipway app status")

    async def ask(target: Target) -> HostStatus:
        try:
            result = await target.run(_status_script(target.root), timeout=60)
        except TargetError as exc:
            return HostStatus(target.name, None, note=exc.message.splitlines()[0])
        if not result.ok:
            return HostStatus(target.name, None, note=(result.stderr or result.stdout).strip()[-300:] or "failed")
        return parse_host_status(target.name, result.stdout)

    return await _on_each(targets, slots, ask)


#: How long starting one host's daemon and services may take (each program waits ``startsecs``).
START_TIMEOUT = 300


async def app_start(app: App, environment: str) -> list[HostStatus]:
    """Start each host's supervisord and every service of its current release (after a reboot, or a daemon
    that was killed); what already runs is left alone. Then each host's status, as :func:`app_status`."""
    targets, slots = _targets(app, environment, "slipway app start")
    app.store.audit(app.settings.actor, "app.start", f"environment {environment}", {"hosts": [t.name for t in targets]})

    async def start(target: Target) -> HostStatus:
        layout = supervisor.Layout(target.root)
        boot = supervisor.boot_path(layout)
        script = (
            f"if [ -f {quote(boot)} ]; then sh {quote(boot)}; "
            f"elif [ -f {quote(layout.conf)} ]; then echo '@@old'; else echo '@@none'; fi"
        )
        try:
            started = await target.run(script, timeout=START_TIMEOUT)
            if started.stdout.startswith(("@@none", "@@old")):
                return HostStatus(target.name, None, note="no services were deployed here" if started.stdout.startswith(
                    "@@none") else "deployed by an earlier Slipway without supervisor/boot.sh: deploy once more")
            result = await target.run(_status_script(target.root), timeout=60)
        except TargetError as exc:
            return HostStatus(target.name, None, note=exc.message.splitlines()[0])
        status = parse_host_status(target.name, result.stdout) if result.ok else HostStatus(target.name, None)
        if not started.ok:
            said = (started.stderr or started.stdout).strip().splitlines()
            why = app.masker(said[-1] if said else f"exit code {started.exit_code}")
            return HostStatus(status.host, status.current, status.processes, f"starting failed: {why}")
        return status

    return await _on_each(targets, slots, start)


def service_names(app: App, service: str | None) -> list[str]:
    """The services whose logs to show: ``service``, or every one of ``deploy.services``."""
    services = list(app.config.project.deploy.services)
    if not services:
        raise ConfigError(
            "slipway.yml has no deploy.services: 'slipway app' shows the services Slipway runs on hosts",
            hint="add deploy.services (docs/services-on-hosts.md); for anything else, 'slipway exec ENV -- CMD'",
        )
    if service is not None and service not in services:
        raise ConfigError(f"no service {service!r} in deploy.services", hint="services: " + ", ".join(services))
    return [service] if service else services


def _logs_script(root: str, services: Sequence[str], *, lines: int, follow: bool) -> str:
    """Print (or follow) the last ``lines`` of each instance's log of ``services``, each file under tail's header."""
    logs = supervisor.Layout(root).logs
    globs = " ".join(f"{quote(name)}-[0-9]*.log" for name in services)
    none = quote(f"slipway: no log of {', '.join(services)} in {logs} on this host: no deployment started them here")
    return "\n".join([
        f"cd -- {quote(logs)} 2>/dev/null || {{ echo {none} >&2; exit 3; }}",
        "set --",
        f'for f in {globs}; do [ -f "$f" ] && set -- "$@" "$f"; done',
        f"[ $# -gt 0 ] || {{ echo {none} >&2; exit 3; }}",
        f'exec tail -v -n {int(lines)} {"-F " if follow else ""}-- "$@"',
    ])


class _TailReader:
    """Turns tail's output (``==> web-0.log <==`` headers, a blank line before each) into lines per log."""

    def __init__(self, host: str, sink: LineSink, mask: Callable[[str], str]) -> None:
        self.host, self.sink, self.mask = host, sink, mask
        self.source = "?"
        self.blank = False

    def __call__(self, stream: str, line: str) -> None:
        if stream == "stderr":
            self.sink(self.host, "tail", self.mask(line))
            return
        if header := _TAIL_HEADER.match(line):
            self.source, self.blank = header["file"].removesuffix(".log"), False
            return
        if self.blank:
            self.sink(self.host, self.source, "")
        self.blank = line == ""
        if not self.blank:
            self.sink(self.host, self.source, self.mask(line))


async def app_logs(
    app: App, environment: str, *, on_line: LineSink, service: str | None = None, lines: int = 50, follow: bool = False
) -> list[tuple[str, str | None]]:
    """Send the last ``lines`` of each service's logs on each host of ``environment`` to ``on_line``, masked;
    with ``follow``, go on sending new lines until cancelled. Per host: (host, why it showed nothing, or None)."""
    targets, slots = _targets(app, environment, "slipway app logs")
    services = service_names(app, service)
    # reading logs needs no secret; what this process cannot resolve it cannot mask either
    with contextlib.suppress(SecretError):
        app.masker.add(resolve_secrets(app.config.project.environments[environment], environment=environment,
                                       root=app.root, environ=app.environ).values())

    async def read(target: Target) -> tuple[str, str | None]:
        reader = _TailReader(target.name, on_line, app.masker)
        script = _logs_script(target.root, services, lines=lines, follow=follow)
        try:
            result = await target.run(script, timeout=None if follow else 60, on_output=reader)
        except TargetError as exc:
            return target.name, app.masker(exc.message.splitlines()[0])
        return target.name, None if result.ok else f"exit code {result.exit_code}"

    return await _on_each(targets, slots, read)
