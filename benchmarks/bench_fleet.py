"""Fleet deployment over SSH: Slipway against a plain shell baseline and Ansible, on real OpenSSH hosts.

Each approach deploys the same payload (about 50 MB in 2,000 files) to every host of an SSH test bed
and does the same work per host: upload, unpack into releases/<id>, switch ``current``, restart a small
HTTP server on the host's own address, and check that it serves the new release.

- Slipway: ``slipway run`` of a two-stage pipeline (build, deploy); the time is the deploy stage's, from
  the store. Then a second release with 1% of the files changed (bytes sent, time), and a rollback.
- Baseline: per host, ``tar c | ssh host 'tar x && ln && mv && restart && check'``, all hosts in
  parallel (asyncio subprocesses), one ssh connection per host.
- Ansible (ansible-core from the lock file): a playbook with unarchive, file (link), command (restart,
  check); once with its default settings (forks=5) and once with forks equal to the host count.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from tests.support.sshbed import SSHHost, SSHTestBed

from benchmarks.common import GIT_ENV, CpuMeter, table
from slipway.services import pipeline
from slipway.services.app import open_app

FILES = 2000
FILE_SIZE = 25_000  # 2,000 x 25 kB = 50 MB
SIZES = (10, 50)
PORT = 18780

SERVE = """\
#!/bin/sh
# restart the release's tiny server: serve.sh ROOT ADDRESS PORT
root=$1; address=$2; port=$3
[ -f "$root/server.pid" ] && kill "$(cat "$root/server.pid")" 2>/dev/null
cd "$root/current" || exit 1
setsid nohup python3 -m http.server "$port" --bind "$address" >/dev/null 2>&1 </dev/null &
echo $! > "$root/server.pid"
"""
CHECK = """\
#!/bin/sh
# check.sh ADDRESS PORT RELEASE: wait until the server answers with the expected release
i=0
while [ $i -lt 100 ]; do
  got=$(python3 -c "import urllib.request,sys; print(urllib.request.urlopen('http://$1:$2/payload/RELEASE', timeout=1).read().decode().strip())" 2>/dev/null)
  [ "$got" = "$3" ] && exit 0
  i=$((i+1)); sleep 0.05
done
echo "release $3 not served (got '$got')" >&2; exit 1
"""


def make_payload(root: Path, seed: int, changed: int = 0) -> None:
    """2,000 files of random bytes; ``changed`` of them differ from seed's."""
    rnd = __import__("random").Random(seed)
    payload = root / "payload"
    for i in range(FILES):
        sub = payload / f"d{i % 40:02}"
        sub.mkdir(parents=True, exist_ok=True)
        data = rnd.randbytes(FILE_SIZE)
        if i < changed:
            data = os.urandom(FILE_SIZE)
        (sub / f"f{i:04}.bin").write_bytes(data)
    (root / "bin").mkdir(exist_ok=True)
    (root / "bin/serve.sh").write_text(SERVE)
    (root / "bin/check.sh").write_text(CHECK)


def slipway_config(hosts: list[SSHHost]) -> str:
    targets = "\n".join(
        f"      - {{kind: ssh, name: {h.name}, address: {h.address}, port: {h.port}, user: {h.username}, "
        f"key: {h.client_key}, known_hosts: {h.known_hosts}, path: /srv/slipway}}"
        for h in hosts
    )
    return textwrap.dedent(f"""\
        name: fleetbench
        artifact:
          build: ["date +%s%N > payload/RELEASE"]
          paths: [payload, bin]
        deploy:
          keep_releases: 3
          hooks:
            activate:
              - "sh bin/serve.sh {{{{ paths.root }}}} {{{{ host.address }}}} {PORT}"
            verify:
              - "sh bin/check.sh {{{{ host.address }}}} {PORT} $(cat payload/RELEASE)"
        environments:
          fleet:
            parallel: {len(hosts)}
            targets:
        """) + targets + textwrap.dedent("""
        pipeline:
          - {name: build, kind: build}
          - {name: deploy, kind: deploy, environment: fleet}
        """)


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=root, check=True, env={**os.environ, **GIT_ENV}, capture_output=True)


def write_configs(root: Path, hosts: list[SSHHost]) -> None:
    """slipway.yml, and build-only.yml: the same pipeline without its deploy stage (both are committed)."""
    text = slipway_config(hosts)
    (root / "slipway.yml").write_text(text)
    (root / "build-only.yml").write_text(text.replace("  - {name: deploy, kind: deploy, environment: fleet}\n", ""))


def prebuild(root: Path) -> None:
    """Build the commit's artifact with the build-only pipeline, so that the measured run only deploys."""
    app = open_app(config_path=root / "build-only.yml", environ={**os.environ, "SLIPWAY_USER": "bench"})
    try:
        if asyncio.run(pipeline.start_run(app)).state.value != "succeeded":
            raise RuntimeError("benchmark build failed")
    finally:
        app.close()


