"""Issue 15, fleet commands: ``slipway app status ENV`` says which service process runs on which host, with
its pid, uptime and the release it runs; ``slipway app logs ENV`` shows the services' logs prefixed by host
and process, and ``--follow`` streams them until Ctrl-C. On a local target and on 2 SSH hosts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO
from tests.e2e.conftest import SLIPWAY, Project
from tests.fleet.conftest import host_path, ssh_target
from tests.host_services.conftest import config, health, wait_until
from tests.routers.test_bootstrap import audited
from tests.support.ports import free_port, free_ports
from tests.support.pytest_ssh import BedFactory

pytestmark = pytest.mark.timeout(420)
Make = Callable[[dict[str, Any]], Project]
LOCAL = {"kind": "local", "name": "dev-1", "path": ".slipway/targets/dev"}


def two_free_ports() -> int:
    """A port P with P + 1 free too (instance 1 listens there): a free P alone left web-1 a taken port."""
    return free_ports(2)


def _pid(path: Path) -> int:
    return int(path.read_text().strip())


class Follower:
    """``slipway app logs ENV --follow`` running in the background; its stdout lines collected as they come."""

    def __init__(self, proj: Project, *args: str) -> None:
        self.proc = subprocess.Popen([SLIPWAY, "app", "logs", "dev", "--follow", *args], cwd=proj.root, env=proj.env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text: str, deadline: float = 60) -> None:
        wait_until(f"{text!r} in the followed logs: {self.lines[-5:]}",
                   lambda: any(text in line for line in self.lines), deadline=deadline)

    def interrupt(self) -> tuple[int, str]:
        """Ctrl-C: it must end promptly; its exit code and stderr."""
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(timeout=30)
        self.reader.join(timeout=10)
        assert self.proc.stderr is not None
        return code, self.proc.stderr.read()

    def __enter__(self) -> Follower:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:  # the test failed before its Ctrl-C
            self.proc.kill()
            self.proc.wait(timeout=30)
        self.reader.join(timeout=10)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


def _tails_following(log_dir: Path | str) -> list[str]:
    """Command lines of 'tail -F' processes reading logs in ``log_dir`` (none may outlive the follow). An SSH
    host's processes run in this machine's pid namespace, and see their /srv as /srv (its own mount)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
            cwd = os.readlink(cmdline.parent / "cwd")
        except OSError:
            continue
        if args and args[0].endswith(b"tail") and b"-F" in args and cwd == str(log_dir):
            found.append(b" ".join(args).decode())
    return found


def test_app_status_and_logs_on_a_local_target(service_project: Make) -> None:
    proj = service_project(config(two_free_ports(), [LOCAL], instances=2))
    root = proj.root / ".slipway/targets/dev"
    none = proj.slipway("app", "status", "dev", "--json", check=False)
    assert none.returncode == 1 and json.loads(none.stdout)[0]["note"] == "no services were deployed here"
    proj.slipway("run")
    release = os.path.basename(os.readlink(root / "current"))

    hosts = json.loads(proj.slipway("app", "status", "dev", "--json").stdout)
    assert [(h["host"], h["current"], h["ok"]) for h in hosts] == [("dev-1", release, True)]
    processes = {p["process"]: p for p in hosts[0]["processes"]}
    assert sorted(processes) == ["web-0", "web-1"]
    for n in (0, 1):
        p = processes[f"web-{n}"]
        assert (p["service"], p["state"], p["release"]) == ("web", "RUNNING", release)
        assert p["pid"] == _pid(root / f"shared/run/web-{n}.pid") and p["uptime"].startswith("0:00:")
    table = proj.slipway("app", "status", "dev").stdout
    assert "web:web-1" in table and "RUNNING" in table and release in table

    logs = proj.slipway("app", "logs", "dev", "--lines", "5").stdout.splitlines()
    for n in (0, 1):
        assert any(line.startswith(f"dev-1 web-{n} | serving on http://127.0.0.1:") for line in logs), logs
    only = proj.slipway("app", "logs", "dev", "--service", "web", "-n", "1").stdout.splitlines()
    assert len(only) == 2, only  # one line of each instance's log
    bad = proj.slipway("app", "logs", "dev", "--service", "worker", check=False)
    assert bad.returncode == 2 and "no service 'worker'" in bad.stderr and "services: web" in bad.stderr

    # A stopped process: status says so and exits 1.
    subprocess.run(["supervisorctl", "-c", str(root / "supervisor/supervisord.conf"), "stop", "web:web-1"],
                   check=True, capture_output=True, timeout=60)
    stopped = proj.slipway("app", "status", "dev", "--json", check=False)
    states = {p["process"]: p["state"] for p in json.loads(stopped.stdout)[0]["processes"]}
    assert stopped.returncode == 1 and states == {"web-0": "RUNNING", "web-1": "STOPPED"}, stopped.stdout

    # --follow streams what the app prints after it started following, until Ctrl-C.
    old = _pid(root / "shared/run/web-0.pid")
    with Follower(proj, "--service", "web", "--lines", "1") as follower:
        follower.wait_for(f"pid {old})")  # the last line there already: tail has the file open, at its end
        os.kill(old, signal.SIGKILL)  # supervisord starts it again; the new process says so in its log
        wait_until("web-0 restarted", lambda: _pid(root / "shared/run/web-0.pid") != old)
        follower.wait_for(f"pid {_pid(root / 'shared/run/web-0.pid')})")
        assert any(line.startswith("dev-1 web-0 | serving on http://127.0.0.1:") and line.endswith(
            f"pid {_pid(root / 'shared/run/web-0.pid')})") for line in follower.lines), follower.lines
        assert len(_tails_following(root / "shared/log")) == 1  # what the follow runs, seen by this probe
        code, err = follower.interrupt()
    assert code == 0 and "stopped" in err and "Traceback" not in err and "is closed" not in err, err
    assert _tails_following(root / "shared/log") == []


