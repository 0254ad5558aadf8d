"""A supervisord of one deploy root, driven through the Target protocol (docs/services-on-hosts.md).

Slipway owns one supervisord per environment on each host, never the system's, under the deploy root::

    supervisor/supervisord.conf      the daemon's config: socket, pidfile, its log, includes programs/
    supervisor/supervisor.sock       its control socket (in /tmp when the root's path is too long)
    supervisor/programs/<name>.conf  one program per service (numprocs = instances)
    supervisor/programs/<name>.sh    how the service starts: cd current, its environment, its command
    shared/log/<name>-<n>.log        each instance's output

Everything written here is text made by the pure functions below; the daemon is started when it does not
answer (idempotent) with a clean environment, so it does not inherit whatever the first deploy had.
"""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from shlex import quote

from slipway.errors import CommandFailed, CommandResult, DeploymentError
from slipway.model.host_services import HostServiceConfig
from slipway.ports import Target

#: A unix socket path longer than this does not fit ``sockaddr_un`` (108 bytes with its NUL) everywhere.
MAX_SOCKET_PATH = 100
#: How many lines of a service's log an error shows.
LOG_LINES = 20


@dataclass(frozen=True)
class Layout:
    """Where the supervisord of one deploy root keeps its files."""

    root: str

    @property
    def dir(self) -> str:
        """The daemon's directory."""
        return f"{self.root}/supervisor"

    @property
    def conf(self) -> str:
        """The daemon's config file."""
        return f"{self.dir}/supervisord.conf"

    @property
    def programs(self) -> str:
        """The directory of the programs' configs and start scripts."""
        return f"{self.dir}/programs"

    @property
    def logs(self) -> str:
        """Where the services' output goes (it survives releases)."""
        return f"{self.root}/shared/log"

    @property
    def socket(self) -> str:
        """The control socket: in the daemon's directory, or in /tmp named by the root when that is too long."""
        path = f"{self.dir}/supervisor.sock"
        if len(path.encode()) <= MAX_SOCKET_PATH:
            return path
        return f"/tmp/slipway-supervisor-{hashlib.sha256(self.root.encode()).hexdigest()[:16]}.sock"

    def log(self, service: str, instance: int) -> str:
        """The log file of one instance of a service."""
        return f"{self.logs}/{service}-{instance}.log"

    def ctl(self, *args: str) -> str:
        """A supervisorctl command line for this daemon."""
        return shlex.join(["supervisorctl", "-c", self.conf, *args])


def _ini(value: str) -> str:
    """A value as supervisord's config parser reads it back: ``%`` doubled (its expansions)."""
    return value.replace("%", "%%")


def check_root(root: str) -> None:
    """A root whose path supervisord's config cannot hold (comments, line breaks) is refused before any change."""
    if any(c in root for c in "\n\r;#"):
        raise DeploymentError(
            f"deploy root {root!r} cannot hold services: supervisord's config cannot name a path with ';', '#' or a line break",
            hint="choose a deploy root (path) without those characters",
        )


def daemon_conf(layout: Layout) -> str:
    """supervisord.conf of one deploy root."""
    return "\n".join([
        "; Written by Slipway for the services of this deploy root (docs/services-on-hosts.md). Do not edit.",
        "[unix_http_server]",
        f"file={_ini(layout.socket)}",
        "chmod=0700",
        "[supervisord]",
        f"pidfile={_ini(layout.dir)}/supervisord.pid",
        f"logfile={_ini(layout.dir)}/supervisord.log",
        f"childlogdir={_ini(layout.logs)}",
        "logfile_maxbytes=10MB",
        "logfile_backups=3",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "[supervisorctl]",
        f"serverurl=unix://{_ini(layout.socket)}",
        "[include]",
        f"files={_ini(layout.programs)}/*.conf",
        "",
    ])


