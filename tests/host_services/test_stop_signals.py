"""A service's stop_signal reaches the app, and one that ignores it is killed after its stop_timeout."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import pytest

from tests.e2e.conftest import Project
from tests.host_services.conftest import alive, wait_until

pytestmark = pytest.mark.timeout(300)

Make = Callable[[dict[str, Any]], Project]

#: Writes its pid, says which stop signal it got (INT), ignores TERM.
STUBBORN = """\
import os, signal, sys, time
name = sys.argv[1]
open(f"{name}.pid", "w").write(f"{os.getpid()}\\n")
def stop(signum, frame):
    open(f"{name}.stopped", "a").write(f"{signal.Signals(signum).name} {os.getpid()}\\n")
    sys.exit(0)
signal.signal(signal.SIGINT, stop)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
while True:
    time.sleep(1)
"""



def test_stop_signal_and_grace_period(service_project: Make) -> None:
    def command(name: str) -> str:
        return f"{sys.executable} app/stubborn.py " + "{{ paths.shared }}/run/" + name

    data = {
        "version": 1, "name": "sig", "artifact": {"paths": ["app"]},
        "deploy": {"shared": ["run"], "services": {
            "polite": {"command": command("polite"), "stop_signal": "INT", "stop_timeout": 30},
            "stubborn": {"command": command("stubborn"), "stop_timeout": 1},
        }},
        "environments": {"dev": {"targets": [{"kind": "local", "name": "dev-1", "path": ".slipway/targets/dev"}]}},
        "pipeline": [{"name": "build", "kind": "build"}, {"name": "deploy-dev", "kind": "deploy", "environment": "dev"}],
    }
    proj = service_project(data)
    (proj.root / "app/stubborn.py").write_text(STUBBORN)
    proj.commit("the stubborn service")
    proj.slipway("run")
    shared = proj.root / ".slipway/targets/dev/shared/run"
    wait_until("both services wrote their pid", lambda: all((shared / f"{n}.pid").exists() for n in ("polite", "stubborn")))
    polite, stubborn = (int((shared / f"{n}.pid").read_text()) for n in ("polite", "stubborn"))

    (proj.root / "app/release.txt").write_text("2\n")
    proj.commit("release 2")
    proj.slipway("run")
    assert (shared / "polite.stopped").read_text() == f"SIGINT {polite}\n"  # its stop_signal, not TERM
    assert not (shared / "stubborn.stopped").exists()  # TERM was ignored ...
    assert not alive(stubborn) and not alive(polite)  # ... and SIGKILL followed after its stop_timeout
    new = int((shared / "stubborn.pid").read_text())
    assert new != stubborn and alive(new)