def test_app_status_and_logs_on_two_ssh_hosts(service_project: Make, ssh_testbed: BedFactory) -> None:
    bed = ssh_testbed(2)
    port = free_port()
    proj = service_project(config(port, [ssh_target(bed, i, f"web{i + 1}") for i in (0, 1)]))
    proj.slipway("run")
    releases = [os.path.basename(os.readlink(host_path(bed, i, "app/current"))) for i in (0, 1)]

    hosts = json.loads(proj.slipway("app", "status", "dev", "--json").stdout)
    assert [(h["host"], h["current"], h["ok"]) for h in hosts] == [("web1", releases[0], True), ("web2", releases[1], True)]
    for i, h in enumerate(hosts):
        (p,) = h["processes"]
        assert (p["process"], p["state"], p["release"]) == ("web-0", "RUNNING", releases[i])
        assert p["pid"] == _pid(host_path(bed, i, "app/shared/run/web-0.pid"))

    logs = proj.slipway("app", "logs", "dev").stdout.splitlines()
    for i, host in enumerate(bed.hosts):
        assert any(line.startswith(f"web{i + 1} web-0 | serving on http://{host.address}:") for line in logs), logs

    pidfile = host_path(bed, 1, "app/shared/run/web-0.pid")
    old = _pid(pidfile)
    with Follower(proj, "-n", "1") as follower:
        follower.wait_for("web1 web-0 | serving on")  # each host's last line: both tails have their file open
        follower.wait_for(f"web2 web-0 | serving on http://{bed.hosts[1].address}:{port} (")
        os.kill(old, signal.SIGKILL)
        wait_until("web2's app restarted", lambda: _pid(pidfile) != old)
        follower.wait_for(f"pid {_pid(pidfile)})")
        assert [line.split(" | ")[0] for line in follower.lines].count("web1 web-0") == 1, follower.lines
        assert len(_tails_following("/srv/app/shared/log")) == 2  # one on each host
        code, err = follower.interrupt()
    assert code == 0 and "Traceback" not in err, err
    # the hosts' tail -F ended with the follow (its SSH channel closed, or the command was stopped)
    wait_until("no tail -F left on the hosts", lambda: _tails_following("/srv/app/shared/log") == [], deadline=30)

    # web2 reboots: app start brings its services back over SSH, web1's are left alone
    kept = _pid(host_path(bed, 0, "app/shared/run/web-0.pid"))
    reboot(host_path(bed, 1, "app"), 1)
    up = json.loads(proj.slipway("app", "start", "dev", "--json").stdout)
    assert [(h["host"], h["ok"]) for h in up] == [("web1", True), ("web2", True)], up
    assert up[0]["processes"][0]["pid"] == kept and up[1]["processes"][0]["pid"] == _pid(pidfile)


