"""The client side of one SSH command: its output, line by line, its pid line and how it ended."""

from __future__ import annotations

import asyncio
import signal

import asyncssh

from slipway.ports import OutputSink

#: The first line the command's script writes to stderr: its pid, for killing its process group.
PID_MARK = b"slipway-pid:"


class CommandSession(asyncssh.SSHClientSession[bytes]):
    """Collects one command's output, line by line for ``on_output``, and its exit."""

    def __init__(self, on_output: OutputSink | None) -> None:
        self._on_output = on_output
        self._out: list[bytes] = []
        self._err: list[bytes] = []
        self._partial = {"stdout": b"", "stderr": b""}
        self._head: bytes | None = b""  # stderr until the pid line has been seen
        self.pid: int | None = None
        self.exit_code: int | None = None
        self.callback_error: BaseException | None = None
        self.lost: Exception | None = None
        self.exited = asyncio.Event()
        self.closed = asyncio.Event()

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        if datatype == asyncssh.EXTENDED_DATA_STDERR:
            if self._head is not None:
                data = self._take_pid_line(data)
            self._add("stderr", self._err, data)
        else:
            self._add("stdout", self._out, data)

    def _take_pid_line(self, data: bytes) -> bytes:
        assert self._head is not None
        self._head += data
        if b"\n" not in self._head:
            return b""
        line, rest = self._head.split(b"\n", 1)
        self._head = None
        if line.startswith(PID_MARK) and line[len(PID_MARK):].isdigit():
            self.pid = int(line[len(PID_MARK):])
            return rest
        return line + b"\n" + rest

    def _add(self, stream: str, sink: list[bytes], data: bytes) -> None:
        if not data:
            return
        sink.append(data)
        if self._on_output is None:
            return
        *lines, self._partial[stream] = (self._partial[stream] + data).split(b"\n")
        for line in lines:
            self._emit(stream, line)

    def _emit(self, stream: str, line: bytes) -> None:
        if self._on_output is None or self.callback_error is not None:
            return
        try:
            self._on_output(stream, line.decode("utf-8", "replace"))
        except Exception as exc:  # raised to the caller after the command; asyncssh must not see it
            self.callback_error = exc

    def _flush(self) -> None:
        if self._head:
            self._add("stderr", self._err, self._head)
            self._head = None
        for stream in ("stdout", "stderr"):
            if self._partial[stream]:
                self._emit(stream, self._partial[stream])
                self._partial[stream] = b""

    def exit_status_received(self, status: int) -> None:
        self.exit_code = status
        self.exited.set()

    def exit_signal_received(self, signal_name: str, core_dumped: bool, msg: str, lang: str) -> None:
        try:
            self.exit_code = -int(signal.Signals[f"SIG{signal_name}"])
        except KeyError:
            self.exit_code = -1
        self.exited.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc
        self._flush()
        self.exited.set()
        self.closed.set()

    def output(self) -> tuple[bytes, bytes]:
        return b"".join(self._out), b"".join(self._err)