def program_conf(layout: Layout, name: str, service: HostServiceConfig) -> str:
    """The ``[program:NAME]`` section of one service: its instances, restarts, stop signal and logs."""
    script = f"{layout.programs}/{name}.sh"
    return "\n".join([
        f"[program:{name}]",
        f"command=/bin/sh {_ini(quote(script))} %(process_num)d",
        "process_name=%(program_name)s-%(process_num)d",
        f"numprocs={service.instances}",
        # Started by the deployment's restart, which waits for it; autostart would start a new or changed
        # program at 'update' already, and the restart would stop that process at once (a double start).
        "autostart=false",
        "autorestart=true",
        "startsecs=1",
        "startretries=3",
        f"stopsignal={service.stop_signal}",
        f"stopwaitsecs={service.stop_timeout}",
        # the app's own children (workers) get the stop signal and, late, SIGKILL too
        "stopasgroup=true",
        "killasgroup=true",
        "redirect_stderr=true",
        f"stdout_logfile={_ini(layout.logs)}/%(program_name)s-%(process_num)d.log",
        "stdout_logfile_maxbytes=10MB",
        "stdout_logfile_backups=3",
        "",
    ])


def start_script(layout: Layout, name: str, command: str, env: Mapping[str, str], *, port: int | None) -> str:
    """The script one instance starts with (its argument: the instance number): the release, env, command."""
    lines = [
        "#!/bin/sh",
        f"# Written by Slipway: service {name} (docs/services-on-hosts.md). Do not edit.",
        f"cd {quote(layout.root + '/current')} || exit 1",
        f"SLIPWAY_SERVICE={quote(name)}; export SLIPWAY_SERVICE",
        'SLIPWAY_INSTANCE="$1"; export SLIPWAY_INSTANCE',
    ]
    if port is not None:
        lines.append(f'PORT=$(({port} + $1)); export PORT')
    lines += [f"{key}={quote(value)}; export {key}" for key, value in env.items()]
    # exec: supervisord supervises, signals and waits for the app itself, not a shell in front of it (a
    # shell would exit on the stop signal while the app still holds its port, and the restart would fail)
    lines += [f"exec {command}", ""]
    return "\n".join(lines)


def _check(result: CommandResult, what: str) -> CommandResult:
    if not result.ok:
        raise CommandFailed.from_result(result, what=what)
    return result


def _start_daemon(layout: Layout) -> str:
    """Shell: start the daemon unless it answers (prints ``running`` or ``started``), with a clean environment
    so that it does not inherit whatever the first deployment (or the boot) had."""
    return (
        f"mkdir -p -- {quote(layout.programs)} {quote(layout.logs)} && "
        f"if {layout.ctl('pid')} >/dev/null 2>&1; then echo running; else "
        "command -v supervisord >/dev/null 2>&1 || { echo 'supervisord is not installed on this host "
        "(Debian: apt-get install supervisor; or pip install supervisor)' >&2; exit 127; }; "
        f'env -i PATH="$PATH" HOME="${{HOME:-/}}" LANG=C.UTF-8 supervisord -c {quote(layout.conf)} && echo started; fi'
    )


def boot_script(layout: Layout) -> str:
    """``supervisor/boot.sh``: after a reboot, the daemon and every service of the release ``current`` names.

    Programs do not autostart (a deployment starts each process once, and waits for it), so a daemon
    started alone runs nothing: this script starts it and then every program. ``slipway app start ENV``
    runs it on each host; ``@reboot`` in the deploy user's crontab or a systemd unit runs it at boot
    (docs/services-on-hosts.md).
    """
    return "\n".join([
        "#!/bin/sh",
        "# Written by Slipway (docs/services-on-hosts.md): starts this deploy root's supervisord, then every",
        "# service of the current release. Safe to run again: what runs already is left alone.",
        'PATH="$PATH:/usr/local/bin:/usr/bin:/bin"',
        _start_daemon(layout) + " || exit $?",
        # 'start all' waits until each process has run startsecs; a program that fails says so, exit 1
        f"{layout.ctl('start', 'all')}",
        "",
    ])


