"""One long-lived shell per SSH session channel, running many framed commands.

sshd starts every command through the login user's shell, and on real servers that shell's startup is
often the most expensive part of a short command: Debian's bash sources ``~/.bashrc`` for commands sshd
starts, and a ``~/.bashrc`` that runs ``eval "$(pyenv init -)"`` (rbenv, nvm and conda hooks alike) costs a
few hundred milliseconds of CPU each time. A deployment runs about ten commands per host, so it opens one
channel whose command is :data:`DISPATCHER`, a small POSIX ``sh`` loop, and sends every command of the
deployment through it: the login shell runs once per host.

The protocol, one command at a time per channel::

    client -> host   "<nonce> <script lines> <stdin bytes>[ c]\\n" <script>
    host -> client   "<nonce> go\\n"
    client -> host   "<nonce>\\n" <stdin>
    host -> client   stdout: <the command's stdout> "\\n<nonce> <exit code>\\n"
                     stderr: <the command's stderr> "\\n<nonce>\\n"

The dispatcher starts a command only on the client's word, which follows the host's "go": a command is
therefore either known to have been handed over, or known not to have run. A host that stops answering
(paused, partitioned) before "go" is unreachable and nothing ran there, as when sshd did not open a channel;
a connection lost before "go" is replaced and the command sent again. That costs one round trip per
command, as opening a channel did, and none of the login shell's startup.

The nonce is fresh per command (128 random bits) and never written where the command can read it, so no
output can end a frame early. The dispatcher runs each command as ``setsid sh -c SCRIPT`` (a process
group of its own, which a timeout kills, as sshd's one-session-per-command did), with its stdin the
exact bytes sent (``head -c``, or for more than 1 MB GNU ``dd`` with ``count_bytes``, a third of
``head -c``'s CPU on a large upload; then drained, so a command that reads less never desynchronises the
stream), and its stdout and stderr through fresh FIFOs relayed by ``cat``: output that a daemon the command
left behind writes later cannot leak into the next command's frame; the relays are stopped one second
after the command exits, as the old channel was closed one second after its exit status (``PIPE_GRACE``).

A *contained* command (the header's fourth word ``c``: Slipway's own layout commands, never a hook)
leaves no process behind by construction, so nothing can write after it exits: it writes straight to the
channel, without FIFOs, ``cat`` relays or the timer, four processes fewer per command. Its status file is
one per shell, emptied before each command. Everything else holds as above: it is started only on the
client's word, it runs in a process group of its own that a timeout kills, and its stdin is exact.

A host without ``setsid``, ``mkfifo`` or ``head`` answers "unsupported" and the target falls back to one
channel per command.
"""

from __future__ import annotations

import asyncio
import secrets
from shlex import quote

import asyncssh

from slipway.ports import OutputSink
from slipway.targets.ssh_session import CommandSession

#: $1 is the start nonce. Everything before "<nonce> ready" (a login shell's banner) is ignored.
DISPATCHER = r"""n0=$1
for c in setsid mkfifo head cat mktemp; do
  command -v "$c" >/dev/null 2>&1 || { printf '%s unsupported %s\n' "$n0" "$c"; exit 0; }
done
d=$(mktemp -d "${TMPDIR:-/tmp}/slipway-shell.XXXXXXXX") || exit 1
trap 'rm -rf -- "$d"' EXIT
take() {
  if [ "$1" -gt 1048576 ] && dd if=/dev/null bs=1M iflag=fullblock,count_bytes count=0 status=none 2>/dev/null; then
    dd bs=1M iflag=fullblock,count_bytes count="$1" status=none
  else
    head -c "$1"
  fi
}
# Runs the command read ($s), its exit status file $x, with exactly $il bytes of stdin.
runit() {
  if [ "$il" -gt 0 ]; then
    take "$il" | { setsid sh -c "$s" sh "$x"; r=$?; cat >/dev/null; exit "$r"; }
  else
    setsid sh -c "$s" sh "$x" </dev/null
  fi
}
k=0; g=0
printf '%s ready\n' "$n0"
while IFS=' ' read -r n nl il cw; do
  s=; i=0
  while [ "$i" -lt "$nl" ]; do IFS= read -r l || exit 0; s="$s$l
"; i=$((i + 1)); done
  printf '%s go\n' "$n"
  IFS= read -r go || break
  [ "$go" = "$n" ] || break
  if [ "$cw" = c ]; then
    x=$d/c; : >"$x"
    runit; r=$?
  else
    if [ "$k" -eq 0 ]; then
      g=$((g + 1)); set --; j=1
      while [ "$j" -le 16 ]; do set -- "$@" "$d/o$g.$j" "$d/e$g.$j"; j=$((j + 1)); done
      mkfifo "$@" || break
      k=16
    fi
    o=$d/o$g.$k; e=$d/e$g.$k; x=$d/x$g.$k; k=$((k - 1))
    cat "$o" & co=$!
    cat "$e" >&2 & ce=$!
    runit >"$o" 2>"$e"; r=$?
    (sleep 1; kill "$co" "$ce") >/dev/null 2>&1 & w=$!
    wait "$co" "$ce" 2>/dev/null
    kill "$w" 2>/dev/null
  fi
  if [ "$r" -gt 128 ] && [ ! -s "$x" ]; then r=-$((r - 128)); fi
  printf '\n%s %s\n' "$n" "$r"
  printf '\n%s\n' "$n" >&2
done
"""

