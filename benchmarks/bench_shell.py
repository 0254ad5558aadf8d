"""One shell per host: Slipway against the plain tools, on a bed whose login shell is costly and on a plain one.

Real servers often log in through a bash whose ``~/.bashrc`` runs pyenv, rbenv, nvm or conda hooks, and sshd
starts every command through that shell. The heavy bed reproduces it (``SSHTestBed(heavy_shell=...)``: root
logs in with bash and a ``~/.bashrc`` that burns :data:`HEAVY_LOOPS` loop turns, about 0.13 s of CPU, the
difference the issue measured between such a user and a /bin/sh one); the plain bed logs in with /bin/sh.

On each bed, :data:`ROUNDS` interleaved rounds (the order of Slipway and its baseline alternates), each on
fresh deploy roots, of the same work as benchmarks/bench_fleet.py (2,000 files, 50 MB, a restart and a
check per host):

- first deploy: ``slipway run`` (deploy stage) against parallel ``tar | ssh``;
- a second release with 1% of the files changed: Slipway against ``rsync --link-dest`` of the previous
  release into a new one, then one ``ssh`` per host for the same switch, restart and check;
- rollback (switch only): ``slipway rollback`` in-process against one parallel ``ssh`` symlink flip;
- the same rollback with ``keep: 300`` on the targets (docs/ssh.md, "Kept connections"), after a command
  with ``keep`` handed every host to the keeper, as a deployment's end does: no SSH connection at all.

The agent Slipway leaves on each host (docs/ssh.md) is measured where it would be there: a first deploy
finds none (fresh roots), the second release finds none either (:func:`forget_agents`: a new release comes
long after the last one's agent exited), and the rollback, which follows its deployment within minutes,
finds the one the second release left.

Two floors. The baseline's: one parallel ``ssh host true`` per host, the price of reaching every host once
(a connection and one login shell) with OpenSSH's client. A rollback's: the least work any rollback from a
new process can do with Slipway's guarantee that no host changes before every host has been looked at
(:func:`_rollback_floor`): per host one asyncssh connection and one command, through the login shell, that
reads ``current``, checks the release and stages the link, then renames it once every host has answered. No
store, no dispatcher, no evidence: what is left is the connections' cost on this machine.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import asyncssh
from tests.support.keeper import own_runtime_dir
from tests.support.sshbed import SSHHost, SSHTestBed

from benchmarks.bench_fleet import (
    FILES,
    PORT,
    baseline,
    baseline_switch,
    git,
    make_payload,
    slipway_deploy,
    slipway_rollback,
    ssh_argv,
    stop_servers,
    without_hooks,
    write_configs,
)
from benchmarks.common import CpuMeter, table
from slipway.services.app import open_app
from slipway.services.fleet import exec_everywhere
from slipway.targets.release import MARKER
from slipway.targets.ssh_connect import ENCRYPTION_ALGS
from slipway.targets.ssh_keeper import keeper_dir

HOSTS = int(os.environ.get("SLIPWAY_BENCH_HOSTS", "50"))
ROUNDS = int(os.environ.get("SLIPWAY_BENCH_ROUNDS", "3"))
HEAVY_LOOPS = 60_000


class BedCpu(CpuMeter):
    """Deployer CPU as CpuMeter counts it; hosts' CPU from the bed's own processes, not the machine's.

    The machine may be busy with other work (a test run, a load generator): only the hosts' sshd, shells
    and commands are counted for them (:meth:`SSHTestBed.cpu_seconds`), after their sessions have ended.
    """

    def __init__(self, bed: SSHTestBed) -> None:
        self._bed = bed
        self._hosts = 0.0

    @property
    def hosts(self) -> float:
        """CPU seconds the bed's hosts used while the block ran."""
        return self._hosts

    def __enter__(self) -> BedCpu:
        # The bed's hosts share one disk: a first deploy leaves gigabytes of dirty pages, and whichever
        # tool ran next would pay for their writeback. Each measured block starts with a clean disk.
        os.sync()
        super().__enter__()
        self._keeper = keeper_cpu()
        self._start = self._bed.cpu_seconds()
        return self

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        # A keeper is detached, so not a child: its CPU is added to the deployer's here.
        self.deployer += sum(cpu - self._keeper.get(pid, 0.0) for pid, cpu in keeper_cpu().items())
        time.sleep(1.0)  # the hosts' sessions end and are reaped once the connections have closed
        self._hosts = self._bed.cpu_seconds() - self._start