def slipway_deploy(root: Path, cpu: CpuMeter) -> tuple[float, int]:
    """Run the pipeline (its build reused); return (deploy stage seconds, bytes sent to all hosts)."""
    prebuild(root)
    app = open_app(config_path=root / "slipway.yml", environ={**os.environ, "SLIPWAY_USER": "bench"})
    try:
        with cpu:
            outcome = asyncio.run(pipeline.start_run(app))
        if outcome.state.value != "succeeded":
            raise RuntimeError(f"benchmark run {outcome.run_id} ended {outcome.state.value}")
        run = app.store.get_run(outcome.run_id)
        stage = next(s for s in run.stages if s.name == "deploy")
        assert stage.started_at and stage.finished_at
        sent = sum(
            int(m) for _, step in app.store.steps(run.id, stage="deploy")
            for m in re.findall(r"\((\d+) bytes\)", step.log)
        )
        return stage.finished_at - stage.started_at, sent
    finally:
        app.close()


def slipway_rollback(root: Path, *, config: str = "slipway.yml") -> float:
    """``slipway rollback fleet`` in-process (the CLI's start-up excluded, as for the baseline)."""
    app = open_app(config_path=root / config, environ={**os.environ, "SLIPWAY_USER": "bench"})
    try:
        started = time.perf_counter()
        outcome = asyncio.run(pipeline.rollback(app, "fleet"))
        elapsed = time.perf_counter() - started
        if outcome.state.value != "succeeded":
            raise RuntimeError(f"benchmark rollback {outcome.run_id} ended {outcome.state.value}")
        return elapsed
    finally:
        app.close()


def without_hooks(root: Path) -> str:
    """A copy of the project's config with no hooks: a rollback then only moves ``current``."""
    text = (root / "slipway.yml").read_text()
    start, end = text.index("  hooks:\n"), text.index("environments:\n")
    (root / "switch-only.yml").write_text(text[:start] + text[end:])
    return "switch-only.yml"


async def baseline_switch(hosts: list[SSHHost], *, restart: bool) -> float:
    """Per host, one ``ssh``: point current at the other release (and restart and check), all in parallel."""
    root = "/srv/slipway"
    script = (
        f"cd {root} && cur=$(readlink current) && prev=$(ls -1 releases | grep -vx \"${{cur#releases/}}\" | tail -n 1) && "
        "ln -sfn releases/$prev current.tmp && mv -Tf current.tmp current"
    )

    async def one(h: SSHHost) -> None:
        extra = (
            f" && sh current/bin/serve.sh {root} {h.address} {PORT} && "
            f"sh current/bin/check.sh {h.address} {PORT} $(cat current/payload/RELEASE)"
            if restart else ""
        )
        proc = await asyncio.create_subprocess_exec(*ssh_argv(h), script + extra, stdout=subprocess.DEVNULL,
                                                    stderr=subprocess.PIPE)
        _, err = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"baseline switch failed on {h.name}: {err.decode()[-500:]}")

    started = time.perf_counter()
    await asyncio.gather(*(one(h) for h in hosts))
    return time.perf_counter() - started


def ssh_argv(h: SSHHost) -> list[str]:
    return ["ssh", "-o", "BatchMode=yes", "-o", f"UserKnownHostsFile={h.known_hosts}", "-o", "StrictHostKeyChecking=yes",
            "-i", str(h.client_key), "-p", str(h.port), f"{h.username}@{h.address}"]


async def baseline_host(h: SSHHost, src: Path, release: str) -> None:
    root = "/srv/base"
    script = (
        f"mkdir -p {root}/releases/{release} && tar -x -f - -C {root}/releases/{release} && "
        f"cp {root}/releases/{release}/bin/*.sh {root}/ && "
        f"ln -sfn releases/{release} {root}/current.tmp && mv -Tf {root}/current.tmp {root}/current && "
        f"sh {root}/serve.sh {root} {h.address} {PORT + 1} && sh {root}/check.sh {h.address} {PORT + 1} {release}"
    )
    tar = await asyncio.create_subprocess_exec("tar", "-C", str(src), "-cf", "-", "payload", "bin",
                                               stdout=subprocess.PIPE)
    assert tar.stdout is not None
    r, w = os.pipe()
    ssh = await asyncio.create_subprocess_exec(*ssh_argv(h), script, stdin=r, stdout=subprocess.DEVNULL,
                                               stderr=subprocess.PIPE)
    os.close(r)
    with os.fdopen(w, "wb") as out:
        while chunk := await tar.stdout.read(1 << 20):
            out.write(chunk)
    await tar.wait()
    _, err = await ssh.communicate()
    if ssh.returncode != 0:
        raise RuntimeError(f"baseline failed on {h.name}: {err.decode()[-500:]}")