#: The framed script's first line: $1 is where its exit status goes, so that the dispatcher can tell a
#: command that exited 143 from one killed by SIGTERM (which runs no EXIT trap), as sshd's exit-signal did.
STATUS_LINE = "_slipway_status=$1; shift; trap 'printf %s \"$?\" >\"$_slipway_status\"' EXIT"


class _Demux:
    """Finds the end of one command's output in one stream: the first ``\\n<nonce>``.

    The newline before the nonce is delivered at once (a line is shown when it ends, not when the next
    one begins); :class:`FramedCommand` takes it off again. Only bytes after a newline that could still
    be the start of the nonce are held back.
    """

    def __init__(self, nonce: bytes) -> None:
        self.nonce = nonce
        self._held = b""
        self._after_newline = False
        self.tail: bytes | None = None  # the marker line's rest once the nonce was seen

    def feed(self, data: bytes) -> bytes:
        """Add ``data``; return what belongs to the command's output."""
        if self.tail is not None:
            self.tail += data
            return b""
        lead = b"\n" if self._after_newline else b""
        text = lead + self._held + data
        self._held = b""
        found = text.find(b"\n" + self.nonce)
        if found >= 0:
            self.tail = text[found + 1 + len(self.nonce):]
            return text[len(lead): found + 1]
        last = text.rfind(b"\n")
        if last >= 0 and self.nonce.startswith(text[last + 1:]):
            self._held = text[last + 1:]
            self._after_newline = True
            return text[len(lead): last + 1]
        self._after_newline = False
        return text[len(lead):]

    def line(self) -> bytes | None:
        """The marker line after the nonce, once it is complete."""
        if self.tail is None or b"\n" not in self.tail:
            return None
        return self.tail.split(b"\n", 1)[0]


class FramedCommand(CommandSession):
    """One command's output, cut out of a shell's streams; behaves as a channel of its own would."""

    def __init__(self, on_output: OutputSink | None) -> None:
        super().__init__(on_output)
        self._empty = {"stdout": 0, "stderr": 0}

    def _emit(self, stream: str, line: bytes) -> None:
        # The frame's own newline makes one empty line too many when the output ends with a newline (or is
        # empty): empty lines wait until a later line shows they were the command's.
        if not line:
            self._empty[stream] += 1
            return
        for _ in range(self._empty[stream]):
            super()._emit(stream, b"")
        self._empty[stream] = 0
        super()._emit(stream, line)

    def finish(self, status: int) -> None:
        """Both markers arrived: drop the frame's newline, show the lines still due, record the exit."""
        for stream, sink in (("stdout", self._out), ("stderr", self._err)):
            data = b"".join(sink)[:-1]
            sink[:] = [data]
            for _ in range(self._empty[stream] - 1):
                super()._emit(stream, b"")
            self._empty[stream] = 0
        self.exit_status_received(status)
        self.closed.set()


class _Frame:
    def __init__(self, command: FramedCommand, nonce: bytes) -> None:
        self.command = command
        self.nonce = nonce
        self.out = _Demux(nonce)
        self.err = _Demux(nonce)
        self.head = b""  # stdout until the "go" line
        self.go = asyncio.Event()