def keeper_cpu() -> dict[int, float]:
    """CPU seconds used so far by each running connection keeper (``slipway.targets.ssh_keeper``), by pid."""
    found = {}
    tick = os.sysconf("SC_CLK_TCK")
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if b"slipway.targets.ssh_keeper" not in (proc / "cmdline").read_bytes():
                continue
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        found[int(proc.name)] = (int(fields[11]) + int(fields[12])) / tick  # utime and stime
    return found


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def wipe(bed: SSHTestBed) -> None:
    """Fresh deploy roots on every host (the servers stopped first). The root holds the socket of the agent
    an earlier deployment left (docs/ssh.md): without it a first deployment logs in, as it would on a new
    host, and the orphaned agent exits within two seconds."""
    stop_servers(bed.hosts)
    for h in bed.hosts:
        for root in ("slipway", "base"):
            shutil.rmtree(h.host_dir / root, ignore_errors=True)


def forget_agents(bed: SSHTestBed) -> None:
    """Remove the agents' sockets (each agent exits within two seconds): a new release usually comes
    hours after the last one, long after its agent's idle exit, so it logs in as rsync does. A rollback
    follows its deployment within minutes and finds the agent, which is what it is measured with."""
    for h in bed.hosts:
        shutil.rmtree(h.host_dir / "slipway" / ".slipway" / "agent", ignore_errors=True)


async def _rsync_host(h: SSHHost, src: Path, previous: str, release: str) -> int:
    root = "/srv/base"
    shell = " ".join(ssh_argv(h)[:-1])
    proc = await asyncio.create_subprocess_exec(
        "rsync", "-a", "--stats", f"--link-dest={root}/releases/{previous}", "-e", shell,
        f"{src}/payload", f"{src}/bin", f"{h.username}@{h.address}:{root}/releases/{release}/",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"rsync failed on {h.name}: {err.decode()[-500:]}")
    script = (
        f"cp {root}/releases/{release}/bin/*.sh {root}/ && "
        f"ln -sfn releases/{release} {root}/current.tmp && mv -Tf {root}/current.tmp {root}/current && "
        f"sh {root}/serve.sh {root} {h.address} {PORT + 1} && sh {root}/check.sh {h.address} {PORT + 1} {release}"
    )
    switch = await asyncio.create_subprocess_exec(*ssh_argv(h), script, stdout=subprocess.DEVNULL,
                                                  stderr=subprocess.PIPE)
    _, err = await switch.communicate()
    if switch.returncode != 0:
        raise RuntimeError(f"rsync baseline switch failed on {h.name}: {err.decode()[-500:]}")
    sent = re.search(rb"Total bytes sent: ([\d,.]+)", out)
    return int(sent.group(1).replace(b",", b"").replace(b".", b"")) if sent else 0


def rsync_release(hosts: list[SSHHost], src: Path, cpu: CpuMeter) -> tuple[float, int]:
    """The baseline's second release: rsync --link-dest of the previous one, then switch, restart, check."""
    previous = (hosts[0].host_dir / "base/current").readlink().name
    release = f"r{time.time_ns()}"
    (src / "payload/RELEASE").write_text(release + "\n")

    async def all_hosts() -> tuple[float, int]:
        started = time.perf_counter()
        sent = await asyncio.gather(*(_rsync_host(h, src, previous, release) for h in hosts))
        return time.perf_counter() - started, sum(sent)

    with cpu:
        return asyncio.run(all_hosts())


