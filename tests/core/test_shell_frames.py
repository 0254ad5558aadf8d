"""The long-lived SSH shell's framing: a command's output, cut out of the shell's streams, is exactly what a
channel of its own gave (bytes and streamed lines), however the streams are chunked."""

from __future__ import annotations

import asyncssh
from hypothesis import given, settings
from hypothesis import strategies as st

from slipway.targets.ssh_session import CommandSession
from slipway.targets.ssh_shell import FramedCommand, _Demux

NONCE = b"0123456789abcdef0123456789abcdef"


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for point in [*points, len(data)]:
        pieces.append(data[last:point])
        last = point
    return pieces


def _framed(out: bytes, err: bytes, cuts: list[int]) -> tuple[FramedCommand, list[tuple[str, str]]]:
    lines: list[tuple[str, str]] = []
    command = FramedCommand(lambda stream, line: lines.append((stream, line)))
    streams = {
        asyncssh.EXTENDED_DATA_STDERR: (_Demux(NONCE), b"slipway-pid:42\n" + err + b"\n" + NONCE + b"\n"),
        None: (_Demux(NONCE), out + b"\n" + NONCE + b" 3\n"),
    }
    for datatype, (demux, stream) in streams.items():
        for piece in _chunks(stream, cuts):
            payload = demux.feed(piece)
            if payload:
                command.data_received(payload, datatype)  # type: ignore[arg-type]
        assert demux.line() is not None
    command.finish(int(streams[None][0].line() or b"-1"))
    return command, lines


def _plain(out: bytes, err: bytes) -> tuple[CommandSession, list[tuple[str, str]]]:
    lines: list[tuple[str, str]] = []
    session = CommandSession(lambda stream, line: lines.append((stream, line)))
    session.data_received(b"slipway-pid:42\n" + err, asyncssh.EXTENDED_DATA_STDERR)
    session.data_received(out, None)  # type: ignore[arg-type]
    session.connection_lost(None)
    return session, lines


# Output made of the bytes that matter here: newlines, and the nonce's own characters.
OUTPUT = st.lists(st.sampled_from([b"\n", b"a", b"0", b"01234", NONCE[:-1], b"\n\n", b"x y"]), max_size=12).map(
    b"".join
)


@settings(max_examples=400, deadline=None)
@given(out=OUTPUT, err=OUTPUT, cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=6))
def test_a_framed_command_reads_as_a_channel_of_its_own(out: bytes, err: bytes, cuts: list[int]) -> None:
    framed, framed_lines = _framed(out, err, cuts)
    plain, plain_lines = _plain(out, err)
    assert framed.output() == plain.output() == (out, err)
    assert framed.pid == plain.pid == 42
    assert framed.exit_code == 3
    for stream in ("stdout", "stderr"):
        assert [x for x in framed_lines if x[0] == stream] == [x for x in plain_lines if x[0] == stream]


def test_a_line_is_shown_when_it_ends_not_when_the_command_does() -> None:
    lines: list[tuple[str, str]] = []
    command = FramedCommand(lambda stream, line: lines.append((stream, line)))
    demux = _Demux(NONCE)
    command.data_received(demux.feed(b"building\n"), None)  # type: ignore[arg-type]
    assert lines == [("stdout", "building")]
    assert not command.exited.is_set()


def test_the_frame_ends_only_at_its_own_nonce() -> None:
    demux = _Demux(NONCE)
    other = b"fedcba9876543210fedcba9876543210"
    assert demux.feed(b"x\n" + other + b" 0\n") == b"x\n" + other + b" 0\n"
    assert demux.line() is None
    assert demux.feed(b"\n" + NONCE + b" 0\n") == b"\n"
    assert demux.line() == b" 0"