class Shell(asyncssh.SSHClientSession[bytes]):
    """The client side of one dispatcher channel: starts it, then runs one framed command at a time."""

    def __init__(self) -> None:
        self.nonce = secrets.token_hex(16).encode()
        self.started: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._banner = b""
        self._frame: _Frame | None = None
        self._chan: asyncssh.SSHClientChannel[bytes] | None = None
        self.closed = False
        self._gone = asyncio.Event()
        self.unsupported = ""
        #: The connection the channel runs on (set by the target once the channel is open); None with ``kept``.
        self.conn: asyncssh.SSHClientConnection | None = None
        #: Whether it runs through a kept connection's local socket (ssh_keeper), not a connection of ours.
        self.kept = False

    @property
    def command_line(self) -> str:
        """The exec request that starts the dispatcher (through the login shell, once)."""
        return f"exec sh -c {quote(DISPATCHER)} slipway-shell {self.nonce.decode()}"

    def connection_made(self, chan: asyncssh.SSHClientChannel[bytes]) -> None:
        self._chan = chan

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        if not self.started.done():
            if datatype != asyncssh.EXTENDED_DATA_STDERR:
                self._starting(data)
            return
        frame = self._frame
        if frame is None:
            return  # nothing may arrive between frames; a stray byte is no command's output
        stderr = datatype == asyncssh.EXTENDED_DATA_STDERR
        if not stderr and not frame.go.is_set():
            frame.head += data
            if b"\n" not in frame.head:
                return
            line, data = frame.head.split(b"\n", 1)
            if line != frame.nonce + b" go":
                self.close()  # not our dispatcher talking: nothing is sent on this channel any more
                return
            frame.go.set()
        demux = frame.err if stderr else frame.out
        payload = demux.feed(data)
        if payload:
            frame.command.data_received(payload, datatype)
        self._maybe_done(frame)

    def _starting(self, data: bytes) -> None:
        self._banner = (self._banner + data)[-4096:]
        for line in self._banner.split(b"\n")[:-1]:
            head, _, rest = line.partition(b" ")
            if head != self.nonce:
                continue
            if rest == b"ready":
                self.started.set_result(True)
            else:
                self.unsupported = rest.decode("utf-8", "replace")
                self.started.set_result(False)
            return

    def _maybe_done(self, frame: _Frame) -> None:
        out, err = frame.out.line(), frame.err.line()
        if out is None or err is None:
            return
        self._frame = None
        try:
            status = int(out.strip())
        except ValueError:
            status = -1
        frame.command.finish(status)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._gone.set()
        if not self.started.done():
            self.started.set_result(False)
        frame, self._frame = self._frame, None
        if frame is not None:
            frame.command.connection_lost(exc)
            frame.go.set()  # whoever waits for it looks at the command: lost, never started

    def offer(
        self, script: str, stdin: bytes | None, command: FramedCommand, *, contained: bool = False
    ) -> asyncio.Event:
        """Send one command's header and script; the returned event is set once the host says "go".

        ``contained``: the command leaves no process behind, so it writes straight to the channel.
        """
        assert self._chan is not None and self._frame is None
        frame = _Frame(command, secrets.token_hex(16).encode())
        body = script.encode()
        if not body.endswith(b"\n"):
            body += b"\n"
        self._frame = frame
        mode = b" c" if contained else b""
        self._chan.write(b"%s %d %d%s\n" % (frame.nonce, body.count(b"\n"), len(stdin or b""), mode) + body)
        return frame.go

    def start(self, stdin: bytes | None) -> None:
        """Tell the host to run the command offered (after its "go"), with its stdin."""
        assert self._chan is not None and self._frame is not None and self._frame.go.is_set()
        self._chan.write(self._frame.nonce + b"\n")
        if stdin:
            self._chan.write(stdin)  # as it is: a fleet's hosts often share one upload's bytes

    def banner_tail(self) -> str:
        """What the login shell printed before it exited (the evidence when the shell never started)."""
        return self._banner.decode("utf-8", "replace").strip()[-300:] or "no output"

    def idle(self) -> bool:
        """Whether the shell can take a command now."""
        return not self.closed and self._frame is None and self.started.done() and self.started.result()

    async def end(self) -> None:
        """Send EOF: the dispatcher leaves its loop, removes its FIFOs and exits; wait for the channel."""
        if self._chan is not None and not self.closed:
            self._chan.write_eof()
            await self._gone.wait()

    def close(self) -> None:
        """End the shell: it reads EOF and exits, removing its FIFO directory."""
        self.closed = True
        if self._chan is not None:
            self._chan.close()
