"""A small project driven through the installed ``slipway`` script, with hooks that a test can hold.

Every activate hook runs ``gate.sh``: it counts its calls per host, touches ``reached-HOST-N`` and, while
``hold-HOST-N`` exists, waits (bounded); with ``fail-HOST-N`` it then fails. A test holds call N of a host, waits for the file that says the
deployment got there, then sends a signal or stops the store: the fault lands at a precise phase.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml

from slipway.store.repository import Store
from tests.e2e.conftest import GIT_ENV, SLIPWAY

GATE = """#!/bin/sh
d={dir}
h=${{SLIPWAY_HOST:-unknown}}
n=$(( $(cat "$d/count-$h" 2>/dev/null || echo 0) + 1 ))
echo "$n" > "$d/count-$h"
touch "$d/reached-$h-$n"
i=0
while [ -f "$d/hold-$h-$n" ] && [ "$i" -lt 1200 ]; do sleep 0.1; i=$((i + 1)); done
if [ -f "$d/fail-$h-$n" ]; then echo "call $n on $h fails, as the test asked" >&2; exit 1; fi
echo "activated $(basename "$PWD") on $h (call $n)"
"""


class Recovering:
    """A project with one environment ``prod`` of local (or given) targets, rolling one host at a time."""

    def __init__(self, root: Path, *, targets: list[dict[str, Any]] | None = None, hosts: int = 2) -> None:
        self.root = root
        self.gates = root.parent / "gates"
        self.gates.mkdir(parents=True, exist_ok=True)
        gate = self.gates / "gate.sh"
        gate.write_text(GATE.format(dir=self.gates))
        gate.chmod(0o755)
        self.env = {**os.environ, **GIT_ENV, "SLIPWAY_USER": "tester"}
        self.env.pop("SLIPWAY_DATABASE_URL", None)
        (root / "app").mkdir(parents=True)
        (root / "app" / "version.txt").write_text("v1\n")
        self.targets = targets or [
            {"kind": "local", "name": f"prod-{i + 1}", "path": f".slipway/targets/prod-{i + 1}"} for i in range(hosts)
        ]
        self.config: dict[str, Any] = {
            "name": "recovering",
            "artifact": {"paths": ["app"]},
            "deploy": {"hooks": {"activate": [f"sh {gate}"]}},
            "environments": {
                "prod": {"targets": self.targets, "strategy": {"kind": "rolling", "batch_size": 1}},
            },
            "pipeline": [
                {"name": "build", "kind": "build"},
                {"name": "deploy-prod", "kind": "deploy", "environment": "prod"},
            ],
        }
        self.write()
        self.git("init", "-q")
        self.commit("v1")

    # -- the project --------------------------------------------------------------------------------
    def write(self) -> None:
        (self.root / "slipway.yml").write_text(yaml.safe_dump(self.config, sort_keys=False))

    def git(self, *args: str) -> None:
        subprocess.run(["git", *args], cwd=self.root, env=self.env, check=True, capture_output=True, timeout=60)

    def commit(self, message: str) -> None:
        self.write()
        self.git("add", "-A")
        self.git("commit", "-qm", message)

    def new_version(self, text: str) -> None:
        (self.root / "app" / "version.txt").write_text(text + "\n")
        self.commit(text)

    # -- the CLI ------------------------------------------------------------------------------------
    def slipway(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [SLIPWAY, *args], cwd=self.root, env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )

    def ok(self, *args: str) -> subprocess.CompletedProcess[str]:
        proc = self.slipway(*args)
        assert proc.returncode == 0, f"slipway {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        return proc

    def start(self, *args: str) -> subprocess.Popen[str]:
        """Start ``slipway ARGS`` in the background (its own process group, as a CI job runs it)."""
        self.stderr_file = self.gates / f"stderr-{time.monotonic_ns()}.txt"
        with self.stderr_file.open("w") as err:
            return subprocess.Popen(
                [SLIPWAY, *args],
                cwd=self.root,
                env=self.env,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                start_new_session=True,
            )

    def wait_stderr(self, text: str, timeout: float = 30) -> None:
        """Wait until the background slipway printed ``text`` on stderr."""
        deadline = time.monotonic() + timeout
        while text not in self.stderr_file.read_text():
            assert time.monotonic() < deadline, f"{text!r} not printed in {timeout}s:\n{self.stderr_file.read_text()}"
            time.sleep(0.05)

    def history(self) -> list[dict[str, Any]]:
        import json

        return list(json.loads(self.ok("history", "--json").stdout))

    def status_hosts(self) -> dict[str, str | None]:
        import json

        data = json.loads(self.ok("status", "--json").stdout)
        env = next(e for e in data["environments"] if e["name"] == "prod")
        return {h["name"]: h["release"] for h in env["hosts"]}

    # -- the hosts ----------------------------------------------------------------------------------
    def current(self, host: str) -> str | None:
        """The release ``current`` points at on a local host."""
        link = self.root / ".slipway/targets" / host / "current"
        return os.path.basename(os.readlink(link)) if link.is_symlink() else None

    def currents(self) -> dict[str, str | None]:
        return {t["name"]: self.current(t["name"]) for t in self.targets}

    # -- holding a hook -----------------------------------------------------------------------------
    def hold(self, host: str, call: int) -> None:
        (self.gates / f"hold-{host}-{call}").touch()

    def fail(self, host: str, call: int) -> None:
        (self.gates / f"fail-{host}-{call}").touch()

    def let_go(self, host: str, call: int) -> None:
        (self.gates / f"hold-{host}-{call}").unlink(missing_ok=True)

    def wait_reached(
        self, host: str, call: int, proc: subprocess.Popen[str] | None = None, timeout: float = 90
    ) -> None:
        deadline = time.monotonic() + timeout
        marker = self.gates / f"reached-{host}-{call}"
        while not marker.exists():
            if proc is not None and proc.poll() is not None:
                out, _ = proc.communicate()
                raise AssertionError(
                    f"slipway exited {proc.returncode} before {marker.name}\n{out}\n{self.stderr_file.read_text()}"
                )
            assert time.monotonic() < deadline, f"{marker.name} did not appear in {timeout}s"
            time.sleep(0.05)

    def calls(self, host: str) -> int:
        path = self.gates / f"count-{host}"
        return int(path.read_text()) if path.exists() else 0

    def finish(self, proc: subprocess.Popen[str], timeout: float = 90) -> tuple[int, str]:
        """Wait for a background slipway; its exit code and its output (stdout and stderr)."""
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            raise AssertionError(
                f"slipway did not finish in {timeout}s\n{out}\n{self.stderr_file.read_text()}"
            ) from None
        return proc.returncode, out + self.stderr_file.read_text()

    def store(self) -> Store:
        """The project's state store, opened directly (what the CLI has no command for: locks, audit)."""
        return Store(self.env.get("SLIPWAY_DATABASE_URL") or f"sqlite:///{self.root / '.slipway/state.db'}")
