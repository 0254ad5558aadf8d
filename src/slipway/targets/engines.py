"""Opening a container target's engine: a local socket, or a remote socket through an SSH tunnel.

``engine: ssh://user@host[:port]/run/podman/podman.sock`` opens one SSH connection to the host, with the
same host-key rules as SSH targets (checked against ``known_hosts``; an unknown key is recorded only
with ``accept_new_host_keys``; a changed key is always refused), and forwards a private local socket to
the remote one. The Docker SDK then talks to the local socket: nothing else changes. Published ports
are not tunnelled: they listen on the target's ``address`` (the SSH host by default), where the router
and the readiness checks reach them, as they reach the app on an SSH target.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from slipway.artifacts.image import Engine, EngineSpec
from slipway.errors import HostUnreachable
from slipway.model.containers import ContainerTargetSpec
from slipway.targets.ssh import SocketForward, SSHTarget


@dataclass
class OpenEngine:
    """A connected engine and, for a remote one, the tunnel it talks through."""

    engine: Engine
    ssh: SSHTarget | None = None
    forward: SocketForward | None = None
    tmpdir: Path | None = None

    async def close(self) -> None:
        """Close the client, the tunnel and the connection; remove the local socket."""
        with contextlib.suppress(Exception):
            await self.engine.close()
        await _close_tunnel(self.ssh, self.forward, self.tmpdir)


async def open_engine(spec: ContainerTargetSpec, *, root: Path, timeout: int = 600) -> OpenEngine:
    """Connect to the target's engine (through an SSH tunnel for ``ssh://``); HostUnreachable if it is not there."""
    endpoint = spec.endpoint
    if endpoint.scheme == "unix":
        return OpenEngine(await Engine.open(_engine_spec(spec, f"unix://{endpoint.path}", timeout)))
    ssh = SSHTarget(
        spec.name,
        endpoint.host,
        root="/",
        port=endpoint.port,
        username=endpoint.user,
        client_keys=[_local(spec.key, root)] if spec.key else (),
        known_hosts=_local(spec.known_hosts or "~/.ssh/known_hosts", root),
        accept_new_host_keys=spec.accept_new_host_keys,
        connect_timeout=spec.connect_timeout,
    )
    tmpdir = Path(tempfile.mkdtemp(prefix="slipway-engine-"))
    forward: SocketForward | None = None
    try:
        forward = await ssh.forward_socket(str(tmpdir / "engine.sock"), endpoint.path)
        try:
            engine = await Engine.open(_engine_spec(spec, f"unix://{tmpdir / 'engine.sock'}", timeout))
        except HostUnreachable as exc:
            raise HostUnreachable(
                f"container engine {spec.engine} does not answer through the SSH tunnel: "
                f"{exc.message.removeprefix(f'[{spec.name}] ')}",
                host=spec.name, command="ping",
                hint=f"check that the engine runs on {endpoint.host} and listens on {endpoint.path}",
            ) from exc
    except BaseException:
        await _close_tunnel(ssh, forward, tmpdir)
        raise
    return OpenEngine(engine, ssh, forward, tmpdir)


def _engine_spec(spec: ContainerTargetSpec, base_url: str, timeout: int) -> EngineSpec:
    return EngineSpec(base_url, name=spec.name, timeout=timeout, host_ip=spec.publish_address)


def _local(path: str, root: Path) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else root / p


async def _close_tunnel(ssh: SSHTarget | None, forward: SocketForward | None, tmpdir: Path | None) -> None:
    if forward is not None:
        with contextlib.suppress(Exception):
            await forward.close()
    if ssh is not None:
        with contextlib.suppress(Exception):
            await ssh.close()
    if tmpdir is not None:
        shutil.rmtree(tmpdir, ignore_errors=True)
