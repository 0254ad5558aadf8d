"""Shared pieces of the fault matrix: a small project deploying to the hosts of one shared test bed, traps
that stop a deployment at a chosen phase, and the checks that every case ends with.

A *trap* is a file the test creates; the hook (or build command) of that phase finds it, removes it, touches
``<trap>.reached`` and waits (up to 30 s) for ``<trap>.go``. The test waits for ``.reached`` and then
sends its signal or kills its server, so the fault lands at exactly that point, whatever the machine's load.
A trap whose file holds ``fail`` makes its hook exit 1 once released.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import signal
import subprocess
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy
import yaml

from tests.e2e.conftest import GIT_ENV, SLIPWAY
from tests.support.sshbed import SSHTestBed

MARKER = ".slipway-release"
ENV = "fleet"
#: Seconds a trapped hook waits for its release before it goes on by itself.
TRAP_WAIT = 30
#: Seconds a command of the test may take; a deployment of this project takes a few.
COMMAND_TIMEOUT = 120.0


#: The trap (see the module docstring); its argument is the trap file's path. A script, not hook text:
#: the step names that the store keeps stay short.
TRAP_SCRIPT = (
    't=$1; if [ -e "$t" ]; then mode=$(cat "$t"); rm -f "$t"; touch "$t.reached"; i=0; '
    f'while [ ! -e "$t.go" ] && [ $i -lt {TRAP_WAIT * 10} ]; do sleep 0.1; i=$((i+1)); done; '
    'rm -f "$t.go"; [ "$mode" != fail ]; fi\n'
)


@dataclass
class Case:
    """One project, in its own directory and store, deploying to ``/srv/<name>/app`` on every bed host."""

    root: Path
    bed: SSHTestBed
    name: str
    env: dict[str, str]
    database_url: str | None = None
    commits: dict[str, str] = field(default_factory=dict)

    @classmethod
    def create(cls, root: Path, bed: SSHTestBed, name: str, *, database_url: str | None = None) -> Case:
        env = {**os.environ, **GIT_ENV, "SLIPWAY_USER": "tester"}
        env.pop("SLIPWAY_DATABASE_URL", None)
        if database_url:
            env["SLIPWAY_DATABASE_URL"] = database_url
        case = cls(root=root, bed=bed, name=name, env=env, database_url=database_url)
        env["FAULT_TRAPS"] = str(case.local_traps)  # the build's traps; in its environment, out of step names
        for traps in [case.local_traps, *(h.host_dir / name / "traps" for h in bed.hosts)]:
            traps.mkdir(parents=True)
            (traps / "trap.sh").write_text(TRAP_SCRIPT)
        root.mkdir()
        case.write_config()
        case.git("init", "-q")
        return case

    # ---- the project ------------------------------------------------------------------------------
    @property
    def local_traps(self) -> Path:
        """The build's traps: beside the project, not in it."""
        return self.root.with_name(self.root.name + "-traps")

    def write_config(self) -> None:
        """slipway.yml: build, then a rolling deployment (one host at a time) with a trap in each phase."""
        traps = f"/srv/{self.name}/traps"
        hooks = {phase: [f"sh {traps}/trap.sh {traps}/{phase}"] for phase in ("configure", "activate", "verify")}
        hooks["verify"].append("test -f app/version.txt")
        targets = [
            {
                "kind": "ssh", "name": f"h{i + 1}", "address": h.address, "port": h.port, "user": h.username,
                "key": str(h.client_key), "known_hosts": str(h.known_hosts), "path": f"/srv/{self.name}/app",
            }
            for i, h in enumerate(self.bed.hosts)
        ]
        config = {
            "name": "faults",
            "artifact": {"build": ["sh $FAULT_TRAPS/trap.sh $FAULT_TRAPS/build"], "paths": ["app"]},
            "deploy": {"hooks": hooks},
            "environments": {ENV: {"strategy": {"kind": "rolling", "batch_size": 1}, "targets": targets}},
            "pipeline": [{"name": "build", "kind": "build"}, {"name": "deploy", "kind": "deploy", "environment": ENV}],
        }
        (self.root / "slipway.yml").write_text(yaml.safe_dump(config, sort_keys=False))

    def git(self, *args: str) -> str:
        done = subprocess.run(["git", *args], cwd=self.root, env=self.env, check=True, capture_output=True, text=True)
        return done.stdout

    def commit(self, label: str, *, payload: int = 0) -> str:
        """A commit whose files differ from every other's: version.txt, a file of its own, ``payload`` bytes."""
        app = self.root / "app"
        app.mkdir(exist_ok=True)
        for old in app.glob("only-*"):
            old.unlink()
        (app / "version.txt").write_text(f"{label}\n")
        (app / f"only-{label}.txt").write_text(f"{label} {os.urandom(8).hex()}\n")
        (app / "shared.txt").write_text("the same in every commit\n")
        big = app / "big.bin"
        if payload:
            big.write_bytes(os.urandom(payload))
        elif big.exists():
            big.unlink()
        self.git("add", "-A")
        self.git("commit", "-qm", f"release {label}")
        self.commits[label] = self.git("rev-parse", "HEAD").strip()
        return self.commits[label]

    # ---- the slipway process ----------------------------------------------------------------------
    def slipway(self, *args: str, timeout: float = COMMAND_TIMEOUT) -> subprocess.CompletedProcess[str]:
        """Run the installed ``slipway`` to the end."""
        return subprocess.run(
            [SLIPWAY, *args], cwd=self.root, env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )

    def ok(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run ``slipway`` and fail the test unless it exits 0."""
        done = self.slipway(*args)
        assert done.returncode == 0, f"slipway {' '.join(args)} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
        return done

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "--json").stdout)

    def start(self, *args: str) -> subprocess.Popen[str]:
        """Start ``slipway`` in a session of its own (the test ends whatever it leaves behind)."""
        return subprocess.Popen(
            [SLIPWAY, *args], cwd=self.root, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, start_new_session=True,
        )

    # ---- traps ------------------------------------------------------------------------------------
    def trap(self, phase: str, *, host: int = 0, fail: bool = False) -> Path:
        """Arm the trap of ``phase`` (on ``host`` for a hook; the build trap is local); returns its path."""
        path = self.local_traps / "build" if phase == "build" else self.host_dir(host) / "traps" / phase
        path.write_text("fail" if fail else "wait")
        return path

    @staticmethod
    def release_trap(trap: Path) -> None:
        trap.with_name(trap.name + ".go").touch()

    def host_dir(self, index: int) -> Path:
        """What host ``index`` sees as /srv/<name>."""
        return self.bed.hosts[index].host_dir / self.name

    # ---- what the hosts run -----------------------------------------------------------------------
    def current(self, index: int) -> str | None:
        """The release id ``current`` names on host ``index`` (None: no release yet)."""
        link = self.host_dir(index) / "app/current"
        return Path(os.readlink(link)).name if link.is_symlink() else None

    def currents(self) -> list[str | None]:
        return [self.current(i) for i in range(len(self.bed.hosts))]

    def marker(self, index: int) -> dict[str, Any]:
        return dict(json.loads((self.host_dir(index) / "app/current" / MARKER).read_text()))

    def partials(self, index: int) -> list[str]:
        releases = self.host_dir(index) / "app/releases"
        return sorted(p.name for p in releases.iterdir() if p.name.endswith(".partial")) if releases.exists() else []

    def release_files(self, index: int) -> dict[str, str]:
        """sha256 of every regular file of host ``index``'s current release, by path (the marker aside)."""
        base = self.host_dir(index) / "app/current"
        return {
            str(p.relative_to(base)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(base.rglob("*"))
            if p.is_file() and not p.is_symlink() and p.name != MARKER
        }

    def commit_files(self, sha: str) -> dict[str, str]:
        """sha256 of every file of the artifact paths (``app``) in commit ``sha``, read from git itself."""
        archive = subprocess.run(
            ["git", "archive", "--format=tar", sha, "app"], cwd=self.root, env=self.env, check=True, capture_output=True
        ).stdout
        files = {}
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            for member in tar.getmembers():
                if member.isfile():
                    data = tar.extractfile(member)
                    assert data is not None
                    files[member.name] = hashlib.sha256(data.read()).hexdigest()
        return files

    # ---- the store, read directly (never through slipway, which would reconcile what it reads) -----
    def query(self, sql: str) -> list[Any]:
        url = self.database_url or f"sqlite:///{self.root / '.slipway/state.db'}"
        engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
        try:
            with engine.connect() as conn:
                return list(conn.execute(sqlalchemy.text(sql)))
        finally:
            engine.dispose()

    def locks(self) -> list[tuple[str, str]]:
        return [(r[0], r[1]) for r in self.query("SELECT name, holder FROM locks")]

    def audit_actions(self) -> list[str]:
        return [r[0] for r in self.query("SELECT action FROM audit_log ORDER BY id")]


def wait_for(predicate: Callable[[], bool], what: str, *, timeout: float = 60.0) -> None:
    """Poll ``predicate`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f}s waiting for {what}"
        time.sleep(0.005)


def finish(proc: subprocess.Popen[str], *, timeout: float = COMMAND_TIMEOUT) -> tuple[int, str, str, list[str]]:
    """Wait for a started ``slipway`` (failing after ``timeout``); (exit, stdout, stderr, the processes it
    left running in its session, which are then ended)."""
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stdout, stderr = "", f"(still running after {timeout:.0f}s)"
        proc.kill()
    code = proc.wait()
    left = session_members(proc.pid)
    end_session(proc)
    return code, stdout, stderr, left


def session_members(sid: int) -> list[str]:
    """The command lines of the live processes of session ``sid``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(") ", 1)[1].split()
            if int(fields[3]) == sid and fields[0] != "Z":
                found.append((stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except (OSError, IndexError, ValueError):
            continue
    return found


def end_session(proc: subprocess.Popen[str]) -> None:
    """SIGKILL the process group ``proc`` leads (children a killed slipway left behind); no error if empty."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def pid_is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (OSError, IndexError):
        return False


# ---- the checks every case ends with ------------------------------------------------------------------


def assert_hosts_complete(case: Case, allowed: set[str | None]) -> None:
    """Every host's ``current`` is a complete release (its marker, not a .partial) out of ``allowed``."""
    for i, release in enumerate(case.currents()):
        assert release in allowed, f"host h{i + 1} runs {release}; expected one of {sorted(map(str, allowed))}"
        if release is not None:
            assert not release.endswith(".partial"), f"h{i + 1}: current is a partial release"
            assert (case.host_dir(i) / "app/current" / MARKER).is_file(), f"h{i + 1}: {release} has no marker"


def assert_store_matches_hosts(
    case: Case, runs: dict[int, str] | None = None, *, history: bool = True
) -> dict[str, Any]:
    """``slipway status --json`` names, host by host, the release each host's ``current`` names, and the
    commit in the hosts' release markers; no run is left running and each of ``runs`` (run id -> state)
    is in its state, as ``slipway history --json`` says (``history=False``: as the store says, which saves
    a command where history was checked just before). Returns the environment's status."""
    status = {e["name"]: e for e in case.json("status")["environments"]}[ENV]
    on_hosts = case.currents()
    recorded = [h["release"] for h in status["hosts"]]
    assert recorded == on_hosts, f"status says {recorded}, the hosts run {on_hosts}"
    distinct = set(on_hosts)
    if len(distinct) == 1 and None not in distinct:
        assert status["release"] == on_hosts[0]
        assert status["commit"] == case.marker(0)["commit"], "status names another commit than the hosts run"
    elif len(distinct) > 1:
        assert status["release"] == "mixed"
    if history:
        recorded_runs = {int(r["id"]): (str(r["state"]), str(r["commit"])) for r in case.json("history")}
    else:
        recorded_runs = {int(r[0]): (str(r[1]), str(r[2])) for r in case.query('SELECT id, state, "commit" FROM runs')}
    left_running = [(i, state) for i, (state, _) in recorded_runs.items() if state in ("running", "pending")]
    assert not left_running, f"runs recorded as running with no process: {left_running}"
    for run_id, state in (runs or {}).items():
        assert run_id in recorded_runs, f"run {run_id} is not recorded: {recorded_runs}"
        assert recorded_runs[run_id][0] == state, f"run {run_id} is {recorded_runs[run_id][0]}, expected {state}"
    newest_state, newest_commit = recorded_runs[max(recorded_runs)]
    if newest_state == "succeeded" and len(distinct) == 1:
        assert newest_commit == case.marker(0)["commit"], "the newest run names another commit than the hosts run"
    return dict(status)


#: How a lock names its holder: "tester (run 2, pid 123 on node, started 456)".
LOCK_HOLDER = re.compile(r"pid (\d+) on ([^,)\s]+)")


def assert_no_dead_lock(case: Case) -> None:
    """No lock in the store names a holder process on this machine that is gone."""
    for name, holder in case.locks():
        found = LOCK_HOLDER.search(holder)
        assert found, f"lock {name!r} names no pid: {holder!r}"
        pid, node = int(found.group(1)), found.group(2)
        assert node != os.uname().nodename or pid_is_alive(int(pid)), f"{name} is held by dead process: {holder}"


def assert_deploys_commit(case: Case, label: str) -> None:
    """Every host runs a release of commit ``label`` whose files are exactly that commit's files."""
    sha = case.commits[label]
    expected = case.commit_files(sha)
    assert expected, "the commit has no files under app/"
    for i in range(len(case.bed.hosts)):
        assert case.marker(i)["commit"] == sha, f"h{i + 1}'s release names commit {case.marker(i)['commit']}"
        assert case.release_files(i) == expected, f"h{i + 1} does not run the files of commit {label} ({sha[:12]})"
        assert case.partials(i) == [], f"h{i + 1} keeps partial releases: {case.partials(i)}"


def deployment_state(case: Case, run_id: int) -> str:
    """The state the store holds for the newest deployment of run ``run_id`` (read after a command ran)."""
    rows = case.query(f"SELECT state FROM deployments WHERE run_id = {int(run_id)} ORDER BY id DESC")
    assert rows, f"run {run_id} has no deployment"
    return str(rows[0][0])
