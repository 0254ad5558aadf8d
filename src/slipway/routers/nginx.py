"""The nginx router: Slipway owns one include file per upstream group and reloads nginx gracefully.

For group ``app`` Slipway writes ``<conf_dir>/slipway_app.conf``::

    # Managed by Slipway: rewritten on every deployment, do not edit.
    # slipway-state: {"group": "app", "active_slot": null, "backends": [...]}
    upstream slipway_app {
        server 127.0.0.1:8001 weight=1;
        server 127.0.0.1:8002 weight=1 down;
    }

and the site's own config says ``include <conf_dir>/*.conf;`` inside ``http {}`` and
``proxy_pass http://slipway_app;``. The ``slipway-state`` line is the source of truth for
:meth:`NginxRouter.current`; the ``upstream`` block is derived from it.

Every change goes through one path (:meth:`NginxRouter._apply`):

1. write the file atomically (temp file + rename, through the :class:`~slipway.ports.Target`);
2. ``nginx -T`` validates the whole config *and* shows that our file is really included; if not,
   the previous file is restored and the error is raised: a bad config is never loaded;
3. ``nginx -s reload`` (graceful: old workers finish their in-flight requests, new workers start);
4. wait (bounded) until a new worker generation runs and every old worker stopped accepting
   (it is gone or titled "worker process is shutting down"): the reload took effect;
5. when draining, wait (bounded) until every worker of the old generation has exited: nothing in flight
   can still reach the backend that was taken out.

Before nginx first starts, its ``proxy_pass http://slipway_app;`` names an upstream that only this file
defines, so nginx refuses to start without it. :meth:`NginxRouter.bootstrap` (``slipway router bootstrap``,
and the first deployment behind the router) writes the file first, with a placeholder server marked
``down`` when nothing is deployed yet (nginx answers 502 until the first deployment). While nginx is
not running, a group whose file this router wrote first is only written and checked (``nginx -T``):
nothing is served through it yet, and nginx reads it when it starts. A file Slipway did not write is
never replaced unless the user says so (``adopt``).

All commands run through a Target as POSIX shell strings built with :func:`shlex.quote`, so the same
adapter drives an nginx on a remote load balancer over SSH (``router.host``:
:func:`slipway.services.traffic.nginx_router`).
"""

from __future__ import annotations

import asyncio
import logging
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import overload

from pydantic import ValidationError

from slipway.clock import SystemClock
from slipway.errors import (
    CommandFailed,
    CommandResult,
    CommandTimeout,
    DeploymentError,
    TargetError,
)
from slipway.model.routing import Backend, RouterState, check_name
from slipway.model.traffic import NginxRouterConfig as NginxRouterConfig
from slipway.ports import Clock, Target
from slipway.targets.local import LocalTarget

log = logging.getLogger(__name__)

_STATE_PREFIX = "# slipway-state: "
#: The server of a group that has no backend yet: marked down, so nginx starts and answers 502.
PLACEHOLDER = "127.0.0.1:1"
_SHUTTING_DOWN = "shutting down"

#: Lists the master's children as "PID TITLE" lines using only sh builtins, cat and tr (no procps needed).
_CHILDREN_SCRIPT = """\
m=$(cat {pid_file} 2>/dev/null) || {{ echo "no pid file {pid_file}" >&2; exit 3; }}
kill -0 "$m" 2>/dev/null || {{ echo "no nginx master with pid $m" >&2; exit 4; }}
for d in /proc/[0-9]*; do
  read -r s < "$d/stat" 2>/dev/null || continue
  s=${{s##*) }}; set -- $s
  [ "$2" = "$m" ] || continue
  printf '%s ' "${{d#/proc/}}"; tr '\\0' ' ' < "$d/cmdline" 2>/dev/null; echo
done
"""


def upstream_name(group: str) -> str:
    """The nginx upstream name Slipway uses for ``group`` (``proxy_pass http://<this>;``)."""
    return f"slipway_{check_name('group', group)}"


