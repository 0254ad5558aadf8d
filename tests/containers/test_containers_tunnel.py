"""A remote engine through an SSH tunnel (a real sshd of the test bed): host keys as for SSH targets."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from pipeline_support import ssh_engine
from tests.support.podman import PodmanService
from tests.support.pytest_ssh import ssh_bed_installed, ssh_testbed  # noqa: F401  (fixtures)
from tests.support.sshbed import SSHTestBed

from slipway.errors import HostKeyError, HostUnreachable
from slipway.model.containers import ContainerTargetSpec
from slipway.targets.engines import open_engine

pytestmark = pytest.mark.timeout(120)


def ping(spec: ContainerTargetSpec, root: Path) -> dict[str, Any]:
    """The engine's version, asked through the tunnel; the tunnel and socket are gone afterwards."""
    async def main() -> dict[str, Any]:
        opened = await open_engine(spec, root=root)
        try:
            assert opened.tmpdir is not None and opened.engine.spec.base_url.startswith(f"unix://{opened.tmpdir}")
            return await opened.engine.call("version", opened.engine.client.version)
        finally:
            await opened.close()
            assert opened.tmpdir is not None and not opened.tmpdir.exists()
    return asyncio.run(main())


def test_remote_engine_through_ssh_checks_host_keys(
    tmp_path: Path, podman_service: PodmanService, ssh_testbed: Callable[..., SSHTestBed],  # noqa: F811
) -> None:
    host = ssh_testbed(1).hosts[0]
    base = ssh_engine(host, podman_service, "edge-1")
    known = tmp_path / "known_hosts"
    known.write_text("")

    # Unknown host: refused, nothing recorded.
    with pytest.raises(HostKeyError, match="is unknown"):
        ping(ContainerTargetSpec.model_validate({**base, "known_hosts": str(known)}), tmp_path)
    assert known.read_text() == ""

    # accept_new_host_keys: recorded on first contact; the engine answers through the tunnel.
    accepting = ContainerTargetSpec.model_validate({**base, "known_hosts": str(known), "accept_new_host_keys": True})
    assert ping(accepting, tmp_path)["Version"]
    assert known.read_text().startswith(host.known_hosts_pattern)
    assert ping(ContainerTargetSpec.model_validate(base), tmp_path)["Version"]  # the bed's own known_hosts

    # A changed key is refused even with accept_new_host_keys.
    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().split()[:2]
    known.write_text(f"{host.known_hosts_pattern} {' '.join(other)}\n")
    with pytest.raises(HostKeyError, match="does not match"):
        ping(accepting, tmp_path)

    # The SSH host answers but no engine listens at that path: a clear error naming the engine.
    missing = ContainerTargetSpec.model_validate({**base, "engine": base["engine"] + ".missing"})
    with pytest.raises(HostUnreachable) as unreachable:
        ping(missing, tmp_path)
    assert "does not answer through the SSH tunnel" in str(unreachable.value)
    assert host.address in unreachable.value.hint
