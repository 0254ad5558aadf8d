"""The CLI's last line of defence: an unexpected exception is one paragraph and exit 70, not a traceback."""

from __future__ import annotations

import pytest

from slipway.cli import main as cli_main


def test_an_unexpected_exception_is_a_paragraph_and_exit_70(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(*, args: list[str]) -> None:
        raise RuntimeError("the planner met a case it was never taught")

    monkeypatch.setattr(cli_main, "cli", broken)
    with pytest.raises(SystemExit) as exit_info:
        cli_main.main(["status"])
    err = capsys.readouterr().err
    assert exit_info.value.code == cli_main.INTERNAL_ERROR == 70
    assert "internal error: RuntimeError: the planner met a case it was never taught" in err
    assert "--debug" in err and "Traceback" not in err


def test_debug_shows_the_traceback_of_an_unexpected_exception(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(*, args: list[str]) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(cli_main, "cli", broken)
    with pytest.raises(SystemExit):
        cli_main.main(["--debug", "status"])
    assert "Traceback" in capsys.readouterr().err
