"""Issue 15, habits of a command-line tool: shell completion of commands and options."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.e2e.conftest import SLIPWAY

pytestmark = pytest.mark.timeout(120)


def complete(words: str) -> list[str]:
    """What bash completion offers for ``words`` (the way the installed completion script asks), in an
    environment of its own: what other tests leave in this process's environment must not matter."""
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), "LANG": "C.UTF-8",
           "_SLIPWAY_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(len(words.split()) - 1)}
    proc = subprocess.run([SLIPWAY], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def test_bash_completes_commands_and_options() -> None:
    assert sorted(complete("slipway ap")) == ["app", "approve"]  # both commands starting with "ap" (issue 15 added app)
    assert complete("slipway app l") == ["logs"]
    offered = complete("slipway r")
    assert {"review", "rollback", "resume", "reject", "run"} <= set(offered), offered
    assert "--override-freeze" in complete("slipway run --ov")
    # --show-completion prints the script for the shell it was started from (found from the process tree;
    # the ": " keeps bash from exec-ing the command, which would leave the test runner as its parent)
    script = subprocess.run(["bash", "-c", f"{SLIPWAY} --show-completion; :"], capture_output=True, text=True, timeout=120)
    assert script.returncode == 0 and "_SLIPWAY_COMPLETE=complete_bash" in script.stdout, script.stderr