async def _floor(hosts: list[SSHHost]) -> float:
    async def one(h: SSHHost) -> None:
        proc = await asyncio.create_subprocess_exec(*ssh_argv(h), "true", stdout=subprocess.DEVNULL)
        if await proc.wait() != 0:
            raise RuntimeError(f"ssh true failed on {h.name}")

    started = time.perf_counter()
    await asyncio.gather(*(one(h) for h in hosts))
    return time.perf_counter() - started


async def _rollback_floor(hosts: list[SSHHost]) -> float:
    """The least cold rollback (module docstring): each host re-points ``current`` at the release it runs."""
    root = "/srv/slipway"
    barrier = asyncio.Barrier(len(hosts))

    async def one(h: SSHHost) -> None:
        release = os.readlink(h.host_dir / "slipway" / "current")  # the bed's hosts see host_dir as /srv
        script = (
            f"cd {root} && readlink current && test -f {release}/{MARKER} && "
            f"ln -sfn {release} current.tmp && echo staged && read go && [ \"$go\" = commit ] && "
            "mv -Tf current.tmp current && echo switched"
        )
        async with asyncssh.connect(
            h.address, h.port, username=h.username, known_hosts=str(h.known_hosts), client_keys=[str(h.client_key)],
            agent_path=None, config=[], preferred_auth="publickey", encryption_algs=list(ENCRYPTION_ALGS),
        ) as conn:
            proc = await conn.create_process(script)
            out = ""
            while "staged" not in out:
                chunk = await proc.stdout.read(1024)
                if not chunk:
                    raise RuntimeError(f"rollback floor: no staged link on {h.name}: {out!r}")
                out += chunk
            await barrier.wait()
            proc.stdin.write("commit\n")
            if "switched" not in await proc.stdout.read():
                raise RuntimeError(f"rollback floor: {h.name} did not switch")

    started = time.perf_counter()
    await asyncio.gather(*(one(h) for h in hosts))
    return time.perf_counter() - started


def _timed(cpu: CpuMeter, fn: Callable[[], float]) -> float:
    with cpu:
        return fn()


