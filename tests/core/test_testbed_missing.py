"""The test benches never install packages: a missing binary fails with the way to install the test bed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import nginx, postgres, registry, sshsystem
from tests.support.testbed import INSTALL_HINT, MissingTestbed

pytestmark = pytest.mark.timeout(30)


def test_a_missing_binary_names_its_package_and_make_testbed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    absent = str(tmp_path / "not-installed")
    monkeypatch.setattr(nginx, "NGINX", absent)
    monkeypatch.setattr(registry, "DOCKER_REGISTRY", absent)
    monkeypatch.setattr(sshsystem, "SSHD", Path(absent))
    monkeypatch.setattr(sshsystem, "_installed", False)
    monkeypatch.setattr(postgres, "_search_bindir", lambda: None)
    for check, package in (
        (nginx.ensure_nginx, "nginx"),
        (registry.ensure_docker_registry, "docker-registry"),
        (sshsystem.ensure_installed, "openssh-server"),
        (postgres.find_bindir, "postgresql"),
    ):
        with pytest.raises(MissingTestbed) as info:
            check()
        assert f"Debian package {package}" in str(info.value) and INSTALL_HINT in str(info.value)


def test_no_bench_calls_apt_get() -> None:
    """scripts/install-testbed.sh (``make testbed``) is the one place that installs packages."""
    support = Path(__file__).resolve().parents[1] / "support"
    offenders = [p.name for p in support.glob("*.py") if '"apt-get"' in p.read_text() or "'apt-get'" in p.read_text()]
    assert offenders == []
