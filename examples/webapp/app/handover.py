"""Hand the listening socket from the running app to its successor, so that a restart drops no request.

Stopping the old process before the new one listens refuses connections in between, and closing a
listening socket resets every connection still waiting in its queue (SO_REUSEPORT does not help: each
socket has its own queue, reset when that socket closes). So the socket is never closed: the running app
keeps a control socket (a Unix socket, ``run/app.sock`` in the shared directory, mode 0600), and a new
process started for the same port asks it for the listening socket. The exchange:

1. the new process connects and receives the listening socket's file descriptor (SCM_RIGHTS);
2. it prepares to serve on it, takes over the control socket's path, and sends ``serving``;
3. the old process stops accepting, answers ``stopped``, finishes the requests it holds and exits,
   which closes its end of the control connection: the new process knows that the old one is gone
   without polling its pid (an exited process can stay a zombie until its reaper gets to it).

Both processes hold the same socket throughout, so a connection in its queue is accepted by one of them.
If the new process dies before step 2, the old one never stopped accepting and keeps serving.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

#: How long either side waits for the other at each step: a stuck peer must not stall a restart forever.
STEP_TIMEOUT = 30.0


class HandoverError(Exception):
    """The running app did not hand over its listening socket."""


@contextlib.contextmanager
def _inside(directory: Path) -> Iterator[None]:
    """Work relative to ``directory``: a Unix socket's path is limited to 108 bytes, deploy roots are not.

    Only used while the process starts, before any other thread runs.
    """
    previous = os.getcwd()
    os.chdir(directory)
    try:
        yield
    finally:
        os.chdir(previous)


class Predecessor:
    """The running app, reached over its control socket, that is handing its listening socket over."""

    def __init__(self, control: socket.socket, listener: socket.socket) -> None:
        self.control = control
        self.listener = listener

    @classmethod
    def reach(cls, path: Path) -> Predecessor | None:
        """Receive the listening socket of the app serving at ``path``; None when no app runs there."""
        control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        control.settimeout(STEP_TIMEOUT)
        try:
            with _inside(path.parent):
                control.connect(path.name)
        except (FileNotFoundError, ConnectionRefusedError):  # no app, or one that died: start afresh
            control.close()
            return None
        try:
            _, fds, _, _ = socket.recv_fds(control, 64, 1)
        except OSError as exc:
            control.close()
            raise HandoverError(f"the app at {path} did not hand over its listening socket: {exc}") from exc
        if not fds:  # it is stopping and has closed its listening socket already
            control.close()
            return None
        return cls(control, socket.socket(fileno=fds[0]))

    def stop_accepting(self) -> bool:
        """Tell it that this process serves now; True once it has stopped accepting."""
        try:
            self.control.sendall(b"serving\n")
            return self.control.recv(64).startswith(b"stopped")
        except OSError:
            return False

    def wait_until_gone(self, timeout: float) -> bool:
        """Wait until it has answered the requests it held and exited; False after ``timeout`` seconds."""
        self.control.settimeout(timeout)
        try:
            while self.control.recv(64):
                pass
            return True
        except OSError:
            return False
        finally:
            self.control.close()


class ControlSocket:
    """Where a successor asks this process for its listening socket (a thread answers, one at a time)."""

    def __init__(self, path: Path, listener: socket.socket, *, stop_accepting: Callable[[], None]) -> None:
        self.path = path
        self.listener = listener
        self.stop_accepting = stop_accepting
        self.handed_over = threading.Event()
        self._successor: socket.socket | None = None  # open until this process exits: the successor waits
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # Bind beside the path and rename over it: a successor never finds the path missing or stale.
        staging = f".{path.name}.{os.getpid()}"
        with _inside(path.parent):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(staging)
            self.sock.bind(staging)
            os.chmod(staging, 0o600)  # whoever can connect can take the port
            self.sock.listen(4)
            os.rename(staging, path.name)
        threading.Thread(target=self._answer, name="handover", daemon=True).start()

    def _answer(self) -> None:
        while not self.handed_over.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.settimeout(STEP_TIMEOUT)
            if self._hand_over(conn):
                self._successor = conn
            else:
                conn.close()
        self.sock.close()

    def _hand_over(self, conn: socket.socket) -> bool:
        if self.listener.fileno() < 0:
            return False  # stopping: the successor starts afresh
        try:
            socket.send_fds(conn, [b"listener"], [self.listener.fileno()])
            if not conn.recv(64).startswith(b"serving"):
                return False  # the successor died before serving: keep accepting
        except OSError:
            return False
        self.stop_accepting()
        self.handed_over.set()
        with contextlib.suppress(OSError):
            conn.sendall(b"stopped\n")
        return True