CONTAINERS = """version: 1
name: shop
artifact:
  kind: image
  name: shop
  registry: {address: "127.0.0.1:5999"}
  smoke: [{kind: tcp, host: container, port: 8080}]
services:
  web: {port: 8080}
environments:
  dev:
    targets:
      - {kind: container, name: box-1, engine: "unix:///nonexistent/podman.sock"}
pipeline:
  - {name: build, kind: build}
  - {name: deploy-dev, kind: deploy, environment: dev}
"""


@pytest.mark.timeout(60)
def test_app_commands_refuse_container_targets_with_the_engines_command(tmp_path: Path) -> None:
    (tmp_path / "slipway.yml").write_text(CONTAINERS)
    proj = Project(root=tmp_path, env=dict(os.environ))
    for command, engine in (("status", "podman ps"), ("logs", "podman logs")):
        out = proj.slipway("app", command, "dev", check=False)
        assert out.returncode == 2, out.stderr
        assert f"dev's target box-1 is a container: 'slipway app {command}' is for hosts" in out.stderr, out.stderr
        assert engine in out.stderr


def reboot(root: Path, instances: int) -> None:
    """What a reboot does to a deploy root's services: supervisord and every service process gone at once
    (SIGKILL, no clean shutdown), their pid files and the control socket left behind."""
    pids = [_pid(root / "supervisor/supervisord.pid")] + [_pid(root / f"shared/run/web-{n}.pid") for n in range(instances)]
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    wait_until("supervisord and the services gone", lambda: not any(Path(f"/proc/{pid}").exists() for pid in pids))


def documented_unit(root: Path) -> str:
    """The systemd unit of docs/services-on-hosts.md, for the deploy root ``root``."""
    text = (REPO / "docs/services-on-hosts.md").read_text()
    block = text.split("# /etc/systemd/system/slipway-app.service\n", 1)[1].split("```", 1)[0]
    return "\n".join(line.removeprefix("  ") for line in block.splitlines()).replace("/srv/app", str(root))


def test_app_start_brings_every_service_back_after_a_reboot(service_project: Make, tmp_path: Path) -> None:
    port = two_free_ports()
    proj = service_project(config(port, [LOCAL], instances=2))
    root = proj.root / ".slipway/targets/dev"
    none = proj.slipway("app", "start", "dev", "--json", check=False)
    assert none.returncode == 1 and json.loads(none.stdout)[0]["note"] == "no services were deployed here"
    proj.slipway("run")
    release = os.path.basename(os.readlink(root / "current"))
    before = {n: _pid(root / f"shared/run/web-{n}.pid") for n in (0, 1)}

    reboot(root, 2)
    down = proj.slipway("app", "status", "dev", "--json", check=False)
    assert down.returncode == 1 and "app start" in json.loads(down.stdout)[0]["note"], down.stdout
    up = proj.slipway("app", "start", "dev", "--json")
    (host,) = json.loads(up.stdout)
    assert host["ok"] and [(p["process"], p["state"], p["release"]) for p in host["processes"]] == [
        ("web-0", "RUNNING", release), ("web-1", "RUNNING", release)], up.stdout
    started = {n: _pid(root / f"shared/run/web-{n}.pid") for n in (0, 1)}
    assert started != before and {health(f"http://127.0.0.1:{port + n}")["status"] for n in (0, 1)} == {"ok"}
    again = json.loads(proj.slipway("app", "start", "dev", "--json").stdout)
    assert {p["pid"] for p in again[0]["processes"]} == set(started.values())  # what runs is left alone
    assert audited(proj).count("app.start") == 3

    # boot.sh alone, as cron's @reboot or the documented systemd unit runs it: a bare environment
    reboot(root, 2)
    boot = subprocess.run(["/bin/sh", str(root / "supervisor/boot.sh")], env={"PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=120, check=False)
    assert boot.returncode == 0, boot.stdout + boot.stderr
    assert {health(f"http://127.0.0.1:{port + n}")["status"] for n in (0, 1)} == {"ok"}

    unit = tmp_path / "slipway-app.service"
    unit.write_text(documented_unit(root))
    verified = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True,
                              timeout=60, check=False)
    assert verified.returncode == 0 and not (verified.stdout + verified.stderr).strip(), verified.stderr
    assert f"ExecStart=/bin/sh {root}/supervisor/boot.sh" in unit.read_text()