def baseline(hosts: list[SSHHost], src: Path, cpu: CpuMeter) -> float:
    release = f"r{time.time_ns()}"
    (src / "payload/RELEASE").write_text(release + "\n")
    async def all_hosts() -> float:
        started = time.perf_counter()
        await asyncio.gather(*(baseline_host(h, src, release) for h in hosts))
        return time.perf_counter() - started

    with cpu:
        return asyncio.run(all_hosts())


def ansible(hosts: list[SSHHost], src: Path, work: Path, forks: int | None) -> float:
    release = f"a{time.time_ns()}"
    (src / "payload/RELEASE").write_text(release + "\n")
    bundle = work / "bundle.tar.gz"
    subprocess.run(["tar", "-C", str(src), "-czf", str(bundle), "payload", "bin"], check=True)
    inventory = work / "inventory.ini"
    inventory.write_text("[fleet]\n" + "".join(
        f"{h.name} ansible_host={h.address} ansible_port={h.port} ansible_user={h.username} "
        f"ansible_ssh_private_key_file={h.client_key} address={h.address}\n" for h in hosts
    ))
    known = hosts[0].known_hosts
    playbook = work / "deploy.yml"
    playbook.write_text(textwrap.dedent(f"""\
        - hosts: fleet
          gather_facts: false
          vars: {{root: /srv/ansible, release: "{release}"}}
          tasks:
            - file: {{path: "{{{{ root }}}}/releases/{{{{ release }}}}", state: directory}}
            - unarchive: {{src: "{bundle}", dest: "{{{{ root }}}}/releases/{{{{ release }}}}"}}
            - shell: "cp {{{{ root }}}}/releases/{{{{ release }}}}/bin/*.sh {{{{ root }}}}/"
            - file: {{src: "releases/{{{{ release }}}}", dest: "{{{{ root }}}}/current", state: link, force: true}}
            - shell: "sh {{{{ root }}}}/serve.sh {{{{ root }}}} {{{{ address }}}} {PORT + 2}"
            - shell: "sh {{{{ root }}}}/check.sh {{{{ address }}}} {PORT + 2} {{{{ release }}}}"
        """))
    env = {
        **os.environ,
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        "ANSIBLE_SSH_ARGS": f"-o UserKnownHostsFile={known} -o ControlMaster=auto -o ControlPersist=60s",
        "ANSIBLE_PYTHON_INTERPRETER": "/usr/bin/python3",
        "ANSIBLE_LOCAL_TEMP": str(work / "ansible-local"),
        "ANSIBLE_REMOTE_TEMP": "/tmp/ansible-remote",
        "ANSIBLE_NOCOLOR": "1",
    }
    argv = [str(Path(sys.executable).with_name("ansible-playbook")), "-i", str(inventory), str(playbook)]
    if forks:
        argv += ["--forks", str(forks)]
    started = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=1800, check=False)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"ansible failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
    return elapsed


def stop_servers(hosts: list[SSHHost]) -> None:
    for h in hosts:
        for root in ("slipway", "base", "ansible"):
            pid = h.host_dir / root / "server.pid"
            if pid.exists():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid.read_text()), 15)