def one_round(bed: SSHTestBed, proj: Path, src: Path, index: int) -> dict[str, float]:
    """One round on fresh roots; Slipway goes first in even rounds, its baseline in odd ones."""
    wipe(bed)
    hosts = bed.hosts
    r: dict[str, float] = {}
    meters = {k: BedCpu(bed) for k in ("s1", "b1", "s2", "b2", "sr", "br", "sk")}

    def slipway_first() -> None:
        r["s1"], r["s1_bytes"] = slipway_deploy(proj, meters["s1"])

    def base_first() -> None:
        r["b1"] = baseline(hosts, src, meters["b1"])

    for step in ((slipway_first, base_first) if index % 2 == 0 else (base_first, slipway_first)):
        step()
    make_payload(proj, seed=1, changed=FILES // 100)
    git(proj, "commit", "-qam", f"round {index}: 1% of the files changed")
    shutil.copytree(proj / "payload", src / "payload", dirs_exist_ok=True)

    def slipway_second() -> None:
        forget_agents(bed)
        time.sleep(2.5)
        r["s2"], r["s2_bytes"] = slipway_deploy(proj, meters["s2"])

    def rsync_second() -> None:
        r["b2"], r["b2_bytes"] = rsync_release(hosts, src, meters["b2"])

    for step in ((slipway_second, rsync_second) if index % 2 == 0 else (rsync_second, slipway_second)):
        step()
    plain = without_hooks(proj)
    rollbacks: list[tuple[str, Callable[[], float]]] = [
        ("sr", lambda: slipway_rollback(proj, config=plain)),
        ("br", lambda: asyncio.run(baseline_switch(hosts, restart=False))),
    ]
    for key, fn in rollbacks if index % 2 == 0 else rollbacks[::-1]:
        r[key] = _timed(meters[key], fn)
    kept = with_keep(proj, plain)
    hand_over_hosts(proj, kept, len(hosts))  # not timed: what the end of a deployment with keep does
    r["sk"] = _timed(meters["sk"], lambda: slipway_rollback(proj, config=kept))  # back to the other release
    r["floor"] = asyncio.run(_floor(hosts))
    r["rfloor"] = asyncio.run(_rollback_floor(hosts))
    for key, meter in meters.items():
        r[f"{key}_dcpu"], r[f"{key}_hcpu"] = meter.deployer, meter.hosts
    return r


def with_keep(proj: Path, config: str) -> str:
    """A copy of ``config`` whose ssh targets keep their connections for 300 s."""
    text = (proj / config).read_text().replace("{kind: ssh, ", "{kind: ssh, keep: 300, ")
    (proj / "kept.yml").write_text(text)
    return "kept.yml"


def hand_over_hosts(proj: Path, config: str, count: int) -> None:
    """``slipway exec fleet -- true`` in-process with ``config``: its end hands every host to the keeper;
    then wait (bounded) until the keeper holds a connection to each."""
    app = open_app(config_path=proj / config, environ={**os.environ, "SLIPWAY_USER": "bench"})
    try:
        outcomes = asyncio.run(exec_everywhere(app, "fleet", "true"))
    finally:
        app.close()
    if not all(o.ok for o in outcomes):
        raise RuntimeError(f"benchmark exec failed: {[o.error for o in outcomes if not o.ok][:3]}")
    deadline = time.monotonic() + 60
    while len(list(keeper_dir().glob("*.sock"))) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the keeper holds {len(list(keeper_dir().glob('*.sock')))} of {count} hosts")
        time.sleep(0.1)


def measure(tmp: Path, heavy: bool) -> tuple[list[dict[str, float]], str, str]:
    name = "heavy" if heavy else "plain"
    load_before = _load()
    with SSHTestBed(tmp / f"bed-{name}", HOSTS, disk_size=None, heavy_shell=HEAVY_LOOPS if heavy else None) as bed:
        try:
            proj = tmp / f"proj-{name}"
            make_payload(proj, seed=1)
            write_configs(proj, bed.hosts)
            git(proj, "init", "-q")
            git(proj, "add", "-A")
            git(proj, "commit", "-qm", "release 1")
            src = tmp / f"src-{name}"
            shutil.copytree(proj, src, ignore=shutil.ignore_patterns(".git", ".slipway"))
            rounds = []
            for index in range(ROUNDS):
                print(f"  {name} bed, round {index + 1} of {ROUNDS} (load {_load()})", flush=True)
                rounds.append(one_round(bed, proj, src, index))
                make_payload(proj, seed=1)  # the next round starts again from release 1's files
                git(proj, "commit", "-qam", f"round {index}: back to release 1")
                shutil.copytree(proj / "payload", src / "payload", dirs_exist_ok=True)
        finally:
            stop_servers(bed.hosts)
    return rounds, load_before, _load()


def _spread(values: list[float], unit: str = " s", digits: int = 2) -> str:
    return f"{statistics.median(values):.{digits}f}{unit} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def _ratio(rounds: list[dict[str, float]], a: str, b: str) -> str:
    return _spread([r[a] / r[b] for r in rounds], "x")


def section(name: str, rounds: list[dict[str, float]], loads: tuple[str, str]) -> str:
    rows = [
        ["first deploy", _spread([r["s1"] for r in rounds]), "`tar \\| ssh`", _spread([r["b1"] for r in rounds]),
         _ratio(rounds, "s1", "b1")],
        ["1% of files changed", _spread([r["s2"] for r in rounds]), "`rsync --link-dest` + `ssh`",
         _spread([r["b2"] for r in rounds]), _ratio(rounds, "s2", "b2")],
        ["rollback (switch only)", _spread([r["sr"] for r in rounds]), "parallel `ssh` flip",
         _spread([r["br"] for r in rounds]), _ratio(rounds, "sr", "br")],
        ["rollback, `keep: 300` (kept connections)", _spread([r["sk"] for r in rounds]), "parallel `ssh` flip",
         _spread([r["br"] for r in rounds]), _ratio(rounds, "sk", "br")],
        ["floor: `ssh host true` on every host", "", "", _spread([r["floor"] for r in rounds]), ""],
        ["floor of a rollback: one asyncssh connection and command per host, no store", _spread([r["rfloor"] for r in rounds]),
         "parallel `ssh` flip", _spread([r["br"] for r in rounds]), _ratio(rounds, "rfloor", "br")],
    ]
    by_bytes = [
        ["1% of files changed: bytes", _spread([r["s2_bytes"] / 1e6 for r in rounds], " MB", 3),
         _spread([r["b2_bytes"] / 1e6 for r in rounds], " MB", 3), _ratio(rounds, "s2_bytes", "b2_bytes"),
         _spread([100 * r["s2_bytes"] / r["s1_bytes"] for r in rounds], "%")],
    ]
    cpu = []
    for label, s, b in (("first deploy", "s1", "b1"), ("1% changed", "s2", "b2"), ("rollback", "sr", "br"),
                        ("rollback, kept", "sk", "br")):
        cpu.append([
            label, _spread([r[f"{s}_dcpu"] for r in rounds]), _spread([r[f"{b}_dcpu"] for r in rounds]),
            _spread([r[f"{s}_hcpu"] for r in rounds]), _spread([r[f"{b}_hcpu"] for r in rounds]),
        ])
    return (
        f"### {name}\n\nLoad average before and after: {loads[0]}; {loads[1]}. Median (min-max) of "
        f"{len(rounds)} rounds.\n\n"
        + table(["measure", "Slipway", "baseline", "baseline time", "Slipway/baseline"], rows)
        + "\n\n"
        + table(["", "Slipway", "rsync", "Slipway/rsync", "Slipway, % of a full release"], by_bytes)
        + "\n\nCPU seconds: deployer (the Slipway process, or the baseline's with its `ssh`, `tar`, `rsync`\n"
        "children) and hosts (the bed's own processes: sshd, login shells, the commands on the hosts; not the\n"
        "rest of the machine):\n\n"
        + table(["", "deployer, Slipway", "deployer, baseline", "hosts, Slipway", "hosts, baseline"], cpu)
        + "\n"
    )


def run() -> str:
    """Both beds, heavy first, and the markdown section."""
    out = []
    with tempfile.TemporaryDirectory(prefix="slipway-shellbench-") as tmp, own_runtime_dir() as runtime:
        os.environ["XDG_RUNTIME_DIR"] = str(runtime)  # this run's keeper, stopped at the end
        for heavy in (True, False):
            rounds, before, after = measure(Path(tmp), heavy)
            title = (f"Login shell with a costly ~/.bashrc ({HEAVY_LOOPS:,} loop turns, about 0.13 s of CPU)"
                     if heavy else "Plain login shell (/bin/sh)")
            out.append(section(title, rounds, (before, after)))
    return (
        f"## One shell per host: {HOSTS} hosts, heavy and plain login shells\n\n"
        "The work of the fleet benchmark (2,000 files, 50 MB, restart and check per host) on two beds of real\n"
        "OpenSSH hosts: one whose login shell sources a costly `~/.bashrc`, as servers with pyenv, rbenv, nvm\n"
        "or conda hooks do, and one with /bin/sh. Rounds are interleaved (the order of Slipway and baseline\n"
        "alternates) on fresh deploy roots. Reproduce: `python benchmarks/run.py shell` (root, for the bed;\n"
        "`SLIPWAY_BENCH_HOSTS` and `SLIPWAY_BENCH_ROUNDS` change the size). The load averages are mostly the\n"
        "beds' own: their sshd, shells and commands run on this machine's cores.\n\n"
        "Two floors. `ssh host true` on every host: what reaching each host once costs with OpenSSH's client.\n"
        "The floor of a rollback: the least any rollback from a new process can do and still change no host\n"
        "before every host has been looked at: per host one asyncssh connection and one command through the\n"
        "login shell that reads `current`, checks the release and stages the link, renamed once every host has\n"
        "answered; no store, no dispatcher, no evidence. On the heavy bed it pays the login shell that Slipway's\n"
        "agent spares; on the plain one it is the connections' cost, which only kept connections avoid.\n\n"
        + "\n".join(out)
    )


if __name__ == "__main__":
    print(run())
