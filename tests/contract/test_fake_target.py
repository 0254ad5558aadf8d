"""What FakeTarget adds to the Target contract: recorded calls, scripted answers, an unreachable host."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path

import pytest

import slipway.testing
from slipway.errors import CommandTimeout, HostUnreachable
from slipway.testing import FakeClock, FakeTarget

pytestmark = pytest.mark.timeout(60)


def test_every_call_is_recorded_with_its_arguments(tmp_path: Path) -> None:
    target = FakeTarget("web-1", tmp_path / "host")

    async def scenario() -> None:
        await target.run("cat > got", stdin=b"in", env={"A": "1"}, cwd=target.root, timeout=5)
        await target.put(b"data", f"{target.root}/f", mode=0o600)
        assert await target.read(f"{target.root}/f") == b"data"
        await target.close()

    asyncio.run(scenario())
    assert [(c.kind, c.subject) for c in target.calls] == [
        ("run", "cat > got"), ("put", f"{target.root}/f"), ("read", f"{target.root}/f"), ("close", ""),
    ]
    run, put = target.calls[0], target.calls[1]
    assert (run.stdin, dict(run.env), run.cwd, run.timeout) == (b"in", {"A": "1"}, target.root, 5)
    assert (put.data, put.mode) == (b"data", 0o600)
    assert target.commands == ["cat > got"] and target.calls_of("put") == [put]
    assert (tmp_path / "host/got").read_bytes() == b"in"  # it really ran, in the fake host's root


def test_commands_see_a_private_environment_not_the_test_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLIPWAY_SECRET_OF_THE_TEST_PROCESS", "leaked")
    target = FakeTarget("h", tmp_path / "host", env={"EXTRA": "given"})
    result = asyncio.run(target.run('printf "%s|%s|%s" "$HOME" "$EXTRA" "${SLIPWAY_SECRET_OF_THE_TEST_PROCESS-}"'))
    assert result.stdout == f"{target.root}|given|"


def test_a_response_answers_matching_commands_instead_of_running_them(tmp_path: Path) -> None:
    target = FakeTarget("h", tmp_path / "host")
    restart = target.respond("restart-app", exit_code=1, stdout="trying\n", stderr="unit failed\n")
    regex = target.respond(re.compile(r"^migrate \d+$"), stdout="done\n", times=None)
    lines: list[tuple[str, str]] = []

    async def scenario() -> None:
        failed = await target.run("touch ran; restart-app web", cwd=target.root, on_output=lambda *x: lines.append(x))
        assert (failed.exit_code, failed.stdout, failed.stderr, failed.host) == (1, "trying\n", "unit failed\n", "h")
        again = await target.run("touch ran2; restart-app web", cwd=target.root)  # used up: it really runs now
        assert again.exit_code == 127 and "restart-app" in again.stderr
        for n in (1, 2):
            assert (await target.run(f"migrate {n}")).stdout == "done\n"

    asyncio.run(scenario())
    assert lines == [("stdout", "trying"), ("stderr", "unit failed")]
    assert restart.hits == ["touch ran; restart-app web"] and restart.times == 0
    assert regex.hits == ["migrate 1", "migrate 2"]
    assert not (tmp_path / "host/ran").exists() and (tmp_path / "host/ran2").exists()
    assert len(target.commands) == 4  # answered commands are recorded too


def test_a_response_can_raise_a_target_error(tmp_path: Path) -> None:
    target = FakeTarget("h", tmp_path / "host")
    target.respond("slow-hook", error=CommandTimeout("timed out", host="h", command="slow-hook"))

    async def scenario() -> None:
        with pytest.raises(CommandTimeout):
            await target.run("slow-hook")
        assert (await target.run("echo after")).stdout == "after\n"

    asyncio.run(scenario())


def test_an_unreachable_fake_refuses_every_call_until_it_is_back(tmp_path: Path) -> None:
    target = FakeTarget("web-2", tmp_path / "host")
    target.unreachable = True

    async def scenario() -> None:
        for call in (target.run("true"), target.put(b"x", f"{target.root}/x"), target.read(f"{target.root}/x")):
            with pytest.raises(HostUnreachable) as info:
                await call
            assert info.value.host == "web-2"
        target.unreachable = False
        assert (await target.run("true")).ok

    asyncio.run(scenario())
    assert not (tmp_path / "host/x").exists()
    assert [c.kind for c in target.calls] == ["run", "put", "read", "run"]


def test_without_a_root_it_makes_a_temporary_one_and_removes_it() -> None:
    with FakeTarget() as target:
        root = Path(target.root)
        assert root.is_dir() and (asyncio.run(target.run("pwd", cwd=target.root))).stdout == f"{root}\n"
    assert not root.exists()


def test_a_given_root_is_never_removed(tmp_path: Path) -> None:
    with FakeTarget("h", tmp_path / "host"):
        pass
    assert (tmp_path / "host").is_dir()


def test_slipway_testing_holds_only_the_fakes_and_imports_without_pytest() -> None:
    package = Path(slipway.testing.__file__).parent
    assert sorted(p.name for p in package.glob("*.py")) == ["__init__.py", "fakeclock.py", "faketarget.py"]
    assert set(slipway.testing.__all__) == {"Call", "FakeClock", "FakeTarget", "Response"}
    assert isinstance(FakeClock().now(), float)
    # pytest is no runtime dependency of Slipway: importing the fakes must not need it.
    probe = "import sys; sys.modules['pytest'] = None; import slipway.testing; print(slipway.testing.FakeTarget)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