def measure(count: int, tmp: Path, cpu: dict[str, CpuMeter]) -> dict[str, float]:
    out: dict[str, float] = {}
    with SSHTestBed(tmp / f"bed{count}", count, disk_size=None) as bed:
        hosts = bed.hosts
        try:
            proj = tmp / f"proj{count}"
            make_payload(proj, seed=1)
            write_configs(proj, hosts)
            git(proj, "init", "-q")
            git(proj, "add", "-A")
            git(proj, "commit", "-qm", "release 1")
            cpu["slipway"] = CpuMeter()
            out["slipway"], out["full_bytes"] = slipway_deploy(proj, cpu["slipway"])
            make_payload(proj, seed=1, changed=FILES // 100)
            git(proj, "commit", "-qam", "release 2: 1% of the files changed")
            out["slipway_1pct"], out["one_pct_bytes"] = slipway_deploy(proj, CpuMeter())
            out["rollback"] = slipway_rollback(proj)
            out["rollback_base"] = asyncio.run(baseline_switch(hosts, restart=True))
            plain = without_hooks(proj)
            out["switch"] = slipway_rollback(proj, config=plain)
            out["switch_base"] = asyncio.run(baseline_switch(hosts, restart=False))
            src = tmp / f"src{count}"
            shutil.copytree(proj, src, ignore=shutil.ignore_patterns(".git", ".slipway"))
            cpu["baseline"] = CpuMeter()
            out["baseline"] = baseline(hosts, src, cpu["baseline"])
            work = tmp / f"ansible{count}"
            work.mkdir()
            out["ansible_forks"] = ansible(hosts, src, work, forks=count)
            out["ansible_default"] = ansible(hosts, src, work, forks=None)
        finally:
            stop_servers(hosts)
    return out


def run() -> str:
    """Measure at each fleet size and return the markdown section."""
    results = {}
    cpus: dict[int, dict[str, CpuMeter]] = {}
    with tempfile.TemporaryDirectory(prefix="slipway-fleetbench-") as tmp:
        for count in SIZES:
            cpus[count] = {}
            results[count] = measure(count, Path(tmp), cpus[count])
    rows = []
    for count, r in results.items():
        rows.append([
            str(count), f"{r['slipway']:.2f} s", f"{r['baseline']:.2f} s", f"{r['slipway'] / r['baseline']:.2f}x",
            f"{r['ansible_default']:.1f} s", f"{r['ansible_forks']:.1f} s",
            f"{r['ansible_forks'] / r['slipway']:.1f}x", f"{r['ansible_default'] / r['slipway']:.1f}x",
        ])
    rows_cpu = []
    for count, c in cpus.items():
        s, b = c["slipway"], c["baseline"]
        rows_cpu.append([
            str(count), f"{s.deployer:.1f} s", f"{b.deployer:.1f} s", f"{s.deployer / b.deployer:.2f}x",
            f"{s.hosts:.1f} s", f"{b.hosts:.1f} s", f"{s.hosts / b.hosts:.2f}x",
        ])
    rows2 = []
    rows3 = []
    for count, r in results.items():
        rows2.append([
            str(count), f"{r['full_bytes'] / 1e6:.1f} MB", f"{r['one_pct_bytes'] / 1e6:.2f} MB",
            f"{100 * r['one_pct_bytes'] / r['full_bytes']:.2f}%", f"{r['slipway_1pct']:.2f} s",
        ])
        rows3.append([
            str(count), f"{r['rollback']:.2f} s", f"{r['rollback_base']:.2f} s",
            f"{r['rollback'] / r['rollback_base']:.2f}x", f"{r['switch']:.2f} s", f"{r['switch_base']:.2f} s",
            f"{r['switch'] / r['switch_base']:.2f}x",
        ])
    return (
        "## Fleet deployment over SSH\n\n"
        f"{FILES} files of {FILE_SIZE // 1000} kB (about {FILES * FILE_SIZE / 1e6:.0f} MB) to every host of a test bed of\n"
        "real OpenSSH servers on loopback addresses (one mount namespace each). Per host: upload, unpack into\n"
        "releases/<id>, switch `current`, restart a small HTTP server, check it serves the new release.\n"
        "Baseline: parallel `tar | ssh` with the same switch, restart and check. Ansible: unarchive + link +\n"
        "restart + check, with its default forks (5) and with forks = host count. Targets: Slipway within\n"
        "1.3x of the baseline; at least 5x faster than Ansible at 50 hosts.\n\n"
        + table(["hosts", "Slipway", "baseline", "Slipway/baseline", "Ansible (default)", "Ansible (forks=N)",
                 "Ansible(forks=N)/Slipway", "Ansible(default)/Slipway"], rows)
        + "\n\nWhere the CPU went during the full deployment (CPU seconds; the test hosts share this machine's\n"
        "cores with the deployer, so wall time mixes both). Deployer: the Slipway process, or the baseline's\n"
        "process with its `ssh` and `tar` children. Hosts: everything else (sshd, the commands run on the hosts,\n"
        "the restarted servers).\n\n"
        + table(["hosts", "deployer CPU, Slipway", "deployer CPU, baseline", "ratio", "hosts' CPU, Slipway",
                 "hosts' CPU, baseline", "ratio"], rows_cpu)
        + "\n\nA second release with 1% of the files changed:\n\n"
        + table(["hosts", "bytes sent, full release", "bytes sent, 1% changed", "ratio", "1% release time"], rows2)
        + "\n\nRollback of every host, against one parallel `ssh` per host doing the same in the same run. With\n"
        "restart: switch `current`, restart the server and check it serves the old release (`slipway rollback`\n"
        "runs the activate and verify hooks). Switch only: the same config without hooks, so only `current`\n"
        "moves:\n\n"
        + table(["hosts", "rollback with restart", "baseline", "ratio", "switch only", "baseline", "ratio"], rows3)
        + "\n\nTargets: the 1%-changed release sends at most 3% of the bytes of a full one; rollback of 50 hosts\n"
        "under 1 second. Reproduce: `python benchmarks/run.py fleet` (needs root for the test bed).\n"
    )


if __name__ == "__main__":
    print(run())
