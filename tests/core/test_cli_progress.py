"""Live progress by batch and host: a board redrawn on a terminal, plain lines in a log."""

from __future__ import annotations

import io

from rich.console import Console

from slipway.cli.progress import Board
from slipway.cli.render import RichObserver
from slipway.model.states import State


def console(*, terminal: bool) -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=terminal, width=160, color_system="standard" if terminal else None), out


def deploy(observer: RichObserver) -> None:
    observer.stage_started("deploy", "deploy")
    observer.batch_started(0, 2, "canary", ["web-1"])
    observer.step_started("web-1", "activate: sh bin/restart.sh")
    observer.step_finished("web-1", "activate: sh bin/restart.sh", State.SUCCEEDED, 0, 0.5)
    observer.batch_finished(0, 2, [], 1.25)
    observer.batch_started(1, 2, "batch", ["web-2", "web-3"])
    observer.step_started("web-3", "verify: healthcheck")
    observer.step_finished("web-3", "verify: healthcheck", State.FAILED, 1, 0.2)
    observer.batch_finished(1, 2, ["web-3"], 2.5)
    observer.stage_finished("deploy", State.FAILED, 4.0, "boom")


def test_a_log_gets_one_plain_line_per_batch_start_and_end() -> None:
    con, out = console(terminal=False)
    deploy(RichObserver(con))
    text = out.getvalue()
    assert "\x1b[" not in text  # no escape codes, nothing redrawn
    lines = [line for line in text.splitlines() if line.startswith("• batch")]
    assert lines == [
        "• batch 1 of 2 (canary): web-1",
        "• batch 1 of 2 done in 1.2s: 1 ok",
        "• batch 2 of 2 (batch): web-2, web-3",
        "• batch 2 of 2 done in 2.5s: 1 ok, 1 failed (web-3)",
    ]


def test_a_terminal_gets_a_board_of_batches_and_hosts() -> None:
    con, out = console(terminal=True)
    deploy(RichObserver(con))
    text = out.getvalue()
    for expected in ("batch", "host", "1/2 canary", "2/2 batch", "web-2", "verify: healthcheck (failed)", "✗", "✓"):
        assert expected in text, expected


def test_the_board_follows_each_host_through_its_steps() -> None:
    now = [100.0]
    board = Board(clock=lambda: now[0])
    board.start_batch(0, 1, "all", ["a", "b"])
    board.step("a", "activate: restart", State.RUNNING)
    now[0] = 103.0
    assert (board.hosts["a"].state, board.hosts["a"].step) == (State.RUNNING, "activate: restart")
    board.step("b", "verify: check", State.FAILED)
    board.finish_batch(0, ["b"], 3.0)
    assert (board.hosts["a"].state, board.hosts["a"].step) == (State.SUCCEEDED, "")
    assert (board.hosts["b"].state, board.hosts["b"].step) == (State.FAILED, "verify: check (failed)")
    rendered = io.StringIO()
    Console(file=rendered, width=100).print(board.render())
    assert "3.0s" in rendered.getvalue() and "b" in rendered.getvalue()