def render_upstream(state: RouterState, *, placeholder_ok: bool = False) -> str:
    """The include file for one group: a state line for Slipway, an upstream block for nginx.

    Backends of an inactive blue/green slot are left out (not routed at all); backends taken out
    by ``drain`` stay listed with ``down`` so that nginx keeps their place in the rotation.
    ``placeholder_ok``: a group without backends (nothing deployed yet) gets a placeholder server
    marked down, so that nginx starts and answers 502; only a bootstrap writes one.
    """
    if placeholder_ok and not state.backends:
        return "\n".join([
            "# Managed by Slipway: rewritten on every deployment, do not edit.",
            _STATE_PREFIX + state.model_dump_json(),
            f"upstream {upstream_name(state.group)} {{",
            "    # nothing deployed yet: requests get 502 until the first deployment",
            f"    server {PLACEHOLDER} down;",
            "}",
        ]) + "\n"
    if not state.serving:
        raise DeploymentError(
            f"upstream group {state.group!r} would have no backend in rotation",
            hint="enable a backend or switch to a slot with a healthy backend first",
        )
    lines = [
        "# Managed by Slipway: rewritten on every deployment, do not edit.",
        _STATE_PREFIX + state.model_dump_json(),
        f"upstream {upstream_name(state.group)} {{",
    ]
    for backend in state.backends:
        if state.active_slot is not None and backend.slot != state.active_slot:
            continue
        down = " down" if backend.down else ""
        lines.append(f"    server {backend.address} weight={backend.weight}{down};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def is_slipway_file(text: str) -> bool:
    """Whether an include file has a slipway-state line (Slipway wrote it)."""
    return any(line.startswith(_STATE_PREFIX) for line in text.splitlines())


def parse_state(text: str, *, path: str = "the include file") -> RouterState:
    """Read back the state line of an include file written by :func:`render_upstream`."""
    for line in text.splitlines():
        if line.startswith(_STATE_PREFIX):
            try:
                return RouterState.model_validate_json(line[len(_STATE_PREFIX):])
            except ValidationError as exc:
                raise DeploymentError(
                    f"the include file's slipway-state line is not valid: {exc.errors()[0]['msg']}",
                    hint="it was edited by hand: the next deployment rewrites it",
                ) from exc
    raise DeploymentError(
        f"{path} has no slipway-state line: it was not written by Slipway",
        hint="if it is a placeholder written so that nginx could start, check that it holds nothing else you "
        "need, then run 'slipway router bootstrap ENVIRONMENT --adopt' to let Slipway replace it",
    )


@dataclass(frozen=True)
class Bootstrap:
    """What :meth:`NginxRouter.bootstrap` did with a group's include file."""

    path: str
    state: RouterState
    #: False: a file Slipway wrote was there already and is left as it is.
    written: bool
    #: True: a file Slipway did not write was replaced (``adopt``).
    adopted: bool = False
    #: Whether nginx was running (and reloaded); False: nginx reads the file when it starts.
    running: bool = True

    @property
    def placeholder(self) -> bool:
        """The file routes nowhere yet (requests get 502 until the first deployment)."""
        return not self.state.backends

    def summary(self) -> str:
        """One line for the user."""
        if not self.written:
            return f"{self.path} was written by Slipway already: left as it is"
        what = "a placeholder marked down (502 until the first deployment)" if self.placeholder else ", ".join(
            b.address for b in self.state.backends
        )
        verb = "replaced (adopted)" if self.adopted else "written"
        after = "nginx reloaded" if self.running else "nginx -t passes; nginx is not running: start it now"
        return f"{self.path} {verb} with upstream {upstream_name(self.state.group)} -> {what}; {after}"


class NginxRouter:
    """A :class:`~slipway.model.routing.Router` backed by a real nginx master process.

    ``config``/``prefix`` are passed to nginx as ``-c``/``-p`` (leave them None for the system nginx);
    ``pid_file`` must be the ``pid`` directive of that config. ``drain_timeout`` bounds the wait for old
    workers (and with them the in-flight requests) after a backend is taken out; ``reload_timeout``
    bounds the wait for the new worker generation.
    """

    def __init__(
        self,
        *,
        conf_dir: str | Path,
        config: str | Path | None = None,
        prefix: str | Path | None = None,
        pid_file: str | Path = "/run/nginx.pid",
        nginx: str = "nginx",
        drain_timeout: float = 30.0,
        reload_timeout: float = 10.0,
        command_timeout: float = 30.0,
        poll_interval: float = 0.05,
        target: Target | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.conf_dir = str(conf_dir)
        self.config = None if config is None else str(config)
        self.prefix = None if prefix is None else str(prefix)
        self.pid_file = str(pid_file)
        self.nginx = nginx
        self.drain_timeout = drain_timeout
        self.reload_timeout = reload_timeout
        self.command_timeout = command_timeout
        self.poll_interval = poll_interval
        self.target: Target = target if target is not None else LocalTarget("localhost", "/")
        self.clock: Clock = clock if clock is not None else SystemClock()
        self._lock = asyncio.Lock()
        #: Groups this router wrote first while nginx was not running: changed without a reload until it runs.
        self._offline: set[str] = set()

    @classmethod
    def from_config(
        cls, config: NginxRouterConfig, *, target: Target | None = None, clock: Clock | None = None
    ) -> NginxRouter:
        """The router an environment's ``router:`` block describes, driving nginx through ``target``."""
        return cls(
            conf_dir=config.conf_dir, config=config.config, prefix=config.prefix,
            pid_file=config.pid_file, nginx=config.nginx, drain_timeout=config.drain_timeout,
            reload_timeout=config.reload_timeout, target=target, clock=clock,
        )

    # -- the Router protocol -------------------------------------------------------------------

    async def set_upstream(self, group: str, backends: Sequence[Backend]) -> None:
        """Replace the group's backends; keeps the active slot if it still has backends."""
        async with self._lock:
            old = await self._read_state(group)
            slots = {b.slot for b in backends}
            active = old.active_slot if old is not None else None
            if None in slots and len(slots) > 1:
                raise DeploymentError(f"group {group!r}: either every backend has a slot or none has")
            if active not in slots:
                active = None if None in slots else sorted(s for s in slots if s is not None)[0]
            state = RouterState(group=group, backends=tuple(backends), active_slot=active)
            await self._apply(state, wait_for_old_workers=False, first=old is None)

    async def bootstrap(self, group: str, backends: Sequence[Backend], *, adopt: bool = False) -> Bootstrap:
        """Write the group's include file if it is missing, so nginx can start (nginx need not run).

        Without backends the upstream is a placeholder marked down. A file Slipway wrote is left as it
        is; one it did not write is refused, or replaced with ``adopt``. Checked with ``nginx -T``
        (the previous file restored on failure) and, when nginx runs, reloaded.
        """
        async with self._lock:
            path = self.path_for(group)
            previous = await self._read_text(path)
            if previous is not None and (is_slipway_file(previous) or not adopt):
                return Bootstrap(path, parse_state(previous, path=path), written=False)
            state = RouterState(group=group, backends=tuple(backends))
            if len({b.slot is None for b in state.backends}) > 1:
                raise DeploymentError(f"group {group!r}: either every backend has a slot or none has")
            slots = sorted({b.slot for b in state.backends if b.slot is not None})
            if slots:
                state = state.model_copy(update={"active_slot": slots[0]})
            running = await self._apply(state, wait_for_old_workers=False, first=True, placeholder_ok=True)
            return Bootstrap(path, state, written=True, adopted=previous is not None, running=running)

    async def drain(self, group: str, backend: Backend) -> None:
        """Mark ``backend`` down, reload, and wait until the old workers (its in-flight requests) exit."""
        async with self._lock:
            state = await self._require_state(group)
            new = _with_down(state, backend, down=True)
            await self._apply(new, wait_for_old_workers=True)

    async def enable(self, group: str, backend: Backend) -> None:
        """Put ``backend`` back into rotation and reload."""
        async with self._lock:
            state = await self._require_state(group)
            new = _with_down(state, backend, down=False)
            await self._apply(new, wait_for_old_workers=False)

    async def switch(self, group: str, slot: str) -> None:
        """Route the group to ``slot``; returns once no old worker can still send to the old slot."""
        check_name("slot", slot)
        async with self._lock:
            state = await self._require_state(group)
            if not any(b.slot == slot for b in state.backends):
                known = sorted({b.slot for b in state.backends if b.slot is not None})
                raise DeploymentError(
                    f"group {group!r} has no backend in slot {slot!r}", hint=f"known slots: {known}"
                )
            new = state.model_copy(update={"active_slot": slot})
            await self._apply(new, wait_for_old_workers=True)

    async def current(self, group: str) -> RouterState:
        """The group's state as written in its include file."""
        return await self._require_state(group)

    async def close(self) -> None:
        """Close the target nginx is driven through (an SSH connection to a remote load balancer)."""
        await self.target.close()

    # -- files ------------------------------------------------------------------------------------

    def path_for(self, group: str) -> str:
        """The include file Slipway owns for ``group``."""
        return f"{self.conf_dir.rstrip('/')}/{upstream_name(group)}.conf"

    async def _read_text(self, path: str) -> str | None:
        q = shlex.quote(path)
        result = await self._run(f"if [ -e {q} ]; then cat {q}; else exit 3; fi", check=False)
        if result.exit_code == 3:
            return None
        if not result.ok:
            raise CommandFailed.from_result(result, what=f"cannot read {path}")
        return result.stdout

    async def _read_state(self, group: str) -> RouterState | None:
        path = self.path_for(group)
        text = await self._read_text(path)
        return None if text is None else parse_state(text, path=path)

    async def _require_state(self, group: str) -> RouterState:
        state = await self._read_state(group)
        if state is None:
            raise DeploymentError(
                f"nginx has no upstream group {group!r} managed by Slipway ({self.path_for(group)})",
                hint="call set_upstream first",
            )
        return state

    async def _apply(
        self, state: RouterState, *, wait_for_old_workers: bool, first: bool = False, placeholder_ok: bool = False
    ) -> bool:
        """Write, validate (restore on failure), reload, confirm; optionally wait for old workers.

        ``first``: the group's file does not exist yet (or is adopted), so nginx need not run: nothing is
        served through it. Returns whether nginx was running (False: written and checked only).
        """
        text = render_upstream(state, placeholder_ok=placeholder_ok)
        path = self.path_for(state.group)
        # fails early and clearly when nginx is not running, unless nothing can be served through the file yet
        workers = await self._workers(missing_ok=first or state.group in self._offline)
        previous = await self._read_text(path)
        if previous is None:
            await self._run(f"mkdir -p {shlex.quote(self.conf_dir)}")
        await self.target.put(text.encode(), path)
        try:
            await self._validate(path, state.group)
            if workers is not None:
                await self._reload()
        except BaseException:  # refused, or nginx never got the reload: the file says what nginx runs
            await self._restore(path, previous)
            raise
        if workers is None:
            self._offline.add(state.group)
            log.info("nginx is not running: wrote %s; nginx reads it when it starts", path)
            return False
        self._offline.discard(state.group)
        await self._wait_new_generation(set(workers))
        if wait_for_old_workers:
            await self._wait_old_workers_gone(set(workers))
        return True

    async def _restore(self, path: str, previous: str | None) -> None:
        if previous is None:
            await self._run(f"rm -f {shlex.quote(path)}")
        else:
            await self.target.put(previous.encode(), path)

    # -- nginx commands ---------------------------------------------------------------------------

    def _nginx_argv(self, *args: str) -> list[str]:
        argv = [self.nginx]
        if self.prefix is not None:
            argv += ["-p", self.prefix]
        if self.config is not None:
            argv += ["-c", self.config]
        return [*argv, *args]

    async def _run(self, command: str, *, check: bool = True) -> CommandResult:
        result = await self.target.run(command, timeout=self.command_timeout)
        if check and not result.ok:
            raise CommandFailed.from_result(result)
        return result

    async def _validate(self, path: str, group: str) -> None:
        """``nginx -T``: the whole config is valid and really includes our file."""
        result = await self._run(shlex.join(self._nginx_argv("-T", "-q")), check=False)
        if not result.ok and f'host not found in upstream "{upstream_name(group)}"' in result.stderr:
            raise TargetError(
                f"nginx's configuration names upstream {upstream_name(group)} but does not include {path} "
                "(the previous file was restored)",
                host=self.target.name,
                command=result.command,
                stderr_tail=result.tail(),
                hint=f"add 'include {self.conf_dir}/*.conf;' inside the http {{}} block, before the server that "
                "proxies to it",
            )
        if not result.ok:
            raise CommandFailed.from_result(
                result, what="nginx refused the new configuration (the previous file was restored)"
            )
        if f"# configuration file {path}:" not in result.stdout:
            raise TargetError(
                f"nginx's configuration does not include {path}: the change would have no effect",
                host=self.target.name,
                command=result.command,
                hint=f"add 'include {self.conf_dir}/*.conf;' inside the http {{}} block",
            )

    async def _reload(self) -> None:
        result = await self._run(shlex.join(self._nginx_argv("-s", "reload")), check=False)
        if not result.ok:
            raise CommandFailed.from_result(result, what="nginx reload failed")

    @overload
    async def _workers(self) -> dict[int, str]: ...

    @overload
    async def _workers(self, *, missing_ok: bool) -> dict[int, str] | None: ...

    async def _workers(self, *, missing_ok: bool = False) -> dict[int, str] | None:
        """The master's children: pid -> process title. When nginx is not running: None if ``missing_ok``,
        else TargetError."""
        script = _CHILDREN_SCRIPT.format(pid_file=shlex.quote(self.pid_file))
        result = await self._run(script, check=False)
        if not result.ok and missing_ok and result.exit_code in (3, 4):  # no pid file, or no such process
            return None
        if not result.ok:
            raise TargetError(
                f"nginx is not running: {result.tail(3) or 'no master process'}",
                host=self.target.name,
                command=shlex.join(self._nginx_argv()),
                exit_code=result.exit_code,
                stderr_tail=result.tail(),
                hint=f"start nginx (pid file {self.pid_file}) before deploying through it",
            )
        children: dict[int, str] = {}
        for line in result.stdout.splitlines():
            pid, _, title = line.strip().partition(" ")
            if pid.isdigit():
                children[int(pid)] = title.strip()
        return children

    async def _wait_new_generation(self, old: set[int]) -> None:
        deadline = self.clock.monotonic() + self.reload_timeout
        while True:
            workers = await self._workers()
            fresh = [
                pid for pid, title in workers.items()
                if pid not in old and "worker process" in title and _SHUTTING_DOWN not in title
            ]
            # An old worker still accepts new connections until it handled the master's QUIT; it
            # renames itself "... is shutting down" right before closing its listening sockets.
            still_accepting = [
                pid for pid, title in workers.items()
                if pid in old and "worker process" in title and _SHUTTING_DOWN not in title
            ]
            if fresh and not still_accepting:
                return
            if self.clock.monotonic() >= deadline:
                raise CommandTimeout(
                    f"nginx did not start new workers within {self.reload_timeout}s after the reload",
                    host=self.target.name,
                    command=shlex.join(self._nginx_argv("-s", "reload")),
                    hint="look at nginx's error log: the reload may have been refused",
                )
            await self.clock.sleep(self.poll_interval)

    async def _wait_old_workers_gone(self, old: set[int]) -> None:
        deadline = self.clock.monotonic() + self.drain_timeout
        while True:
            left = old & set(await self._workers())
            if not left:
                return
            if self.clock.monotonic() >= deadline:
                # nginx keeps serving the remaining in-flight requests; we stop waiting as configured.
                log.warning(
                    "drain timeout %.1fs: %d old nginx worker(s) still finishing requests: %s",
                    self.drain_timeout, len(left), sorted(left),
                )
                return
            await self.clock.sleep(self.poll_interval)


def _with_down(state: RouterState, backend: Backend, *, down: bool) -> RouterState:
    """The state with ``backend`` (matched by host and port) marked down or up."""
    matched = False
    backends: list[Backend] = []
    for b in state.backends:
        if (b.host, b.port) == (backend.host, backend.port):
            matched = True
            b = b.model_copy(update={"down": down})
        backends.append(b)
    if not matched:
        raise DeploymentError(
            f"backend {backend.address} is not in upstream group {state.group!r}",
            hint="add it with set_upstream",
        )
    return state.model_copy(update={"backends": tuple(backends)})