def boot_path(layout: Layout) -> str:
    """Where :func:`boot_script` is written."""
    return f"{layout.dir}/boot.sh"


async def ensure_daemon(target: Target, layout: Layout, *, timeout: float = 60) -> bool:
    """Write the daemon's config and boot script, and start the daemon unless it answers; True when it was
    started now."""
    check_root(layout.root)
    await target.put(daemon_conf(layout).encode(), layout.conf)
    boot = boot_script(layout)
    script = (
        # the boot script rides along in the same command: no round trip of its own (a root has no line break)
        f"mkdir -p -- {quote(layout.dir)} && cat > {quote(boot_path(layout))} <<'SLIPWAY_BOOT_EOF'\n"
        f"{boot}SLIPWAY_BOOT_EOF\n"
        f"chmod 0755 {quote(boot_path(layout))} && {_start_daemon(layout)}"
    )
    result = _check(await target.run(script, timeout=timeout), "cannot start supervisord for the services")
    return "started" in result.stdout


async def install_programs(
    target: Target, layout: Layout, programs: Mapping[str, tuple[str, str]], *, timeout: float = 60
) -> str:
    """Write every program's config and start script, remove the others', apply: ``supervisorctl update``.

    ``programs`` maps each service to (config section, start script). Returns what supervisorctl said.
    """
    for name, (conf, script) in programs.items():
        await target.put(script.encode(), f"{layout.programs}/{name}.sh", mode=0o700)  # may hold secrets
        await target.put(conf.encode(), f"{layout.programs}/{name}.conf")
    keep = " ".join(f"! -name {quote(f'{n}.{ext}')}" for n in programs for ext in ("conf", "sh"))
    script = (
        f"find {quote(layout.programs)} -maxdepth 1 -type f {keep} -delete && "
        f"{layout.ctl('update')}"
    )
    return _check(await target.run(script, timeout=timeout), "supervisorctl update failed").stdout.strip()


async def restart_program(target: Target, layout: Layout, name: str, *, timeout: float) -> CommandResult:
    """``supervisorctl restart NAME:*``: stop every instance (its signal, its grace), start them again."""
    return await target.run(layout.ctl("restart", f"{name}:*"), timeout=timeout)


async def not_running(target: Target, layout: Layout, name: str, *, timeout: float = 60) -> list[str]:
    """The status lines of the service's instances that are not RUNNING (empty: all run)."""
    result = await target.run(layout.ctl("status", f"{name}:*"), timeout=timeout)
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    return [line for line in lines if " RUNNING " not in f"{line} "] or ([] if lines else ["no instance found"])


async def log_tails(
    target: Target, layout: Layout, name: str, instances: Sequence[int], *, lines: int = LOG_LINES
) -> str:
    """The last lines of each instance's log, each under a line naming the file."""
    script = "; ".join(
        f"echo {quote('--- ' + layout.log(name, i))}; tail -n {lines} {quote(layout.log(name, i))} 2>&1"
        for i in instances
    )
    result = await target.run(script, timeout=60)
    return result.stdout.rstrip()


async def shutdown_daemon(target: Target, layout: Layout, *, timeout: float = 300) -> bool:
    """Stop the root's supervisord and its services, and wait until it is gone; False when none ran there."""
    pidfile = f"{layout.dir}/supervisord.pid"
    script = (
        f"[ -f {quote(layout.conf)} ] || {{ echo none; exit 0; }}; "
        f"pid=$(cat {quote(pidfile)} 2>/dev/null || true); "
        f"{layout.ctl('shutdown')} >/dev/null 2>&1 || {{ echo none; exit 0; }}; "
        # supervisord stops every service (each within its stop_timeout) before it exits
        f'while [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; do sleep 0.1; done; echo stopped'
    )
    result = _check(await target.run(script, timeout=timeout), "cannot stop the services' supervisord")
    return "stopped" in result.stdout
